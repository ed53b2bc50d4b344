//! Calibration samples, made by the daemon's own preprocessing so the ranges are those of the
//! tensors the board will see: a folder of images, any source URI (N frames of the live camera),
//! or seeded noise when nothing better is given.

use std::path::PathBuf;
use std::time::Duration;

use crate::preprocess::{PreprocessOptions, Preprocessor};
use crate::source::{self, Capture, Frame, PixelFormat, Source, SourceKind, SourceSpec, images};
use crate::tensor::{InputBufMut, InputSpec};

/// Where calibration frames come from.
#[derive(Debug, Clone, PartialEq)]
pub enum CalibSource {
    /// A folder of PNG/JPEG images, read as fast as they decode.
    Folder(PathBuf),
    /// Any frame source URI (`synthetic://`, `file://`, a camera).
    Uri(String),
    /// Seeded uniform-noise RGB frames (ranges from noise are poor: a last resort).
    Random { seed: u64 },
}

impl std::fmt::Display for CalibSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalibSource::Folder(d) => write!(f, "folder {}", d.display()),
            CalibSource::Uri(u) => write!(f, "{u}"),
            CalibSource::Random { seed } => write!(f, "random noise (seed {seed})"),
        }
    }
}

/// Calibration input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CalibError {
    #[error("calibration source: {0}")]
    Source(#[from] source::SourceError),
    #[error("calibration preprocessing: {0}")]
    Preprocess(#[from] crate::preprocess::PreprocessError),
    #[error("calibration source {uri}: no frame within {timeout_s} s ({tries} tries)")]
    Stalled {
        uri: String,
        timeout_s: u64,
        tries: u32,
    },
}

/// How long one capture may wait, and how many waits in a row are tolerated.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_TIMEOUTS: u32 = 5;

enum Frames {
    Source(Box<dyn Source>, String),
    Random(SplitMix, u32, u32),
}

/// Yields up to `samples` preprocessed inputs.
pub struct Calibration {
    frames: Frames,
    pre: Preprocessor,
    frame: Frame,
    left: usize,
}

impl Calibration {
    /// Opens `src` for a model input `spec`.
    pub fn open(
        src: &CalibSource,
        spec: InputSpec,
        opts: PreprocessOptions,
        samples: usize,
    ) -> Result<Calibration, CalibError> {
        let frames = match src {
            CalibSource::Folder(dir) => {
                let uri = format!("file://{}/", dir.display());
                // Unpaced: a folder is a dataset here, not a clip to play in real time.
                let s = images::ImageFolderSource::open(dir, &uri, Some(1e6), false)?;
                Frames::Source(Box::new(s), uri)
            }
            CalibSource::Uri(uri) => {
                let mut spec = SourceSpec::parse(uri)?;
                let file = matches!(
                    spec.kind,
                    SourceKind::Y4mFile { .. } | SourceKind::ImageFolder { .. }
                );
                if file && spec.options.fps.is_none() {
                    spec.options.fps = Some(1e6);
                }
                Frames::Source(source::open(&spec)?, uri.clone())
            }
            CalibSource::Random { seed } => {
                Frames::Random(SplitMix(*seed), spec.width, spec.height)
            }
        };
        Ok(Calibration {
            frames,
            pre: Preprocessor::new(spec, opts)?,
            frame: Frame::default(),
            left: samples,
        })
    }

    /// Fills `out` with the next sample; `false` once `samples` were given or the source ended.
    pub fn next(&mut self, out: &mut [f32]) -> Result<bool, CalibError> {
        if self.left == 0 {
            return Ok(false);
        }
        match &mut self.frames {
            Frames::Random(rng, w, h) => {
                self.frame.set_format(PixelFormat::Rgb24, *w, *h);
                for b in self.frame.data.iter_mut() {
                    *b = (rng.next() >> 56) as u8;
                }
            }
            Frames::Source(s, uri) => {
                let mut timeouts = 0;
                loop {
                    match s.next(&mut self.frame, CAPTURE_TIMEOUT)? {
                        Capture::Frame => break,
                        Capture::EndOfStream => return Ok(false),
                        Capture::Timeout => {
                            timeouts += 1;
                            if timeouts >= MAX_TIMEOUTS {
                                return Err(CalibError::Stalled {
                                    uri: uri.clone(),
                                    timeout_s: CAPTURE_TIMEOUT.as_secs(),
                                    tries: timeouts,
                                });
                            }
                        }
                    }
                }
            }
        }
        self.pre.run(&self.frame, InputBufMut::F32(out))?;
        self.left -= 1;
        Ok(true)
    }
}

/// splitmix64: seedable and identical on every platform.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
