//! Behaving as a systemd service: sd_notify datagrams on a fake NOTIFY_SOCKET, SIGHUP reload,
//! Prometheus /metrics checked with a real parser, the read-only TCP listener, journald-style log
//! lines, and the unit file checked by systemd-analyze.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::{self, curl, rtinfer_ort, signal, status_until, wait_for, zoo_model};

/// `rtinfer run` on a 64x48@60 synthetic source with a config file, a model and a socket.
fn run_with_config(cfg: &Path, model: &Path, sock: &Path) -> Command {
    let mut c = rtinfer_ort();
    c.args([
        "run",
        "--source",
        "synthetic://64x48@60",
        "--warmup",
        "1",
        "--config",
    ])
    .arg(cfg)
    .arg("--model")
    .arg(model)
    .arg("--socket")
    .arg(sock);
    c
}

#[test]
fn sd_notify_ready_watchdog_reload_and_stopping() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let (notify, notify_path) = util::fake_notify_socket(dir.path());
    let cfg = dir.path().join("rtinfer.toml");
    std::fs::write(&cfg, "[run]\nbudget_ms = 50\n").expect("write config");
    let sock = dir.path().join("s.sock");
    let child = run_with_config(&cfg, &model, &sock)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .env("WATCHDOG_PID", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let start = util::collect_datagrams(&notify, 20.0, |m| m.contains("READY=1"));
    assert!(
        start
            .last()
            .is_some_and(|m| m.lines().any(|l| l == "READY=1")),
        "{start:?}"
    );
    assert!(sock.exists(), "READY=1 only once the socket serves");
    // About one WATCHDOG=1 every 200 ms while frames flow.
    let run = util::collect_datagrams(&notify, 2.0, |_| false);
    let pings = run.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!((5..=14).contains(&pings), "{pings} pings in 2 s: {run:?}");
    assert!(
        !run.iter().any(|m| m.contains("READY=1")),
        "READY=1 is sent once: {run:?}"
    );
    assert!(
        run.iter().chain(&start).any(|m| m.starts_with("STATUS=")),
        "STATUS= lines: {run:?}"
    );

    std::fs::write(&cfg, "[run]\nbudget_ms = 5\n").expect("rewrite config");
    signal(&child, Signal::SIGHUP);
    let reload = util::collect_datagrams(&notify, 10.0, |m| m.contains("READY=1"));
    let r = reload
        .iter()
        .position(|m| m.starts_with("RELOADING=1"))
        .expect("RELOADING=1");
    let ready = reload
        .iter()
        .position(|m| m.starts_with("READY=1"))
        .expect("READY=1 after reload");
    assert!(r < ready, "{reload:?}");
    let v = status_until(&sock, 5.0, |v| v["budget_ms"].as_f64() == Some(5.0));
    assert_eq!(
        v["budget_ms"].as_f64(),
        Some(5.0),
        "the new budget applies live"
    );

    signal(&child, Signal::SIGTERM);
    let stop = util::collect_datagrams(&notify, 10.0, |m| m == "STOPPING=1");
    assert_eq!(
        stop.last().map(String::as_str),
        Some("STOPPING=1"),
        "{stop:?}"
    );
    let out = child.wait_with_output().expect("exit");
    assert!(out.status.success(), "SIGTERM is a clean stop");
}

#[test]
fn watchdog_pings_continue_while_waiting_for_a_model() {
    let dir = util::tempdir();
    let (notify, notify_path) = util::fake_notify_socket(dir.path());
    let sock = dir.path().join("s.sock");
    let mut child = rtinfer_ort()
        .args(["run", "--source", "synthetic://64x48@60", "--models"])
        .arg(dir.path().join("empty"))
        .arg("--socket")
        .arg(&sock)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let start = util::collect_datagrams(&notify, 20.0, |m| m.contains("READY=1"));
    assert!(
        start.iter().any(|m| m.contains("READY=1")),
        "READY=1 while waiting: {start:?}"
    );
    let waiting = util::collect_datagrams(&notify, 1.5, |_| false);
    let pings = waiting.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= 4, "the idle loop still beats: {waiting:?}");
    let v = status_until(&sock, 2.0, |v| v["state"] == "waiting");
    assert_eq!(v["state"], "waiting");
    signal(&child, Signal::SIGINT);
    assert!(child.wait().expect("exit").success());
}

