//! MJPEG frames from USB cameras into frames.
//!
//! UVC cameras send "AVI1" MJPEG: each frame is a baseline JPEG, usually 4:2:2, often *without*
//! its Huffman tables (DHT), the decoder being expected to use the standard tables of ITU-T T.81
//! Annex K.3. Such frames go through our own baseline decoder ([`super::jpeg`]), which allocates
//! nothing per frame, writes the frame's planar full-range YCbCr (`yuvj422p`, `yuvj420p`,
//! `yuvj444p`, grey: what ffmpeg decodes these frames to, resized natively by the preprocessor)
//! and can decode at 1/2, 1/4 or 1/8 size when the model needs far fewer pixels
//! ([`Scratch::set_min_size`], the capture thread's hint).
//!
//! Frames it does not handle (progressive, arithmetic, 12-bit, multi-scan, ...) fall back to
//! zune-jpeg (the well-kept pure-Rust decoder `image` uses), which allocates per frame and
//! offers no DCT scaling; the first such frame is logged. The fallback gets the standard DHT
//! inserted when a frame has none. zune-jpeg upsamples chroma with libjpeg's "fancy" triangle
//! filter, ffmpeg repeats each chroma sample over its pair, and on sharp colour edges the two
//! differ by tens of levels; for h2v1 frames the fallback therefore recovers the original chroma
//! samples by inverting the triangle filter (a recursion whose rounding errors shrink by 1/3 per
//! step, so it stays within about one level). Other samplings fall back to RGB.

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::jpeg::{Decoder, JpegError};
use crate::source::color::{Chroma, ColorRange};
use crate::source::{Frame, PixelFormat};

/// The standard DC and AC tables for luminance (id 0) and chrominance (id 1), T.81 K.3, as one
/// DHT segment (marker, length 418, four tables).
pub const STANDARD_DHT: [u8; 420] = [
    0xFF, 0xC4, 0x01, 0xA2, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A,
    0x0B, 0x01, 0x00, 0x03, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x10, 0x00,
    0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00, 0x01, 0x7D, 0x01,
    0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22,
    0x71, 0x14, 0x32, 0x81, 0x91, 0xA1, 0x08, 0x23, 0x42, 0xB1, 0xC1, 0x15, 0x52, 0xD1, 0xF0, 0x24,
    0x33, 0x62, 0x72, 0x82, 0x09, 0x0A, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x25, 0x26, 0x27, 0x28, 0x29,
    0x2A, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A,
    0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A,
    0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A,
    0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8,
    0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6,
    0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8, 0xD9, 0xDA, 0xE1, 0xE2, 0xE3,
    0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9,
    0xFA, 0x11, 0x00, 0x02, 0x01, 0x02, 0x04, 0x04, 0x03, 0x04, 0x07, 0x05, 0x04, 0x04, 0x00, 0x01,
    0x02, 0x77, 0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07,
    0x61, 0x71, 0x13, 0x22, 0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xA1, 0xB1, 0xC1, 0x09, 0x23, 0x33,
    0x52, 0xF0, 0x15, 0x62, 0x72, 0xD1, 0x0A, 0x16, 0x24, 0x34, 0xE1, 0x25, 0xF1, 0x17, 0x18, 0x19,
    0x1A, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x43, 0x44, 0x45, 0x46,
    0x47, 0x48, 0x49, 0x4A, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x63, 0x64, 0x65, 0x66,
    0x67, 0x68, 0x69, 0x6A, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0x82, 0x83, 0x84, 0x85,
    0x86, 0x87, 0x88, 0x89, 0x8A, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0xA2, 0xA3,
    0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8, 0xB9, 0xBA,
    0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8,
    0xD9, 0xDA, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9, 0xEA, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6,
    0xF7, 0xF8, 0xF9, 0xFA,
];

/// Why a JPEG frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum MjpegError {
    #[error("not a JPEG frame (no SOI marker)")]
    NotJpeg,
    #[error("JPEG frame is {got_w}x{got_h}, the stream is {width}x{height}")]
    Size {
        got_w: u32,
        got_h: u32,
        width: u32,
        height: u32,
    },
    #[error("JPEG decode failed: {0}")]
    Decode(String),
    #[error(transparent)]
    Baseline(JpegError),
}

impl From<JpegError> for MjpegError {
    fn from(e: JpegError) -> MjpegError {
        match e {
            JpegError::Size {
                got_w,
                got_h,
                width,
                height,
            } => MjpegError::Size {
                got_w,
                got_h,
                width,
                height,
            },
            e => MjpegError::Baseline(e),
        }
    }
}

