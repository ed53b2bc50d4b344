//! The status socket against the real `curl`: routes, error replies, stale and foreign files at
//! the socket path, permissions, slow and excess clients, the read-only TCP listener, the
//! `rtinfer status` client and its table.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rtinfer::status::stream::Feed;
use rtinfer::status::{
    Handler, Origin, Request, Response, Route, StatusError, StatusServer, client, route, table,
};
use serde_json::{Value, json};

use crate::util::{self, curl_to, curl_unix};

/// What the fake handler serves at `/status`.
fn fixed_status() -> Value {
    json!({"state": "running", "uptime_s": 12.5, "model": {"name": "fake-net"}, "fps": 59.9})
}

/// A handler like the daemon's, with fixed content, counting the requests that reach it.
#[derive(Default)]
struct FakeHandler {
    calls: AtomicUsize,
}

impl Handler for FakeHandler {
    fn handle(&self, req: &Request, _origin: Origin) -> Response {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match route(req) {
            Ok(Route::Status) => Response::json(200, &fixed_status()),
            Ok(Route::Metrics) => {
                Response::text(200, "text/plain; version=0.0.4", "rtinfer_up 1\n")
            }
            Ok(Route::Healthz) => Response::text(200, "text/plain", "ok\n"),
            Ok(Route::Models) => Response::json(200, &json!([])),
            Ok(Route::Activate { model }) => Response::json(202, &json!({ "activating": model })),
            Ok(Route::GovernorPin { model }) => Response::json(202, &json!({ "pinned": model })),
            Ok(Route::GovernorUnpin) => Response::json(202, &json!({ "unpinned": true })),
            Ok(Route::Results) => {
                let feed = Feed::new();
                feed.push(b"{\"seq\":1}\n");
                Response::streaming("application/x-ndjson", feed)
            }
            Ok(Route::Page) => Response::text(200, "text/html", "<!doctype html>"),
            Err(resp) => resp,
        }
    }
}

/// A server running on its own thread; stopped and joined on drop.
struct Running {
    handler: Arc<FakeHandler>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn start(server: StatusServer) -> Running {
        let handler = Arc::new(FakeHandler::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = server
            .spawn(handler.clone(), stop.clone())
            .expect("spawn status server");
        Running {
            handler,
            stop,
            thread: Some(thread),
        }
    }

    fn calls(&self) -> usize {
        self.handler.calls.load(Ordering::SeqCst)
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("accept thread did not panic");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sock_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("run/status.sock")
}

fn start_unix(path: &Path) -> Running {
    Running::start(StatusServer::bind_unix(path).expect("bind status socket"))
}

/// A body that is exactly one line of JSON with an `error` string.
fn assert_one_line_error(body: &str) -> String {
    assert_eq!(body.trim_end().lines().count(), 1, "one line: {body:?}");
    let v: Value = serde_json::from_str(body).expect("error body is JSON");
    v["error"].as_str().expect("error is a string").to_string()
}

/// Writes `bytes` on a raw connection and returns everything the server sends back.
fn raw_exchange(sock: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read reply");
    String::from_utf8_lossy(&out).into_owned()
}

fn split_reply(reply: &str) -> (&str, &str) {
    reply.split_once("\r\n\r\n").expect("a complete HTTP reply")
}

#[test]
fn get_status_returns_the_handlers_json() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let _server = start_unix(&sock);
    let (code, body) = curl_unix(&sock, &[], "/status");
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        fixed_status()
    );
}

#[test]
fn unknown_path_is_404_with_one_line_json() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let _server = start_unix(&sock);
    let (code, body) = curl_unix(&sock, &[], "/nope");
    assert_eq!(code, 404);
    assert!(assert_one_line_error(&body).contains("/nope"));
}

#[test]
fn wrong_method_is_405_with_allow() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let _server = start_unix(&sock);
    let (code, text) = curl_unix(&sock, &["-i", "-X", "POST"], "/status");
    assert_eq!(code, 405);
    let (head, body) = split_reply(&text);
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case("allow: GET, HEAD")),
        "{head}"
    );
    assert_one_line_error(body);
    let (code, _) = curl_unix(&sock, &[], "/models/net/activate");
    assert_eq!(code, 405, "activate is POST only");
    let (code, body) = curl_unix(&sock, &["-X", "POST"], "/models/my%20net/activate");
    assert_eq!(code, 202);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        json!({"activating": "my net"})
    );
}

