//! Camera pixel formats: copied into frames as they are ([`copy_frame`]), and converted to packed
//! RGB8 the way ffmpeg converts the same bytes ([`to_rgb`], the reference the preprocessing of
//! the native layouts is tested against).
//!
//! USB (UVC) and CSI cameras deliver a handful of layouts; the copy and each converter read the
//! driver's buffer (with its `bytesperline` stride) into the caller's buffer, so nothing here
//! allocates. YUV is BT.601 limited range with each chroma sample repeated over its block, which
//! is what libswscale does for these formats by default (see [`crate::source::color`]); GREY is
//! taken as full range, as swscale does for `gray`.

use crate::source::PixelFormat;
use crate::source::color::{Chroma, ColorRange, Matrix};

/// A V4L2 FourCC.
pub type FourCc = [u8; 4];

pub const YUYV: FourCc = *b"YUYV";
pub const UYVY: FourCc = *b"UYVY";
pub const NV12: FourCc = *b"NV12";
pub const MJPG: FourCc = *b"MJPG";
pub const RGB3: FourCc = *b"RGB3";
pub const BGR3: FourCc = *b"BGR3";
pub const GREY: FourCc = *b"GREY";

/// Formats we convert, in the order we prefer them when the URI names none: uncompressed first
/// (no decode cost, no decoder allocations), MJPEG before grey (colour matters to a classifier).
pub const PREFERRED: [FourCc; 7] = [YUYV, UYVY, NV12, RGB3, BGR3, MJPG, GREY];

/// Geometry of a raw buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    /// Bytes per line of the (first) plane; 0 means tightly packed.
    pub stride: usize,
}

impl Layout {
    fn line(&self, bytes_per_pixel: usize) -> usize {
        if self.stride == 0 {
            self.width as usize * bytes_per_pixel
        } else {
            self.stride
        }
    }
}

/// Why a buffer could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("{fourcc} buffer of {got} bytes is shorter than {need} for {width}x{height}")]
    Short {
        fourcc: String,
        got: usize,
        need: usize,
        width: u32,
        height: u32,
    },
    #[error("pixel format {0} is not supported")]
    Unsupported(String),
    #[error("{fourcc} frame of odd width {width}: its chroma pairs are incomplete")]
    OddWidth { fourcc: String, width: u32 },
}

/// The FourCC as text (`YUYV`).
pub fn name(f: FourCc) -> String {
    String::from_utf8_lossy(&f).trim_end().to_string()
}

/// Bytes a raw frame needs (MJPEG: none fixed).
pub fn raw_len(f: FourCc, l: &Layout) -> Option<usize> {
    let (w, h) = (l.width as usize, l.height as usize);
    let last = |bpp: usize| l.line(bpp) * h.saturating_sub(1) + w * bpp;
    match f {
        YUYV | UYVY => Some(last(2)),
        RGB3 | BGR3 => Some(last(3)),
        GREY => Some(last(1)),
        NV12 => {
            Some(l.line(1) * h + l.line(1) * h.div_ceil(2).saturating_sub(1) + w.div_ceil(2) * 2)
        }
        _ => None,
    }
}

/// The frame layout a raw format is copied into (`None` for MJPEG, which is decoded).
pub fn pixel_format(f: FourCc) -> Option<PixelFormat> {
    match f {
        YUYV => Some(PixelFormat::Yuyv),
        UYVY => Some(PixelFormat::Uyvy),
        NV12 => Some(PixelFormat::Nv12),
        RGB3 => Some(PixelFormat::Rgb24),
        BGR3 => Some(PixelFormat::Bgr24),
        GREY => Some(PixelFormat::Yuv {
            chroma: Chroma::Mono,
            range: ColorRange::Full,
        }),
        _ => None,
    }
}

