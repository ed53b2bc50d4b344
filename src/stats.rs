//! Latency percentiles per pipeline stage, for the recent past and since start.
//!
//! A real-time daemon is judged by its tail (p99, p99.9, max), which a mean hides and a sample
//! buffer makes expensive; HDR histograms give every percentile to three significant digits in
//! fixed memory, and recording into one is a few arithmetic operations with no allocation, so it
//! can sit on the frame loop. "Recent" is a ring of one-tenth-of-the-window histograms rotated by
//! the frame clock: old samples leave the window in whole slots, the window view merges the
//! slots still inside it, and nothing ever has to be subtracted. All times are in microseconds
//! inside (1 µs .. 10 s, larger values are clamped to 10 s) and milliseconds outside.

use std::time::Duration;

use hdrhistogram::{Counter, Histogram};
use serde::Serialize;

use crate::time::MonoTime;

/// Slots in the window ring: the window moves in steps of a tenth of its length.
pub const WINDOW_SLOTS: usize = 10;
/// The default window of `/status`'s `latency_ms`.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Largest recordable latency in microseconds (10 s); larger samples are clamped to it.
pub const MAX_MICROS: u64 = 10_000_000;

/// A measured stage of the frame pipeline. `Capture`, `Queue`, `Preprocess`, `Inference` and
/// `Postprocess` follow each other without gaps, so for every frame they add up to `EndToEnd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Capture to result ready: what the deadline is checked against.
    EndToEnd,
    /// From the source's timestamp to the frame in the slot: the driver queue, reading, copying
    /// or decoding on the capture side.
    Capture,
    /// Waiting in the slot for the pipeline thread.
    Queue,
    Inference,
    Preprocess,
    Postprocess,
    /// The accelerator's own time for the inference (TensorRT: CUDA events around the enqueue),
    /// beside the host-side `Inference`; recorded only for backends that measure it.
    Device,
}

/// How many stages there are.
const STAGES: usize = 7;

impl Stage {
    pub const ALL: [Stage; STAGES] = [
        Stage::EndToEnd,
        Stage::Capture,
        Stage::Queue,
        Stage::Inference,
        Stage::Preprocess,
        Stage::Postprocess,
        Stage::Device,
    ];

    /// The JSON key and metrics label (`end_to_end`, `inference`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Stage::EndToEnd => "end_to_end",
            Stage::Capture => "capture",
            Stage::Queue => "queue",
            Stage::Inference => "inference",
            Stage::Preprocess => "preprocess",
            Stage::Postprocess => "postprocess",
            Stage::Device => "device",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The durations of one processed frame; `capture + queue + preprocess + inference +
/// postprocess == end_to_end` (they are measured between the same five instants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameTimes {
    pub end_to_end: Duration,
    pub capture: Duration,
    pub queue: Duration,
    pub inference: Duration,
    pub preprocess: Duration,
    pub postprocess: Duration,
    /// The backend's device time, when it measures one ([`crate::backend::Engine::device_time`]).
    pub device: Option<Duration>,
}

impl FrameTimes {
    /// The duration of `stage`; `None` for a device time the backend does not measure.
    pub fn get(&self, stage: Stage) -> Option<Duration> {
        match stage {
            Stage::EndToEnd => Some(self.end_to_end),
            Stage::Capture => Some(self.capture),
            Stage::Queue => Some(self.queue),
            Stage::Inference => Some(self.inference),
            Stage::Preprocess => Some(self.preprocess),
            Stage::Postprocess => Some(self.postprocess),
            Stage::Device => self.device,
        }
    }
}

/// Percentiles of one stage in milliseconds; every value is `None` (JSON `null`) when `count`
/// is 0. Values carry the histogram's precision (3 significant digits, 1 µs at best).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub count: u64,
}

impl Percentiles {
    fn from_histogram<T: Counter>(h: &Histogram<T>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let q = |q: f64| Some(micros_to_ms(h.value_at_quantile(q)));
        Percentiles {
            p50: q(0.50),
            p90: q(0.90),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: Some(micros_to_ms(h.max())),
            mean: Some(h.mean() / 1000.0),
            count: h.len(),
        }
    }
}

/// Percentiles of every stage; serialises as `{"end_to_end": {..}, "inference": {..}, ...}`.
/// `device` stays empty (`count` 0, nulls) for backends that do not measure a device time.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct StageLatencies {
    pub end_to_end: Percentiles,
    pub capture: Percentiles,
    pub queue: Percentiles,
    pub inference: Percentiles,
    pub preprocess: Percentiles,
    pub postprocess: Percentiles,
    pub device: Percentiles,
}

