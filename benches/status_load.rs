//! Load on a running daemon's status socket (figures printed, nothing asserted); driven by
//! `scripts/bench_status.sh`, which starts the daemon. Three phases, one run:
//!
//! 1. throughput: 50 clients request `/status` back to back for `SECS` seconds: answers/s,
//!    codes, connection errors, latency p50/p99;
//! 2. slowloris: 8 connections dribble a header byte every 100 ms (reopened whenever the server
//!    drops them) while 4 honest clients poll `/status` every 20 ms: the honest clients' p50/p99
//!    and the slow connections' drops;
//! 3. pollers: `/status` p99 of the pipeline (`latency_ms.end_to_end.p99`, a 10 s window) and
//!    the misses over 20 s of quiet, then over 20 s of 50 clients each polling `/status` and
//!    `/metrics` every 100 ms; errors seen by the pollers.
//!
//! Usage: `cargo bench --bench status_load -- SOCKET [SECS]`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request on a fresh connection: (status code, latency) or the I/O error.
fn request(sock: &Path, path: &str) -> Result<(u16, Duration, Vec<u8>), String> {
    let t0 = Instant::now();
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    let code = std::str::from_utf8(out.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {} bytes", out.len()))?;
    Ok((code, t0.elapsed(), out))
}

#[derive(Default)]
struct Tally {
    codes: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, r: Result<(u16, Duration, Vec<u8>), String>) {
        match r {
            Ok((code, lat, _)) => {
                *self.codes.entry(code).or_default() += 1;
                self.latencies.push(lat);
            }
            Err(e) => {
                let kind = e.split(" (os error").next().unwrap_or(&e).to_string();
                *self.errors.entry(kind).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        for (k, v) in other.codes {
            *self.codes.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.latencies.extend(other.latencies);
    }

    fn pct(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.sort();
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1e3
    }

    fn answered(&self) -> u64 {
        self.codes.values().sum()
    }

    /// `codes {..}, errors {..}, latency p50 X ms p99 Y ms`.
    fn summary(&mut self) -> String {
        let (p50, p99) = (self.pct(0.5), self.pct(0.99));
        format!(
            "codes {:?}, errors {:?}, latency p50 {p50:.2} ms p99 {p99:.2} ms",
            self.codes, self.errors
        )
    }
}

/// `clients` threads each running `work` until `secs` have passed; their tallies merged.
fn run_clients(
    clients: usize,
    secs: f64,
    work: impl Fn(&mut Tally) + Send + Sync + 'static,
) -> (Tally, f64) {
    let work = Arc::new(work);
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let work = Arc::clone(&work);
            thread::spawn(move || {
                let mut t = Tally::default();
                while Instant::now() < until {
                    work(&mut t);
                }
                t
            })
        })
        .collect();
    let mut all = Tally::default();
    for h in handles {
        all.merge(h.join().expect("client thread"));
    }
    (all, t0.elapsed().as_secs_f64())
}

fn pipeline(sock: &Path) -> (f64, u64, u64) {
    let (_, _, body) = request(sock, "/status").expect("GET /status");
    let text = String::from_utf8_lossy(&body);
    let json = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v: serde_json::Value = serde_json::from_str(json).expect("status JSON");
    (
        v["latency_ms"]["end_to_end"]["p99"]
            .as_f64()
            .unwrap_or(f64::NAN),
        v["frames"]["missed_deadline"].as_u64().unwrap_or(0),
        v["frames"]["processed"].as_u64().unwrap_or(0),
    )
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(sock) = args.first().map(PathBuf::from) else {
        eprintln!("usage: status_load SOCKET [SECS]");
        std::process::exit(2);
    };
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10.0);

    // 1. Throughput.
    let s = sock.clone();
    let (mut t, took) = run_clients(50, secs, move |t| t.add(request(&s, "/status")));
    println!(
        "throughput: 50 clients back to back for {took:.1} s: {:.0} answers/s, {}",
        t.answered() as f64 / took,
        t.summary()
    );

    // 2. Slowloris.
    let stop = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(AtomicU64::new(0));
    let slow: Vec<_> = (0..8)
        .map(|_| {
            let (sock, stop, drops) = (sock.clone(), Arc::clone(&stop), Arc::clone(&drops));
            thread::spawn(move || {
                let head = b"GET /status HTTP/1.1\r\nX-Slow: ";
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = UnixStream::connect(&sock) else {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    for i in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        if c.write_all(&[*head.get(i).unwrap_or(&b'a')]).is_err() {
                            drops.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        thread::sleep(Duration::from_millis(100));
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let s = sock.clone();
    let (mut t, took) = run_clients(4, secs, move |t| {
        t.add(request(&s, "/status"));
        thread::sleep(Duration::from_millis(20));
    });
    stop.store(true, Ordering::Relaxed);
    for h in slow {
        let _ = h.join();
    }
    println!(
        "slowloris: 8 slow connections held (reopened when dropped, {} drops in {took:.1} s); \
         4 honest pollers: {} answers, {}",
        drops.load(Ordering::Relaxed),
        t.answered(),
        t.summary()
    );

    // 3. Pollers vs the pipeline.
    let (_, mq, pq) = pipeline(&sock);
    thread::sleep(Duration::from_secs(20));
    let (quiet_p99, m0, p0) = pipeline(&sock);
    let s = sock.clone();
    let flip = Arc::new(Mutex::new(false));
    let (mut t, took) = run_clients(50, 20.0, move |t| {
        let metrics = {
            let mut f = flip.lock().expect("flip");
            *f = !*f;
            *f
        };
        t.add(request(&s, if metrics { "/metrics" } else { "/status" }));
        thread::sleep(Duration::from_millis(100));
    });
    let (load_p99, m1, p1) = pipeline(&sock);
    println!(
        "pollers: 50 clients each polling /status or /metrics every 100 ms for {took:.1} s: {} \
         answers ({:.0}/s), {}",
        t.answered(),
        t.answered() as f64 / took,
        t.summary()
    );
    println!(
        "pipeline end-to-end p99 (10 s window): {quiet_p99:.3} ms quiet, {load_p99:.3} ms under \
         the pollers (ratio {:.2}); misses: {} of {} frames in the quiet 20 s, {} of {} under \
         the pollers",
        load_p99 / quiet_p99,
        m0 - mq,
        p0 - pq,
        m1 - m0,
        p1 - p0
    );
}
