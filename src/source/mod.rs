//! Frame sources, named by URI the way jetson-inference names them.
//!
//! Every source fills a caller-owned [`Frame`] in its own pixel layout (no conversion on the
//! capture thread) so buffers are recycled between the source thread, the latest-frame slot and
//! the pipeline: in steady state no frame allocates. Sources pace
//! themselves against absolute monotonic deadlines (see [`Pacer`]) and stamp `captured_at` with
//! the moment the frame became available (the last byte read for pipes and files, the generation
//! time for synthetic frames, the driver's buffer time for cameras).
//!
//! URIs: `synthetic://WxH@FPS`, `file:///x.y4m`, `file:///dir/` (PNG/JPEG sorted by name),
//! `file:///x.mp4` (any file that is not Y4M: decoded by an ffmpeg child), `rtsp://`,
//! `http(s)://`, `udp://`, `rtp://` (network streams through ffmpeg), `pipe://` or `-`
//! (YUV4MPEG2 on stdin), `v4l2:///dev/video0` (a camera); a bare `/dev/videoN` means v4l2 and
//! any other bare path means file. Query options: `?loop=true`, `?fps=30`, `?transport=tcp`.

use std::path::PathBuf;
use std::time::Duration;

pub mod color;
pub mod ffmpeg;
pub mod frame;
pub mod images;
pub mod limits;
pub mod pacer;
pub mod reopen;
pub mod sniff;
pub mod synthetic;
pub mod uri;
pub mod v4l2;
pub mod y4m;

pub use frame::{Frame, FrameError, PixelFormat};
pub use limits::FrameLimits;
pub use pacer::Pacer;
pub use uri::{SourceKind, SourceOptions, SourceSpec};

/// The outcome of one capture attempt, explicit as in jetson-utils' `videoSource::Capture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// `frame` holds a new frame.
    Frame,
    /// Nothing arrived within the timeout; the source is still open.
    Timeout,
    /// The stream ended cleanly on a frame boundary.
    EndOfStream,
}

/// What a source reports about itself for `/status` (`source` key).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    pub uri: String,
    pub width: u32,
    pub height: u32,
    /// The layout frames arrive in (what preprocessing resizes from).
    pub format: PixelFormat,
    /// Nominal frame rate (header rate, `?fps=`, or the synthetic rate); `None` for an unpaced
    /// live pipe whose header gives no rate.
    pub fps: Option<f64>,
}

impl SourceInfo {
    /// `(width, height, format)` of the frames, what preprocessing prepares for.
    pub fn frame_size(&self) -> (u32, u32, PixelFormat) {
        (self.width, self.height, self.format)
    }
}

/// A frame producer. Implementations block inside [`Source::next`] (pacing, reading) at most
/// about `timeout` before returning [`Capture::Timeout`], so the capture thread can notice a stop.
pub trait Source: Send {
    fn info(&self) -> SourceInfo;
    /// Fills `frame` (its data, format, size and `captured_at`; `seq` and `ready_at` are the
    /// caller's) with the next frame, in the source's own pixel layout.
    fn next(&mut self, frame: &mut Frame, timeout: Duration) -> Result<Capture, SourceError>;
    /// Whether the device is there now (a camera reconnecting after an unplug is not).
    fn connected(&self) -> bool {
        true
    }
    /// Re-paces a source that paces itself (a reload changed its rate); `false` when its rate is
    /// not rtinfer's to set (a camera's driver, an unpaced pipe).
    fn set_fps(&mut self, _fps: f64) -> bool {
        false
    }
    /// The smallest picture the consumer needs (the serving model's input size, from the
    /// capture thread; `None`: full size). A source that can deliver smaller frames for less
    /// work (an MJPEG camera, by DCT scaling) may go down to it, never below; others ignore it.
    fn set_min_size(&mut self, _size: Option<(u32, u32)>) {}
    /// Frames read but not delivered because they could not be decoded (a camera's corrupt or
    /// truncated MJPEG), since the source was opened: `/status` `source.skipped_frames`.
    fn skipped_frames(&self) -> u64 {
        0
    }
}

/// Errors of opening and reading sources. Every variant names the URI or path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "unknown source scheme in '{uri}' (expected synthetic://, file://, pipe://, v4l2://, rtsp://, http(s)://, udp://, rtp:// or a path)"
    )]
    UnknownScheme { uri: String },
    #[error("bad source URI '{uri}': {reason}")]
    BadUri { uri: String, reason: String },
    #[error("cannot open source {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("source {uri}: {reason}")]
    Format { uri: String, reason: String },
    #[error(
        "source {uri}: stream truncated mid-frame ({got} of {expected} bytes of frame {frame})"
    )]
    Truncated {
        uri: String,
        frame: u64,
        got: usize,
        expected: usize,
    },
    /// A header declares a frame over the limits; nothing was allocated for it.
    #[error("source {uri}: {what} {limit}")]
    TooLarge {
        uri: String,
        /// What declared it (`image PATH`, `stream header`, `camera format`).
        what: String,
        limit: limits::TooLarge,
    },
    #[error("source {uri}: read failed: {source}")]
    Io { uri: String, source: std::io::Error },
    #[error("source {uri}: {what} is not compiled into this build")]
    NotCompiled { uri: String, what: &'static str },
    /// The ffmpeg child could not deliver the stream; `reason` carries its exit and last line.
    #[error("source {uri}: {reason}")]
    Ffmpeg { uri: String, reason: String },
    #[error(
        "source {uri} is decoded by ffmpeg, but {} was not found: {}",
        program.display(), ffmpeg::INSTALL_HINT
    )]
    FfmpegMissing { uri: String, program: PathBuf },
}

/// Opens the source a spec names.
pub fn open(spec: &SourceSpec) -> Result<Box<dyn Source>, SourceError> {
    uri::open(spec)
}