/// Copies a raw (non-JPEG) driver buffer into `dst`, tightly packed in the layout
/// [`pixel_format`] names (`dst` must hold that layout's frame length): the line padding of a
/// `bytesperline` stride is dropped, nothing is converted.
pub fn copy_frame(f: FourCc, l: &Layout, src: &[u8], dst: &mut [u8]) -> Result<(), ConvertError> {
    let need = raw_len(f, l).ok_or_else(|| ConvertError::Unsupported(name(f)))?;
    let format = pixel_format(f).ok_or_else(|| ConvertError::Unsupported(name(f)))?;
    let (w, h) = (l.width as usize, l.height as usize);
    if matches!(f, YUYV | UYVY | NV12) && w % 2 == 1 {
        return Err(ConvertError::OddWidth {
            fourcc: name(f),
            width: l.width,
        });
    }
    if src.len() < need || dst.len() < format.frame_len(l.width, l.height) {
        return Err(ConvertError::Short {
            fourcc: name(f),
            got: src.len(),
            need,
            width: l.width,
            height: l.height,
        });
    }
    let rows = |src: &[u8], dst: &mut [u8], row: usize, line: usize, count: usize| {
        if line == row {
            dst[..row * count].copy_from_slice(&src[..row * count]);
            return;
        }
        for (d, s) in dst.chunks_exact_mut(row).take(count).zip(src.chunks(line)) {
            d.copy_from_slice(&s[..row]);
        }
    };
    match f {
        NV12 => {
            let line = l.line(1);
            let (luma, chroma) = dst.split_at_mut(w * h);
            rows(src, luma, w, line, h);
            rows(
                &src[line * h..],
                chroma,
                w.div_ceil(2) * 2,
                line,
                h.div_ceil(2),
            );
        }
        YUYV | UYVY => rows(src, dst, w.div_ceil(2) * 4, l.line(2), h),
        RGB3 | BGR3 => rows(src, dst, w * 3, l.line(3), h),
        _ => rows(src, dst, w, l.line(1), h),
    }
    Ok(())
}

/// Converts a raw (non-JPEG) buffer into `rgb` (`width * height * 3` bytes).
pub fn to_rgb(f: FourCc, l: &Layout, src: &[u8], rgb: &mut [u8]) -> Result<(), ConvertError> {
    let need = raw_len(f, l).ok_or_else(|| ConvertError::Unsupported(name(f)))?;
    if src.len() < need || rgb.len() < l.width as usize * l.height as usize * 3 {
        return Err(ConvertError::Short {
            fourcc: name(f),
            got: src.len(),
            need,
            width: l.width,
            height: l.height,
        });
    }
    match f {
        YUYV => packed_422(l, src, rgb, [0, 1, 3]),
        UYVY => packed_422(l, src, rgb, [1, 0, 2]),
        NV12 => nv12(l, src, rgb),
        RGB3 => packed_rgb(l, src, rgb, false),
        BGR3 => packed_rgb(l, src, rgb, true),
        GREY => grey(l, src, rgb),
        _ => return Err(ConvertError::Unsupported(name(f))),
    }
    Ok(())
}

/// YUYV / UYVY: `pos` = byte offsets of Y0, U, V in each 4-byte macropixel (Y1 = Y0 + 2).
fn packed_422(l: &Layout, src: &[u8], rgb: &mut [u8], pos: [usize; 3]) {
    let m = Matrix::for_range(ColorRange::Limited);
    let (w, line) = (l.width as usize, l.line(2));
    for (y, out) in rgb
        .chunks_exact_mut(w * 3)
        .take(l.height as usize)
        .enumerate()
    {
        let row = &src[y * line..];
        for (x, px) in out.chunks_exact_mut(3).enumerate() {
            let mp = &row[(x / 2) * 4..];
            let luma = mp[pos[0] + (x & 1) * 2];
            px.copy_from_slice(&m.rgb(luma, mp[pos[1]], mp[pos[2]]));
        }
    }
}

