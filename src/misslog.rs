//! Rate limiting for deadline-miss log lines.
//!
//! When a board overheats or a model is too slow, every frame misses: 60 WARN lines a second
//! would flood the journal and cost the loop time it does not have. The operator needs the first
//! miss in detail (which frame, how late) and then only how many followed. So the log gets at
//! most one detailed line per period (one second) and, when more misses fell in that period, one
//! summary line with their count once it has ended: at most two lines per second however bad it
//! gets, and the counts still add up. This is a pure state machine fed with frame-clock times, so
//! it is tested with simulated time and costs nothing (no allocation) on the frame loop.

use std::fmt;
use std::time::Duration;

use crate::time::{MonoTime, ms};

/// Default length of a rate-limiting period.
pub const PERIOD: Duration = Duration::from_secs(1);

/// A line to log at WARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissLine {
    /// The first miss of a period.
    Detailed {
        seq: u64,
        latency: Duration,
        overshoot: Duration,
    },
    /// A period that had more than one miss has ended: `count` misses in all (the detailed one
    /// included) within `period`.
    Summary { count: u64, period: Duration },
}

impl fmt::Display for MissLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MissLine::Detailed {
                seq,
                latency,
                overshoot,
            } => write!(
                f,
                "deadline missed: frame {seq} took {:.2} ms, {:.2} ms over budget",
                ms(latency),
                ms(overshoot)
            ),
            MissLine::Summary { count, period } => write!(
                f,
                "deadline missed {count} times in {:.1} s (first shown above; misses are logged once per {:.1} s)",
                period.as_secs_f64(),
                PERIOD.as_secs_f64()
            ),
        }
    }
}

/// Misses counted since a period's first (detailed) miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    start: MonoTime,
    /// End of the last period merged into this tally.
    end: MonoTime,
    count: u64,
}

impl Tally {
    fn summary(self) -> Option<MissLine> {
        let period = self.end.saturating_since(self.start);
        (self.count > 1).then_some(MissLine::Summary {
            count: self.count,
            period,
        })
    }
}

/// The limiter. Call [`on_miss`](Self::on_miss) for every missed frame, [`tick`](Self::tick)
/// on every frame and idle wake-up, and [`flush`](Self::flush) at shutdown; log what they return.
#[derive(Debug, Clone)]
pub struct MissLog {
    period: Duration,
    /// The period in progress (opened by a detailed line).
    open: Option<Tally>,
    /// A finished period whose summary is still to be returned by `tick`.
    pending: Option<Tally>,
    total: u64,
}

impl Default for MissLog {
    fn default() -> Self {
        MissLog::new()
    }
}

impl MissLog {
    /// A limiter with one-second periods.
    pub fn new() -> MissLog {
        MissLog::with_period(PERIOD)
    }

    /// A limiter with another period (at least 1 ms).
    pub fn with_period(period: Duration) -> MissLog {
        MissLog {
            period: period.max(Duration::from_millis(1)),
            open: None,
            pending: None,
            total: 0,
        }
    }

    /// Counts a miss; returns the detailed line when it is the first of a new period.
    pub fn on_miss(
        &mut self,
        now: MonoTime,
        seq: u64,
        latency: Duration,
        overshoot: Duration,
    ) -> Option<MissLine> {
        self.total += 1;
        if let Some(open) = self.open.as_mut()
            && now < open.end
        {
            open.count += 1;
            return None;
        }
        self.close();
        self.open = Some(Tally {
            start: now,
            end: now.plus(self.period),
            count: 1,
        });
        Some(MissLine::Detailed {
            seq,
            latency,
            overshoot,
        })
    }

    /// Returns the summary of a period that has ended with more than one miss, once.
    pub fn tick(&mut self, now: MonoTime) -> Option<MissLine> {
        if let Some(line) = self.pending.take().and_then(Tally::summary) {
            return Some(line);
        }
        match self.open {
            Some(open) if now >= open.end => {
                self.open = None;
                open.summary()
            }
            _ => None,
        }
    }

    /// At shutdown: the summaries not yet returned, whether or not their period has ended.
    /// Call until it returns `None`.
    pub fn flush(&mut self) -> Option<MissLine> {
        if let Some(line) = self.pending.take().and_then(Tally::summary) {
            return Some(line);
        }
        self.open.take().and_then(Tally::summary)
    }

