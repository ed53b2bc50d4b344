//! A folder of PNG/JPEG stills played as a video, sorted by file name.
//!
//! A folder is the easiest reproducible input: a dataset's validation images, or frames dumped
//! from a clip with `ffmpeg -i clip.mp4 frames/%05d.png`. Unlike the other sources this one
//! allocates per frame: the `image` crate decodes into its own buffer, which is then copied into
//! the caller's frame. That is accepted here because a folder is a test and evaluation input,
//! not the real-time camera path, and decoding dominates the cost anyway.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::limits::{self, FrameLimits, ImageError};
use super::{Capture, Frame, Pacer, PixelFormat, Source, SourceError, SourceInfo};
use crate::time::MonoTime;

/// Rate of a folder without `?fps=`.
pub const DEFAULT_FPS: f64 = 30.0;

/// Paced playback of the images of one folder.
#[derive(Debug)]
pub struct ImageFolderSource {
    uri: String,
    files: Vec<PathBuf>,
    /// Index of the next file to show.
    index: usize,
    looping: bool,
    pacer: Pacer,
    /// Geometry of the first image (what [`SourceInfo`] reports; later images may differ).
    width: u32,
    height: u32,
    /// Checked against each file's header before its pixels are decoded.
    limits: FrameLimits,
}

impl ImageFolderSource {
    /// Lists `dir` (files ending in .png, .jpg, .jpeg, any case) and reads the first image's size.
    pub fn open(
        dir: &Path,
        uri: &str,
        fps: Option<f64>,
        looping: bool,
    ) -> Result<ImageFolderSource, SourceError> {
        ImageFolderSource::open_with_limits(dir, uri, fps, looping, FrameLimits::default())
    }

    /// [`ImageFolderSource::open`] with frame-size limits other than the default.
    pub fn open_with_limits(
        dir: &Path,
        uri: &str,
        fps: Option<f64>,
        looping: bool,
        limits: FrameLimits,
    ) -> Result<ImageFolderSource, SourceError> {
        let files = list_images(dir)?;
        let Some(first) = files.first() else {
            let reason = format!("no PNG or JPEG images in folder {}", dir.display());
            return Err(SourceError::Format {
                uri: uri.to_owned(),
                reason,
            });
        };
        let (width, height) =
            limits::image_dimensions(first, &limits).map_err(|e| image_error(first, uri, e))?;
        let pacer = Pacer::new(fps.unwrap_or(DEFAULT_FPS));
        Ok(ImageFolderSource {
            uri: uri.to_owned(),
            files,
            index: 0,
            looping,
            pacer,
            width,
            height,
            limits,
        })
    }

    /// The images this source plays, in order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl Source for ImageFolderSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            uri: self.uri.clone(),
            width: self.width,
            height: self.height,
            format: PixelFormat::Rgb24,
            fps: Some(self.pacer.fps()),
        }
    }

    fn set_fps(&mut self, fps: f64) -> bool {
        self.pacer.set_fps(fps);
        true
    }

    fn next(&mut self, frame: &mut Frame, timeout: Duration) -> Result<Capture, SourceError> {
        if self.index == self.files.len() {
            if !self.looping {
                return Ok(Capture::EndOfStream);
            }
            self.index = 0;
        }
        if self.pacer.wait(timeout).is_none() {
            return Ok(Capture::Timeout);
        }
        let path = &self.files[self.index];
        limits::decode_image_file(path, &self.limits, frame)
            .map_err(|e| image_error(path, &self.uri, e))?;
        frame.captured_at = MonoTime::now();
        self.index += 1;
        Ok(Capture::Frame)
    }
}

/// Image files of `dir` sorted by file name.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let open_error = |source| SourceError::Open {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(open_error)? {
        let path = entry.map_err(open_error)?.path();
        if is_image(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn is_image(path: &Path) -> bool {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
}

/// An image that cannot become a frame, naming the file.
fn image_error(path: &Path, uri: &str, e: ImageError) -> SourceError {
    match e {
        ImageError::Io(source) => SourceError::Open {
            path: path.to_owned(),
            source,
        },
        ImageError::TooLarge(limit) => SourceError::TooLarge {
            uri: uri.to_owned(),
            what: format!("image {}", path.display()),
            limit,
        },
        ImageError::Decode(e) => SourceError::Format {
            uri: uri.to_owned(),
            reason: format!("cannot decode image {}: {e}", path.display()),
        },
    }
}
