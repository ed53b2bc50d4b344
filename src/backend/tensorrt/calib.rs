//! int8 calibration input: TensorRT's entropy calibrator asks for one batch at a time, and this
//! hands it the next image of a folder, preprocessed exactly as live frames are (same resize and
//! normalisation), so the calibrated ranges match what the engine will see. Images are decoded
//! one by one: 1,000 images at 224x224 would be 600 MB as one float buffer.

use std::path::{Path, PathBuf};

use crate::preprocess::{PreprocessOptions, Preprocessor};
use crate::source::Frame;
use crate::tensor::{InputBufMut, InputSpec};

/// Calibration images, in name order.
pub struct CalibSource {
    files: Vec<PathBuf>,
    next: usize,
    pre: Option<Preprocessor>,
    frame: Frame,
    used: usize,
}

impl CalibSource {
    /// No images (fp32/fp16 builds, or an int8 build from a calibration cache).
    pub fn empty() -> CalibSource {
        CalibSource {
            files: Vec::new(),
            next: 0,
            pre: None,
            frame: Frame::default(),
            used: 0,
        }
    }

    /// The first `max` PNG/JPEG files of `dir`, fed through a preprocessor for `spec`.
    pub fn from_folder(
        dir: &Path,
        max: usize,
        spec: InputSpec,
        opts: PreprocessOptions,
    ) -> Result<CalibSource, String> {
        let files = image_files(dir, max)?;
        let pre = Preprocessor::new(spec, opts).map_err(|e| e.to_string())?;
        Ok(CalibSource {
            files,
            pre: Some(pre),
            ..CalibSource::empty()
        })
    }

    /// The images this source will feed.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// How many images were fed so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Fills `dst` with the next image that decodes; false when none is left. Never panics
    /// (it is called from C++): bad images are logged and skipped.
    pub(super) fn next(&mut self, dst: &mut [f32]) -> bool {
        let Some(pre) = self.pre.as_mut() else {
            return false;
        };
        while self.next < self.files.len() {
            let path = &self.files[self.next];
            self.next += 1;
            match decode(path, &mut self.frame)
                .and_then(|()| {
                    pre.prepare(self.frame.width, self.frame.height)
                        .map_err(|e| e.to_string())
                })
                .and_then(|()| {
                    pre.run(&self.frame, InputBufMut::F32(dst))
                        .map_err(|e| e.to_string())
                }) {
                Ok(()) => {
                    self.used += 1;
                    return true;
                }
                Err(e) => log::warn!(
                    target: "rtinfer::backend::tensorrt",
                    "calibration image {} skipped: {e}",
                    path.display()
                ),
            }
        }
        false
    }
}

fn decode(path: &Path, frame: &mut Frame) -> Result<(), String> {
    let img = image::open(path).map_err(|e| e.to_string())?.to_rgb8();
    frame.set_size(img.width(), img.height());
    frame.rgb.copy_from_slice(img.as_raw());
    Ok(())
}

/// PNG/JPEG files of `dir` sorted by name, at most `max`.
pub fn image_files(dir: &Path, max: usize) -> Result<Vec<PathBuf>, String> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| format!("calibration images {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    files.sort();
    files.truncate(max);
    if files.is_empty() {
        return Err(format!(
            "calibration images {}: no PNG or JPEG file",
            dir.display()
        ));
    }
    Ok(files)
}
