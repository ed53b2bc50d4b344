//! The capture thread and what it knows about the source's health: stalls, disconnects and the
//! pacing jitter of `/status` `source`.
//!
//! A live pipe that stalls blocks its reader inside `read`, so the capture thread itself cannot
//! notice the silence. A small watcher thread therefore compares the time of the last frame with
//! five frame periods and turns the state `degraded` (one log line), and the capture thread turns
//! it back to `running` when frames return. A camera that is unplugged keeps its source object
//! (it reconnects inside, with backoff) and reports `connected = false` the same way.
//!
//! A reload that changes only a paced source's rate re-paces the running source rather than
//! asking for a restart: the request waits here until the capture thread picks it up between two
//! frames, so the source object never crosses threads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::pipeline::LoopControl;
use crate::rt::RealtimeOptions;
use crate::slot::{End, FrameSlot};
use crate::source::{Capture, Source};
use crate::state::{State, StateCell};
use crate::time::MonoTime;

/// A stall is this many frame periods without a frame.
pub const STALL_PERIODS: u32 = 5;

/// Source health shared between the capture thread, the stall watcher and `/status`.
pub struct SourceHealth {
    /// Frame period in nanoseconds (changes when a reload re-paces the source).
    period_ns: AtomicU64,
    /// The URI and rate in force, for `/status` and the logs.
    live: Mutex<(String, Option<f64>)>,
    /// A reload's new URI and rate, until the capture thread applies it; `pending` says so
    /// without taking the lock on every frame.
    request: Mutex<Option<(String, f64)>>,
    pending: AtomicBool,
    last_frame_ns: AtomicU64,
    stalled: AtomicBool,
    /// Whether the device is there (a camera reconnecting after an unplug is not).
    connected: AtomicBool,
    /// Frames the source could not decode, as it counts them ([`Source::skipped_frames`]).
    skipped: AtomicU64,
    /// |interval - period| in microseconds, since start.
    jitter_us: Mutex<Histogram<u64>>,
}

