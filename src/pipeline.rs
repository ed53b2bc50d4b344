//! The real-time loop: take the newest frame, preprocess it into the engine's own input buffer,
//! run, postprocess, check the deadline, hand a record to the statistics thread.
//!
//! Stage times are differences of one chain of instants (captured, ready in the slot,
//! preprocess start, inference start, postprocess start, done), so `capture + queue +
//! preprocess + inference + postprocess` is exactly `end_to_end` for every frame.
//!
//! This thread never blocks on I/O, on the status server or on a reader: statistics, miss logging
//! and reporting happen on the stats thread, fed through a bounded channel with `try_send` (a full
//! channel loses a record and counts it; it never stalls a frame). Nothing here allocates per
//! frame: frames circulate through the slot, the engine owns its tensors, the softmax and top-k
//! buffers are made once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::backend::{BackendError, Engine};
use crate::postprocess::{BoxMap, BoxRing, Detection, Plan, RawSummary, Scratch, Summary};
use crate::preprocess::Preprocessor;
use crate::slot::{End, FrameSlot, Outcome, Take};
use crate::stats::FrameTimes;
use crate::time::MonoTime;

/// How many classes a result keeps.
pub use crate::postprocess::TOP_K;

/// Everything the stats thread needs to know about one frame. `Copy`, so sending it allocates
/// nothing.
#[derive(Debug, Clone, Copy)]
pub struct FrameRecord {
    pub seq: u64,
    /// Which engine produced it ([`Pipeline::generation`]); 0 when no model was loaded.
    pub model_gen: u32,
    pub captured_at: MonoTime,
    pub done_at: MonoTime,
    pub times: FrameTimes,
    pub outcome: Outcome,
    pub budget: Duration,
    /// (class, probability) best first; `top_len` entries are valid (none for a raw output).
    pub top: [(u32, f32); TOP_K],
    pub top_len: u8,
    /// A raw output's shape and summary (`postprocess.kind` raw), `None` for a classifier.
    pub raw: Option<RawSummary>,
    /// A detector's kept boxes (`postprocess.kind` detect): how many; the boxes themselves wait
    /// in [`LoopControl::boxes`] under (`model_gen`, `seq`). `None` for the other kinds.
    pub detections: Option<u16>,
}

impl FrameRecord {
    /// `classify`, `raw` or `detect`: what `top`/`raw`/`detections` hold.
    pub fn kind_name(&self) -> &'static str {
        if self.raw.is_some() {
            "raw"
        } else if self.detections.is_some() {
            "detect"
        } else {
            "classify"
        }
    }
}

/// Knobs and shared state the loop reads while it runs.
pub struct LoopControl {
    /// The per-frame budget in nanoseconds; adjustable live (SIGHUP reload).
    pub budget_ns: AtomicU64,
    /// Set to stop the loop after the current frame.
    pub stop: AtomicBool,
    /// Bumped on every iteration, including idle waits: the systemd watchdog's evidence of life.
    pub heartbeat: AtomicU64,
    /// Records lost because the stats thread lagged.
    pub records_lost: AtomicU64,
    /// The hard-deadline watchdog (`realtime.cancel_after_ms`), when configured.
    pub watchdog: Option<Arc<crate::watchdog::Watchdog>>,
    /// `pipeline.overrun`.
    pub overrun: Overrun,
    /// A detector's boxes of recent frames, for the stats thread (see `postprocess::ring`).
    pub boxes: BoxRing,
    /// When the frame in the pipeline started (CLOCK_MONOTONIC ns), 0 between frames: how long a
    /// model's run has not returned (`/status` `state` `stalled`, a stop, a swap).
    pub busy_since_ns: AtomicU64,
    /// The serving model's input size as `width << 32 | height`, 0 before the first model: set
    /// by the pipeline thread when a model goes live, read by the capture thread, which hands it
    /// to the source as the smallest picture it must deliver (an MJPEG camera decodes at the
    /// smallest DCT scale that keeps it). See [`LoopControl::input_size`].
    pub input_size: AtomicU64,
    /// The serving engine's cancel handle, set once per model (never per frame): a stop or a swap
    /// can end a run that does not return.
    canceller: std::sync::Mutex<Option<Arc<dyn crate::backend::Canceller>>>,
}

/// What the loop does with a frame that arrived while the previous one was still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overrun {
    /// Run it now (the newest frame, out of the capture phase).
    #[default]
    Latest,
    /// Drop it and wait for the next capture period, keeping a fixed phase.
    Skip,
}

impl std::str::FromStr for Overrun {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "latest" => Ok(Overrun::Latest),
            "skip" => Ok(Overrun::Skip),
            o => Err(format!("'{o}' is not latest or skip")),
        }
    }
}

