//! The sd_notify protocol, spoken directly: one datagram per message to `$NOTIFY_SOCKET`.
//!
//! `READY=1` once the daemon serves (running, or waiting with its socket up), `STATUS=` lines,
//! `RELOADING=1`/`READY=1` around a reload, `STOPPING=1`, `EXTEND_TIMEOUT_USEC=` while a start-up
//! load runs long, and the watchdog. The watchdog is fed by a notifier thread only while the
//! pipeline's heartbeat advances: a pipeline stuck inside an inference, or deadlocked, stops the
//! pings and systemd restarts the service; a camera unplug does not (waiting for a frame with a
//! timeout still beats the heart). The pipeline thread itself never touches the socket.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// A connection to the service manager, or nothing when not run by systemd.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, Target)>,
}

#[derive(Debug, Clone)]
enum Target {
    Path(PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`; without it every call is a no-op.
    pub fn from_env() -> Notifier {
        let Some(addr) = std::env::var_os("NOTIFY_SOCKET").filter(|a| !a.is_empty()) else {
            return Notifier { socket: None };
        };
        let bytes = addr.as_encoded_bytes();
        let target = if let Some(name) = bytes.strip_prefix(b"@") {
            Target::Abstract(name.to_vec())
        } else {
            Target::Path(PathBuf::from(addr))
        };
        match UnixDatagram::unbound() {
            Ok(s) => Notifier {
                socket: Some((s, target)),
            },
            Err(e) => {
                log::warn!("cannot create the sd_notify socket: {e}");
                Notifier { socket: None }
            }
        }
    }

    /// Whether a service manager listens.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends one message (`KEY=VALUE` lines). Failures are logged at debug: the manager may be gone.
    pub fn send(&self, msg: &str) {
        let Some((sock, target)) = &self.socket else {
            return;
        };
        let r = match target {
            Target::Path(p) => sock.send_to(msg.as_bytes(), p),
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
            }
        };
        if let Err(e) = r {
            log::debug!("sd_notify {msg:?}: {e}");
        }
    }
}

/// The watchdog period systemd asked for (`$WATCHDOG_USEC`, for this process per `$WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        && pid != std::process::id()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Sends `WATCHDOG=1` every half period while `heartbeat` has moved since the last ping, and a
/// `STATUS=` line from `status` every `status_every`. Returns when `stop` is set.
pub fn watchdog_loop(
    notifier: &Notifier,
    heartbeat: &AtomicU64,
    period: Option<Duration>,
    status_every: Duration,
    status: &dyn Fn() -> String,
    stop: &AtomicBool,
) {
    let tick = Duration::from_millis(50);
    let ping_every = period.map(|p| p / 2);
    let mut last_beat = heartbeat.load(Ordering::Relaxed);
    let mut since_ping = Duration::ZERO;
    let mut since_status = status_every;
    let mut stuck_said = false;
    while !stop.load(Ordering::Relaxed) {
        if since_status >= status_every {
            notifier.send(&format!("STATUS={}", status()));
            since_status = Duration::ZERO;
        }
        if let Some(every) = ping_every
            && since_ping >= every
        {
            let beat = heartbeat.load(Ordering::Relaxed);
            if beat != last_beat {
                notifier.send("WATCHDOG=1");
                stuck_said = false;
            } else if !stuck_said {
                log::error!(
                    "the pipeline loop has not advanced for {every:?}: withholding the watchdog ping"
                );
                stuck_said = true;
            }
            last_beat = beat;
            since_ping = Duration::ZERO;
        }
        std::thread::sleep(tick);
        since_ping += tick;
        since_status += tick;
    }
}

/// While a long start-up step runs (a TensorRT engine build), keeps asking systemd for more time.
pub struct ExtendTimeout {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ExtendTimeout {
    /// Sends `EXTEND_TIMEOUT_USEC=` for `each` every `each / 3` until dropped.
    pub fn start(notifier: Arc<Notifier>, each: Duration) -> ExtendTimeout {
        let stop = Arc::new(AtomicBool::new(false));
        if !notifier.enabled() {
            return ExtendTimeout { stop, thread: None };
        }
        let s = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("rtinfer-extend".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    notifier.send(&format!("EXTEND_TIMEOUT_USEC={}", each.as_micros()));
                    let mut slept = Duration::ZERO;
                    while slept < each / 3 && !s.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                        slept += Duration::from_millis(50);
                    }
                }
            })
            .ok();
        ExtendTimeout { stop, thread }
    }
}

impl Drop for ExtendTimeout {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_socket_exactly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            socket: Some((UnixDatagram::unbound().expect("sock"), Target::Path(path))),
        };
        n.send("READY=1\nSTATUS=ok");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=ok");
    }

    #[test]
    fn watchdog_pings_only_while_the_heartbeat_moves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        server
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let n = Arc::new(Notifier {
            socket: Some((UnixDatagram::unbound().expect("sock"), Target::Path(path))),
        });
        let beat = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n2, b2, s2) = (Arc::clone(&n), Arc::clone(&beat), Arc::clone(&stop));
        let h = std::thread::spawn(move || {
            watchdog_loop(
                &n2,
                &b2,
                Some(Duration::from_millis(200)),
                Duration::from_secs(3600),
                &|| "x".into(),
                &s2,
            )
        });
        let count = |ms: u64, beating: bool| {
            let end = std::time::Instant::now() + Duration::from_millis(ms);
            let mut pings = 0;
            let mut buf = [0u8; 64];
            while std::time::Instant::now() < end {
                if beating {
                    beat.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(len) = server.recv(&mut buf)
                    && &buf[..len] == b"WATCHDOG=1"
                {
                    pings += 1;
                }
            }
            pings
        };
        let alive = count(1000, true);
        let stuck = count(1000, false);
        stop.store(true, Ordering::Relaxed);
        h.join().expect("joins");
        assert!(
            alive >= 5,
            "about one ping per 100 ms while alive, got {alive}"
        );
        assert!(
            stuck <= 1,
            "no pings while stuck (one may be in flight), got {stuck}"
        );
    }
}