#[test]
fn head_request_gets_headers_without_body() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let _server = start_unix(&sock);
    let (code, text) = curl_unix(&sock, &["-I"], "/status");
    assert_eq!(code, 200);
    let expected_len = fixed_status().to_string().len() + 1;
    assert!(
        text.contains(&format!("Content-Length: {expected_len}")),
        "{text}"
    );
    assert!(
        !text.contains("fake-net"),
        "HEAD must not carry the body: {text}"
    );
}

#[test]
fn garbage_gets_400_and_the_server_keeps_serving() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let server = start_unix(&sock);
    let reply = raw_exchange(
        &sock,
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage",
    );
    assert!(
        reply.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{reply:?}"
    );
    assert_one_line_error(split_reply(&reply).1);
    let reply = raw_exchange(&sock, b"GET /status HTTP/9.9\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply:?}");
    assert_eq!(
        server.calls(),
        0,
        "malformed requests never reach the handler"
    );
    let (code, _) = curl_unix(&sock, &[], "/status");
    assert_eq!(code, 200);
}

#[test]
fn oversize_header_is_400() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let _server = start_unix(&sock);
    let big = format!("X-Big: {}", "a".repeat(9000));
    let (code, body) = curl_unix(&sock, &["-H", &big], "/status");
    assert_eq!(code, 400);
    assert!(assert_one_line_error(&body).contains("exceed"));
}

#[test]
fn parent_directory_is_created_and_socket_mode_is_0660() {
    let dir = util::tempdir();
    let sock = dir.path().join("a/b/status.sock");
    let _server = start_unix(&sock);
    let mode = std::fs::metadata(&sock)
        .expect("socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
}

#[test]
fn stale_socket_is_replaced_and_live_one_refused() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    std::fs::create_dir_all(sock.parent().expect("parent")).expect("mkdir");
    // A listener that is bound then dropped leaves its file behind with nobody accepting:
    // exactly what a crashed daemon leaves (connect gives ECONNREFUSED).
    drop(UnixListener::bind(&sock).expect("bind the stale socket"));
    assert!(sock.exists());
    let _server = start_unix(&sock);
    assert_eq!(curl_unix(&sock, &[], "/healthz").0, 200);
    match StatusServer::bind_unix(&sock) {
        Err(e @ StatusError::AlreadyInUse { .. }) => {
            assert!(e.to_string().contains(sock.to_str().expect("UTF-8")), "{e}")
        }
        other => panic!("expected AlreadyInUse, got {other:?}"),
    }
    assert_eq!(
        curl_unix(&sock, &[], "/healthz").0,
        200,
        "the live daemon is untouched"
    );
}

#[test]
fn regular_file_at_the_path_is_refused() {
    let dir = util::tempdir();
    let path = dir.path().join("status.sock");
    std::fs::write(&path, b"precious").expect("write file");
    match StatusServer::bind_unix(&path) {
        Err(e @ StatusError::NotASocket { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("not a socket") && msg.contains(path.to_str().expect("UTF-8")),
                "{msg}"
            );
        }
        other => panic!("expected NotASocket, got {other:?}"),
    }
    assert_eq!(std::fs::read(&path).expect("file kept"), b"precious");
}

#[test]
fn stopping_removes_the_socket_file() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let mut server = start_unix(&sock);
    assert!(sock.exists());
    server.stop();
    assert!(!sock.exists());
}

#[test]
fn silent_client_does_not_block_others() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    // A long I/O timeout: if connections were served one at a time, curl (max 10 s) would wait
    // behind the silent client for 30 s and fail.
    let server = StatusServer::bind_unix(&sock)
        .expect("bind")
        .with_io_timeout(Duration::from_secs(30));
    let _server = Running::start(server);
    let _silent = UnixStream::connect(&sock).expect("connect silent client");
    let (code, _) = curl_unix(&sock, &[], "/status");
    assert_eq!(code, 200);
}

#[test]
fn over_the_connection_cap_gets_429_with_retry_after() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let server = StatusServer::bind_unix(&sock)
        .expect("bind")
        .with_io_timeout(Duration::from_secs(30))
        .with_max_connections(1);
    let server = Running::start(server);
    let silent = UnixStream::connect(&sock).expect("connect silent client");
    // Issue 17/18: 429 + Retry-After (documented), not the 503 `/healthz` uses for "unhealthy".
    let (code, text) = curl_unix(&sock, &["-i"], "/status");
    assert_eq!(code, 429);
    let (head, body) = split_reply(&text);
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case("retry-after: 1")),
        "{head}"
    );
    assert_one_line_error(body);
    assert_eq!(server.calls(), 0, "refused before the handler");
    drop(silent);
    // The slot is released when the silent connection's thread sees EOF.
    let mut code = 0;
    for _ in 0..50 {
        code = curl_unix(&sock, &[], "/status").0;
        if code == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(code, 200);
}