/// `[pipeline]` as written.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// `latest` (default) or `skip`.
    pub overrun: Option<String>,
}

impl RawPipeline {
    /// Checks the section; an error names its key.
    pub fn check(self) -> Result<Overrun, crate::invalid_key::InvalidKey> {
        match self.overrun.as_deref() {
            None => Ok(Overrun::Latest),
            Some(o) => o
                .parse()
                .map_err(|e| crate::invalid_key::InvalidKey::new("pipeline.overrun", e)),
        }
    }
}

impl LoopControl {
    pub fn new(budget: Duration) -> LoopControl {
        LoopControl {
            budget_ns: AtomicU64::new(budget.as_nanos() as u64),
            stop: AtomicBool::new(false),
            heartbeat: AtomicU64::new(0),
            records_lost: AtomicU64::new(0),
            watchdog: None,
            overrun: Overrun::Latest,
            boxes: BoxRing::new(),
            busy_since_ns: AtomicU64::new(0),
            input_size: AtomicU64::new(0),
            canceller: std::sync::Mutex::new(None),
        }
    }

    /// The serving model's input size (`None` before the first model).
    pub fn input_size(&self) -> Option<(u32, u32)> {
        let v = self.input_size.load(Ordering::Relaxed);
        (v != 0).then_some(((v >> 32) as u32, v as u32))
    }

    /// Records the serving model's input size (the pipeline thread, when a model goes live).
    pub fn set_input_size(&self, width: u32, height: u32) {
        let v = u64::from(width) << 32 | u64::from(height);
        self.input_size.store(v, Ordering::Relaxed);
    }

    pub fn budget(&self) -> Duration {
        Duration::from_nanos(self.budget_ns.load(Ordering::Relaxed))
    }

    /// How long the frame in the pipeline has been running at `now`; `None` between frames.
    pub fn busy_for(&self, now: MonoTime) -> Option<Duration> {
        match self.busy_since_ns.load(Ordering::Relaxed) {
            0 => None,
            t => Some(now.saturating_since(MonoTime::from_nanos(t))),
        }
    }

    /// Whether the frame in the pipeline has been running longer than a frame ever should: more
    /// than a second and more than four budgets (a model that hangs on real frames).
    pub fn stalled(&self, now: MonoTime) -> Option<Duration> {
        let limit = (self.budget() * 4).max(Duration::from_secs(1));
        self.busy_for(now).filter(|d| *d > limit)
    }

    /// Cancels the run in progress, when the serving engine can be cancelled; whether it could.
    pub fn cancel_current(&self) -> bool {
        let c = self.canceller.lock().unwrap_or_else(|p| p.into_inner());
        match c.as_ref() {
            Some(c) => {
                c.cancel();
                true
            }
            None => false,
        }
    }

    fn set_canceller(&self, c: Option<Arc<dyn crate::backend::Canceller>>) {
        *self.canceller.lock().unwrap_or_else(|p| p.into_inner()) = c;
    }
}

/// The pipeline's working set for one engine.
pub struct Pipeline {
    pub engine: Box<dyn Engine>,
    pub pre: Preprocessor,
    /// What the output means (`[postprocess]` and the graph), decided at load
    /// ([`Pipeline::set_plan`] sizes its buffers).
    post: Plan,
    scratch: Scratch,
    /// Numbers the engines that went live, 1-based, so results name the model they came from.
    pub generation: u32,
}

impl Pipeline {
    /// A pipeline whose output is classified as [`Plan::decide`] does with default options and
    /// no graph (logits: softmax) — what models the study generates need.
    pub fn new(engine: Box<dyn Engine>, pre: Preprocessor) -> Pipeline {
        let shape = engine.info().output_shape.clone();
        // Default options never refuse (only `detect` can); raw if it ever did.
        let post = Plan::decide(&Default::default(), &shape, None).unwrap_or(Plan::Raw {
            shape: [0; crate::postprocess::MAX_RANK],
            rank: 0,
        });
        Pipeline::with_plan(engine, pre, post)
    }

