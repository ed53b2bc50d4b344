//! Rate-limited logging for the status server: a hostile or broken peer can repeat the same
//! failure thousands of times a second, and the journal must not pay for it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Minimum interval between two log lines of the same failure kind.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// At most one log line per failure kind per [`LOG_INTERVAL`], with a count of the lines held
/// back.
#[derive(Default)]
pub struct RateLimitedLog {
    kinds: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl RateLimitedLog {
    pub fn log(&self, level: log::Level, kind: &'static str, msg: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        let suppressed = {
            let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
            match kinds.get_mut(kind) {
                Some((last, held)) if now.duration_since(*last) < LOG_INTERVAL => {
                    *held += 1;
                    return;
                }
                Some((last, held)) => {
                    *last = now;
                    std::mem::take(held)
                }
                None => {
                    kinds.insert(kind, (now, 0));
                    0
                }
            }
        };
        if suppressed > 0 {
            log::log!(target: "rtinfer::status::server", level, "{msg} ({suppressed} similar suppressed)");
        } else {
            log::log!(target: "rtinfer::status::server", level, "{msg}");
        }
    }
}

impl std::fmt::Debug for RateLimitedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimitedLog")
    }
}