#[test]
fn sighup_with_a_broken_file_keeps_the_old_config_and_lists_restart_keys() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let cfg = dir.path().join("rtinfer.toml");
    let sock = dir.path().join("s.sock");
    let write_cfg = |text: &str| std::fs::write(&cfg, text).expect("write config");
    write_cfg("[run]\nbudget_ms = 40\n");
    let child = run_with_config(&cfg, &model, &sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    assert!(wait_for(&sock, 20.0));
    write_cfg("[run]\nbudget_ms = 40\nbogus = 1\n");
    signal(&child, Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    let v = status_until(&sock, 1.0, |_| true);
    assert_eq!(
        v["budget_ms"].as_f64(),
        Some(40.0),
        "a broken file changes nothing: {v}"
    );
    write_cfg("[run]\nbudget_ms = 7\nthreads = 2\n");
    signal(&child, Signal::SIGHUP);
    let v = status_until(&sock, 5.0, |v| v["budget_ms"].as_f64() == Some(7.0));
    assert_eq!(v["budget_ms"].as_f64(), Some(7.0));
    assert_eq!(
        v["config"]["restart_required"],
        serde_json::json!(["run.threads"]),
        "{v}"
    );
    signal(&child, Signal::SIGINT);
    let out = child.wait_with_output().expect("exit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reload failed") && err.contains("bogus"),
        "{err}"
    );
    assert!(err.contains("restart required for run.threads"), "{err}");
}

#[test]
fn timed_sighup_repaces_a_paced_source_live_and_a_size_change_waits_for_a_restart() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let cfg = dir.path().join("rtinfer.toml");
    let sock = dir.path().join("s.sock");
    let write_cfg = |uri: &str| {
        std::fs::write(&cfg, format!("[run]\nsource = \"{uri}\"\n")).expect("write config")
    };
    let captured = |v: &Value| v["frames"]["captured"].as_u64().unwrap_or(0);
    write_cfg("synthetic://64x48@20");
    // The source comes from the file (a --source flag would override every reload).
    let child = util::rtinfer_timed()
        .args(["run", "--warmup", "1", "--config"])
        .arg(&cfg)
        .arg("--model")
        .arg(&model)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    assert!(wait_for(&sock, 20.0));
    let v = status_until(&sock, 10.0, |v| captured(v) > 0);
    assert_eq!(v["source"]["fps"].as_f64(), Some(20.0), "{v}");

    write_cfg("synthetic://64x48@100");
    signal(&child, Signal::SIGHUP);
    let v = status_until(&sock, 5.0, |v| v["source"]["fps"].as_f64() == Some(100.0));
    assert_eq!(v["source"]["uri"], "synthetic://64x48@100", "{v}");
    assert_eq!(
        v["config"]["restart_required"],
        serde_json::json!([]),
        "{v}"
    );
    let (c0, t0) = (captured(&v), std::time::Instant::now());
    std::thread::sleep(Duration::from_millis(1500));
    let v = status_until(&sock, 1.0, |_| true);
    let rate = (captured(&v) - c0) as f64 / t0.elapsed().as_secs_f64();
    assert!(
        (60.0..=115.0).contains(&rate),
        "{rate:.1} FPS after the re-pace: {v}"
    );

    // Another size is another source: it waits for a restart and nothing changes meanwhile.
    write_cfg("synthetic://32x32@100");
    signal(&child, Signal::SIGHUP);
    let v = status_until(&sock, 5.0, |v| {
        v["config"]["restart_required"] == serde_json::json!(["run.source"])
    });
    assert_eq!(
        v["config"]["restart_required"],
        serde_json::json!(["run.source"]),
        "{v}"
    );
    assert_eq!(v["source"]["uri"], "synthetic://64x48@100", "{v}");
    assert_eq!(v["source"]["width"], 64, "{v}");
    signal(&child, Signal::SIGTERM);
    let out = child.wait_with_output().expect("exit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("source synthetic://64x48@20: re-paced at 100 FPS"),
        "{err}"
    );
    assert!(err.contains("applied run.source"), "{err}");
    assert!(err.contains("restart required for run.source"), "{err}");
}

/// Parses Prometheus text with `prometheus_client`'s parser (the venv scripts/setup.sh makes) and
/// returns {"name{labels}": value}.
pub(crate) fn parse_prometheus(text: &str) -> serde_json::Map<String, Value> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/venv/bin/python");
    assert!(
        py.exists(),
        "{} missing: run scripts/setup.sh",
        py.display()
    );
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser runs");
    assert!(
        out.status.success(),
        "parser rejected the text: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v.as_object().cloned().expect("object")
}

