//! The study's power figures from a ring of samples.
//!
//! Definitions (Gealy & George): idle = mean power before the first model runs; peak = the
//! highest sample over the recent window; dynamic = peak − idle; throughput per watt = processed
//! fps / peak watts. Beyond the study: the window's mean watts, energy per frame = mean watts /
//! processed fps over the same window (meters sample at 1–100 Hz, far slower than frames, so
//! this is a window average, never a per-frame measurement), and energy since start. Energy
//! integrates each sample over the time since the previous one (exact for counter meters such
//! as RAPL, whose sample is the mean power of that interval); it never bridges a disconnection.
//! The ring has a fixed capacity, so recording never allocates.

use std::time::Duration;

use serde::Serialize;

use crate::time::MonoTime;

/// Samples kept: the 10 s window at up to 100 Hz, four times over.
pub const RING_CAPACITY: usize = 4096;

/// One meter reading with its time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    pub at: MonoTime,
    pub watts: f64,
    pub volts: Option<f64>,
    pub amps: Option<f64>,
}

/// A sample and the seconds it covers (0 after a gap).
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    sample: Sample,
    dt: f64,
}

/// Figures over a span of time (the status window, or one benchmark).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct PowerFigures {
    pub idle_watts: Option<f64>,
    pub mean_watts: Option<f64>,
    pub peak_watts: Option<f64>,
    pub dynamic_watts: Option<f64>,
    pub throughput_per_watt: Option<f64>,
    pub joules_per_frame: Option<f64>,
    /// Energy of the samples in the span.
    pub energy_j: f64,
    pub samples: usize,
    /// When the span began before the oldest sample the ring still holds (it keeps the last
    /// 4096): the figures cover only its end, from this many seconds before `to`.
    #[serde(skip)]
    pub covers_only_s: Option<f64>,
}

/// What `/status` shows under `power` (and what `/metrics` exports as gauges).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerSnapshot {
    pub meter: String,
    pub connected: bool,
    /// The latest sample while connected.
    pub watts: Option<f64>,
    pub volts: Option<f64>,
    pub amps: Option<f64>,
    pub mean_watts: Option<f64>,
    pub idle_watts: Option<f64>,
    pub peak_watts: Option<f64>,
    pub dynamic_watts: Option<f64>,
    pub throughput_per_watt: Option<f64>,
    pub joules_per_frame: Option<f64>,
    /// Energy since start.
    pub energy_j: f64,
    pub bad_frames: u64,
    pub samples: u64,
    pub window_s: f64,
}

/// Figures since start, for the final summary.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LifetimeFigures {
    pub idle_watts: Option<f64>,
    pub mean_watts: Option<f64>,
    pub peak_watts: Option<f64>,
    pub energy_j: f64,
    pub bad_frames: u64,
    pub samples: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Idle {
    Unknown,
    Measuring {
        sum: f64,
        n: u64,
        first: Option<MonoTime>,
        last: Option<MonoTime>,
    },
    Known(f64),
}

/// Samples, energy and idle; owned by the monitor thread, read by the status handler.
pub struct PowerStats {
    ring: Vec<Entry>,
    head: usize,
    len: usize,
    window: Duration,
    last: Option<Sample>,
    continuous: bool,
    energy_j: f64,
    energy_s: f64,
    peak: Option<f64>,
    idle: Idle,
    pub bad_frames: u64,
    pub samples: u64,
}

