//! `file:///path/fifo?reopen=true`: a named FIFO whose writers come and go.
//!
//! A FIFO reports EOF when its last writer closes; for a producer that restarts (a camera
//! helper, a recorder rotating its output) that is a pause, not the end. This source reopens the
//! FIFO at EOF, which blocks until the next writer arrives; the stall watcher meanwhile shows the
//! state `degraded`, and frames flow again from the new writer's stream (its own Y4M header).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Capture, Frame, FrameLimits, Source, SourceError, SourceInfo, y4m};

/// A Y4M FIFO reopened at every EOF.
pub struct ReopenSource {
    path: PathBuf,
    uri: String,
    fps: Option<f64>,
    limits: FrameLimits,
    inner: Box<dyn Source>,
    info: SourceInfo,
}

/// Opens the FIFO (blocking until its first writer) and reads the first stream's header.
pub fn open(
    path: &Path,
    uri: &str,
    fps: Option<f64>,
    limits: FrameLimits,
) -> Result<Box<dyn Source>, SourceError> {
    let inner = y4m::open_file(path, uri, fps, false, &limits)?;
    let info = inner.info();
    Ok(Box::new(ReopenSource {
        path: path.to_path_buf(),
        uri: uri.to_string(),
        fps,
        limits,
        inner,
        info,
    }))
}

impl Source for ReopenSource {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn set_fps(&mut self, fps: f64) -> bool {
        if !self.inner.set_fps(fps) {
            return false;
        }
        // The next writer's stream is paced at the new rate too.
        self.fps = Some(fps);
        self.info.fps = Some(fps);
        true
    }

    fn next(&mut self, frame: &mut Frame, timeout: Duration) -> Result<Capture, SourceError> {
        match self.inner.next(frame, timeout)? {
            Capture::EndOfStream => {
                log::info!("{}: writer closed; waiting for the next one", self.uri);
                self.inner = y4m::open_file(&self.path, &self.uri, self.fps, false, &self.limits)?;
                log::info!("{}: new writer", self.uri);
                Ok(Capture::Timeout)
            }
            other => Ok(other),
        }
    }
}