/// NV12: a Y plane, then interleaved Cb Cr at half width and half height. Like swscale's
/// generic path (there is no unscaled NV12 → RGB24 converter), chroma is resampled vertically
/// to full height with its default bicubic (Keys, a = -0.6, centre-aligned, edges clamped) and
/// repeated horizontally over each pair.
fn nv12(l: &Layout, src: &[u8], rgb: &mut [u8]) {
    let m = Matrix::for_range(ColorRange::Limited);
    let (w, h, line) = (l.width as usize, l.height as usize, l.line(1));
    let (luma, chroma) = src.split_at(line * h);
    let ch = h.div_ceil(2);
    for (y, out) in rgb.chunks_exact_mut(w * 3).take(h).enumerate() {
        let pos = (y as f32 + 0.5) * (ch as f32 / h as f32) - 0.5;
        let i0 = pos.floor() as isize;
        let mut rows = [0usize; 4];
        let mut weights = [0f32; 4];
        for k in 0..4 {
            let i = i0 + k as isize - 1;
            rows[k] = i.clamp(0, ch as isize - 1) as usize * line;
            weights[k] = keys_cubic(pos - i as f32, -0.6);
        }
        let yrow = &luma[y * line..];
        for (x, px) in out.chunks_exact_mut(3).enumerate() {
            let c = (x / 2) * 2;
            let (mut u, mut v) = (0f32, 0f32);
            for k in 0..4 {
                u += f32::from(chroma[rows[k] + c]) * weights[k];
                v += f32::from(chroma[rows[k] + c + 1]) * weights[k];
            }
            let q4 = |x: f32| ((x * 16.0).round() as i32).clamp(0, 255 * 16);
            px.copy_from_slice(&m.rgb_q4(yrow[x], q4(u), q4(v)));
        }
    }
}

/// The Keys cubic convolution kernel with parameter `a` (swscale's bicubic with B = 0, C = -a).
fn keys_cubic(x: f32, a: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

fn packed_rgb(l: &Layout, src: &[u8], rgb: &mut [u8], bgr: bool) {
    let (w, line) = (l.width as usize, l.line(3));
    for (y, out) in rgb
        .chunks_exact_mut(w * 3)
        .take(l.height as usize)
        .enumerate()
    {
        let row = &src[y * line..y * line + w * 3];
        if bgr {
            for (o, i) in out.chunks_exact_mut(3).zip(row.chunks_exact(3)) {
                o.copy_from_slice(&[i[2], i[1], i[0]]);
            }
        } else {
            out.copy_from_slice(row);
        }
    }
}

fn grey(l: &Layout, src: &[u8], rgb: &mut [u8]) {
    let (w, line) = (l.width as usize, l.line(1));
    for (y, out) in rgb
        .chunks_exact_mut(w * 3)
        .take(l.height as usize)
        .enumerate()
    {
        for (x, px) in out.chunks_exact_mut(3).enumerate() {
            px.fill(src[y * line + x]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_of_limited_black_white_and_red() {
        // Y=16 (black), Y=235 (white) sharing neutral chroma; then pure BT.601 red:
        // Y = 16 + 219 * 0.299 = 81.5, Cb = 128 - 112 * 0.299/0.886 = 90.2, Cr = 240.
        let l = Layout {
            width: 4,
            height: 1,
            stride: 0,
        };
        let src = [16, 128, 235, 128, 82, 90, 82, 240];
        let mut rgb = [0u8; 12];
        to_rgb(YUYV, &l, &src, &mut rgb).expect("converts");
        assert_eq!(&rgb[..6], &[0, 0, 0, 255, 255, 255]);
        assert!(
            rgb[6] >= 253 && rgb[7] <= 2 && rgb[8] <= 2,
            "{:?}",
            &rgb[6..]
        );
    }

    #[test]
    fn stride_padding_is_skipped_and_short_buffers_refused() {
        let l = Layout {
            width: 1,
            height: 2,
            stride: 4,
        };
        let src = [10, 20, 30, 99, 40, 50, 60];
        let mut rgb = [0u8; 6];
        to_rgb(BGR3, &l, &src, &mut rgb).expect("converts");
        assert_eq!(rgb, [30, 20, 10, 60, 50, 40]);
        assert!(matches!(
            to_rgb(BGR3, &l, &src[..6], &mut rgb),
            Err(ConvertError::Short { .. })
        ));
        assert!(to_rgb(*b"XXXX", &l, &src, &mut rgb).is_err());
    }
}
