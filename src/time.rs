//! One clock for every frame timestamp.
//!
//! V4L2 drivers stamp buffers with CLOCK_MONOTONIC, so every time the loop compares (capture,
//! result ready, deadlines, pacing) is a [`MonoTime`] read from that same clock: a driver
//! timestamp and our own reading subtract directly. Wall-clock time appears only in reports
//! (`at` fields), formatted by [`rfc3339_now`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::time::TimeSpec;
use nix::time::{ClockId, ClockNanosleepFlags, clock_gettime, clock_nanosleep};

/// Nanoseconds of CLOCK_MONOTONIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonoTime(u64);

impl MonoTime {
    /// The current CLOCK_MONOTONIC reading.
    pub fn now() -> MonoTime {
        // CLOCK_MONOTONIC cannot fail on Linux; a zero reading would only make one frame look old.
        let ts = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap_or_else(|_| TimeSpec::new(0, 0));
        MonoTime::from_timespec(ts.tv_sec() as i64, ts.tv_nsec() as i64)
    }

    /// From a `timespec`/`timeval`-style pair (V4L2 buffer timestamps are CLOCK_MONOTONIC).
    pub fn from_timespec(sec: i64, nsec: i64) -> MonoTime {
        let ns =
            (sec.max(0) as u64).saturating_mul(1_000_000_000) + nsec.clamp(0, 999_999_999) as u64;
        MonoTime(ns)
    }

    pub fn from_nanos(ns: u64) -> MonoTime {
        MonoTime(ns)
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self - earlier`, zero when `earlier` is later.
    pub fn saturating_since(self, earlier: MonoTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    pub fn plus(self, d: Duration) -> MonoTime {
        MonoTime(
            self.0
                .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        )
    }

    /// Sleeps until this time is reached (no-op when it already passed). Absolute deadlines keep a
    /// paced source from drifting: each sleep targets `start + n * period`, not `now + period`,
    /// and the kernel sleeps to the deadline itself (`TIMER_ABSTIME`), so a preemption between
    /// reading the clock and going to sleep does not push the wake-up later.
    pub fn sleep_until(self) {
        let at = TimeSpec::new(
            (self.0 / 1_000_000_000) as libc::time_t,
            (self.0 % 1_000_000_000) as libc::c_long,
        );
        // EINTR (a signal handler ran) sleeps again; any other error falls back to a relative sleep.
        loop {
            match clock_nanosleep(
                ClockId::CLOCK_MONOTONIC,
                ClockNanosleepFlags::TIMER_ABSTIME,
                &at,
            ) {
                Ok(_) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => {
                    let now = MonoTime::now();
                    if self > now {
                        std::thread::sleep(self.saturating_since(now));
                    }
                    return;
                }
            }
        }
    }
}

/// Milliseconds as f64 from a duration, the unit of every report.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The current UTC time as RFC 3339 with millisecond precision, e.g. `2026-11-29T03:31:17.123Z`.
pub fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

/// RFC 3339 UTC rendering of a wall-clock time.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's civil_from_days algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_250); // 2000-02-29
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.250Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_923_077); // 2026-11-29T03:31:17Z
        assert_eq!(rfc3339(t), "2026-11-29T03:31:17.000Z");
    }

    #[test]
    fn monotonic_and_timespec() {
        let a = MonoTime::now();
        let b = MonoTime::now();
        assert!(b >= a);
        assert_eq!(MonoTime::from_timespec(2, 5).as_nanos(), 2_000_000_005);
        assert_eq!(
            a.saturating_since(b.plus(Duration::from_secs(1))),
            Duration::ZERO
        );
    }

    #[test]
    fn sleep_until_never_wakes_early_and_a_past_time_returns_at_once() {
        for ms in [1u64, 7, 20] {
            let at = MonoTime::now().plus(Duration::from_millis(ms));
            at.sleep_until();
            assert!(MonoTime::now() >= at, "woke before {ms} ms");
        }
        let t = std::time::Instant::now();
        MonoTime::from_nanos(1).sleep_until();
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
