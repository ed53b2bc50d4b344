//! The governor's view of recent frames: a fixed ring the stats thread fills, one entry per
//! finished frame, from which the governor computes the serving model's window figures.
//!
//! `/status`'s histograms cover 10 s of every model; the law needs a shorter window and only the
//! frames of the model serving now (the frames of the model before a step say nothing about the
//! one after it), so each entry carries its engine generation. Pushing is a copy into a slot
//! allocated at start: nothing is allocated per frame on the stats thread.

use crate::pipeline::FrameRecord;
use crate::slot::Outcome;
use crate::stats::percentile_lower;
use crate::time::MonoTime;

use super::law::Figures;

/// Frames the ring holds: 34 s at 60 FPS. At rates where the window holds more frames than this,
/// the figures are those of the newest `CAPACITY` frames.
pub const CAPACITY: usize = 2048;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    done_at: MonoTime,
    generation: u32,
    e2e_us: u32,
    proc_us: u32,
    missed: bool,
}

/// The ring of recent frames.
#[derive(Debug)]
pub struct FrameWindow {
    entries: Vec<Entry>,
    /// Where the next entry goes.
    next: usize,
    len: usize,
}

impl Default for FrameWindow {
    fn default() -> Self {
        FrameWindow::new()
    }
}

fn micros(d: std::time::Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

impl FrameWindow {
    pub fn new() -> FrameWindow {
        FrameWindow {
            entries: vec![Entry::default(); CAPACITY],
            next: 0,
            len: 0,
        }
    }

    /// Records a finished frame (on time, late or cancelled; dropped and failed frames are not
    /// the model's latency). Allocates nothing.
    pub fn push(&mut self, rec: &FrameRecord) {
        let missed = match rec.outcome {
            Outcome::OnTime => false,
            Outcome::Late | Outcome::Cancelled => true,
            _ => return,
        };
        let t = &rec.times;
        self.entries[self.next] = Entry {
            done_at: rec.done_at,
            generation: rec.model_gen,
            e2e_us: micros(t.end_to_end),
            proc_us: micros(t.preprocess + t.inference + t.postprocess),
            missed,
        };
        self.next = (self.next + 1) % CAPACITY;
        self.len = (self.len + 1).min(CAPACITY);
    }

    /// The figures of engine `generation`'s frames that finished at or after `since` (its
    /// misses at or after `recent_since` also apart). `scratch` holds the latencies while they
    /// are ranked (reused between calls).
    pub fn figures(
        &self,
        generation: u32,
        since: MonoTime,
        recent_since: MonoTime,
        scratch: &mut Scratch,
    ) -> Figures {
        scratch.e2e.clear();
        scratch.proc.clear();
        let (mut misses, mut recent_misses) = (0u32, 0u32);
        for e in self.recent() {
            if e.generation != generation || e.done_at < since {
                continue;
            }
            scratch.e2e.push(e.e2e_us);
            scratch.proc.push(e.proc_us);
            misses += u32::from(e.missed);
            recent_misses += u32::from(e.missed && e.done_at >= recent_since);
        }
        Figures {
            frames: scratch.e2e.len() as u32,
            misses,
            recent_misses,
            p99_ms: f64::from(percentile_lower(&mut scratch.e2e, 0.99).unwrap_or(0)) / 1000.0,
            proc_p99_ms: f64::from(percentile_lower(&mut scratch.proc, 0.99).unwrap_or(0)) / 1000.0,
            proc_p50_ms: f64::from(percentile_lower(&mut scratch.proc, 0.5).unwrap_or(0)) / 1000.0,
        }
    }

    fn recent(&self) -> impl Iterator<Item = &Entry> {
        let start = (self.next + CAPACITY - self.len) % CAPACITY;
        (0..self.len).map(move |i| &self.entries[(start + i) % CAPACITY])
    }
}

/// Buffers for ranking a window's latencies.
#[derive(Debug, Default)]
pub struct Scratch {
    e2e: Vec<u32>,
    proc: Vec<u32>,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            e2e: Vec::with_capacity(CAPACITY),
            proc: Vec::with_capacity(CAPACITY),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pipeline::TOP_K;
    use crate::stats::FrameTimes;

    fn rec(done_ms: u64, generation: u32, e2e_ms: f64, outcome: Outcome) -> FrameRecord {
        let ms = |m: f64| Duration::from_micros((m * 1000.0).round() as u64);
        FrameRecord {
            seq: done_ms,
            model_gen: generation,
            captured_at: MonoTime::from_nanos(0),
            done_at: MonoTime::from_nanos(done_ms * 1_000_000),
            times: FrameTimes {
                end_to_end: ms(e2e_ms),
                capture: Duration::ZERO,
                queue: Duration::ZERO,
                inference: ms(e2e_ms / 2.0),
                preprocess: ms(e2e_ms / 8.0),
                postprocess: ms(e2e_ms / 8.0),
                device: None,
            },
            outcome,
            budget: ms(16.67),
            top: [(0, 0.0); TOP_K],
            top_len: 0,
            raw: None,
            detections: None,
        }
    }

    #[test]
    fn figures_cover_one_generation_inside_the_window() {
        let mut w = FrameWindow::new();
        for i in 0..100 {
            w.push(&rec(i * 10, 1, 30.0, Outcome::Late));
        }
        for i in 100..200 {
            let late = i % 50 == 0;
            let (e2e, o) = if late {
                (20.0, Outcome::Late)
            } else {
                (4.0 + (i % 5) as f64, Outcome::OnTime)
            };
            w.push(&rec(i * 10, 2, e2e, o));
        }
        w.push(&rec(2000, 2, 0.0, Outcome::Failed));
        let mut s = Scratch::new();
        let f = w.figures(
            2,
            MonoTime::from_nanos(0),
            MonoTime::from_nanos(1_400 * 1_000_000),
            &mut s,
        );
        assert_eq!((f.frames, f.misses, f.recent_misses), (100, 2, 1));
        // Two 20 ms frames of a hundred: the lower p99 (index 98 of 100) is one of them.
        assert!((f.p99_ms - 20.0).abs() < 1e-9, "{f:?}");
        assert!((f.proc_p99_ms - 15.0).abs() < 1e-9, "{f:?}");
        let t = MonoTime::from_nanos(1_500 * 1_000_000);
        let f = w.figures(2, t, t, &mut s);
        assert_eq!((f.frames, f.misses), (50, 1));
        assert!(
            (f.p99_ms - 8.0).abs() < 1e-9,
            "one late frame in 50 is not the p99: {f:?}"
        );
        let zero = MonoTime::from_nanos(0);
        assert_eq!(w.figures(3, zero, zero, &mut s).frames, 0);
    }

    #[test]
    fn the_ring_keeps_the_newest_frames() {
        let mut w = FrameWindow::new();
        for i in 0..(CAPACITY as u64 + 10) {
            w.push(&rec(i, 1, i as f64 / 1000.0, Outcome::OnTime));
        }
        let mut s = Scratch::new();
        let zero = MonoTime::from_nanos(0);
        let f = w.figures(1, zero, zero, &mut s);
        assert_eq!(f.frames as usize, CAPACITY);
    }
}