impl PowerStats {
    pub fn new(window: Duration) -> PowerStats {
        PowerStats {
            ring: vec![Entry::default(); RING_CAPACITY],
            head: 0,
            len: 0,
            window,
            last: None,
            continuous: false,
            energy_j: 0.0,
            energy_s: 0.0,
            peak: None,
            idle: Idle::Unknown,
            bad_frames: 0,
            samples: 0,
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Adds a sample (times must not go backwards; an older one is ignored).
    pub fn record(&mut self, s: Sample) {
        if self.last.is_some_and(|l| s.at < l.at) || !s.watts.is_finite() {
            return;
        }
        let dt = match self.last {
            Some(l) if self.continuous => s.at.saturating_since(l.at).as_secs_f64(),
            _ => 0.0,
        };
        self.energy_j += s.watts * dt;
        self.energy_s += dt;
        self.peak = Some(self.peak.map_or(s.watts, |p| p.max(s.watts)));
        if let Idle::Measuring {
            sum,
            n,
            first,
            last,
        } = &mut self.idle
        {
            *sum += s.watts;
            *n += 1;
            first.get_or_insert(s.at);
            *last = Some(s.at);
        }
        let i = (self.head + self.len) % RING_CAPACITY;
        self.ring[i] = Entry { sample: s, dt };
        if self.len == RING_CAPACITY {
            self.head = (self.head + 1) % RING_CAPACITY;
        } else {
            self.len += 1;
        }
        self.last = Some(s);
        self.continuous = true;
        self.samples += 1;
    }

    /// The meter was lost: the next sample does not integrate across the gap.
    pub fn break_continuity(&mut self) {
        self.continuous = false;
    }

    /// The latest sample.
    pub fn last(&self) -> Option<Sample> {
        self.last
    }

    /// Samples from now on count towards idle.
    pub fn begin_idle(&mut self) {
        self.idle = Idle::Measuring {
            sum: 0.0,
            n: 0,
            first: None,
            last: None,
        };
    }

    /// Time between the first and the last idle sample so far.
    pub fn idle_span(&self) -> Duration {
        match self.idle {
            Idle::Measuring {
                first: Some(f),
                last: Some(l),
                ..
            } => l.saturating_since(f),
            _ => Duration::ZERO,
        }
    }

    /// Ends the idle measurement: the mean of its samples, `None` without any.
    pub fn end_idle(&mut self) -> Option<f64> {
        self.idle = match self.idle {
            Idle::Measuring { sum, n, .. } if n > 0 => Idle::Known(sum / n as f64),
            Idle::Measuring { .. } | Idle::Unknown => Idle::Unknown,
            known => known,
        };
        self.idle_watts()
    }

    pub fn set_idle(&mut self, watts: f64) {
        self.idle = Idle::Known(watts);
    }

    pub fn idle_watts(&self) -> Option<f64> {
        match self.idle {
            Idle::Known(w) => Some(w),
            _ => None,
        }
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> {
        (0..self.len).map(move |k| &self.ring[(self.head + k) % RING_CAPACITY])
    }

    /// Figures over the samples taken in `(from, to]`, with `fps` the processed frame rate over
    /// the same span.
    pub fn figures(&self, from: MonoTime, to: MonoTime, fps: Option<f64>) -> PowerFigures {
        let (mut sum, mut n, mut peak, mut energy) = (0.0, 0usize, f64::NEG_INFINITY, 0.0);
        for e in self
            .entries()
            .filter(|e| e.sample.at > from && e.sample.at <= to)
        {
            sum += e.sample.watts;
            n += 1;
            peak = peak.max(e.sample.watts);
            energy += e.sample.watts * e.dt;
        }
        let idle = self.idle_watts();
        let mean = (n > 0).then(|| sum / n as f64);
        let peak = (n > 0).then_some(peak);
        let fps = fps.filter(|f| f.is_finite() && *f > 0.0);
        let oldest = self.entries().next().map(|e| e.sample.at);
        let covers_only_s = oldest
            .filter(|o| self.len == RING_CAPACITY && *o > from)
            .map(|o| to.saturating_since(o).as_secs_f64());
        PowerFigures {
            idle_watts: idle,
            mean_watts: mean,
            peak_watts: peak,
            dynamic_watts: peak.zip(idle).map(|(p, i)| p - i),
            throughput_per_watt: fps.zip(peak.filter(|p| *p > 0.0)).map(|(f, p)| f / p),
            joules_per_frame: mean.zip(fps).map(|(m, f)| m / f),
            energy_j: energy,
            samples: n,
            covers_only_s,
        }
    }

    /// The `/status` view: the window ending `now`.
    pub fn snapshot(
        &self,
        meter: &str,
        connected: bool,
        now: MonoTime,
        fps: Option<f64>,
    ) -> PowerSnapshot {
        let from = MonoTime::from_nanos(
            now.as_nanos()
                .saturating_sub(self.window.as_nanos().min(u64::MAX as u128) as u64),
        );
        let f = self.figures(from, now, fps);
        let last = self.last.filter(|_| connected);
        PowerSnapshot {
            meter: meter.to_string(),
            connected,
            watts: last.map(|s| s.watts),
            volts: last.and_then(|s| s.volts),
            amps: last.and_then(|s| s.amps),
            mean_watts: f.mean_watts,
            idle_watts: f.idle_watts,
            peak_watts: f.peak_watts,
            dynamic_watts: f.dynamic_watts,
            throughput_per_watt: f.throughput_per_watt,
            joules_per_frame: f.joules_per_frame,
            energy_j: self.energy_j,
            bad_frames: self.bad_frames,
            samples: self.samples,
            window_s: self.window.as_secs_f64(),
        }
    }

    /// Since start: mean watts is energy over the integrated time, peak the highest sample.
    pub fn lifetime(&self) -> LifetimeFigures {
        LifetimeFigures {
            idle_watts: self.idle_watts(),
            mean_watts: (self.energy_s > 0.0).then(|| self.energy_j / self.energy_s),
            peak_watts: self.peak,
            energy_j: self.energy_j,
            bad_frames: self.bad_frames,
            samples: self.samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> MonoTime {
        MonoTime::from_nanos((s * 1e9) as u64)
    }

    fn w(stats: &mut PowerStats, t: f64, watts: f64) {
        stats.record(Sample {
            at: at(t),
            watts,
            ..Sample::default()
        });
    }

    #[test]
    fn ring_overwrites_oldest_without_growing() {
        let mut s = PowerStats::new(Duration::from_secs(1_000_000));
        for i in 0..RING_CAPACITY + 10 {
            w(&mut s, i as f64, i as f64);
        }
        assert_eq!(s.ring.capacity(), RING_CAPACITY);
        let f = s.figures(at(0.0), at(1e9), None);
        assert_eq!(f.samples, RING_CAPACITY);
        assert_eq!(f.peak_watts, Some((RING_CAPACITY + 9) as f64));
        // The span began before the oldest sample kept (at 10 s): the figures say so.
        let end = (RING_CAPACITY + 9) as f64;
        let covers = f.covers_only_s.expect("a truncated span is flagged");
        assert!((covers - (1e9 - 10.0)).abs() < 1e-3, "{covers}");
        let inside = s.figures(at(20.0), at(end), None);
        assert_eq!(
            inside.covers_only_s, None,
            "a span inside the ring is whole"
        );
    }

    #[test]
    fn energy_does_not_bridge_a_gap() {
        let mut s = PowerStats::new(Duration::from_secs(10));
        w(&mut s, 1.0, 2.0);
        w(&mut s, 2.0, 4.0); // 4 W x 1 s
        s.break_continuity();
        w(&mut s, 10.0, 100.0); // first after the gap: no energy
        w(&mut s, 10.5, 6.0); // 6 W x 0.5 s
        assert_eq!(s.lifetime().energy_j, 7.0);
        assert_eq!(s.lifetime().mean_watts, Some(7.0 / 1.5));
        assert_eq!(s.lifetime().peak_watts, Some(100.0));
    }
}