#[test]
fn tcp_listener_is_read_only() {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let server = StatusServer::bind_tcp(addr).expect("bind tcp");
    let addr = server.tcp_addr().expect("bound address");
    let running = Running::start(server);
    let url = |p: &str| format!("http://{addr}{p}");
    let (code, body) = curl_to(&[], &["-X", "POST"], &url("/models/net/activate"));
    assert_eq!(code, 403);
    assert!(assert_one_line_error(&body).contains("read-only"));
    assert_eq!(curl_to(&[], &["-X", "POST"], &url("/status")).0, 403);
    assert_eq!(running.calls(), 0, "refused before the handler");
    assert_eq!(curl_to(&[], &[], &url("/models")).0, 404);
    let (code, body) = curl_to(&[], &[], &url("/status"));
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("JSON"),
        fixed_status()
    );
    assert_eq!(curl_to(&[], &[], &url("/metrics")).0, 200);
    assert_eq!(curl_to(&[], &[], &url("/healthz")).0, 200);
}

#[test]
fn client_get_reads_status_and_404() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let _server = start_unix(&sock);
    let timeout = Duration::from_secs(10);
    let (code, body) = client::get(&sock, "/status", timeout).expect("get /status");
    assert_eq!(code, 200);
    let status: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(status, fixed_status());
    assert!(table::render(&status).contains("fake-net"));
    let (code, body) = client::get(&sock, "/missing", timeout).expect("get /missing");
    assert_eq!(code, 404);
    assert_one_line_error(&body);
    let (code, _) = client::post(&sock, "/models/x/activate", timeout).expect("post");
    assert_eq!(code, 202);
}

#[test]
fn client_says_no_daemon_when_nothing_listens() {
    let dir = util::tempdir();
    let missing = dir.path().join("missing.sock");
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind stale"));
    for sock in [missing, stale] {
        match client::get(&sock, "/status", Duration::from_secs(2)) {
            Err(e @ StatusError::NoDaemon { .. }) => {
                let want = format!(
                    "no daemon listening at {} (is rtinfer running?)",
                    sock.display()
                );
                assert_eq!(e.to_string(), want);
            }
            other => panic!("expected NoDaemon for {}, got {other:?}", sock.display()),
        }
    }
}

#[test]
fn client_times_out_on_a_silent_server() {
    let dir = util::tempdir();
    let sock = dir.path().join("silent.sock");
    let _listener = UnixListener::bind(&sock).expect("bind a server that never answers");
    match client::get(&sock, "/status", Duration::from_millis(300)) {
        Err(StatusError::Timeout { path, .. }) => assert_eq!(path, sock),
        other => panic!("expected Timeout, got {other:?}"),
    }
}

