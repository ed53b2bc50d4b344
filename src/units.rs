//! User numbers → `Duration`s and frame rates, checked once.
//!
//! `Duration::from_secs_f64` panics on NaN, infinities, negatives and anything past ~1.8e19 s, and
//! `1.0 / fps` turns a tiny but positive rate into such a number. Every float a user writes (a
//! config key, a URI's `?fps=`, `synthetic://WxH@FPS`, `--duration`, a reloaded file) becomes a
//! time or a rate here, through a range check that says which range, so a hostile value is a clear
//! error (exit 2 at start, "logged and changes nothing" on SIGHUP) and never a panic. The periods
//! computed later from checked rates ([`period`]) cannot fail either.

use std::time::Duration;

/// The slowest frame rate anything accepts: one frame per 1000 s.
pub const MIN_FPS: f64 = 0.001;
/// The longest time any key accepts (about 31.7 years): far from `Duration`'s limit.
pub const MAX_SECONDS: f64 = 1e9;

/// A number as a user reads it: `60`, `0.5`, `1e300`, `1e-20` (plain notation prints 1e300 with
/// three hundred digits).
pub fn show(v: f64) -> String {
    if v == 0.0 || (1e-4..1e16).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// A user float as a time in seconds within `(lo, hi]` (`lo` = 0 excludes zero); `what` names the
/// unit in the message (`s`, `ms`).
fn checked(value: f64, scale: f64, lo: f64, hi: f64, unit: &str) -> Result<Duration, String> {
    if !value.is_finite() {
        return Err(format!("{} is not a number of {unit}", show(value)));
    }
    if !(value > lo && value <= hi) {
        return Err(format!(
            "{} is not in ({}, {}] {unit}",
            show(value),
            show(lo),
            show(hi)
        ));
    }
    // In range, so the product is at most MAX_SECONDS: `try_` only guards the arithmetic.
    Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("{} is not a time in {unit}", show(value)))
}

/// Seconds within `(lo, hi]`, `hi` at most [`MAX_SECONDS`].
pub fn seconds(value: f64, lo: f64, hi: f64) -> Result<Duration, String> {
    checked(value, 1.0, lo, hi.min(MAX_SECONDS), "s")
}

/// Milliseconds within `(lo, hi]`, `hi` at most [`MAX_SECONDS`] × 1000.
pub fn millis(value: f64, lo: f64, hi: f64) -> Result<Duration, String> {
    checked(value, 1e-3, lo, hi.min(MAX_SECONDS * 1e3), "ms")
}

/// Seconds within `[0, hi]`: zero allowed (a measurement that may be off).
pub fn seconds_or_zero(value: f64, hi: f64) -> Result<Duration, String> {
    if value == 0.0 {
        return Ok(Duration::ZERO);
    }
    checked(value, 1.0, 0.0, hi.min(MAX_SECONDS), "s").map_err(|_| {
        format!(
            "{} is not in [0, {}] s",
            show(value),
            show(hi.min(MAX_SECONDS))
        )
    })
}

/// A frame rate within `[MIN_FPS, max]`.
pub fn rate(value: f64, max: f64) -> Result<f64, String> {
    if value.is_finite() && (MIN_FPS..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{} is not a frame rate in [{MIN_FPS}, {}]",
            show(value),
            show(max)
        ))
    }
}

/// The period of a rate. Total: a rate that did not come through [`rate`] (a Y4M header's, a
/// driver's) still gives a `Duration`, clamped to `[1 ns, MAX_SECONDS]`, never a panic.
pub fn period(fps: f64) -> Duration {
    let secs = 1.0 / fps;
    if secs.is_nan() || secs > MAX_SECONDS {
        return Duration::from_secs_f64(MAX_SECONDS);
    }
    Duration::try_from_secs_f64(secs)
        .unwrap_or(Duration::ZERO)
        .max(Duration::from_nanos(1))
}

/// The period of a rate in nanoseconds as a float (the pacer's fractional schedule), with the
/// same clamp as [`period`].
pub fn period_ns(fps: f64) -> f64 {
    let ns = 1e9 / fps;
    if ns.is_nan() || ns > MAX_SECONDS * 1e9 {
        MAX_SECONDS * 1e9
    } else {
        ns.max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_reproduced_values_are_errors_not_panics() {
        // Issue 18 items 1-2: duration_s = 1e20 and 1e300, ?fps=1e-30, @1e-300, run.fps = 1e-20.
        assert!(seconds(1e20, 0.0, f64::MAX).is_err());
        assert!(seconds(1e300, 0.0, f64::MAX).is_err());
        assert!(rate(1e-30, 1000.0).is_err());
        assert!(rate(1e-300, 1000.0).is_err());
        assert!(rate(1e-20, 10_000.0).is_err());
        assert_eq!(period(1e-20), Duration::from_secs_f64(MAX_SECONDS));
        assert!(seconds(f64::NAN, 0.0, 10.0).unwrap_err().contains("NaN"));
        assert!(millis(-1.0, 0.0, 10.0).unwrap_err().contains("(0, 10] ms"));
        assert_eq!(seconds(2.5, 0.0, 10.0), Ok(Duration::from_millis(2500)));
        assert_eq!(millis(16.0, 0.0, 100.0), Ok(Duration::from_millis(16)));
        assert_eq!(seconds_or_zero(0.0, 5.0), Ok(Duration::ZERO));
        assert!(seconds_or_zero(-0.5, 5.0).is_err());
    }

    proptest! {
        #[test]
        fn seconds_never_panics_and_stays_in_range(v in any::<f64>(), hi in any::<f64>()) {
            if let Ok(d) = seconds(v, 0.0, hi) {
                prop_assert!(d.as_secs_f64() <= MAX_SECONDS * (1.0 + 1e-12));
                prop_assert!(v > 0.0 && v <= hi);
            }
        }

        #[test]
        fn millis_never_panics(v in any::<f64>(), lo in any::<f64>(), hi in any::<f64>()) {
            let _ = millis(v, lo, hi);
            let _ = seconds_or_zero(v, hi);
        }

        #[test]
        fn a_checked_rate_has_a_positive_period(v in any::<f64>()) {
            if let Ok(f) = rate(v, 10_000.0) {
                let p = period(f);
                prop_assert!(p > Duration::ZERO);
                prop_assert!(p.as_secs_f64() <= 1.0 / MIN_FPS * (1.0 + 1e-9));
                prop_assert!((p.as_secs_f64() * f - 1.0).abs() < 1e-6);
            }
        }

        #[test]
        fn period_is_total(v in any::<f64>()) {
            let p = period(v);
            prop_assert!(p >= Duration::from_nanos(1));
            prop_assert!(p <= Duration::from_secs_f64(MAX_SECONDS));
            let ns = period_ns(v);
            prop_assert!(ns.is_finite() && ns >= 1.0);
        }
    }
}