    /// A pipeline with its postprocessing decided by the caller.
    pub fn with_plan(engine: Box<dyn Engine>, pre: Preprocessor, post: Plan) -> Pipeline {
        let classes = engine.info().classes;
        Pipeline {
            engine,
            pre,
            post,
            scratch: Scratch::for_plan(&post, classes),
            generation: 0,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.post
    }

    /// Replaces the plan and sizes its buffers (off the hot loop).
    pub fn set_plan(&mut self, post: Plan) {
        self.scratch = Scratch::for_plan(&post, self.engine.info().classes);
        self.post = post;
    }

    /// The boxes the last frame kept (a `detect` plan), best first, in source pixels.
    pub fn detections(&self) -> &[Detection] {
        self.scratch.detections()
    }

    /// Model-input pixels to the prepared frame's pixels, through the preprocessor's own
    /// placement (the model's size unmapped when no frame was prepared).
    fn box_map(&self) -> BoxMap {
        match self.pre.geometry() {
            Some(((w, h), r, c)) => BoxMap::new(
                [r.x as f64, r.y as f64, r.w as f64, r.h as f64],
                [c.left, c.top, c.w, c.h],
                (w, h),
            ),
            None => BoxMap::identity(self.pre.spec().width, self.pre.spec().height),
        }
    }
}

/// Hands a new engine to the pipeline thread and the replaced one back, between two frames.
///
/// The pipeline thread only ever `try_lock`s the staged side after seeing `pending`, so the loader
/// can never make it wait; it swaps an `Option<Pipeline>` (a pointer move, no allocation) and
/// returns the old one for the loader to drop.
#[derive(Default)]
pub struct SwapSlot {
    pending: AtomicBool,
    staged: Mutex<Option<Pipeline>>,
    retired: Mutex<Option<Option<Pipeline>>>,
    cv: Condvar,
}

impl SwapSlot {
    /// Offers `p` to the pipeline thread.
    pub fn stage(&self, p: Pipeline) {
        *self.staged.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
        self.pending.store(true, Ordering::Release);
    }