/// A `/status` document with every key of DESIGN.md's table filled in by hand.
fn full_sample() -> Value {
    let stage = |p50: f64| {
        json!({"p50": p50, "p90": p50 + 1.0, "p95": p50 + 1.5, "p99": p50 + 2.0,
               "p999": p50 + 3.0, "max": p50 + 4.0, "mean": p50 + 0.5, "count": 600})
    };
    json!({
        "uptime_s": 3723.4, "state": "degraded", "budget_ms": 16.67, "target_fps": 60, "fps": 58.25,
        "model": {"name": "resnet50", "path": "/var/lib/rtinfer/models/resnet50.onnx",
                  "file_present": true, "backend": "onnxruntime", "precision": "int8",
                  "input_shape": [1, 3, 224, 224], "params": 25557032, "can_cancel": true},
        "frames": {"captured": 1000, "processed": 990, "missed_deadline": 7, "dropped": 6,
                   "cancelled": 1, "in_flight": 3},
        "latency_ms": {"end_to_end": stage(5.2), "inference": stage(3.5),
                       "preprocess": stage(0.75), "postprocess": stage(0.12)},
        "latency_ms_lifetime": {"end_to_end": stage(5.0)},
        "last_miss": {"seq": 812, "latency_ms": 21.3, "overshoot_ms": 4.63, "at": "2026-01-02T03:04:05Z"},
        "source": {"uri": "synthetic://320x240@60", "connected": false, "width": 320, "height": 240,
                   "fps": 60.0, "interval_jitter_ms_p99": 0.4},
        "realtime": {"priority": 50, "cpus": [2, 3], "memory_locked": true},
        "system": {"rss_bytes": 134217728, "cpu_load": 0.35, "temperature_c": 48.5},
        "memory": {"rss_bytes": 134217728},
        "power": {"meter": "tc66", "connected": true, "watts": 4.21, "mean_watts": 4.1,
                  "idle_watts": 2.0, "peak_watts": 5.5, "dynamic_watts": 2.1,
                  "throughput_per_watt": 14.2, "joules_per_frame": 0.07, "energy_j": 512.0,
                  "bad_frames": 0},
        "swaps": [{"at": "2026-01-02T03:00:00Z", "from": "a", "to": "b", "result": "ok",
                   "reason": null, "load_ms": 120.0, "warmup_p50_ms": 3.2},
                  {"at": "2026-01-02T03:01:00Z", "from": "b", "to": "c", "result": "rejected",
                   "reason": "input shape", "load_ms": 80.0, "warmup_p50_ms": null}],
        "config": {"path": "/etc/rtinfer/rtinfer.toml", "loaded_at": "2026-01-02T02:00:00Z",
                   "restart_required": []},
        "last_result": {"seq": 990, "top": [{"class": "cat", "score": 0.91}, {"class": "dog", "score": 0.05}]}
    })
}

/// The whitespace-separated words of the first line starting with `label`.
fn row<'a>(table: &'a str, label: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label} row in\n{table}"));
    line.split_whitespace().collect()
}

#[test]
fn table_shows_every_section_of_a_full_status() {
    let t = table::render(&full_sample());
    // Percentile columns in order p50 p90 p99 p999 max mean, derived from `stage(p50)` above.
    assert_eq!(
        row(&t, "end-to-end"),
        ["end-to-end", "5.20", "6.20", "7.20", "8.20", "9.20", "5.70"]
    );
    assert_eq!(
        row(&t, "postprocess"),
        [
            "postprocess",
            "0.12",
            "1.12",
            "2.12",
            "3.12",
            "4.12",
            "0.62"
        ]
    );
    assert_eq!(
        row(&t, "stage"),
        ["stage", "p50", "p90", "p99", "p999", "max", "mean"]
    );
    assert_eq!(
        row(&t, "frames").join(" "),
        "frames captured 1000 processed 990 missed 7 dropped 6 cancelled 1 in flight 3"
    );
    let expect = [
        ("state", "degraded uptime 1h 02m 03s"),
        (
            "model",
            "resnet50 backend onnxruntime precision int8 input 1x3x224x224",
        ),
        (
            "source",
            "synthetic://320x240@60 320x240 @ 60 fps disconnected",
        ),
        ("rate", "58.25 fps (target 60) budget 16.67 ms"),
        (
            "last miss",
            "seq 812 21.30 ms (+4.63 ms over budget) at 2026-01-02T03:04:05Z",
        ),
        ("system", "rss 128.0 MiB cpu load 0.35 temperature 48.5 °C"),
        ("realtime", "priority 50 cpus 2,3 memory locked yes"),
        (
            "swaps",
            "2 last: b -> c rejected (input shape) at 2026-01-02T03:01:00Z",
        ),
        ("result", "seq 990 top cat 0.91, dog 0.05"),
    ];
    for (label, words) in expect {
        let got = row(&t, label).join(" ");
        assert_eq!(got, format!("{label} {words}"), "row {label} in\n{t}");
    }
    let power = row(&t, "power").join(" ");
    for part in [
        "tc66 connected",
        "now 4.21 W",
        "idle 2 W",
        "peak 5.5 W",
        "0.07 J/frame",
    ] {
        assert!(power.contains(part), "{part:?} in {power:?}");
    }
}

#[test]
fn table_of_empty_or_odd_status_shows_dashes() {
    let t = table::render(&json!({}));
    assert_eq!(
        row(&t, "end-to-end"),
        ["end-to-end", "-", "-", "-", "-", "-", "-"]
    );
    assert_eq!(row(&t, "state"), ["state", "-", "uptime", "-"]);
    assert_eq!(row(&t, "last miss"), ["last", "miss", "-"]);
    assert!(!t.contains("power"), "no power row without a meter:\n{t}");
    let mut null_power = full_sample();
    null_power["power"] = Value::Null;
    assert!(!table::render(&null_power).contains("power"));
    // Wrong types and non-objects render without panicking.
    for odd in [
        json!(null),
        json!([1, 2]),
        json!("running"),
        json!({"frames": "x", "latency_ms": 3, "model": [], "swaps": {}, "uptime_s": -5,
               "last_result": {"top": [1, null]}, "source": {"width": 1}}),
    ] {
        let t = table::render(&odd);
        assert!(t.contains('-'), "{t}");
    }
}

