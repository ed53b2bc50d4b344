//! int8 calibration input: TensorRT's entropy calibrator asks for one batch at a time, and this
//! hands it the next image of a folder, or the next frame of a source (a camera, a recorded clip),
//! preprocessed exactly as live frames are (same resize and normalisation), so the calibrated
//! ranges match what the engine will see. Images are decoded one by one: 1,000 images at 224x224
//! would be 600 MB as one float buffer. A source is opened at the first batch TensorRT asks for,
//! so a build that reads its calibration cache never touches the camera.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::preprocess::{PreprocessOptions, Preprocessor};
use crate::source::{Capture, Frame, Source, SourceSpec};
use crate::tensor::{InputBufMut, InputSpec};

/// How long one wait for a calibration frame lasts, and how much silence ends the calibration.
const FRAME_WAIT: Duration = Duration::from_millis(200);
const SILENCE: Duration = Duration::from_secs(10);

/// Where calibration inputs come from.
enum Feed {
    Nothing,
    Files {
        files: Vec<PathBuf>,
        next: usize,
    },
    Stream {
        spec: SourceSpec,
        /// Opened at the first batch; `None` again once it failed.
        src: Option<Box<dyn Source>>,
        opened: bool,
    },
}

/// Calibration images or frames, fed one per batch.
pub struct CalibSource {
    feed: Feed,
    max: usize,
    pre: Option<Preprocessor>,
    frame: Frame,
    used: usize,
}

impl CalibSource {
    /// No images (fp32/fp16 builds, or an int8 build from a calibration cache).
    pub fn empty() -> CalibSource {
        CalibSource {
            feed: Feed::Nothing,
            max: 0,
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
            feed: Feed::Files { files, next: 0 },
            max,
            pre: Some(pre),
            ..CalibSource::empty()
        })
    }

    /// The first `max` frames of `source`, fed through a preprocessor for `spec`.
    pub fn from_source(
        source: &SourceSpec,
        max: usize,
        spec: InputSpec,
        opts: PreprocessOptions,
    ) -> Result<CalibSource, String> {
        let pre = Preprocessor::new(spec, opts).map_err(|e| e.to_string())?;
        Ok(CalibSource {
            feed: Feed::Stream {
                spec: source.clone(),
                src: None,
                opened: false,
            },
            max,
            pre: Some(pre),
            ..CalibSource::empty()
        })
    }

    /// The images this source will feed (none for a frame source).
    pub fn files(&self) -> &[PathBuf] {
        match &self.feed {
            Feed::Files { files, .. } => files,
            _ => &[],
        }
    }

    /// How many images or frames were fed so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Fills `dst` with the next image or frame; false when none is left. Never panics (it is
    /// called from C++): bad images are logged and skipped, a source that fails or falls silent
    /// ends the calibration with what it gave (logged).
    pub(super) fn next(&mut self, dst: &mut [f32]) -> bool {
        let Some(pre) = self.pre.as_mut() else {
            return false;
        };
        if self.used >= self.max {
            return false;
        }
        let frame = &mut self.frame;
        let fed = match &mut self.feed {
            Feed::Nothing => false,
            Feed::Files { files, next } => loop {
                let Some(path) = files.get(*next) else {
                    break false;
                };
                *next += 1;
                match decode(path, frame).and_then(|()| feed(pre, frame, dst)) {
                    Ok(()) => break true,
                    Err(e) => log::warn!(
                        target: "rtinfer::backend::tensorrt",
                        "calibration image {} skipped: {e}",
                        path.display()
                    ),
                }
            },
            Feed::Stream { spec, src, opened } => {
                if !*opened {
                    *opened = true;
                    match crate::source::open(spec) {
                        Ok(s) => {
                            log::info!(
                                target: "rtinfer::backend::tensorrt",
                                "calibrating on up to {} frames of {}",
                                self.max,
                                spec.uri
                            );
                            *src = Some(s);
                        }
                        Err(e) => log::error!(
                            target: "rtinfer::backend::tensorrt",
                            "calibration source: {e}"
                        ),
                    }
                }
                let got = src
                    .as_mut()
                    .is_some_and(|s| next_frame(s.as_mut(), &spec.uri, self.used, frame));
                let ok = got
                    && feed(pre, frame, dst)
                        .map_err(|e| {
                            log::warn!(
                                target: "rtinfer::backend::tensorrt",
                                "calibration source {}: {e}",
                                spec.uri
                            )
                        })
                        .is_ok();
                if !ok {
                    *src = None; // a camera is released as soon as it is done with
                }
                ok
            }
        };
        if fed {
            self.used += 1;
            if self.used == self.max
                && let Feed::Stream { src, .. } = &mut self.feed
            {
                *src = None;
            }
        }
        fed
    }
}

/// Preprocesses `frame` into `dst`.
fn feed(pre: &mut Preprocessor, frame: &Frame, dst: &mut [f32]) -> Result<(), String> {
    pre.prepare(frame.width, frame.height, frame.format)
        .map_err(|e| e.to_string())?;
    pre.run(frame, InputBufMut::F32(dst))
        .map_err(|e| e.to_string())
}

/// The next frame of a calibration source; false (logged) at its end, on an error or after
/// [`SILENCE`] without a frame.
fn next_frame(src: &mut dyn Source, uri: &str, used: usize, frame: &mut Frame) -> bool {
    let mut waited = Duration::ZERO;
    loop {
        let why = match src.next(frame, FRAME_WAIT) {
            Ok(Capture::Frame) => return true,
            Ok(Capture::Timeout) => {
                waited += FRAME_WAIT;
                if waited < SILENCE {
                    continue;
                }
                format!("no frame for {} s", SILENCE.as_secs())
            }
            Ok(Capture::EndOfStream) => "end of stream".to_string(),
            Err(e) => e.to_string(),
        };
        log::warn!(
            target: "rtinfer::backend::tensorrt",
            "calibration source {uri}: {why}; calibrating on the {used} frames it gave"
        );
        return false;
    }
}

/// Decodes one calibration image; a header over the default frame limits is refused before
/// any pixel buffer exists.
fn decode(path: &Path, frame: &mut Frame) -> Result<(), String> {
    let limits = crate::source::FrameLimits::default();
    crate::source::limits::decode_image_file(path, &limits, frame).map_err(|e| e.to_string())
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