    /// Takes the staged pipeline back if the pipeline thread has not picked it up.
    pub fn unstage(&self) -> Option<Pipeline> {
        self.pending.store(false, Ordering::Release);
        self.staged.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Waits until the pipeline thread took the staged pipeline; returns the one it replaced.
    pub fn wait_retired(&self, timeout: Duration) -> Option<Option<Pipeline>> {
        let g = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        let (mut g, _) = self
            .cv
            .wait_timeout_while(g, timeout, |r| r.is_none())
            .unwrap_or_else(|e| e.into_inner());
        g.take()
    }

    /// On the pipeline thread, between frames: installs a staged pipeline, if any, without
    /// ever blocking.
    fn swap_if_staged(&self, current: &mut Option<Pipeline>) {
        if !self.pending.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut staged) = self.staged.try_lock() else {
            return;
        };
        let Some(new) = staged.take() else {
            return;
        };
        self.pending.store(false, Ordering::Release);
        drop(staged);
        let old = current.replace(new);
        *self.retired.lock().unwrap_or_else(|e| e.into_inner()) = Some(old);
        self.cv.notify_all();
    }
}

/// How long one wait for a frame may last before the loop checks `stop` and beats its heart.
const IDLE_TICK: Duration = Duration::from_millis(100);

/// Runs until the source ends or `stop` is set. Returns how the stream ended. Without a model
/// (waiting for the watch folder) frames are taken and counted as dropped.
pub fn run(
    current: &mut Option<Pipeline>,
    swap: &SwapSlot,
    slot: &FrameSlot,
    ctl: &LoopControl,
    records: &SyncSender<FrameRecord>,
) -> End {
    let mut held = None;
    let mut armed_gen = None;
    let mut cancel_gen = None;
    let mut last_done = MonoTime::from_nanos(0);
    loop {
        ctl.heartbeat.fetch_add(1, Ordering::Relaxed);
        if ctl.stop.load(Ordering::Relaxed) {
            return End::Clean;
        }
        swap.swap_if_staged(current);
        let frame = match slot.take(held.take(), IDLE_TICK) {
            Take::Frame(f) => f,
            Take::Timeout => continue,
            Take::Ended(end) => return end,
        };
        let Some(p) = current.as_mut() else {
            slot.finish(Outcome::NoModel);
            held = Some(frame);
            continue;
        };
        if let Some(w) = &ctl.watchdog
            && armed_gen != Some(p.generation)
        {
            w.set_canceller(p.engine.canceller());
            armed_gen = Some(p.generation);
        }
        if cancel_gen != Some(p.generation) {
            ctl.set_canceller(p.engine.canceller());
            let spec = p.pre.spec();
            ctl.set_input_size(spec.width, spec.height);
            cancel_gen = Some(p.generation);
        }
        if ctl.overrun == Overrun::Skip && frame.captured_at < last_done {
            // Captured while the previous frame still ran: out of phase.
            slot.finish(Outcome::Skipped);
            held = Some(frame);
            continue;
        }
        ctl.busy_since_ns
            .store(MonoTime::now().as_nanos().max(1), Ordering::Relaxed);
        let record = process_guarded(p, &frame, ctl.budget(), ctl.watchdog.as_deref());
        ctl.busy_since_ns.store(0, Ordering::Relaxed);
        last_done = record.done_at;
        slot.finish(record.outcome);
        if record.detections.is_some() {
            ctl.boxes.publish(p.generation, record.seq, p.detections());
        }
        if records.try_send(record).is_err() {
            ctl.records_lost.fetch_add(1, Ordering::Relaxed);
        }
        held = Some(frame);
    }
}

/// One frame through preprocess → inference → postprocess, timed.
pub fn process(p: &mut Pipeline, frame: &crate::source::Frame, budget: Duration) -> FrameRecord {
    process_guarded(p, frame, budget, None)
}

/// [`process`] with the inference under a hard-deadline watchdog: cancelled once it runs past
/// `captured_at + cancel_after`.
pub fn process_guarded(
    p: &mut Pipeline,
    frame: &crate::source::Frame,
    budget: Duration,
    watchdog: Option<&crate::watchdog::Watchdog>,
) -> FrameRecord {
    let t0 = MonoTime::now();
    let mut outcome = match p.pre.run(frame, p.engine.input()) {
        Ok(()) => None,
        Err(e) => {
            log::debug!(target: "rtinfer::pipeline", "frame {}: preprocessing failed: {e}", frame.seq);
            Some(Outcome::Failed)
        }
    };
    let t1 = MonoTime::now();
    if outcome.is_none() {
        if let Some(w) = watchdog {
            w.arm(frame.captured_at.plus(w.cancel_after));
        }
        let result = p.engine.run();
        let fired = watchdog.is_some_and(|w| w.disarm());
        outcome = match result {
            Ok(()) => None,
            Err(BackendError::Cancelled { .. }) => Some(Outcome::Cancelled),
            Err(_) if fired => Some(Outcome::Cancelled),
            Err(e) => {
                log::debug!(target: "rtinfer::pipeline", "frame {}: {e}", frame.seq);
                Some(Outcome::Failed)
            }
        };
    }
    let t2 = MonoTime::now();
    let mut top = [(0u32, 0f32); TOP_K];
    let mut top_len = 0u8;
    let mut raw = None;
    let mut detections = None;
    if outcome.is_none() {
        let map = match p.post {
            Plan::Detect(_) => p.box_map(),
            _ => BoxMap::identity(0, 0),
        };
        match p.post.run(p.engine.output(), &mut p.scratch, &map) {
            Summary::Classes { top: t, len } => (top, top_len) = (t, len),
            Summary::Raw(r) => raw = Some(r),
            Summary::Detect { count } => detections = Some(count),
        }
    }
    let done = MonoTime::now();
    let end_to_end = done.saturating_since(frame.captured_at);
    // A frame that never went through the slot (tests, tools) has no `ready_at`: its capture
    // stage is empty and the wait before preprocessing counts as queue.
    let ready = if frame.ready_at >= frame.captured_at {
        frame.ready_at
    } else {
        frame.captured_at
    };
    let outcome = outcome.unwrap_or(if end_to_end > budget {
        Outcome::Late
    } else {
        Outcome::OnTime
    });
    FrameRecord {
        seq: frame.seq,
        model_gen: p.generation,
        captured_at: frame.captured_at,
        done_at: done,
        times: FrameTimes {
            end_to_end,
            capture: ready.saturating_since(frame.captured_at),
            queue: t0.saturating_since(ready),
            preprocess: t1.saturating_since(t0),
            inference: t2.saturating_since(t1),
            postprocess: done.saturating_since(t2),
            device: p.engine.device_time(),
        },
        outcome,
        budget,
        top,
        top_len,
        raw,
        detections,
    }
}

/// Softmax of `scores` into `probs` and the `TOP_K` best classes into `top`, best first. Returns
/// how many entries of `top` are valid. No allocation.
pub fn postprocess(scores: &[f32], probs: &mut [f32], top: &mut [(u32, f32); TOP_K]) -> u8 {
    crate::postprocess::classify(crate::postprocess::Activation::Softmax, scores, probs, top)
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_and_top_k_match_a_sort() {
        let scores: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 37) as f32 * 0.3 - 4.0)
            .collect();
        let mut probs = vec![0.0; scores.len()];
        let mut top = [(0, 0.0); TOP_K];
        assert_eq!(postprocess(&scores, &mut probs, &mut top), 5);
        let sum: f32 = probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
        let expect: Vec<u32> = order[..5].iter().map(|i| *i as u32).collect();
        let got: Vec<u32> = top.iter().map(|t| t.0).collect();
        assert_eq!(got, expect);
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
    }

    #[test]
    fn fewer_classes_than_k() {
        let mut probs = vec![0.0; 3];
        let mut top = [(0, 0.0); TOP_K];
        assert_eq!(postprocess(&[1.0, 3.0, 2.0], &mut probs, &mut top), 3);
        assert_eq!([top[0].0, top[1].0, top[2].0], [1, 2, 0]);
    }
}