/// Writes a Y4M header and `frames` grey frames to `w`.
pub fn y4m(w: &mut impl Write, frames: usize) {
    w.write_all(b"YUV4MPEG2 W64 H48 F60:1 Ip A1:1 C444\n")
        .expect("header");
    let frame = vec![128u8; 64 * 48 * 3];
    for _ in 0..frames {
        w.write_all(b"FRAME\n").expect("frame header");
        w.write_all(&frame).expect("frame");
    }
    w.flush().expect("flush");
}

#[test]
fn metrics_parse_and_agree_with_status_and_tcp_is_read_only() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let sock = dir.path().join("s.sock");
    let port = 20000 + (std::process::id() % 20000) as u16;
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, format!("[status]\ntcp = \"127.0.0.1:{port}\"\n")).expect("config");
    let mut child = util::Guard::new(
        rtinfer_ort()
            .args([
                "run",
                "--source",
                "pipe://",
                "--warmup",
                "1",
                "--budget-ms",
                "1000",
                "--config",
            ])
            .arg(&cfg)
            .arg("--model")
            .arg(&model)
            .arg("--socket")
            .arg(&sock)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start"),
    );
    let mut stdin = child.stdin.take().expect("stdin");
    // Frames arrive, then the pipe stays open and silent: the counters stop moving.
    y4m(&mut stdin, 40);
    assert!(wait_for(&sock, 20.0));
    let v = status_until(&sock, 10.0, |v| {
        let f = &v["frames"];
        f["in_flight"] == 0 && f["captured"].as_u64().unwrap_or(0) == 40
    });
    let (code, text) = curl(&sock, "/metrics");
    assert_eq!(code, 200);
    // Prometheus' own linter finds nothing to say (base units, _total counters, HELP on all).
    let (clean, lint) = util::promtool(&["check", "metrics"], text.as_bytes());
    assert!(clean && lint.trim().is_empty(), "promtool: {lint}\n{text}");
    let m = parse_prometheus(&text);
    let f = &v["frames"];
    let get = |k: &str| {
        m.get(k)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{k} missing in\n{text}"))
    };
    let processed = f["processed"].as_u64().expect("processed") as f64;
    assert_eq!(
        get("rtinfer_frames_total{result=on_time}") + get("rtinfer_frames_total{result=late}"),
        processed
    );
    assert_eq!(
        get("rtinfer_frames_total{result=dropped}"),
        f["dropped"].as_f64().expect("dropped")
    );
    assert_eq!(get("rtinfer_frames_captured_total{}"), 40.0);
    assert_eq!(
        get("rtinfer_latency_seconds_count{stage=end_to_end}"),
        processed
    );
    // ONNX Runtime on the CPU measures no device time: an empty `device` stage, no series.
    assert_eq!(v["latency_ms_lifetime"]["device"]["count"], 0, "{v}");
    assert!(
        !m.keys().any(|k| k.contains("stage=device")),
        "no device series for a CPU backend:\n{text}"
    );
    assert_eq!(get("rtinfer_up{}"), 1.0);
    assert_eq!(get("rtinfer_budget_seconds{}"), 1.0);
    let name = v["model"]["name"].as_str().expect("name");
    assert_eq!(
        get(&format!(
            "rtinfer_model_info{{backend=onnxruntime,name={name},precision=fp32}}"
        )),
        1.0
    );
    let p50 = v["latency_ms"]["inference"]["p50"].as_f64().expect("p50");
    assert!(
        (get("rtinfer_latency_seconds{quantile=0.5,stage=inference}") * 1000.0 - p50).abs() < 1e-9
    );

    // Over TCP: reads only.
    let tcp = |args: &[&str], path: &str| {
        let o = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(args)
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(tcp(&[], "/metrics"), "200");
    assert_eq!(tcp(&[], "/status"), "200");
    assert_eq!(tcp(&["-X", "POST"], "/models/x.onnx/activate"), "403");
    assert_eq!(tcp(&[], "/models"), "404");
    drop(stdin);
    assert!(
        child.wait().expect("exit").success(),
        "the pipe's EOF is a clean stop"
    );
}

#[test]
fn under_journald_lines_carry_syslog_priorities() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let out = rtinfer_ort()
        .args([
            "run",
            "--source",
            "synthetic://64x48@60",
            "--duration",
            "1.5",
            "--budget-ms",
            "0.001",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .env("JOURNAL_STREAM", "8:12345")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("<4>rtinfer::pipeline: deadline missed")),
        "{err}"
    );
    assert!(err.lines().any(|l| l.starts_with("<6>rtinfer::")), "{err}");
    assert!(
        !err.lines().any(|l| l.starts_with('[')),
        "no timestamps under journald: {err}"
    );
}

