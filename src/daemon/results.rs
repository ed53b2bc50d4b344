//! `--results FILE` (config `run.results`): every completed frame as one JSON line, the way
//! DeepStream's file sinks let a user post-process what the loop saw. Written by the stats
//! thread, never the pipeline, so a slow disk costs nothing per frame; a write error stops the
//! file once, with one log line, and the loop runs on.

use std::path::{Path, PathBuf};

use super::record;
use crate::models::serving::Serving;
use crate::pipeline::FrameRecord;

/// `run.results`: one JSON line per completed frame (seq, model, capture and completion times on
/// CLOCK_MONOTONIC in ms, latency, outcome, top classes), written by the stats thread.
pub struct ResultsLog {
    out: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    failed: bool,
}

impl ResultsLog {
    pub fn create(path: &Path) -> std::io::Result<ResultsLog> {
        let f = std::fs::File::create(path)?;
        Ok(ResultsLog {
            out: std::io::BufWriter::new(f),
            path: path.to_path_buf(),
            failed: false,
        })
    }

    pub fn write(&mut self, serving: &Serving, rec: &FrameRecord) {
        use std::io::Write;
        if !record::is_result(rec) || self.failed {
            return;
        }
        let model = record::model_name(serving, rec);
        let line = record::to_json(rec, model.as_deref());
        if let Err(e) = writeln!(self.out, "{line}") {
            log::error!(
                "results file {}: {e}; no more results are written",
                self.path.display()
            );
            self.failed = true;
        }
    }

    pub fn flush(&mut self) {
        use std::io::Write;
        if !self.failed && self.out.flush().is_err() {
            self.failed = true;
        }
    }
}