impl SourceHealth {
    /// Health of the source `uri` delivering `fps` frames per second (its own rate, if it has
    /// one) or else one every `period`.
    pub fn new(uri: &str, fps: Option<f64>, period: Duration) -> SourceHealth {
        SourceHealth {
            period_ns: AtomicU64::new(period.as_nanos() as u64),
            live: Mutex::new((uri.to_string(), fps)),
            request: Mutex::new(None),
            pending: AtomicBool::new(false),
            last_frame_ns: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            connected: AtomicBool::new(true),
            skipped: AtomicU64::new(0),
            jitter_us: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(
                |_| Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant figures")),
            )),
        }
    }

    /// Records a frame captured at `at` (no allocation: the histogram is preallocated).
    pub fn on_frame(&self, at: MonoTime) {
        let prev = self.last_frame_ns.swap(at.as_nanos(), Ordering::Relaxed);
        if prev != 0 {
            let interval = at.as_nanos().saturating_sub(prev) as i64;
            let dev = (interval - self.period().as_nanos() as i64).unsigned_abs() / 1000;
            let mut h = self.jitter_us.lock().unwrap_or_else(|p| p.into_inner());
            h.saturating_record(dev.max(1));
        }
    }

    /// p99 of |interval − period| in ms, once two frames came.
    pub fn jitter_p99_ms(&self) -> Option<f64> {
        let h = self.jitter_us.lock().unwrap_or_else(|p| p.into_inner());
        (!h.is_empty()).then(|| h.value_at_quantile(0.99) as f64 / 1000.0)
    }

    /// Whether no frame came for [`STALL_PERIODS`] periods (frames must have come once).
    fn silent(&self, now: MonoTime) -> bool {
        let last = self.last_frame_ns.load(Ordering::Relaxed);
        last != 0
            && now.saturating_since(MonoTime::from_nanos(last)) > self.period() * STALL_PERIODS
    }

    /// Whether the source's device is there now (`/status` `source.connected`).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Frames the source read but could not decode (`/status` `source.skipped_frames`).
    pub fn skipped_frames(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// The frame period in force.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns.load(Ordering::Relaxed))
    }

    /// The source URI in force (a live re-pace changes it).
    pub fn uri(&self) -> String {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// The source's own rate in force, if it paces itself or the stream declares one.
    pub fn fps(&self) -> Option<f64> {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Asks the capture thread to re-pace the source at `fps` (a reload changed only the rate of
    /// `uri`). A later request replaces one not yet applied.
    pub fn request_rate(&self, uri: &str, fps: f64) {
        *self.request.lock().unwrap_or_else(|p| p.into_inner()) = Some((uri.to_string(), fps));
        self.pending.store(true, Ordering::Release);
    }

    /// Applies a pending re-pace request to `src` (capture thread only).
    fn apply_request(&self, src: &mut dyn Source) {
        if !self.pending.swap(false, Ordering::Acquire) {
            return;
        }
        let Some((uri, fps)) = self
            .request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let old = self.uri();
        if src.set_fps(fps) {
            self.period_ns
                .store((1e9 / fps).round() as u64, Ordering::Relaxed);
            *self.live.lock().unwrap_or_else(|p| p.into_inner()) = (uri.clone(), Some(fps));
            log::info!("source {old}: re-paced at {fps} FPS (now {uri})");
        } else {
            log::warn!("source {old}: its rate cannot change while running; restart to use {uri}");
        }
    }
}

/// What the capture thread and its stall watcher work with: exactly this, not the daemon.
pub struct CaptureContext {
    /// Where frames go, and where the end of the stream is told.
    pub slot: Arc<FrameSlot>,
    /// Stalls, jitter, connection and rate in force, read by `/status`.
    pub health: Arc<SourceHealth>,
    /// The daemon's state: `running` turns `degraded` while the source is silent or unplugged.
    pub state: Arc<StateCell>,
    /// The loop's control: the capture thread stops when its `stop` is set.
    pub ctl: Arc<LoopControl>,
    /// `[realtime]`: the capture thread shares the pipeline thread's SCHED_FIFO priority.
    pub realtime: RealtimeOptions,
    /// `--duration`: a capture window that opens with the first read.
    pub duration: Option<Duration>,
}

/// Marks the source as degraded (stalled or disconnected), logging only on the change. Only a
/// running daemon degrades: `waiting` (no model or no result yet) stays as it is.
fn degrade(ctx: &CaptureContext, why: &str) {
    if ctx.health.stalled.swap(true, Ordering::Relaxed) {
        return;
    }
    let running = ctx.state.change(State::Running, State::Degraded);
    log::warn!(
        "source {}: {why}{}",
        ctx.health.uri(),
        if running { "; state degraded" } else { "" }
    );
}

/// Frames flow again (and the source is connected): back to running, logged once.
fn recover(ctx: &CaptureContext) {
    if ctx.health.stalled.swap(false, Ordering::Relaxed) {
        log::info!(
            "source {}: frames flow again; state running",
            ctx.health.uri()
        );
        ctx.state.change(State::Degraded, State::Running);
    }
}

/// The capture thread's body: frames into the slot until the end, a stop or an error.
pub fn run(src: &mut dyn Source, ctx: &CaptureContext) {
    // Frames must be stamped and paced on time too: the capture thread shares the pipeline
    // thread's SCHED_FIFO priority when it is configured (silently; the pipeline reports it).
    crate::rt::apply_priority_quietly(&ctx.realtime);
    crate::rt::tighten_timer_slack();
    let slot = &ctx.slot;
    let mut buf = slot.buffer();
    let mut seq = 0u64;
    let timeout =
        (ctx.health.period() / 2).clamp(Duration::from_millis(5), Duration::from_millis(100));
    // `--duration` is a capture window that opens with the first read, the same instant a paced
    // source starts its schedule: 60 s at 60 FPS is exactly 3600 frames, whatever the loop's
    // polling granularity or the time it takes every thread to stop.
    let until = ctx.duration.map(|d| MonoTime::now().plus(d));
    // The serving model's input size, handed to the source when it changes (a swap).
    let mut wanted = None;
    loop {
        if ctx.ctl.stop.load(Ordering::Relaxed) {
            slot.end(End::Clean);
            return;
        }
        ctx.health.apply_request(src);
        let input = ctx.ctl.input_size();
        if input != wanted {
            src.set_min_size(input);
            wanted = input;
        }
        let result = src.next(&mut buf, timeout);
        let past = |at: MonoTime| until.is_some_and(|u| at >= u);
        let closed = match &result {
            Ok(Capture::Frame) => past(buf.captured_at),
            Ok(Capture::Timeout) => past(MonoTime::now()),
            _ => false,
        };
        if closed {
            log::info!("duration reached after {seq} frames: stopping");
            slot.end(End::Clean);
            return;
        }
        // The source logs its own losses and returns; the state change is logged below.
        let connected = src.connected();
        ctx.health.connected.store(connected, Ordering::Relaxed);
        ctx.health
            .skipped
            .store(src.skipped_frames(), Ordering::Relaxed);
        match result {
            Ok(Capture::Frame) => {
                seq += 1;
                buf.seq = seq;
                ctx.health.on_frame(buf.captured_at);
                buf = slot.publish(buf);
                if connected {
                    recover(ctx);
                }
            }
            Ok(Capture::Timeout) if !connected => degrade(ctx, "disconnected"),
            Ok(Capture::Timeout) => {}
            Ok(Capture::EndOfStream) => {
                log::info!(
                    "source {}: end of stream after {seq} frames",
                    ctx.health.uri()
                );
                slot.end(End::Clean);
                return;
            }
            Err(e) => {
                log::error!("{e}");
                ctx.health.connected.store(false, Ordering::Relaxed);
                slot.end(End::Error(Arc::new(e)));
                return;
            }
        }
    }
}

/// The stall watcher: wakes every period and degrades the state when the source fell silent.
pub fn watch_stalls(ctx: &CaptureContext, stop: &AtomicBool) {
    let tick = ctx
        .health
        .period()
        .clamp(Duration::from_millis(5), Duration::from_millis(100));
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(tick);
        if ctx.slot.ended().is_some() {
            return;
        }
        if ctx.health.silent(MonoTime::now()) {
            degrade(
                ctx,
                &format!("no frame for {STALL_PERIODS} frame periods (stalled)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::slot::Take;
    use crate::source::{Frame, SourceError, SourceInfo};

    /// What the scripted source does on each call of `next`.
    #[derive(Clone, Copy)]
    enum Step {
        Frame,
        /// A timeout with the device unplugged.
        Unplugged,
        Fail,
        /// A frame read but undecodable: counted by the source, a timeout for the caller.
        Corrupt,
    }

    /// A source that plays a script, then ends the stream; no pixels are touched.
    struct Script {
        steps: VecDeque<Step>,
        connected: bool,
        fps_set: Arc<Mutex<Option<f64>>>,
        skipped: u64,
    }

    impl Script {
        fn new(steps: &[Step]) -> Script {
            Script {
                steps: steps.iter().copied().collect(),
                connected: true,
                fps_set: Arc::default(),
                skipped: 0,
            }
        }
    }

    impl Source for Script {
        fn info(&self) -> SourceInfo {
            SourceInfo {
                uri: "script://".into(),
                width: 2,
                height: 2,
                format: crate::source::PixelFormat::Rgb24,
                fps: Some(100.0),
            }
        }

        fn next(&mut self, frame: &mut Frame, _timeout: Duration) -> Result<Capture, SourceError> {
            match self.steps.pop_front() {
                Some(Step::Frame) => {
                    self.connected = true;
                    frame.captured_at = MonoTime::now();
                    Ok(Capture::Frame)
                }
                Some(Step::Unplugged) => {
                    self.connected = false;
                    Ok(Capture::Timeout)
                }
                Some(Step::Corrupt) => {
                    self.skipped += 1;
                    Ok(Capture::Timeout)
                }
                Some(Step::Fail) => Err(SourceError::Io {
                    uri: "script://".into(),
                    source: std::io::Error::other("device gone"),
                }),
                None => Ok(Capture::EndOfStream),
            }
        }

        fn connected(&self) -> bool {
            self.connected
        }

        fn set_fps(&mut self, fps: f64) -> bool {
            *self.fps_set.lock().unwrap_or_else(|p| p.into_inner()) = Some(fps);
            true
        }

        fn skipped_frames(&self) -> u64 {
            self.skipped
        }
    }

    /// A capture context on a fresh slot; no daemon.
    fn context(state: State) -> CaptureContext {
        CaptureContext {
            slot: Arc::new(FrameSlot::new(2, 2)),
            health: Arc::new(SourceHealth::new(
                "script://",
                Some(100.0),
                Duration::from_millis(10),
            )),
            state: Arc::new(StateCell::new(state)),
            ctl: Arc::new(LoopControl::new(Duration::from_millis(10))),
            realtime: RealtimeOptions::default(),
            duration: None,
        }
    }

    fn take(ctx: &CaptureContext) -> Take {
        ctx.slot.take(None, Duration::from_millis(1))
    }

    #[test]
    fn frames_are_numbered_into_the_slot_until_the_end_of_stream() {
        let ctx = context(State::Running);
        run(&mut Script::new(&[Step::Frame; 3]), &ctx);
        assert_eq!(ctx.slot.counters().captured, 3);
        // Nobody took them: the newest waits, the two before it were replaced (dropped).
        assert_eq!(ctx.slot.counters().dropped, 2);
        let Take::Frame(f) = take(&ctx) else {
            panic!("the newest frame waits in the slot")
        };
        assert_eq!(f.seq, 3);
        assert!(matches!(take(&ctx), Take::Ended(End::Clean)));
        assert!(
            ctx.health.jitter_p99_ms().is_some(),
            "intervals were recorded"
        );
    }

    #[test]
    fn a_source_error_ends_the_stream_with_the_error_whole() {
        let ctx = context(State::Running);
        run(
            &mut Script::new(&[Step::Frame, Step::Fail, Step::Frame]),
            &ctx,
        );
        assert_eq!(
            ctx.slot.counters().captured,
            1,
            "nothing is read after the error"
        );
        let Some(End::Error(e)) = ctx.slot.ended() else {
            panic!("the stream ended with an error")
        };
        assert!(matches!(&*e, SourceError::Io { uri, .. } if uri == "script://"));
        let cause = std::error::Error::source(&*e).map(|c| c.to_string());
        assert_eq!(cause.as_deref(), Some("device gone"), "the chain is kept");
        assert!(!ctx.health.connected());
    }

    #[test]
    fn an_unplugged_source_degrades_a_running_daemon_and_frames_recover_it() {
        let ctx = context(State::Running);
        run(&mut Script::new(&[Step::Unplugged, Step::Unplugged]), &ctx);
        assert_eq!(ctx.state.get(), State::Degraded);
        assert!(!ctx.health.connected());
        assert!(ctx.health.stalled.load(Ordering::Relaxed));
        run(&mut Script::new(&[Step::Frame]), &ctx);
        assert_eq!(ctx.state.get(), State::Running);
        assert!(ctx.health.connected());
        assert!(!ctx.health.stalled.load(Ordering::Relaxed));
    }

    #[test]
    fn frames_the_source_could_not_decode_are_counted_for_status() {
        let ctx = context(State::Running);
        let steps = [Step::Frame, Step::Corrupt, Step::Corrupt, Step::Frame];
        run(&mut Script::new(&steps), &ctx);
        assert_eq!(ctx.health.skipped_frames(), 2);
        assert_eq!(ctx.slot.counters().captured, 2);
    }

    #[test]
    fn a_daemon_waiting_for_its_first_result_stays_waiting_when_the_source_goes() {
        let ctx = context(State::Waiting);
        run(&mut Script::new(&[Step::Unplugged]), &ctx);
        assert_eq!(ctx.state.get(), State::Waiting);
        assert!(ctx.health.stalled.load(Ordering::Relaxed));
    }

    #[test]
    fn a_stop_ends_the_stream_cleanly_before_the_next_read() {
        let ctx = context(State::Running);
        ctx.ctl.stop.store(true, Ordering::SeqCst);
        run(&mut Script::new(&[Step::Frame]), &ctx);
        assert_eq!(ctx.slot.counters().captured, 0);
        assert!(matches!(ctx.slot.ended(), Some(End::Clean)));
    }

    #[test]
    fn the_duration_window_closes_on_the_first_frame_past_it() {
        let mut ctx = context(State::Running);
        ctx.duration = Some(Duration::ZERO);
        run(&mut Script::new(&[Step::Frame, Step::Frame]), &ctx);
        assert_eq!(
            ctx.slot.counters().captured,
            0,
            "captured at or after the window's end"
        );
        assert!(matches!(ctx.slot.ended(), Some(End::Clean)));
    }

    #[test]
    fn a_rate_request_re_paces_the_source_between_frames() {
        let ctx = context(State::Running);
        ctx.health.request_rate("script://?fps=25", 25.0);
        let mut src = Script::new(&[Step::Frame]);
        let fps_set = Arc::clone(&src.fps_set);
        run(&mut src, &ctx);
        assert_eq!(
            *fps_set.lock().unwrap_or_else(|p| p.into_inner()),
            Some(25.0)
        );
        assert_eq!(ctx.health.fps(), Some(25.0));
        assert_eq!(ctx.health.uri(), "script://?fps=25");
        assert_eq!(ctx.health.period(), Duration::from_millis(40));
    }

    #[test]
    fn the_stall_watcher_degrades_a_running_daemon_whose_source_fell_silent() {
        let ctx = Arc::new(context(State::Running));
        // One frame long ago: more than five 10 ms periods of silence since.
        ctx.health.on_frame(MonoTime::from_nanos(1));
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = std::thread::spawn({
            let (ctx, stop) = (Arc::clone(&ctx), Arc::clone(&stop));
            move || watch_stalls(&ctx, &stop)
        });
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while ctx.state.get() != State::Degraded && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::SeqCst);
        watcher.join().expect("the watcher returns when stopped");
        assert_eq!(ctx.state.get(), State::Degraded);
    }

    #[test]
    fn jitter_is_the_deviation_from_the_period() {
        let h = SourceHealth::new(
            "synthetic://1x1@100",
            Some(100.0),
            Duration::from_millis(10),
        );
        assert_eq!(h.jitter_p99_ms(), None);
        let t0 = 1_000_000_000u64;
        // Intervals 10, 10, 12, 9 ms: deviations 0 (recorded as 1 µs), 0, 2, 1 ms.
        for at in [0u64, 10, 20, 32, 41] {
            h.on_frame(MonoTime::from_nanos(t0 + at * 1_000_000));
        }
        let p99 = h.jitter_p99_ms().expect("four intervals");
        assert!((p99 - 2.0).abs() < 0.01, "p99 {p99}");
    }

    #[test]
    fn silence_counts_from_the_last_frame() {
        let h = SourceHealth::new(
            "synthetic://1x1@100",
            Some(100.0),
            Duration::from_millis(10),
        );
        assert!(
            !h.silent(MonoTime::from_nanos(10_000_000_000)),
            "no frame yet"
        );
        h.on_frame(MonoTime::from_nanos(1_000_000_000));
        assert!(!h.silent(MonoTime::from_nanos(1_049_000_000)));
        assert!(h.silent(MonoTime::from_nanos(1_051_000_000)));
    }
}