/// Whether the frame defines Huffman tables before its first scan. Walks the marker segments
/// from SOI; a malformed length ends the walk (the decoder will report the damage).
pub fn has_huffman_tables(jpeg: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return false;
        }
        let marker = jpeg[i + 1];
        match marker {
            0xC4 => return true,
            0xDA | 0xD9 => return false,
            0xFF => {
                i += 1; // fill byte
                continue;
            }
            0xD0..=0xD7 | 0x01 => {
                i += 2;
                continue;
            }
            _ => {}
        }
        let len = usize::from(jpeg[i + 2]) << 8 | usize::from(jpeg[i + 3]);
        i += 2 + len;
    }
    false
}

/// The frame as a decodable JPEG: `jpeg` itself when it has tables, else a copy in `scratch`
/// with [`STANDARD_DHT`] right after SOI.
pub fn with_tables<'a>(jpeg: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<&'a [u8], MjpegError> {
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
        return Err(MjpegError::NotJpeg);
    }
    if has_huffman_tables(jpeg) {
        return Ok(jpeg);
    }
    scratch.clear();
    scratch.extend_from_slice(&jpeg[..2]);
    scratch.extend_from_slice(&STANDARD_DHT);
    scratch.extend_from_slice(&jpeg[2..]);
    Ok(scratch)
}

/// State reused from frame to frame: the baseline decoder's tables, the smallest picture the
/// consumer needs, and the fallback's buffers (the frame with Huffman tables inserted, the
/// decoder's interleaved YCbCr of a 4:2:2 frame, one row of its chroma).
#[derive(Debug, Default)]
pub struct Scratch {
    decoder: Option<Box<Decoder>>,
    /// Decode at the smallest DCT scale whose picture is at least this large.
    min_size: Option<(u32, u32)>,
    /// Whether a fallback to the general decoder was logged already.
    fell_back: bool,
    tables: Vec<u8>,
    ycc: Vec<u8>,
    /// One row of the decoded chroma at even pixels.
    even: Vec<u8>,
}

impl Scratch {
    /// Lets frames be decoded down to (not below) `width x height` pixels (the model's input
    /// size); `None` decodes at full size.
    pub fn set_min_size(&mut self, size: Option<(u32, u32)>) {
        self.min_size = size.filter(|(w, h)| *w > 0 && *h > 0);
    }

    /// The allocation a first frame would make, made now (the capture thread's steady state
    /// starts allocation-free).
    pub fn prepare(&mut self) {
        self.decoder.get_or_insert_with(Box::default);
    }
}

/// The DCT scale denominator (1, 2, 4 or 8) for a `width x height` frame when the picture must
/// stay at least `min` (each side rounds up, as the decoder's output does).
pub fn scale_for(width: u32, height: u32, min: Option<(u32, u32)>) -> u32 {
    let Some((mw, mh)) = min else {
        return 1;
    };
    [8, 4, 2]
        .into_iter()
        .find(|k| width.div_ceil(*k) >= mw && height.div_ceil(*k) >= mh)
        .unwrap_or(1)
}

/// Decodes one frame into `frame` as planar full-range YCbCr in the JPEG's own sampling (grey
/// for grey JPEGs), at the DCT scale [`Scratch::set_min_size`] allows. Frames the baseline
/// decoder does not handle go through zune-jpeg at full size: planar 4:2:2 for h2v1 frames
/// (chroma recovered as ffmpeg decodes it), grey for grey JPEGs, RGB otherwise.
pub fn decode_frame(
    jpeg: &[u8],
    width: u32,
    height: u32,
    scratch: &mut Scratch,
    frame: &mut Frame,
) -> Result<(), MjpegError> {
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
        return Err(MjpegError::NotJpeg);
    }
    let scale = scale_for(width, height, scratch.min_size);
    let decoder = scratch.decoder.get_or_insert_with(Box::default);
    match decoder.decode(jpeg, width, height, scale, frame) {
        Ok(_) => Ok(()),
        Err(JpegError::Unsupported(what)) => {
            if !std::mem::replace(&mut scratch.fell_back, true) {
                log::warn!(
                    "MJPEG: a frame uses {what}; such frames are decoded by zune-jpeg at full \
                     size (allocating per frame)"
                );
            }
            decode_general(jpeg, width, height, scratch, frame)
        }
        Err(e) => Err(e.into()),
    }
}