// ------------------------------------------------------------- hostile clients (issue 17/18)

#[test]
fn lf_only_request_as_nc_sends_it_is_answered() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let server = start_unix(&sock);
    // `printf 'GET /status HTTP/1.0\n\n' | nc -U sock`: bare LF line ends.
    let reply = raw_exchange(&sock, b"GET /status HTTP/1.0\n\n");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply:?}");
    assert_eq!(
        serde_json::from_str::<Value>(split_reply(&reply).1).expect("JSON"),
        fixed_status()
    );
    let reply = raw_exchange(&sock, b"GET /healthz HTTP/1.1\nHost: x\n\n");
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply:?}");
    assert_eq!(server.calls(), 2);
}

/// Sends `req` on a new Unix connection and reads to EOF; the error, if any, as a string.
fn try_exchange(sock: &Path, req: &[u8]) -> Result<String, String> {
    let mut s = UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(req).map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn unix_clients_over_the_cap_get_a_clean_429_never_a_reset() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let server = StatusServer::bind_unix(&sock)
        .expect("bind")
        .with_io_timeout(Duration::from_secs(30))
        .with_max_connections(2);
    let _server = Running::start(server);
    // Two silent clients hold both slots for the whole test.
    let _held: Vec<UnixStream> = (0..2)
        .map(|_| UnixStream::connect(&sock).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let results: Vec<Result<String, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                s.spawn(|| {
                    (0..10)
                        .map(|_| {
                            try_exchange(&sock, b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect()
    });
    assert_eq!(results.len(), 200);
    for r in &results {
        let reply = r
            .as_ref()
            .unwrap_or_else(|e| panic!("a refused client saw {e}"));
        assert!(
            reply.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{reply:?}"
        );
        assert!(reply.contains("\r\nRetry-After: 1\r\n"), "{reply:?}");
        assert_one_line_error(split_reply(reply).1);
    }
    // `rtinfer status`'s client reads the refusal as an answer, not an I/O error.
    let (code, body) = client::get(&sock, "/status", Duration::from_secs(10)).expect("answer");
    assert_eq!(code, 429);
    assert!(assert_one_line_error(&body).contains("retry"), "{body}");
}

#[test]
fn slowloris_connections_are_dropped_at_the_deadline_while_others_are_served() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let deadline = Duration::from_millis(500);
    let server = StatusServer::bind_unix(&sock)
        .expect("bind")
        .with_io_timeout(deadline);
    let _server = Running::start(server);
    std::thread::scope(|s| {
        // Eight peers each send a byte every 20 ms: every read succeeds, the request never ends.
        let drips: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut c = UnixStream::connect(&sock).expect("connect");
                    c.set_read_timeout(Some(Duration::from_millis(5)))
                        .expect("timeout");
                    let started = std::time::Instant::now();
                    let head = b"GET /status HTTP/1.1\r\nX-Slow: ";
                    let mut reply = Vec::new();
                    for i in 0.. {
                        let byte = head.get(i).copied().unwrap_or(b'a');
                        if c.write_all(&[byte]).is_err() {
                            break;
                        }
                        let mut buf = [0u8; 512];
                        match c.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => reply.extend_from_slice(&buf[..n]),
                            Err(_) => {}
                        }
                        assert!(
                            started.elapsed() < Duration::from_secs(20),
                            "the slow peer was never dropped"
                        );
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    (
                        started.elapsed(),
                        String::from_utf8_lossy(&reply).into_owned(),
                    )
                })
            })
            .collect();
        // Meanwhile honest clients are answered.
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..10 {
            assert_eq!(curl_unix(&sock, &[], "/status").0, 200);
        }
        for d in drips {
            let (held, reply) = d.join().expect("slow peer thread");
            assert!(held >= deadline, "dropped before its deadline: {held:?}");
            assert!(
                reply.is_empty() || reply.starts_with("HTTP/1.1 408 "),
                "{reply:?}"
            );
        }
    });
}

