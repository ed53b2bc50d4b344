//! The hard deadline: a thread that cancels an inference still running past
//! `realtime.cancel_after_ms`.
//!
//! The pipeline thread cannot interrupt its own blocking `run`, so a second thread watches the
//! clock. Per frame the pipeline thread only arms and disarms (a lock held for a few stores and a
//! condvar notify, no allocation); the watchdog sleeps until the armed deadline and, if the same
//! run is still armed, calls the engine's [`Canceller`]. Disarming reports whether the watchdog
//! fired for this run, so the pipeline re-arms the engine (`reset`, ONNX Runtime's
//! `unterminate`) even when the cancel raced with a run that had just finished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::backend::Canceller;
use crate::time::MonoTime;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Armed {
    Idle,
    /// A run must finish by this time.
    Until(MonoTime),
    /// The watchdog cancelled the current run.
    Fired,
}

struct Inner {
    armed: Armed,
    canceller: Option<Arc<dyn Canceller>>,
}

/// Shared between the pipeline thread and the watchdog thread.
pub struct Watchdog {
    pub cancel_after: Duration,
    inner: Mutex<Inner>,
    cv: Condvar,
    stop: AtomicBool,
}

/// How long the idle watchdog sleeps before looking at `stop` again.
const IDLE_TICK: Duration = Duration::from_millis(100);

impl Watchdog {
    pub fn new(cancel_after: Duration) -> Watchdog {
        Watchdog {
            cancel_after,
            inner: Mutex::new(Inner {
                armed: Armed::Idle,
                canceller: None,
            }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the engine to cancel (on a model swap; `None` for engines that cannot cancel).
    pub fn set_canceller(&self, c: Option<Arc<dyn Canceller>>) {
        let mut g = self.lock();
        g.canceller = c;
        g.armed = Armed::Idle;
    }

    /// Whether the current engine can be cancelled.
    pub fn can_cancel(&self) -> bool {
        self.lock().canceller.is_some()
    }

    /// Before a run: it must be done by `deadline`.
    pub fn arm(&self, deadline: MonoTime) {
        let mut g = self.lock();
        if g.canceller.is_none() {
            return;
        }
        g.armed = Armed::Until(deadline);
        drop(g);
        self.cv.notify_one();
    }

    /// After a run: returns whether the watchdog cancelled it (the engine then needs a reset).
    pub fn disarm(&self) -> bool {
        let mut g = self.lock();
        let fired = g.armed == Armed::Fired;
        g.armed = Armed::Idle;
        if fired && let Some(c) = &g.canceller {
            c.reset();
        }
        fired
    }

    /// Ends [`Watchdog::run`].
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cv.notify_all();
    }

    /// The watchdog thread's body.
    pub fn run(&self) {
        let mut g = self.lock();
        while !self.stop.load(Ordering::SeqCst) {
            let wait = match g.armed {
                Armed::Until(deadline) => {
                    let now = MonoTime::now();
                    if now >= deadline {
                        if let Some(c) = &g.canceller {
                            c.cancel();
                        }
                        g.armed = Armed::Fired;
                        IDLE_TICK
                    } else {
                        deadline.saturating_since(now)
                    }
                }
                Armed::Idle | Armed::Fired => IDLE_TICK,
            };
            g = self
                .cv
                .wait_timeout(g, wait)
                .map_or_else(|p| p.into_inner().0, |r| r.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[derive(Default)]
    struct Count {
        cancels: AtomicU32,
        resets: AtomicU32,
    }
    impl Canceller for Count {
        fn cancel(&self) {
            self.cancels.fetch_add(1, Ordering::SeqCst);
        }
        fn reset(&self) {
            self.resets.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn fires_once_past_the_deadline_and_resets_on_disarm() {
        let w = Arc::new(Watchdog::new(Duration::from_millis(5)));
        let c = Arc::new(Count::default());
        w.set_canceller(Some(c.clone()));
        let t = std::thread::spawn({
            let w = Arc::clone(&w);
            move || w.run()
        });
        // A run that finishes in time: no cancel.
        w.arm(MonoTime::now().plus(Duration::from_secs(10)));
        assert!(!w.disarm());
        // A run that overruns: exactly one cancel, and the disarm resets the engine.
        w.arm(MonoTime::now().plus(Duration::from_millis(5)));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(c.cancels.load(Ordering::SeqCst), 1);
        assert!(w.disarm());
        assert_eq!(c.resets.load(Ordering::SeqCst), 1);
        w.stop();
        t.join().expect("watchdog thread");
    }

    #[test]
    fn without_a_canceller_nothing_is_armed() {
        let w = Watchdog::new(Duration::from_millis(1));
        w.arm(MonoTime::now());
        assert!(!w.can_cancel());
        assert!(!w.disarm());
    }
}
