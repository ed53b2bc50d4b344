//! Frame size limits, checked against what a header declares before any buffer is allocated.
//!
//! Every frame format we read states its geometry up front (a PNG's IHDR, a JPEG's SOF, a Y4M
//! stream header, a camera's granted format), and every reader sizes its buffers from it. A
//! 60-byte PNG can declare 100000x100000 pixels; sizing a frame from that asks for 30 GB, and a
//! failed allocation in Rust aborts the process instead of returning an error. So each reader
//! checks the declared size here first and turns an oversize header into an ordinary error that
//! names the file. One helper for all of them (sources, `eval`, both calibration readers) keeps
//! the rule and its message the same everywhere.

use std::io::{BufRead, Seek};
use std::path::Path;

use super::{Frame, PixelFormat};

/// Largest width or height accepted by default (the largest side any of our formats needs).
pub const DEFAULT_MAX_SIDE: u32 = 16_384;
/// Largest frame accepted by default: 8192x8192 (64 Mi pixels, 192 MiB as RGB8): twice 8K UHD.
pub const DEFAULT_MAX_PIXELS: u64 = 8192 * 8192;

/// Bounds on a frame's declared geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest width and largest height.
    pub max_side: u32,
    /// Largest `width * height`.
    pub max_pixels: u64,
}

impl Default for FrameLimits {
    fn default() -> FrameLimits {
        FrameLimits {
            max_side: DEFAULT_MAX_SIDE,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// A declared geometry over the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "declares {width}x{height} pixels, over the limit of {max_side} per side and {max_pixels} \
     pixels per frame (raise it with the source option ?max_pixels=N)"
)]
pub struct TooLarge {
    pub width: u64,
    pub height: u64,
    pub max_side: u32,
    pub max_pixels: u64,
}

impl FrameLimits {
    /// The default limits with `max_pixels` replaced (`None` keeps the default).
    pub fn with_max_pixels(max_pixels: Option<u64>) -> FrameLimits {
        let mut l = FrameLimits::default();
        if let Some(p) = max_pixels {
            l.max_pixels = p;
        }
        l
    }

    /// `Ok` when `width x height` is within both bounds.
    pub fn check(&self, width: u64, height: u64) -> Result<(), TooLarge> {
        let side = u64::from(self.max_side);
        let pixels = width.checked_mul(height);
        if width > side || height > side || pixels.is_none_or(|p| p > self.max_pixels) {
            return Err(TooLarge {
                width,
                height,
                max_side: self.max_side,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }

    /// The same bounds for the `image` crate's decoders, which then refuse before allocating
    /// (16-bit RGBA is 8 bytes a pixel, the most any of them produces).
    pub fn image_limits(&self) -> image::Limits {
        let mut l = image::Limits::default();
        l.max_image_width = Some(self.max_side);
        l.max_image_height = Some(self.max_side);
        l.max_alloc = Some(self.max_pixels.saturating_mul(8));
        l
    }
}

/// Why an image file could not become a frame.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read image: {0}")]
    Io(#[source] std::io::Error),
    #[error("image {0}")]
    TooLarge(#[source] TooLarge),
    #[error("cannot decode image: {0}")]
    Decode(#[source] image::ImageError),
}

/// The size a PNG/JPEG file declares, checked against `limits`, without decoding its pixels.
pub fn image_dimensions(path: &Path, limits: &FrameLimits) -> Result<(u32, u32), ImageError> {
    let reader = image::ImageReader::open(path).map_err(ImageError::Io)?;
    let reader = reader.with_guessed_format().map_err(ImageError::Io)?;
    let (w, h) = reader.into_dimensions().map_err(ImageError::Decode)?;
    limits
        .check(u64::from(w), u64::from(h))
        .map_err(ImageError::TooLarge)?;
    Ok((w, h))
}

/// Decodes the PNG/JPEG file at `path` into `frame` (grey and alpha become RGB).
pub fn decode_image_file(
    path: &Path,
    limits: &FrameLimits,
    frame: &mut Frame,
) -> Result<(), ImageError> {
    let reader = image::ImageReader::open(path).map_err(ImageError::Io)?;
    decode_image(reader, limits, frame)
}

/// Decodes an image from `reader` into `frame`, refusing a declared size over `limits` before
/// any pixel buffer exists. The format is guessed from the content (a misnamed file decodes).
pub fn decode_image<R: BufRead + Seek>(
    reader: image::ImageReader<R>,
    limits: &FrameLimits,
    frame: &mut Frame,
) -> Result<(), ImageError> {
    use image::ImageDecoder;
    // Opening a decoder reads only the header; its size is checked here (our message, naming
    // the limit), then the decoder gets the same bounds for everything it allocates itself.
    let reader = reader.with_guessed_format().map_err(ImageError::Io)?;
    let mut decoder = reader.into_decoder().map_err(ImageError::Decode)?;
    let (w, h) = decoder.dimensions();
    limits
        .check(u64::from(w), u64::from(h))
        .map_err(ImageError::TooLarge)?;
    decoder
        .set_limits(limits.image_limits())
        .map_err(ImageError::Decode)?;
    let img = image::DynamicImage::from_decoder(decoder)
        .map_err(ImageError::Decode)?
        .into_rgb8();
    frame.set_format(PixelFormat::Rgb24, img.width(), img.height());
    frame.data.copy_from_slice(img.as_raw());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_bounds_side_and_area_without_overflow() {
        let l = FrameLimits::default();
        assert!(l.check(7680, 4320).is_ok());
        assert!(l.check(8192, 8192).is_ok());
        assert!(l.check(16_384, 4096).is_ok());
        assert!(l.check(16_384, 4097).is_err(), "area");
        assert!(l.check(16_385, 1).is_err(), "side");
        assert!(l.check(100_000, 100_000).is_err());
        assert!(l.check(u64::MAX, u64::MAX).is_err());
        let small = FrameLimits::with_max_pixels(Some(100));
        assert!(small.check(10, 10).is_ok());
        assert!(small.check(10, 11).is_err());
        let msg = small.check(10, 11).unwrap_err().to_string();
        assert!(msg.contains("10x11") && msg.contains("max_pixels"), "{msg}");
    }
}