    /// Every miss counted so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Moves the open period to `pending` (merging when `tick` was not called in between).
    fn close(&mut self) {
        let Some(open) = self.open.take() else { return };
        self.pending = Some(match self.pending {
            Some(p) => Tally {
                start: p.start,
                end: open.end,
                count: p.count + open.count,
            },
            None => open,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> MonoTime {
        MonoTime::from_nanos(ms * 1_000_000)
    }

    fn miss(log: &mut MissLog, t: u64, seq: u64) -> Option<MissLine> {
        log.on_miss(
            at_ms(t),
            seq,
            Duration::from_millis(20),
            Duration::from_millis(3),
        )
    }

    /// Runs a 1 ms frame clock for `until_ms`, missing every frame `missed` selects, ticking on
    /// every frame; returns the lines with the time they were emitted.
    fn simulate(missed: impl Fn(u64) -> bool, until_ms: u64) -> (Vec<(u64, MissLine)>, u64) {
        let mut log = MissLog::new();
        let mut lines = Vec::new();
        let mut misses = 0;
        for t in 0..until_ms {
            if missed(t) {
                misses += 1;
                lines.extend(miss(&mut log, t, t + 1).map(|l| (t, l)));
            }
            lines.extend(log.tick(at_ms(t)).map(|l| (t, l)));
        }
        while let Some(l) = log.flush() {
            lines.push((until_ms, l));
        }
        assert_eq!(log.total(), misses);
        (lines, misses)
    }

    fn accounted(lines: &[(u64, MissLine)]) -> u64 {
        let detailed = lines
            .iter()
            .filter(|(_, l)| matches!(l, MissLine::Detailed { .. }))
            .count() as u64;
        let summaries: Vec<u64> = lines
            .iter()
            .filter_map(|(_, l)| match l {
                MissLine::Summary { count, .. } => Some(*count),
                _ => None,
            })
            .collect();
        // Each summary's count includes its period's detailed miss.
        detailed - summaries.len() as u64 + summaries.iter().sum::<u64>()
    }

    #[test]
    fn a_thousand_misses_in_three_seconds_give_two_lines_per_second() {
        // Misses at 0, 3, 6, ..., 2997 ms: periods open at 0, 1002 and 2004 ms and hold
        // 334 (0..=999), 334 (1002..=2001) and 332 (2004..=2997) misses.
        let (lines, misses) = simulate(|t| t % 3 == 0 && t < 3000, 5000);
        assert_eq!(misses, 1000);
        let at_and_count: Vec<(u64, Option<u64>)> = lines
            .iter()
            .map(|(t, l)| match l {
                MissLine::Detailed { .. } => (*t, None),
                MissLine::Summary { count, .. } => (*t, Some(*count)),
            })
            .collect();
        assert_eq!(
            at_and_count,
            [
                (0, None),
                (1000, Some(334)),
                (1002, None),
                (2002, Some(334)),
                (2004, None),
                (3004, Some(332))
            ]
        );
        assert_eq!(accounted(&lines), 1000);
    }

    #[test]
    fn never_more_than_two_lines_in_any_second() {
        // Every frame misses for 10 s, then a stutter pattern.
        let until = 20_000;
        let (lines, misses) = simulate(|t| t < 10_000 || (t % 7 == 0 && t % 1500 < 400), until);
        // The shutdown flush (stamped `until`) may come early; the limit holds before it.
        let running: Vec<u64> = lines
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t < until)
            .collect();
        for t in &running {
            let in_second = running
                .iter()
                .filter(|u| **u >= *t && **u < t + 1000)
                .count();
            assert!(
                in_second <= 2,
                "{in_second} lines in the second from {t} ms: {lines:?}"
            );
        }
        assert_eq!(accounted(&lines), misses);
    }

    #[test]
    fn a_lone_miss_gets_no_summary() {
        let mut log = MissLog::new();
        assert!(matches!(
            miss(&mut log, 10, 5),
            Some(MissLine::Detailed { seq: 5, .. })
        ));
        assert_eq!(log.tick(at_ms(500)), None);
        assert_eq!(log.tick(at_ms(1500)), None);
        assert_eq!(log.flush(), None);
    }

    #[test]
    fn a_summary_missed_by_tick_is_not_lost() {
        let mut log = MissLog::new();
        miss(&mut log, 0, 1);
        miss(&mut log, 100, 2);
        // No tick between the periods: the next period's miss opens it and queues the summary.
        assert!(matches!(
            miss(&mut log, 1500, 3),
            Some(MissLine::Detailed { seq: 3, .. })
        ));
        let period = Duration::from_secs(1);
        assert_eq!(
            log.tick(at_ms(1501)),
            Some(MissLine::Summary { count: 2, period })
        );
        miss(&mut log, 1600, 4);
        assert_eq!(log.flush(), Some(MissLine::Summary { count: 2, period }));
        assert_eq!(log.flush(), None);
    }

    #[test]
    fn lines_read_well() {
        let d = MissLine::Detailed {
            seq: 42,
            latency: Duration::from_micros(19_250),
            overshoot: Duration::from_micros(2_580),
        };
        assert_eq!(
            d.to_string(),
            "deadline missed: frame 42 took 19.25 ms, 2.58 ms over budget"
        );
        let s = MissLine::Summary {
            count: 59,
            period: Duration::from_secs(1),
        };
        assert!(
            s.to_string()
                .starts_with("deadline missed 59 times in 1.0 s"),
            "{s}"
        );
    }
}