/// The general decoder (zune-jpeg) at full size, with the standard tables inserted if missing.
pub fn decode_general(
    jpeg: &[u8],
    width: u32,
    height: u32,
    scratch: &mut Scratch,
    frame: &mut Frame,
) -> Result<(), MjpegError> {
    let data = with_tables(jpeg, &mut scratch.tables)?;
    let h2v1 = sampling(data) == Some(((2, 1), 3));
    let out = if h2v1 {
        ColorSpace::YCbCr
    } else {
        ColorSpace::RGB
    };
    // The decoder refuses a frame header larger than the stream's (limit-checked) geometry
    // before it sizes any buffer from it.
    let options = DecoderOptions::default()
        .set_max_width(width as usize)
        .set_max_height(height as usize)
        .jpeg_set_out_colorspace(out);
    let mut dec = JpegDecoder::new_with_options(ZCursor::new(data), options);
    dec.decode_headers()
        .map_err(|e| MjpegError::Decode(format!("{e:?}")))?;
    let info = dec
        .info()
        .ok_or_else(|| MjpegError::Decode("no frame header".into()))?;
    let (got_w, got_h) = (u32::from(info.width), u32::from(info.height));
    if (got_w, got_h) != (width, height) {
        return Err(MjpegError::Size {
            got_w,
            got_h,
            width,
            height,
        });
    }
    let decode_err = |e| MjpegError::Decode(format!("{e:?}"));
    if dec.output_colorspace() == Some(ColorSpace::Luma) {
        let grey = PixelFormat::Yuv {
            chroma: Chroma::Mono,
            range: ColorRange::Full,
        };
        frame.set_format(grey, width, height);
        return dec.decode_into(&mut frame.data).map_err(decode_err);
    }
    if !h2v1 {
        frame.set_format(PixelFormat::Rgb24, width, height);
        return dec.decode_into(&mut frame.data).map_err(decode_err);
    }
    let (w, h) = (width as usize, height as usize);
    scratch.ycc.resize(w * h * 3, 0);
    dec.decode_into(&mut scratch.ycc).map_err(decode_err)?;
    let format = PixelFormat::Yuv {
        chroma: Chroma::C422,
        range: ColorRange::Full,
    };
    frame.set_format(format, width, height);
    let cw = w.div_ceil(2);
    let (luma, chroma) = frame.data.split_at_mut(w * h);
    let (cb, cr) = chroma.split_at_mut(cw * h);
    for (row, y) in scratch
        .ycc
        .chunks_exact(w * 3)
        .zip(luma.chunks_exact_mut(w))
    {
        for (d, px) in y.chunks_exact_mut(2).zip(row.chunks_exact(6)) {
            d[0] = px[0];
            d[1] = px[3];
        }
        if w % 2 == 1 {
            y[w - 1] = row[3 * (w - 1)];
        }
    }
    let rows = scratch.ycc.chunks_exact(w * 3);
    for ((row, cb), cr) in rows
        .zip(cb.chunks_exact_mut(cw))
        .zip(cr.chunks_exact_mut(cw))
    {
        unfancy_row(row, &mut scratch.even, cb, cr);
    }
    Ok(())
}

/// Terms of the inverse filter's expansion used after the first samples of a row.
const TERMS: usize = 7;
/// `c[i] = sum_k (4/3) (-1/3)^k out[2(i - k)]`, Q12, the last term adjusted so the weights sum
/// to exactly 1 (a flat chroma stays flat); the terms left out weigh less than 1/2000.
const UNFANCY: [i32; TERMS] = [5461, -1820, 607, -202, 67, -22, 5];

