//! Frame pacing against absolute deadlines.
//!
//! Sleeping "one period" after each frame accumulates every oversleep and every cycle of work:
//! a 60 FPS loop that loses 0.2 ms per frame delivers 3590 frames a minute, not 3600. The pacer
//! instead schedules frame `n` at `start + n * period` on the monotonic clock, so errors never
//! add up. When the consumer falls several periods behind (a stall, a debugger, a suspended
//! board) it re-anchors at the present instead of bursting the backlog out back to back: a live
//! source would have dropped those frames too.

use std::time::Duration;

use crate::time::MonoTime;

/// How many periods late a frame may be before the schedule restarts from now.
pub const MAX_LATE_PERIODS: u64 = 4;

/// Paces a stream at a fixed rate. The schedule starts at the first [`Pacer::wait`].
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Frame period in nanoseconds, fractional so 29.97 FPS does not drift either.
    period_ns: f64,
    start: Option<MonoTime>,
    /// Index (since `start`) of the next frame to release.
    next: u64,
    reanchors: u64,
}

impl Pacer {
    /// A pacer at `fps` frames per second; `fps` must be finite and positive (callers validate
    /// rates when parsing URIs and headers).
    pub fn new(fps: f64) -> Pacer {
        Pacer {
            period_ns: crate::units::period_ns(fps),
            start: None,
            next: 0,
            reanchors: 0,
        }
    }

    /// The nominal frame rate.
    pub fn fps(&self) -> f64 {
        1e9 / self.period_ns
    }

    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns.round() as u64)
    }

    /// How many times the schedule restarted because the consumer fell behind.
    pub fn reanchors(&self) -> u64 {
        self.reanchors
    }

    /// Changes the rate from the next frame on (a live reload). The phase is kept: the next frame
    /// is due one new period after the last one released, not at a restarted schedule.
    pub fn set_fps(&mut self, fps: f64) {
        if let Some(start) = self.start
            && self.next > 0
        {
            self.start = Some(self.due(start, self.next - 1));
            self.next = 1;
        }
        self.period_ns = crate::units::period_ns(fps);
    }

    /// Deadline of frame `n` of the current schedule.
    fn due(&self, start: MonoTime, n: u64) -> MonoTime {
        MonoTime::from_nanos(
            start
                .as_nanos()
                .saturating_add((n as f64 * self.period_ns).round() as u64),
        )
    }

    /// Waits for the next frame's deadline, but no longer than `timeout`.
    ///
    /// Returns the deadline once it is reached (the frame may be produced now), or `None` when
    /// the deadline lies beyond `timeout` (after sleeping `timeout`; the frame stays due).
    pub fn wait(&mut self, timeout: Duration) -> Option<MonoTime> {
        let now = MonoTime::now();
        let start = *self.start.get_or_insert(now);
        let mut due = self.due(start, self.next);
        let late_limit = Duration::from_nanos((self.period_ns * MAX_LATE_PERIODS as f64) as u64);
        if now.saturating_since(due) > late_limit {
            log::debug!(
                "pacer fell {:?} behind; re-anchoring",
                now.saturating_since(due)
            );
            self.start = Some(now);
            self.next = 0;
            self.reanchors += 1;
            due = now;
        }
        if due.saturating_since(now) > timeout {
            now.plus(timeout).sleep_until();
            return None;
        }
        due.sleep_until();
        self.next += 1;
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_absolute_multiples_of_the_period() {
        let p = Pacer::new(60.0);
        let start = MonoTime::from_nanos(1_000);
        // 3600 frames at 60 FPS end exactly 60 s after the start: no accumulated rounding.
        assert_eq!(p.due(start, 3600).as_nanos(), 1_000 + 60_000_000_000);
        let ntsc = Pacer::new(30_000.0 / 1001.0);
        assert_eq!(
            ntsc.due(start, 30_000).as_nanos(),
            1_000 + 1001 * 1_000_000_000
        );
    }

    #[test]
    fn a_new_rate_applies_from_the_next_frame_keeping_the_phase() {
        let mut p = Pacer::new(100.0);
        let start = MonoTime::from_nanos(1_000_000_000);
        p.start = Some(start);
        p.next = 5; // frames 0..=4 released; the last one was due at start + 40 ms
        p.set_fps(20.0);
        let s = p.start.expect("schedule kept");
        assert_eq!(
            p.due(s, p.next).as_nanos(),
            1_000_000_000 + 40_000_000 + 50_000_000
        );
        assert_eq!(p.fps(), 20.0);
        // Before the first frame there is no phase to keep: the schedule starts at the first wait.
        let mut q = Pacer::new(100.0);
        q.set_fps(50.0);
        assert!(q.start.is_none());
        assert_eq!(q.period(), Duration::from_millis(20));
    }

    #[test]
    fn first_frame_is_immediate_and_timeout_is_respected() {
        let mut p = Pacer::new(1.0);
        assert!(p.wait(Duration::from_millis(10)).is_some());
        // The next frame is due in ~1 s: a 20 ms timeout returns without releasing it.
        assert!(p.wait(Duration::from_millis(20)).is_none());
        assert_eq!(p.next, 1);
    }

    #[test]
    fn falling_far_behind_reanchors_instead_of_bursting() {
        let mut p = Pacer::new(1000.0);
        p.wait(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(30)); // 30 periods late
        let before = MonoTime::now();
        assert!(p.wait(Duration::ZERO).is_some());
        assert_eq!(p.reanchors(), 1);
        // The frame after the re-anchored one is a full period after it, not already overdue.
        let next_due = p.due(p.start.unwrap_or(before), p.next);
        assert!(next_due > before);
    }
}