#[test]
fn a_handler_that_hangs_costs_one_answer_not_the_server() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let server = StatusServer::bind_unix(&sock)
        .expect("bind")
        .with_handler_timeout(Duration::from_millis(500));
    let release = Arc::new(AtomicBool::new(false));
    let handler = {
        let release = Arc::clone(&release);
        move |req: &Request, _: Origin| {
            if req.path == "/hang" {
                while !release.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Response::text(200, "text/plain", "ok\n")
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let thread = server
        .spawn(Arc::new(handler), Arc::clone(&stop))
        .expect("spawn");
    let (code, body) = curl_unix(&sock, &[], "/hang");
    assert_eq!(code, 500);
    assert!(assert_one_line_error(&body).contains("no answer"), "{body}");
    assert_eq!(
        curl_unix(&sock, &[], "/status").0,
        200,
        "others still served"
    );
    release.store(true, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    thread.join().expect("loop ends");
}

#[test]
fn socket_in_a_directory_others_can_write_is_refused() {
    let dir = util::tempdir();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    match StatusServer::bind_unix(&open.join("s.sock")) {
        Err(e @ StatusError::InsecureDirectory { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(open.to_str().expect("utf-8")) && msg.contains("sticky"),
                "{msg}"
            );
        }
        other => panic!("expected InsecureDirectory, got {other:?}"),
    }
    assert!(!open.join("s.sock").exists(), "nothing was bound");
    // With the sticky bit (like /tmp) nobody else can rename or remove our socket.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let _server = start_unix(&open.join("s.sock"));
    assert_eq!(curl_unix(&open.join("s.sock"), &[], "/healthz").0, 200);
}

#[test]
fn socket_in_a_directory_owned_by_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot chown a directory to another user; covered by unit tests");
        return;
    }
    let dir = util::tempdir();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
    match StatusServer::bind_unix(&theirs.join("s.sock")) {
        Err(e @ StatusError::InsecureDirectory { .. }) => {
            assert!(e.to_string().contains("uid 65534"), "{e}")
        }
        other => panic!("expected InsecureDirectory, got {other:?}"),
    }
}

/// Polls `f` every 20 ms for up to 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("never: {what}");
}

#[test]
fn a_removed_socket_is_bound_again_and_a_replaced_one_taken_back() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let server = StatusServer::bind_unix(&sock)
        .expect("bind")
        .with_path_check_interval(Duration::from_millis(50));
    let _server = Running::start(server);
    std::fs::remove_file(&sock).expect("remove the socket");
    eventually("the socket is bound again", || {
        UnixStream::connect(&sock).is_ok()
    });
    assert_eq!(curl_unix(&sock, &[], "/status").0, 200);
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660);
    // An impostor: unlink ours, bind another listener at the path.
    std::fs::remove_file(&sock).expect("remove");
    let impostor = UnixListener::bind(&sock).expect("bind the impostor");
    eventually("the path is taken back", || {
        curl_unix(&sock, &[], "/status").0 == 200
    });
    drop(impostor);
}

/// Streaming answers stay open, carry what their feed holds, and do not take the places of
/// polling clients: with a cap of one served connection, three open streams leave `/status`
/// answered 200, and a stream closed by its client closes its feed.
#[test]
fn streams_stay_open_and_do_not_count_against_the_polling_cap() {
    let dir = util::tempdir();
    let sock = sock_in(&dir);
    let _server = Running::start(
        StatusServer::bind_unix(&sock)
            .expect("bind")
            .with_max_connections(1),
    );
    let mut streams = Vec::new();
    for i in 0..3 {
        let mut s = UnixStream::connect(&sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"GET /results HTTP/1.1\r\n\r\n")
            .expect("write");
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"{\"seq\":1}\n") {
            let n = s
                .read(&mut byte)
                .unwrap_or_else(|e| panic!("stream {i}: {e}: {}", String::from_utf8_lossy(&got)));
            assert_eq!(
                n,
                1,
                "the stream stays open: {}",
                String::from_utf8_lossy(&got)
            );
            got.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&got).to_string();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(!text.contains("Content-Length"), "{text}");
        streams.push(s);
    }
    for _ in 0..3 {
        let (code, _) = curl_unix(&sock, &[], "/status");
        assert_eq!(code, 200, "the streams do not count against the cap of 1");
    }
    let reply = raw_exchange(&sock, b"HEAD /results HTTP/1.1\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 200"), "HEAD ends: {reply}");
}