impl StageLatencies {
    pub fn get(&self, stage: Stage) -> &Percentiles {
        match stage {
            Stage::EndToEnd => &self.end_to_end,
            Stage::Capture => &self.capture,
            Stage::Queue => &self.queue,
            Stage::Inference => &self.inference,
            Stage::Preprocess => &self.preprocess,
            Stage::Postprocess => &self.postprocess,
            Stage::Device => &self.device,
        }
    }

    fn from_histograms<T: Counter>(h: &[Histogram<T>; STAGES]) -> StageLatencies {
        let p = |s: Stage| Percentiles::from_histogram(&h[s.index()]);
        StageLatencies {
            end_to_end: p(Stage::EndToEnd),
            capture: p(Stage::Capture),
            queue: p(Stage::Queue),
            inference: p(Stage::Inference),
            preprocess: p(Stage::Preprocess),
            postprocess: p(Stage::Postprocess),
            device: p(Stage::Device),
        }
    }
}

/// What `/status` shows of latency: `latency_ms` (window), `latency_ms_lifetime` and `fps`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct StatsSummary {
    pub window: StageLatencies,
    pub lifetime: StageLatencies,
    /// Processed frames per second over the window; `None` before two frames were recorded.
    pub fps: Option<f64>,
    /// Length of the window in seconds.
    pub window_s: f64,
}

/// One slot of the window ring: the histograms of one `slot_ns` period.
#[derive(Debug)]
struct Slot {
    /// Index of the period (`now / slot_ns`) the histograms hold; `None` while unused.
    period: Option<u64>,
    /// 16-bit counters: one bucket of a tenth of the window (1 s in `/status`) fills only at
    /// 65 535 frames of the same latency in that second, far beyond any frame rate, and the
    /// window's 70 histograms take half the memory of 32-bit ones (they are most of the
    /// daemon's own heap). Counts saturate rather than wrap.
    hist: [Histogram<u16>; STAGES],
}

/// Latency histograms per stage, windowed and lifetime. See the module docs.
#[derive(Debug)]
pub struct LatencyStats {
    slot_ns: u64,
    slots: [Slot; WINDOW_SLOTS],
    lifetime: [Histogram<u64>; STAGES],
    /// Scratch for the merged window view, kept to avoid allocating in `summary`.
    merged: [Histogram<u32>; STAGES],
    /// Latest period seen: time never goes back for the ring, even if a caller's clock does.
    latest: u64,
    first_at: Option<MonoTime>,
}

impl LatencyStats {
    /// Histograms for a recent window of `window` (10 s in `/status`), moving in tenths of it.
    /// Allocates every histogram now (70 of 15 360 `u16` counters, 7 of `u32` and 7 of `u64`:
    /// about 3.4 MB); recording never does.
    pub fn new(window: Duration) -> LatencyStats {
        let slot_ns = (window.as_nanos() / WINDOW_SLOTS as u128).clamp(1, u64::MAX as u128) as u64;
        LatencyStats {
            slot_ns,
            slots: std::array::from_fn(|_| Slot {
                period: None,
                hist: stage_histograms(),
            }),
            lifetime: stage_histograms(),
            merged: stage_histograms(),
            latest: 0,
            first_at: None,
        }
    }