#[test]
fn the_unit_verifies_and_its_exposure_is_at_most_2_5() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/rtinfer.service");
    let sa = PathBuf::from("/usr/bin/systemd-analyze");
    assert!(sa.exists(), "systemd-analyze missing: run scripts/setup.sh");
    // verify wants ExecStart's binary to exist: check a copy pointing at the built binary.
    let dir = util::tempdir();
    let text = std::fs::read_to_string(&unit).expect("unit");
    let copy = dir.path().join("rtinfer.service");
    std::fs::write(
        &copy,
        text.replace("/usr/bin/rtinfer", env!("CARGO_BIN_EXE_rtinfer")),
    )
    .expect("copy");
    let o = Command::new(&sa)
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("verify");
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && msg.trim().is_empty(), "verify: {msg}");
    let o = Command::new(&sa)
        .args(["security", "--offline=yes", "--no-pager", "--threshold=25"])
        .arg(&unit)
        .output()
        .expect("security");
    let report = String::from_utf8_lossy(&o.stdout);
    let overall = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("");
    assert!(o.status.success(), "exposure above 2.5: {overall}");
    assert!(overall.contains("exposure level"), "{report}");
    // The syscalls rtinfer makes from groups the filter removes are allowed back, and anything
    // else fails with EPERM rather than killing the daemon.
    let allowed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .filter(|l| !l.starts_with('~') && !l.starts_with('@'))
        .flat_map(str::split_whitespace)
        .collect();
    for call in [
        "setpriority",
        "sched_setscheduler",
        "sched_setaffinity",
        "mlockall",
    ] {
        assert!(
            allowed.contains(&call),
            "{call} is filtered out: {allowed:?}"
        );
    }
    assert!(text.contains("\nSystemCallErrorNumber=EPERM\n"), "{text}");
    // Paths that may be missing on a board must not stop the unit from starting.
    for l in text.lines().filter(|l| l.starts_with("ReadWritePaths=")) {
        assert!(l.contains("=-/"), "{l}: prefix optional paths with '-'");
    }
}

#[test]
fn check_config_errors_name_the_key_or_position() {
    let dir = util::tempdir();
    let cases = [
        ("[run]\nfps = \"sixty\"\n", "line 2"),
        ("[run]\nsource = \"nope://x\"\n", "run.source"),
        ("[status]\ntcp = \"localhost\"\n", "status.tcp"),
        ("[log]\nlevel = \"loud\"\n", "log.level"),
        (
            "[models]\nload_timeout_s = -1\nwatch_dir = \"/x\"\n",
            "models.load_timeout_s",
        ),
    ];
    for (text, want) in cases {
        let f = dir.path().join("c.toml");
        std::fs::write(&f, text).expect("write");
        let o = util::rtinfer()
            .arg("check-config")
            .arg(&f)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(want), "{text}: expected {want} in {err}");
    }
}

#[test]
fn sighup_replaces_the_power_meter_live() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let cfg = dir.path().join("rtinfer.toml");
    let sock = dir.path().join("s.sock");
    let meter = |w: &str| {
        format!(
            "[power]\nmeter = \"exec://\"\nidle_watts = 1.0\n\
             command = [\"sh\", \"-c\", \"while true; do echo {w}; sleep 0.05; done\"]\n"
        )
    };
    std::fs::write(&cfg, meter("2.5")).expect("config");
    let child = run_with_config(&cfg, &model, &sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    assert!(wait_for(&sock, 20.0));
    let v = status_until(&sock, 10.0, |v| v["power"]["watts"].as_f64() == Some(2.5));
    assert_eq!(v["power"]["watts"].as_f64(), Some(2.5), "{v}");
    std::fs::write(&cfg, meter("7.25")).expect("config");
    signal(&child, Signal::SIGHUP);
    let v = status_until(&sock, 10.0, |v| v["power"]["watts"].as_f64() == Some(7.25));
    assert_eq!(
        v["power"]["watts"].as_f64(),
        Some(7.25),
        "the new meter serves: {v}"
    );
    assert_eq!(v["power"]["idle_watts"].as_f64(), Some(1.0));
    assert_eq!(
        v["config"]["restart_required"],
        serde_json::json!([]),
        "{v}"
    );
    signal(&child, Signal::SIGINT);
    let out = child.wait_with_output().expect("exit");
    assert!(out.status.success());
}

