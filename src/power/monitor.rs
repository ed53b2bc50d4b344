//! The meter thread: connect, read, reconnect; never seen by the pipeline.
//!
//! A meter absent at start or unplugged mid-run must not stop inference, so every failure here
//! only flips `connected` and schedules a retry (1 s, doubling to 30 s; back to 1 s once the
//! meter delivers a sample). Bad frames are counted
//! and logged at debug level; state changes (connected, lost, first failure to connect) are
//! logged once each. Readers take the stats lock only to copy figures out.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::stats::{LifetimeFigures, PowerFigures, PowerSnapshot, PowerStats, Sample};
use super::{IdleSetting, Meter, PowerOptions};
use crate::stats::DEFAULT_WINDOW;
use crate::time::MonoTime;

/// First retry after a failure; doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Extra time the idle measurement waits for a meter that is still connecting.
const IDLE_GRACE: Duration = Duration::from_secs(2);
/// Longest sleep between checks of the stop flag.
const TICK: Duration = Duration::from_millis(50);

struct Inner {
    stats: Mutex<PowerStats>,
    connected: AtomicBool,
    stop: AtomicBool,
}

/// A running meter thread and its figures.
pub struct PowerMonitor {
    opts: PowerOptions,
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl PowerMonitor {
    /// Starts the meter thread (it connects in the background).
    pub fn start(opts: PowerOptions) -> io::Result<PowerMonitor> {
        let inner = Arc::new(Inner {
            stats: Mutex::new(PowerStats::new(DEFAULT_WINDOW)),
            connected: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::Builder::new()
            .name("rtinfer-power".into())
            .spawn({
                let inner = Arc::clone(&inner);
                let opts = opts.clone();
                move || run(&opts, &inner)
            })?;
        log::info!("power meter {}", opts.uri);
        Ok(PowerMonitor {
            opts,
            inner,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn uri(&self) -> &str {
        &self.opts.uri
    }

    pub fn connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    fn stats(&self) -> MutexGuard<'_, PowerStats> {
        self.inner.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Establishes the idle figure before the first model runs: `power.idle_watts` if given,
    /// else the mean over `power.idle_seconds` of samples (blocking that long, plus a short
    /// grace for a meter still connecting). `None` when nothing was measured.
    pub fn measure_idle(&self) -> Option<f64> {
        let d = match self.opts.idle {
            IdleSetting::Given(w) => {
                self.stats().set_idle(w);
                return Some(w);
            }
            IdleSetting::Measure(d) if d.is_zero() => return None,
            IdleSetting::Measure(d) => d,
        };
        let start = MonoTime::now();
        self.stats().begin_idle();
        let deadline = start.plus(d + IDLE_GRACE);
        while MonoTime::now() < deadline && self.stats().idle_span() < d {
            std::thread::sleep(TICK);
        }
        let span = self.stats().idle_span();
        let idle = self.stats().end_idle();
        match idle {
            Some(w) => log::info!(
                "idle power {w:.3} W (mean over {:.1} s before the first model run)",
                span.as_secs_f64()
            ),
            None => log::warn!(
                "idle power not measured: meter {} gave no samples in {:.1} s (set power.idle_watts)",
                self.opts.uri,
                MonoTime::now().saturating_since(start).as_secs_f64()
            ),
        }
        idle
    }

    /// The `/status` `power` object: the window ending `now`; `fps` is the processed rate over
    /// the same window.
    pub fn snapshot(&self, now: MonoTime, fps: Option<f64>) -> PowerSnapshot {
        let connected = self.connected();
        self.stats().snapshot(&self.opts.uri, connected, now, fps)
    }

    /// Figures over `(from, to]` (for `rtinfer bench`: mark the start of a model's run, then ask
    /// with its processed fps). Covers at most the ring's last [`super::stats::RING_CAPACITY`]
    /// samples.
    pub fn figures(&self, from: MonoTime, to: MonoTime, fps: Option<f64>) -> PowerFigures {
        self.stats().figures(from, to, fps)
    }

    pub fn lifetime(&self) -> LifetimeFigures {
        self.stats().lifetime()
    }

    /// One line for the final summary; `frames` is the processed count since start.
    pub fn summary_line(&self, frames: u64) -> String {
        let l = self.lifetime();
        let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        let jpf = (frames > 0 && l.energy_j > 0.0).then(|| l.energy_j / frames as f64);
        format!(
            "power ({}): idle {} W, mean {} W, peak {} W, dynamic {} W, energy {:.3} J ({} J/frame), bad frames {}",
            self.opts.uri,
            f(l.idle_watts),
            f(l.mean_watts),
            f(l.peak_watts),
            f(l.peak_watts.zip(l.idle_watts).map(|(p, i)| p - i)),
            l.energy_j,
            f(jpf),
            l.bad_frames,
        )
    }

    /// Stops and joins the meter thread (also done on drop).
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for PowerMonitor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sleeps until `until`, waking every tick to notice `stop`; false when stopping.
fn sleep_until(inner: &Inner, until: MonoTime) -> bool {
    loop {
        if inner.stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = MonoTime::now();
        if now >= until {
            return true;
        }
        std::thread::sleep(until.saturating_since(now).min(TICK));
    }
}

fn run(opts: &PowerOptions, inner: &Inner) {
    let uri = &opts.uri;
    let interval = opts.interval();
    let mut backoff = BACKOFF_MIN;
    let mut meter: Option<Box<dyn Meter>> = None;
    let mut warned = false;
    let stats = || inner.stats.lock().unwrap_or_else(|p| p.into_inner());
    while !inner.stop.load(Ordering::Relaxed) {
        let Some(m) = meter.as_mut() else {
            match opts.open() {
                Ok(m) => {
                    // Connected once it delivers: a command that exits at once, or a device
                    // that opens and then fails, never shows as connected.
                    log::debug!("meter {uri}: opened");
                    meter = Some(m);
                }
                Err(e) => {
                    if warned {
                        log::debug!("meter {uri}: {e}; next try in {backoff:?}");
                    } else {
                        log::warn!("meter {uri}: {e}; retrying (1 s doubling to 30 s)");
                        warned = true;
                    }
                    if !sleep_until(inner, MonoTime::now().plus(backoff)) {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            continue;
        };
        let t0 = MonoTime::now();
        match m.read() {
            Ok(Some(r)) => {
                if !inner.connected.swap(true, Ordering::Relaxed) {
                    log::info!("meter {uri}: connected");
                    warned = false;
                }
                stats().record(Sample {
                    at: MonoTime::now(),
                    watts: r.watts,
                    volts: r.volts,
                    amps: r.amps,
                });
                // Only a meter that delivers resets the backoff: a command that exits at once,
                // or a device that opens and then fails, keeps backing off to 30 s.
                backoff = BACKOFF_MIN;
            }
            Ok(None) => {}
            Err(e) if e.is_bad_frame() => {
                let n = {
                    let mut s = stats();
                    s.bad_frames += 1;
                    s.bad_frames
                };
                log::debug!("meter {uri}: {e} (bad frames: {n})");
            }
            Err(e) => {
                if inner.connected.swap(false, Ordering::Relaxed) {
                    log::warn!("meter {uri}: {e}; reconnecting (inference unaffected)");
                } else if warned {
                    log::debug!("meter {uri}: {e}; next try in {backoff:?}");
                } else {
                    log::warn!("meter {uri}: {e}; retrying (1 s doubling to 30 s)");
                }
                meter = None;
                stats().break_continuity();
                warned = true;
                if !sleep_until(inner, MonoTime::now().plus(backoff)) {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        }
        if !sleep_until(inner, t0.plus(interval)) {
            break;
        }
    }
    inner.connected.store(false, Ordering::Relaxed);
}

/// For `daemon::start`: starts the configured meter (if any) and establishes idle before the
/// first model is loaded.
pub fn start_with_idle(opts: Option<&PowerOptions>) -> io::Result<Option<PowerMonitor>> {
    let Some(opts) = opts else {
        return Ok(None);
    };
    let m = PowerMonitor::start(opts.clone())?;
    m.measure_idle();
    Ok(Some(m))
}