    /// The window length (a multiple of [`WINDOW_SLOTS`] nanoseconds).
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.slot_ns.saturating_mul(WINDOW_SLOTS as u64))
    }

    /// Records one processed frame that finished at `now`. Does not allocate; durations above
    /// 10 s are recorded as 10 s.
    pub fn record(&mut self, now: MonoTime, sample: &FrameTimes) {
        let period = self.period(now);
        let slot = &mut self.slots[(period % WINDOW_SLOTS as u64) as usize];
        if slot.period != Some(period) {
            slot.hist.iter_mut().for_each(Histogram::reset);
            slot.period = Some(period);
        }
        for stage in Stage::ALL {
            let Some(d) = sample.get(stage) else {
                continue;
            };
            let us = to_micros(d);
            slot.hist[stage.index()].saturating_record(us);
            self.lifetime[stage.index()].saturating_record(us);
        }
        self.first_at.get_or_insert(now);
    }

    /// Percentiles of the window ending at `now` and of the lifetime, and the processed rate.
    /// Does not allocate, but reads every counter of the window's 50 histograms (about 0.8 M):
    /// call it for status snapshots (a few times per second at most), not per frame.
    pub fn summary(&mut self, now: MonoTime) -> StatsSummary {
        let period = self.period(now);
        for (stage, merged) in self.merged.iter_mut().enumerate() {
            merged.reset();
            for slot in self.slots.iter().filter(|s| in_window(s.period, period)) {
                // Same bounds everywhere: each recorded bucket lands in the same bucket here.
                for v in slot.hist[stage].iter_recorded() {
                    merged
                        .saturating_record_n(v.value_iterated_to(), u32::from(v.count_at_value()));
                }
            }
        }
        StatsSummary {
            window: StageLatencies::from_histograms(&self.merged),
            lifetime: StageLatencies::from_histograms(&self.lifetime),
            fps: self.fps(now, period),
            window_s: self.window().as_secs_f64(),
        }
    }

    /// Frames counted in the merged window over the time they span.
    fn fps(&self, now: MonoTime, period: u64) -> Option<f64> {
        let first = self.first_at?;
        let count = self.merged[Stage::EndToEnd.index()].len();
        let window_start =
            MonoTime::from_nanos((period + 1).saturating_sub(WINDOW_SLOTS as u64) * self.slot_ns);
        if first >= window_start {
            // Still filling the first window: frames 1..n span n - 1 intervals since the first.
            let span = now.saturating_since(first).as_secs_f64();
            return (span > 0.0 && count > 1).then(|| (count - 1) as f64 / span);
        }
        let span = now.saturating_since(window_start).as_secs_f64();
        (span > 0.0).then(|| count as f64 / span)
    }

    /// The ring period of `now`, never earlier than one already used.
    fn period(&mut self, now: MonoTime) -> u64 {
        self.latest = self.latest.max(now.as_nanos() / self.slot_ns);
        self.latest
    }
}

impl Default for LatencyStats {
    fn default() -> Self {
        LatencyStats::new(DEFAULT_WINDOW)
    }
}

/// Whether a slot holding `slot_period` is inside the window ending in period `now`.
/// The `q` quantile of a small sample by the "lower" rule (numpy's `method="lower"`: the value at
/// index `floor(q * (n - 1))` of the sorted sample), `None` when empty. Unlike nearest-rank, a
/// single outlier among fewer than a hundred values is not the p99. Reorders `v`. For the
/// governor's short windows and load-time measurements, where a histogram is not worth it.
pub fn percentile_lower<T: Copy + PartialOrd>(v: &mut [T], q: f64) -> Option<T> {
    if v.is_empty() {
        return None;
    }
    let k = ((q.clamp(0.0, 1.0) * (v.len() - 1) as f64).floor() as usize).min(v.len() - 1);
    let (_, x, _) = v.select_nth_unstable_by(k, |a, b| {
        a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)
    });
    Some(*x)
}

fn in_window(slot_period: Option<u64>, now: u64) -> bool {
    slot_period.is_some_and(|p| p <= now && p + WINDOW_SLOTS as u64 > now)
}

fn stage_histograms<T: Counter>() -> [Histogram<T>; STAGES] {
    std::array::from_fn(|_| {
        // Constant, valid bounds (low >= 1, high >= 2 * low, 3 significant digits): cannot fail.
        Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds are valid")
    })
}