/// `rtinfer run` on a 64x48@60 synthetic source whose models come from the config file's
/// `[models]` (so a reload can change them), waited for until its socket serves.
fn start_watching(cfg: &Path, sock: &Path) -> Child {
    let child = rtinfer_ort()
        .args(["run", "--source", "synthetic://64x48@60", "--config"])
        .arg(cfg)
        .arg("--socket")
        .arg(sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    assert!(wait_for(sock, 20.0), "socket never appeared");
    child
}

#[test]
fn sighup_pins_a_model_live_and_reloading_the_folder_loads_nothing_twice() {
    let dir = util::tempdir();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).expect("mkdir");
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    std::fs::copy(&model, models.join("older.onnx")).expect("copy");
    std::thread::sleep(Duration::from_millis(1100)); // a later mtime: newer.onnx is the newest
    std::fs::copy(&model, models.join("newer.onnx")).expect("copy");
    let cfg = dir.path().join("rtinfer.toml");
    let sock = dir.path().join("s.sock");
    let write = |extra: &str| {
        let text = format!("[models]\nwatch_dir = \"{}\"\n{extra}", models.display());
        std::fs::write(&cfg, text).expect("config")
    };
    write("warmup = 1\n");
    let child = start_watching(&cfg, &sock);
    let v = status_until(&sock, 20.0, |v| v["model"]["name"] == "newer");
    assert_eq!(v["model"]["name"], "newer", "the newest starts: {v}");
    let swaps = |v: &Value| v["swaps"].as_array().map_or(0, Vec::len);
    let at_start = swaps(&v);

    // A pin set by reload takes effect at once.
    write("warmup = 1\nactive = \"older.onnx\"\n");
    signal(&child, Signal::SIGHUP);
    let v = status_until(&sock, 20.0, |v| v["model"]["name"] == "older");
    assert_eq!(v["model"]["name"], "older", "the pin goes live: {v}");
    assert_eq!(swaps(&v), at_start + 1, "{v}");

    // Another [models] change in the same folder: the serving model is not loaded again.
    write("warmup = 2\nactive = \"older.onnx\"\n");
    signal(&child, Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(1500));
    let v = status_until(&sock, 1.0, |_| true);
    assert_eq!(v["model"]["name"], "older", "{v}");
    assert_eq!(
        swaps(&v),
        at_start + 1,
        "no second load of the same file: {v}"
    );
    signal(&child, Signal::SIGINT);
    assert!(child.wait_with_output().expect("exit").status.success());
}

#[test]
fn sighup_follows_a_new_watch_folder_while_the_model_keeps_serving() {
    let dir = util::tempdir();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::create_dir(&a).expect("mkdir a");
    std::fs::create_dir(&b).expect("mkdir b");
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    std::fs::copy(&model, a.join("first.onnx")).expect("copy");
    std::fs::copy(&model, b.join("second.onnx")).expect("copy");
    let cfg = dir.path().join("rtinfer.toml");
    let sock = dir.path().join("s.sock");
    let folder = |d: &Path| format!("[models]\nwatch_dir = \"{}\"\nwarmup = 1\n", d.display());
    std::fs::write(&cfg, folder(&a)).expect("config");
    let child = start_watching(&cfg, &sock);
    let v = status_until(&sock, 20.0, |v| v["model"]["name"] == "first");
    assert_eq!(v["model"]["name"], "first", "{v}");
    std::fs::write(&cfg, folder(&b)).expect("config");
    signal(&child, Signal::SIGHUP);
    let v = status_until(&sock, 20.0, |v| v["model"]["name"] == "second");
    assert_eq!(
        v["model"]["name"], "second",
        "the new folder's model goes live: {v}"
    );
    assert_eq!(
        v["config"]["restart_required"],
        serde_json::json!([]),
        "{v}"
    );
    let (_, body) = curl(&sock, "/models");
    let listing: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        listing["watch_dir"],
        Value::from(b.display().to_string()),
        "{listing}"
    );
    // Files dropped into the new folder are followed.
    std::fs::copy(&model, b.join(".third.tmp")).expect("copy");
    std::fs::rename(b.join(".third.tmp"), b.join("third.onnx")).expect("rename");
    let v = status_until(&sock, 20.0, |v| v["model"]["name"] == "third");
    assert_eq!(v["model"]["name"], "third", "{v}");
    signal(&child, Signal::SIGINT);
    let out = child.wait_with_output().expect("exit");
    assert!(out.status.success());
}
