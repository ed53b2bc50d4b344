//! ONNX Runtime's own log lines, through our logger and rate-limited.
//!
//! Left to itself ONNX Runtime prints ANSI-coloured lines straight to stderr: every cancelled run
//! (`realtime.cancel_after_ms`) printed an ERROR line, 148 in 7 s, past our level, our format,
//! journald's priorities and our rate limits. The environment is created with a custom logger
//! (ort's `with_logger`, the C API's `CreateEnvWithCustomLogger`) that hands each line to `log`
//! under the target `rtinfer::onnxruntime`, at most [`BURST`] lines per second; the lines held
//! back are counted and said in one line when the next second's first line is let through.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ort::logging::LogLevel;

/// Lines let through per window.
pub const BURST: u32 = 2;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Lines let through per window, and how many were held back.
#[derive(Debug)]
pub struct Limiter {
    window_start: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

impl Limiter {
    pub const fn new() -> Limiter {
        Limiter {
            window_start: None,
            passed: 0,
            suppressed: 0,
        }
    }

    /// Whether a line at `now` may be logged; with it, the count held back since the last line
    /// let through (to be said once).
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .window_start
            .is_none_or(|s| now.duration_since(s) >= WINDOW)
        {
            self.window_start = Some(now);
            self.passed = 0;
        }
        if self.passed >= BURST {
            self.suppressed += 1;
            return None;
        }
        self.passed += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

static LIMITER: Mutex<Limiter> = Mutex::new(Limiter::new());

/// The logger handed to ONNX Runtime's environment.
pub fn logger() -> ort::logging::LoggerFunction {
    std::sync::Arc::new(
        |level: LogLevel, category: &str, _id: &str, location: &str, message: &str| {
            let level = match level {
                LogLevel::Verbose => log::Level::Trace,
                LogLevel::Info => log::Level::Debug,
                LogLevel::Warning => log::Level::Warn,
                LogLevel::Error | LogLevel::Fatal => log::Level::Error,
            };
            if !log::log_enabled!(target: "rtinfer::onnxruntime", level) {
                return;
            }
            let admitted = LIMITER
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .admit(Instant::now());
            let Some(held_back) = admitted else {
                return;
            };
            let more = if held_back > 0 {
                format!(" ({held_back} lines held back before this one)")
            } else {
                String::new()
            };
            log::log!(target: "rtinfer::onnxruntime", level, "{category} {location}: {}{more}", message.trim());
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_passes_a_burst_per_window_and_counts_the_rest() {
        let mut l = Limiter::new();
        let t0 = Instant::now();
        let passed: Vec<_> = (0..148)
            .filter_map(|i| l.admit(t0 + Duration::from_micros(i)))
            .collect();
        assert_eq!(passed, vec![0, 0], "two lines in the first second");
        assert_eq!(
            l.admit(t0 + WINDOW),
            Some(146),
            "the next one says what was held back"
        );
        assert_eq!(l.admit(t0 + WINDOW), Some(0));
        assert_eq!(l.admit(t0 + WINDOW), None);
    }
}