/// The chroma samples of one decoder row (YCbCr, chroma fancy-upsampled from half width), by
/// inverting the triangle filter: `out[2i] = (3 c[i] + c[i-1] + 2) >> 2`, `out[0] = c[0]`, so
/// `c[i] = (4 out[2i] - c[i-1]) / 3`. That recursion (exact, in Q8, for the first samples) is
/// serial; from the seventh sample on its expansion over the last seven outputs is used
/// instead, which is independent from sample to sample (within half a level of the recursion).
fn unfancy_row(row: &[u8], even: &mut Vec<u8>, cb_out: &mut [u8], cr_out: &mut [u8]) {
    const ONE: i32 = 256;
    let n = cb_out.len();
    // The decoded chroma at the even pixels: `out[2i]` of both channels, contiguous.
    even.clear();
    even.extend(row.chunks(6).flat_map(|px| [px[1], px[2]]));
    let to_u8 = |q8: i32| ((q8 + ONE / 2) / ONE).clamp(0, 255) as u8;
    let (mut cb, mut cr) = (i32::from(even[0]) * ONE, i32::from(even[1]) * ONE);
    for i in 0..n.min(TERMS) {
        if i > 0 {
            let (u, v) = (i32::from(even[2 * i]), i32::from(even[2 * i + 1]));
            cb = (((4 * ONE * u - cb).max(0) + 1) / 3).min(255 * ONE);
            cr = (((4 * ONE * v - cr).max(0) + 1) / 3).min(255 * ONE);
        }
        cb_out[i] = to_u8(cb);
        cr_out[i] = to_u8(cr);
    }
    if n <= TERMS {
        return;
    }
    // Interleaved Cb Cr: the k-th previous sample of the same channel is 2k bytes back.
    let e = &even[..2 * n];
    let (cb_out, cr_out) = (&mut cb_out[TERMS..n], &mut cr_out[TERMS..n]);
    for (j, (u, v)) in cb_out.iter_mut().zip(cr_out.iter_mut()).enumerate() {
        let at = 2 * (j + TERMS);
        let mut acc = [1 << 11, 1 << 11];
        for (k, wk) in UNFANCY.iter().enumerate() {
            acc[0] += wk * i32::from(e[at - 2 * k]);
            acc[1] += wk * i32::from(e[at + 1 - 2 * k]);
        }
        *u = (acc[0] >> 12).clamp(0, 255) as u8;
        *v = (acc[1] >> 12).clamp(0, 255) as u8;
    }
}

/// Chroma subsampling of the frame header (SOF0..SOF2) as (horizontal, vertical) ratios of
/// luma to chroma, with the component count. Encoders spell 4:2:2 either as luma 2x1 / chroma
/// 1x1 or (ffmpeg) as luma 2x2 / chroma 1x2: only the ratio matters.
fn sampling(jpeg: &[u8]) -> Option<((u8, u8), u8)> {
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        let len = usize::from(jpeg[i + 2]) << 8 | usize::from(jpeg[i + 3]);
        if matches!(marker, 0xC0..=0xC2) {
            let seg = jpeg.get(i + 4..i + 2 + len)?;
            let comps = *seg.get(5)?;
            let hv = |c: usize| seg.get(7 + 3 * c).map(|v| (v >> 4, v & 15));
            let (lh, lv) = hv(0)?;
            if comps == 1 {
                return Some(((1, 1), 1));
            }
            let (ch, cv) = hv(1)?;
            let same = (2..usize::from(comps)).all(|c| hv(c) == Some((ch, cv)));
            let exact = ch > 0 && cv > 0 && lh % ch == 0 && lv % cv == 0;
            return (same && exact).then(|| ((lh / ch, lv / cv), comps));
        }
        if marker == 0xDA {
            return None;
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_tables_are_well_formed() {
        // Length field covers everything after the marker.
        assert_eq!(
            usize::from(STANDARD_DHT[2]) << 8 | usize::from(STANDARD_DHT[3]),
            418
        );
        // Four tables: class/id bytes 0x00, 0x01, 0x10, 0x11 with 12, 12, 162, 162 symbols.
        let mut i = 4;
        for (id, symbols) in [(0x00, 12), (0x01, 12), (0x10, 162), (0x11, 162)] {
            assert_eq!(STANDARD_DHT[i], id);
            let n: usize = STANDARD_DHT[i + 1..i + 17]
                .iter()
                .map(|b| usize::from(*b))
                .sum();
            assert_eq!(n, symbols);
            i += 17 + n;
        }
        assert_eq!(i, STANDARD_DHT.len());
    }

    #[test]
    fn tables_are_inserted_only_when_missing() {
        let bare = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9];
        let mut scratch = Vec::new();
        let out = with_tables(&bare, &mut scratch).expect("jpeg").to_vec();
        assert_eq!(out.len(), bare.len() + STANDARD_DHT.len());
        assert_eq!(&out[2..4], &[0xFF, 0xC4]);
        assert!(has_huffman_tables(&out));
        let mut again = Vec::new();
        assert_eq!(with_tables(&out, &mut again).expect("jpeg"), &out[..]);
        assert!(matches!(
            with_tables(&[1, 2, 3, 4], &mut again),
            Err(MjpegError::NotJpeg)
        ));
    }
}
