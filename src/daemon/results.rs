//! `--results FILE` (config `run.results`): every completed frame as one JSON line, the way
//! DeepStream's file sinks let a user post-process what the loop saw. Written by the stats
//! thread, never the pipeline, so a slow disk costs nothing per frame.
//!
//! A full disk (or any write error) must not be silent nor leave half a line: lines are written
//! whole from a buffer of complete lines, the file is cut back to its last complete line when a
//! write fails, the error is logged once, every line that could not be written is counted
//! (`/status` `results.lost`), and writing is retried every [`RETRY`] so freed space is used
//! again (one log line when it works again).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::record;
use crate::models::serving::Serving;
use crate::pipeline::FrameRecord;

/// How long after a failed write the file is tried again.
pub const RETRY: Duration = Duration::from_secs(10);
/// Complete lines are written once this many bytes wait.
const CHUNK: usize = 64 * 1024;

/// What `/status` `results` shows: lines written, lines lost, the error in force.
#[derive(Debug, Default)]
pub struct ResultsHealth {
    written: AtomicU64,
    lost: AtomicU64,
    error: Mutex<Option<String>>,
}

impl ResultsHealth {
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_error(&self, e: Option<String>) {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// `/status` `results`.
    pub fn to_json(&self, path: &Path) -> serde_json::Value {
        serde_json::json!({
            "path": path.display().to_string(),
            "written": self.written(),
            "lost": self.lost(),
            "error": self.error(),
        })
    }
}

/// `run.results`: one JSON line per completed frame (seq, model, capture and completion times on
/// CLOCK_MONOTONIC in ms, latency, outcome, top classes), written by the stats thread.
pub struct ResultsLog<'h> {
    file: File,
    path: PathBuf,
    health: &'h ResultsHealth,
    /// Complete lines not yet written, and how many.
    buf: Vec<u8>,
    pending: u64,
    /// Bytes of complete lines in the file: where it is cut back to after a failed write.
    good_len: u64,
    /// Since when writes fail (lines are counted as lost until [`RETRY`] has passed).
    failing_since: Option<Instant>,
}

impl<'h> ResultsLog<'h> {
    /// Creates (truncates) the file; an error is recorded in `health` as well as returned.
    pub fn create(path: &Path, health: &'h ResultsHealth) -> std::io::Result<ResultsLog<'h>> {
        let file = File::create(path).inspect_err(|e| health.set_error(Some(e.to_string())))?;
        Ok(ResultsLog {
            file,
            path: path.to_path_buf(),
            health,
            buf: Vec::with_capacity(2 * CHUNK),
            pending: 0,
            good_len: 0,
            failing_since: None,
        })
    }

    pub fn write(
        &mut self,
        serving: &Serving,
        rec: &FrameRecord,
        boxes: Option<&[crate::postprocess::Detection]>,
    ) {
        if !record::is_result(rec) {
            return;
        }
        if self.failing_since.is_some_and(|t| t.elapsed() < RETRY) {
            self.health.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let model = record::model_of(serving, rec);
        let line = record::to_json(rec, model.as_ref(), boxes);
        // Writing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, &line);
        self.buf.push(b'\n');
        self.pending += 1;
        if self.buf.len() >= CHUNK {
            self.flush();
        }
    }

    /// Writes the complete lines waiting. On an error: the lines are counted as lost, the file is
    /// cut back to its last complete line, and the first failure of a run of them is logged.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        match self.file.write_all(&self.buf) {
            Ok(()) => {
                self.good_len += self.buf.len() as u64;
                self.health
                    .written
                    .fetch_add(self.pending, Ordering::Relaxed);
                if self.failing_since.take().is_some() {
                    log::warn!(
                        "results file {}: writing again ({} results were lost)",
                        self.path.display(),
                        self.health.lost()
                    );
                    self.health.set_error(None);
                }
            }
            Err(e) => self.failed(&e),
        }
        self.buf.clear();
        self.pending = 0;
    }

    /// A write of the waiting lines failed (part of it may be in the file).
    fn failed(&mut self, e: &std::io::Error) {
        {
            {
                self.health.lost.fetch_add(self.pending, Ordering::Relaxed);
                if self.failing_since.is_none() {
                    log::error!(
                        "results file {}: {e}; results are lost (counted in /status \
                         results.lost) until a write succeeds, tried again every {} s",
                        self.path.display(),
                        RETRY.as_secs()
                    );
                }
                self.failing_since = Some(Instant::now());
                self.health.set_error(Some(e.to_string()));
                // No half line stays behind (a device such as /dev/full cannot be cut: nothing
                // was written to it either).
                let _ = self.file.set_len(self.good_len);
                let _ = self.file.seek(SeekFrom::Start(self.good_len));
            }
        }
    }
}

impl Drop for ResultsLog<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::serving::Serving;
    use crate::pipeline::FrameRecord;
    use crate::slot::Outcome;

    fn record(seq: u64) -> FrameRecord {
        FrameRecord {
            seq,
            model_gen: 0,
            captured_at: crate::time::MonoTime::from_nanos(1),
            done_at: crate::time::MonoTime::from_nanos(2),
            times: Default::default(),
            outcome: Outcome::OnTime,
            budget: Duration::from_millis(16),
            top: [(0, 0.0); crate::pipeline::TOP_K],
            top_len: 1,
            raw: None,
            detections: None,
        }
    }

    #[test]
    fn a_full_device_is_counted_logged_once_and_leaves_no_half_line() {
        let health = ResultsHealth::default();
        let serving = Serving::default();
        let mut log = ResultsLog::create(Path::new("/dev/full"), &health).expect("open /dev/full");
        for seq in 0..10_000 {
            log.write(&serving, &record(seq), None);
        }
        log.flush();
        assert_eq!(health.written(), 0);
        assert_eq!(health.lost(), 10_000);
        assert!(
            health.error().is_some_and(|e| e.contains("No space left")),
            "{:?}",
            health.error()
        );
    }

    #[test]
    fn a_failed_write_cuts_the_file_back_to_complete_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.jsonl");
        let health = ResultsHealth::default();
        let serving = Serving::default();
        let mut log = ResultsLog::create(&path, &health).expect("create");
        for seq in 0..3 {
            log.write(&serving, &record(seq), None);
        }
        log.flush();
        // A write that fails half-way: a fragment of the next line reached the file.
        log.write(&serving, &record(3), None);
        log.file.write_all(b"{\"seq\":3,\"mod").expect("fragment");
        log.failed(&std::io::Error::from_raw_os_error(28)); // ENOSPC
        log.buf.clear();
        log.pending = 0;
        // Lines during the retry interval are counted, not written.
        log.write(&serving, &record(4), None);
        drop(log);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.ends_with('\n'), "{text:?}");
        assert_eq!((health.written(), health.lost()), (3, 2));
    }
}