/// Rounded to the nearest microsecond and clamped to the histogram's range.
fn to_micros(d: Duration) -> u64 {
    (d.as_nanos().saturating_add(500) / 1000).min(u128::from(MAX_MICROS)) as u64
}

fn micros_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> MonoTime {
        MonoTime::from_nanos((secs * 1e9).round() as u64)
    }

    fn e2e(d: Duration) -> FrameTimes {
        FrameTimes {
            end_to_end: d,
            capture: d / 16,
            queue: d / 16,
            inference: d / 2,
            preprocess: d / 4,
            postprocess: d / 8,
            device: None,
        }
    }

    /// `got` within HDR's 3-significant-digit precision (0.1%, doubled for rounding) of `want`.
    fn close(got: Option<f64>, want: f64) -> bool {
        got.is_some_and(|g| (g - want).abs() <= want * 0.002 + 0.001)
    }

    #[test]
    fn known_samples_give_nearest_rank_percentiles() {
        let mut s = LatencyStats::new(DEFAULT_WINDOW);
        // 1..=1000 ms, shuffled by a stride coprime to 1000 so order cannot matter.
        for i in 0..1000u64 {
            let ms = (i * 37) % 1000 + 1;
            s.record(at(1.0), &e2e(Duration::from_millis(ms)));
        }
        let sum = s.summary(at(1.5));
        for p in [sum.window.end_to_end, sum.lifetime.end_to_end] {
            // Nearest rank: the q-quantile of 1..=1000 is ceil(q * 1000).
            assert!(close(p.p50, 500.0), "{p:?}");
            assert!(close(p.p90, 900.0), "{p:?}");
            assert!(close(p.p95, 950.0), "{p:?}");
            assert!(close(p.p99, 990.0), "{p:?}");
            assert!(close(p.p999, 999.0), "{p:?}");
            assert!(close(p.max, 1000.0), "{p:?}");
            assert!(close(p.mean, 500.5), "{p:?}");
            assert_eq!(p.count, 1000);
        }
        // Other stages got their own samples: inference was half of end to end.
        assert!(
            close(sum.window.inference.max, 500.0),
            "{:?}",
            sum.window.inference
        );
        assert!(
            close(sum.window.get(Stage::Postprocess).p50, 62.5),
            "{:?}",
            sum.window.postprocess
        );
    }

    #[test]
    fn out_of_range_samples_are_clamped_not_rejected() {
        let mut s = LatencyStats::default();
        s.record(at(0.0), &e2e(Duration::from_secs(3600)));
        s.record(at(0.0), &e2e(Duration::ZERO));
        let p = s.summary(at(0.0)).window.end_to_end;
        assert_eq!(p.count, 2);
        assert!(close(p.max, 10_000.0), "{p:?}");
    }

    #[test]
    fn window_forgets_after_its_length_and_lifetime_keeps_everything() {
        let mut s = LatencyStats::new(DEFAULT_WINDOW);
        // 50 frames between 0 and 4.9 s (periods 0..=4).
        for i in 0..50 {
            s.record(at(f64::from(i) * 0.1), &e2e(Duration::from_millis(5)));
        }
        assert_eq!(s.summary(at(5.0)).window.end_to_end.count, 50);
        // At 12.5 s the window holds periods 3..=12: the 20 frames of seconds 3 and 4.
        assert_eq!(s.summary(at(12.5)).window.end_to_end.count, 20);
        let late = s.summary(at(14.5));
        assert_eq!(late.window.end_to_end, Percentiles::default());
        assert_eq!(late.window.end_to_end.p99, None);
        assert_eq!(late.lifetime.end_to_end.count, 50);
        assert_eq!(late.fps, Some(0.0));
    }

    #[test]
    fn reused_slots_are_cleared_before_recording() {
        let mut s = LatencyStats::new(DEFAULT_WINDOW);
        s.record(at(0.5), &e2e(Duration::from_millis(900)));
        // 10.5 s lands in the same ring slot as 0.5 s: the old sample must not survive.
        s.record(at(10.5), &e2e(Duration::from_millis(1)));
        let sum = s.summary(at(10.6));
        assert_eq!(sum.window.end_to_end.count, 1);
        assert!(
            close(sum.window.end_to_end.max, 1.0),
            "{:?}",
            sum.window.end_to_end
        );
        assert!(close(sum.lifetime.end_to_end.max, 900.0));
    }

    #[test]
    fn lower_percentiles_ignore_a_single_outlier_below_a_hundred_values() {
        assert_eq!(percentile_lower::<u32>(&mut [], 0.99), None);
        assert_eq!(percentile_lower(&mut [5u32], 0.99), Some(5));
        let mut v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile_lower(&mut v, 0.99), Some(99));
        assert_eq!(percentile_lower(&mut v, 0.5), Some(50));
        let mut v: Vec<f64> = (1..=60).map(f64::from).collect();
        v[10] = 1000.0;
        assert_eq!(percentile_lower(&mut v, 0.99), Some(60.0));
    }

    #[test]
    fn fps_counts_frames_over_the_window() {
        let mut s = LatencyStats::new(DEFAULT_WINDOW);
        assert_eq!(s.summary(at(0.0)).fps, None);
        let start = 100.0;
        let mut t = start;
        while t < start + 2.0 {
            s.record(at(t), &e2e(Duration::from_millis(3)));
            t += 1.0 / 60.0;
        }
        let fps = s.summary(at(t)).fps.unwrap_or(0.0);
        assert!((fps - 60.0).abs() < 1.0, "startup fps {fps}");
        while t < start + 30.0 {
            s.record(at(t), &e2e(Duration::from_millis(3)));
            t += 1.0 / 30.0;
        }
        let fps = s.summary(at(t)).fps.unwrap_or(0.0);
        assert!((fps - 30.0).abs() < 1.0, "steady fps {fps}");
    }

    #[test]
    fn a_full_window_bucket_saturates_instead_of_wrapping() {
        let mut s = LatencyStats::default();
        let sample = e2e(Duration::from_millis(5));
        for _ in 0..70_000 {
            s.record(at(1.0), &sample);
        }
        let sum = s.summary(at(1.5));
        // One bucket of one slot holds at most u16::MAX; the lifetime histogram holds all.
        assert_eq!(sum.window.end_to_end.count, u64::from(u16::MAX));
        assert_eq!(sum.lifetime.end_to_end.count, 70_000);
        assert!(
            close(sum.window.end_to_end.p99, 5.0),
            "{:?}",
            sum.window.end_to_end
        );
    }

    #[test]
    fn a_device_time_is_recorded_only_when_the_backend_measures_one() {
        let mut s = LatencyStats::default();
        s.record(at(1.0), &e2e(Duration::from_millis(4)));
        let with = FrameTimes {
            device: Some(Duration::from_micros(1500)),
            ..e2e(Duration::from_millis(4))
        };
        s.record(at(1.1), &with);
        let sum = s.summary(at(1.2));
        assert_eq!(sum.lifetime.end_to_end.count, 2);
        assert_eq!(sum.lifetime.device.count, 1);
        assert!(close(sum.window.device.p50, 1.5), "{:?}", sum.window.device);
    }

    #[test]
    fn percentiles_serialise_with_the_status_keys_and_nulls() {
        let empty = serde_json::to_value(Percentiles::default()).unwrap();
        let expected = serde_json::json!({
            "p50": null, "p90": null, "p95": null, "p99": null, "p999": null,
            "max": null, "mean": null, "count": 0
        });
        assert_eq!(empty, expected);
        let mut s = LatencyStats::default();
        s.record(at(1.0), &e2e(Duration::from_micros(2500)));
        let v = serde_json::to_value(s.summary(at(1.0)).window).unwrap();
        assert_eq!(v["end_to_end"]["count"], 1);
        // 2500 µs is above 2048, where 3 significant digits mean a 2 µs resolution.
        assert!(close(v["end_to_end"]["p50"].as_f64(), 2.5), "{v}");
        assert_eq!(v["preprocess"]["max"], 0.625);
        let stages: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
        for key in stages {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
    }
}
