//! A captured frame in the layout its source delivered, and what that layout is.
//!
//! Sources do not convert: a camera's YUYV, a Y4M clip's I420 and an NV12 buffer reach the
//! pipeline as they came, and preprocessing resizes in the source's own planes down to the
//! model's size before converting the small image (see [`crate::preprocess`]). Converting a
//! 1080p frame to RGB on the capture thread cost 9-10 ms per frame for pixels the model never
//! sees; resizing first leaves a 224x224 conversion. [`Frame::to_rgb`] still converts a whole
//! frame, the way ffmpeg does, for tests and tools that want to look at the pixels.
//!
//! Frames are tightly packed (the V4L2 source drops a driver's line padding when it copies a
//! buffer in), and their buffer is reused: [`Frame::set_format`] allocates only when a frame
//! grows past the buffer's capacity.

use std::fmt;

use super::color::{Chroma, ColorRange, yuv_to_rgb};
use super::v4l2::convert::{self, Layout};
use crate::time::MonoTime;

/// The pixel layouts frames carry, each converted to RGB the way ffmpeg converts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PixelFormat {
    /// Packed R, G, B (image folders, the synthetic pattern, decoded MJPEG, V4L2 RGB3).
    #[default]
    Rgb24,
    /// Packed B, G, R (V4L2 BGR3).
    Bgr24,
    /// 8-bit planes Y, Cb, Cr (Y4M's colourspaces; `Chroma::Mono` is Y alone, V4L2 GREY is
    /// mono full range), BT.601. Trailing planes (Y4M's alpha) may follow and are ignored.
    Yuv { chroma: Chroma, range: ColorRange },
    /// Packed 4:2:2 `Y0 Cb Y1 Cr`, BT.601 limited range (V4L2 YUYV).
    Yuyv,
    /// Packed 4:2:2 `Cb Y0 Cr Y1`, BT.601 limited range (V4L2 UYVY).
    Uyvy,
    /// A Y plane, then Cb Cr interleaved at half width and half height, BT.601 limited range
    /// (V4L2 NV12).
    Nv12,
}

impl PixelFormat {
    /// 4:2:0 planar, limited range: what `ffmpeg -pix_fmt yuv420p` writes.
    pub const I420: PixelFormat = PixelFormat::Yuv {
        chroma: Chroma::C420,
        range: ColorRange::Limited,
    };

    /// Bytes of one tightly packed `width x height` frame (all the planes the format defines).
    pub fn frame_len(self, width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        match self {
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => w * h * 3,
            PixelFormat::Yuv { chroma, .. } => chroma.frame_len(width, height),
            PixelFormat::Yuyv | PixelFormat::Uyvy => w.div_ceil(2) * 4 * h,
            PixelFormat::Nv12 => w * h + w.div_ceil(2) * 2 * h.div_ceil(2),
        }
    }

    /// A short name for logs and `/status` (ffmpeg's `pix_fmt` names).
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb24 => "rgb24",
            PixelFormat::Bgr24 => "bgr24",
            PixelFormat::Yuv { chroma, range } => match (chroma, range) {
                (Chroma::C420, ColorRange::Limited) => "yuv420p",
                (Chroma::C420, ColorRange::Full) => "yuvj420p",
                (Chroma::C411, ColorRange::Limited) => "yuv411p",
                (Chroma::C411, ColorRange::Full) => "yuvj411p",
                (Chroma::C422, ColorRange::Limited) => "yuv422p",
                (Chroma::C422, ColorRange::Full) => "yuvj422p",
                (Chroma::C444, ColorRange::Limited) => "yuv444p",
                (Chroma::C444, ColorRange::Full) => "yuvj444p",
                (Chroma::Mono, ColorRange::Limited) => "gray (limited)",
                (Chroma::Mono, ColorRange::Full) => "gray",
            },
            PixelFormat::Yuyv => "yuyv422",
            PixelFormat::Uyvy => "uyvy422",
            PixelFormat::Nv12 => "nv12",
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why [`Frame::to_rgb`] could not convert a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame {seq} ({width}x{height} {format}): expected {expected} bytes, got {actual}")]
    Size {
        seq: u64,
        width: u32,
        height: u32,
        format: PixelFormat,
        expected: usize,
        actual: usize,
    },
    #[error("frame {seq} ({width}x{height} {format}): an odd width cannot be converted")]
    OddWidth {
        seq: u64,
        width: u32,
        height: u32,
        format: PixelFormat,
    },
}

/// One captured frame in its source's layout. The buffer is reused: sources resize it only when
/// the stream's geometry or format changes.
#[derive(Debug, Default)]
pub struct Frame {
    /// Assigned by the capture loop, 1-based, never reused.
    pub seq: u64,
    /// When the frame became available (see [`crate::source`]): where latency starts.
    pub captured_at: MonoTime,
    /// When the capture thread handed it to the pipeline (end of the `capture` stage, start of
    /// `queue`); zero for frames that did not go through the capture thread.
    pub ready_at: MonoTime,
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// `format.frame_len(width, height)` bytes (or more, for formats with trailing planes).
    pub data: Vec<u8>,
}

