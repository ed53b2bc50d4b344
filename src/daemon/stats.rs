//! The stats thread and the sampler: the figures `/status`, `/metrics` and the final summary read.
//!
//! The pipeline never touches a histogram: it `try_send`s a `Copy` record per frame, and this
//! thread folds the records into the latency statistics under the stats lock, logs misses (at most
//! two lines a second) and writes the results file after the lock is released, so a status request
//! never waits on file I/O. Nothing here allocates per frame, late frames included.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use super::record;
use super::results::ResultsLog;
use super::shared::Shared;
use crate::misslog::{MissLine, MissLog};
use crate::pipeline::FrameRecord;
use crate::slot::Outcome;
use crate::state::State;
use crate::stats::LatencyStats;
use crate::system::SystemSampler;
use crate::time::MonoTime;

/// Records queued between the pipeline and the stats thread before one is lost.
pub const RECORD_QUEUE: usize = 4096;

/// The most recent deadline miss (`last_miss`).
#[derive(Debug, Clone)]
pub struct LastMiss {
    pub seq: u64,
    pub latency: Duration,
    pub overshoot: Duration,
    /// Wall-clock time of the miss, formatted (RFC 3339) only when `/status` is read: the stats
    /// thread allocates nothing per frame, late frames included.
    pub at: SystemTime,
}

/// Everything the stats thread owns and the status handler reads.
pub struct StatsState {
    pub latency: LatencyStats,
    pub last_miss: Option<LastMiss>,
    pub last_result: Option<FrameRecord>,
    /// `last_result`'s boxes (a detector; empty otherwise or when they were lost).
    pub last_boxes: Vec<crate::postprocess::Detection>,
    /// Whether `last_boxes` arrived (false for a detector's frame whose boxes were lost).
    pub last_boxes_arrived: bool,
    /// Boxes kept over the run, all frames that were results (`/metrics`).
    pub detections_total: u64,
    pub last_done: Option<MonoTime>,
    misslog: MissLog,
}

impl StatsState {
    pub fn new() -> StatsState {
        StatsState {
            latency: LatencyStats::new(Duration::from_secs(10)),
            last_miss: None,
            last_result: None,
            last_boxes: Vec::with_capacity(crate::postprocess::detect::MAX_DETECTIONS),
            last_boxes_arrived: false,
            detections_total: 0,
            last_done: None,
            misslog: MissLog::new(),
        }
    }

    /// Folds one record into the statistics; returns the miss line to log, if this miss gets one.
    fn absorb(
        &mut self,
        rec: &FrameRecord,
        boxes: Option<&[crate::postprocess::Detection]>,
    ) -> Option<MissLine> {
        if matches!(rec.outcome, Outcome::OnTime | Outcome::Late) {
            self.latency.record(rec.done_at, &rec.times);
            self.last_result = Some(*rec);
            self.last_boxes.clear();
            self.last_boxes.extend_from_slice(boxes.unwrap_or_default());
            self.last_boxes_arrived = boxes.is_some();
            self.detections_total += rec.detections.unwrap_or(0) as u64;
            self.last_done = Some(rec.done_at);
        }
        if matches!(rec.outcome, Outcome::Late | Outcome::Cancelled) {
            let latency = rec.times.end_to_end;
            let overshoot = latency.saturating_sub(rec.budget);
            self.last_miss = Some(LastMiss {
                seq: rec.seq,
                latency,
                overshoot,
                at: SystemTime::now(),
            });
            return self
                .misslog
                .on_miss(rec.done_at, rec.seq, latency, overshoot);
        }
        None
    }
}

impl Default for StatsState {
    fn default() -> Self {
        StatsState::new()
    }
}

/// The stats thread's body: until the pipeline drops its sender.
pub fn run(shared: &Shared, rx: &Receiver<FrameRecord>) {
    let mut results =
        shared
            .config
            .results
            .as_ref()
            .and_then(|p| match ResultsLog::create(p, &shared.results) {
                Ok(r) => Some(r),
                Err(e) => {
                    log::error!("results file {}: {e}; results are not written", p.display());
                    None
                }
            });
    // Records are drained into a reused batch, absorbed under the stats lock, and written to the
    // results file after the lock is released, so a status request never waits on file I/O.
    let mut batch: Vec<FrameRecord> = Vec::with_capacity(RECORD_QUEUE);
    let mut lines: Vec<MissLine> = Vec::with_capacity(4);
    let mut boxes = record::BatchBoxes::with_capacity(RECORD_QUEUE);
    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(r) => batch.push(r),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        batch.extend(rx.try_iter());
        boxes.fill(&shared.ctl.boxes, &batch);
        {
            let mut st = shared.stats();
            for (i, rec) in batch.iter().enumerate() {
                // A period that ended before this frame gets its summary first, so it is logged
                // before the next period's detailed line, not after it.
                lines.extend(st.misslog.tick(rec.done_at));
                lines.extend(st.absorb(rec, boxes.of(i)));
                if matches!(rec.outcome, Outcome::OnTime | Outcome::Late) {
                    shared.change_state(State::Waiting, State::Running);
                }
            }
            lines.extend(st.misslog.tick(MonoTime::now()));
        }
        if let Some(g) = &shared.governor {
            let mut w = g.window();
            for rec in &batch {
                w.push(rec);
            }
        }
        for line in lines.drain(..) {
            log::warn!(target: "rtinfer::pipeline", "{line}");
        }
        if let Some(r) = results.as_mut() {
            for (i, rec) in batch.iter().enumerate() {
                r.write(&shared.serving, rec, boxes.of(i));
            }
            r.flush();
        }
        // Subscribers' queues and the MQTT client take the batch without blocking (a full queue
        // loses records, counted).
        shared.subscribers.publish(&shared.serving, &batch, &boxes);
        if let Some(m) = shared.mqtt() {
            for (i, rec) in batch.iter().enumerate() {
                if !record::is_result(rec) {
                    continue;
                }
                let model = record::model_of(&shared.serving, rec);
                m.offer(
                    record::to_json(rec, model.as_ref(), boxes.of(i))
                        .to_string()
                        .into_bytes(),
                );
            }
        }
        batch.clear();
    }
    // The last, partial period's count is not logged at WARN: that could be a third line in a
    // second. The final summary carries the total (`missed_deadline`).
    let mut st = shared.stats();
    while let Some(line) = st.misslog.flush() {
        log::debug!(target: "rtinfer::pipeline", "at shutdown: {line}");
    }
}

/// The sampler thread: RSS, CPU load and temperature once a second, until `stop`.
pub fn sample(shared: &Shared, stop: &AtomicBool) {
    let mut sampler = SystemSampler::new();
    while !stop.load(Ordering::Relaxed) {
        shared.set_system(sampler.sample());
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