impl Frame {
    /// An empty frame whose buffer can hold `bytes` without reallocating.
    pub fn with_capacity(bytes: usize) -> Frame {
        Frame {
            data: Vec::with_capacity(bytes),
            ..Frame::default()
        }
    }

    /// A black `width x height` RGB frame (tests, tools, image decoding).
    pub fn rgb24(width: u32, height: u32) -> Frame {
        let mut f = Frame::default();
        f.set_format(PixelFormat::Rgb24, width, height);
        f
    }

    /// Sets the format and geometry and sizes `data` to match; allocates only when the frame
    /// grows past the buffer's capacity.
    pub fn set_format(&mut self, format: PixelFormat, width: u32, height: u32) {
        self.set_format_len(format, width, height, format.frame_len(width, height));
    }

    /// [`set_format`](Self::set_format) with `len` bytes of data (at least the format's frame
    /// length: a Y4M alpha plane follows the colour planes).
    pub fn set_format_len(&mut self, format: PixelFormat, width: u32, height: u32, len: usize) {
        self.format = format;
        self.width = width;
        self.height = height;
        if self.data.len() != len {
            self.data.resize(len, 0);
        }
    }

    /// The whole frame as packed RGB8 into `rgb` (resized to `width * height * 3`), with the
    /// conversion ffmpeg's default scaler applies to the same bytes. For tests and tools: the
    /// pipeline never converts a whole frame.
    pub fn to_rgb(&self, rgb: &mut Vec<u8>) -> Result<(), FrameError> {
        let (w, h) = (self.width, self.height);
        let expected = self.format.frame_len(w, h);
        if self.data.len() < expected {
            return Err(FrameError::Size {
                seq: self.seq,
                width: w,
                height: h,
                format: self.format,
                expected,
                actual: self.data.len(),
            });
        }
        let odd = matches!(
            self.format,
            PixelFormat::Yuyv | PixelFormat::Uyvy | PixelFormat::Nv12
        ) && w % 2 == 1;
        if odd {
            return Err(FrameError::OddWidth {
                seq: self.seq,
                width: w,
                height: h,
                format: self.format,
            });
        }
        rgb.resize(w as usize * h as usize * 3, 0);
        let l = Layout {
            width: w,
            height: h,
            stride: 0,
        };
        let src = &self.data;
        // The sizes were checked above, so the converters cannot refuse.
        let _ = match self.format {
            PixelFormat::Rgb24 => {
                rgb.copy_from_slice(&src[..expected]);
                Ok(())
            }
            PixelFormat::Bgr24 => convert::to_rgb(convert::BGR3, &l, src, rgb),
            PixelFormat::Yuyv => convert::to_rgb(convert::YUYV, &l, src, rgb),
            PixelFormat::Uyvy => convert::to_rgb(convert::UYVY, &l, src, rgb),
            PixelFormat::Nv12 => convert::to_rgb(convert::NV12, &l, src, rgb),
            PixelFormat::Yuv { chroma, range } => {
                yuv_to_rgb(chroma, range, w, h, src, rgb);
                Ok(())
            }
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lengths_follow_the_layout() {
        assert_eq!(PixelFormat::Rgb24.frame_len(4, 2), 24);
        assert_eq!(PixelFormat::Yuyv.frame_len(4, 2), 16);
        assert_eq!(PixelFormat::Yuyv.frame_len(5, 2), 24);
        assert_eq!(PixelFormat::Nv12.frame_len(4, 4), 16 + 8);
        assert_eq!(PixelFormat::Nv12.frame_len(4, 3), 12 + 8);
        assert_eq!(PixelFormat::I420.frame_len(4, 4), 16 + 8);
    }

    #[test]
    fn to_rgb_converts_each_layout_of_one_grey_level() {
        // Limited-range Y = 128 with neutral chroma is RGB 130 everywhere.
        for format in [
            PixelFormat::Yuyv,
            PixelFormat::Uyvy,
            PixelFormat::Nv12,
            PixelFormat::I420,
        ] {
            let mut f = Frame::default();
            f.set_format(format, 4, 2);
            f.data.fill(128);
            let mut rgb = Vec::new();
            f.to_rgb(&mut rgb).expect("converts");
            assert!(rgb.len() == 24 && rgb.iter().all(|v| *v == 130), "{format}");
        }
        let mut f = Frame::rgb24(1, 1);
        f.data.copy_from_slice(&[1, 2, 3]);
        let mut rgb = Vec::new();
        f.to_rgb(&mut rgb).expect("copies");
        assert_eq!(rgb, [1, 2, 3]);
        f.format = PixelFormat::Bgr24;
        f.to_rgb(&mut rgb).expect("swaps");
        assert_eq!(rgb, [3, 2, 1]);
    }

    #[test]
    fn short_buffers_are_refused() {
        let mut f = Frame::default();
        f.set_format(PixelFormat::Nv12, 4, 4);
        f.data.truncate(10);
        assert!(matches!(
            f.to_rgb(&mut Vec::new()),
            Err(FrameError::Size {
                expected: 24,
                actual: 10,
                ..
            })
        ));
    }
}
