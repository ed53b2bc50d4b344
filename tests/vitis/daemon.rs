//! The real daemon with `--backend vitis` on the fake DPU: status keys, a slow DPU job counted as
//! missed (never cancelled), and the start-up failure of a missing shim.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::fake::{self, Variant};
use crate::util::{self, curl, rtinfer, summary_field, wait_for};

#[test]
fn slow_dpu_jobs_are_missed_not_cancelled_in_a_real_run() {
    let dir = util::tempdir();
    // 30 ms per job against a 16.67 ms budget: every processed frame is late.
    let model = fake::model(
        dir.path(),
        "slow",
        "input data int8 1 32 32 3 fix 6\noutput scores int8 1 10 fix 4\nop affine 1 0\nlatency_ms 30\n",
    );
    let config = fake::config(dir.path(), &fake::library(Variant::Full));
    let sock = dir.path().join("status.sock");
    let child = rtinfer()
        .args([
            "run",
            "--backend",
            "vitis",
            "--source",
            "synthetic://64x48@60",
            "--duration",
            "3",
            "--warmup",
            "2",
            "--config",
        ])
        .arg(&config)
        .arg("--model")
        .arg(&model)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    assert!(wait_for(&sock, 20.0), "socket never appeared");
    std::thread::sleep(Duration::from_millis(1500));
    let (code, body) = curl(&sock, "/status");
    let out = child.wait_with_output().expect("daemon exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);

    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("status is JSON");
    let m = &v["model"];
    assert_eq!(m["backend"], "vitis", "{m}");
    assert_eq!(m["precision"], "int8", "{m}");
    assert_eq!(m["can_cancel"], false, "{m}");
    assert_eq!(m["name"], "slow", "{m}");
    // The DPU's own order: NHWC.
    assert_eq!(m["input_shape"], serde_json::json!([1, 32, 32, 3]), "{m}");

    let processed = summary_field(&stdout, "processed").expect("processed");
    let missed = summary_field(&stdout, "missed_deadline").expect("missed_deadline");
    let cancelled = summary_field(&stdout, "cancelled").expect("cancelled");
    assert!(processed > 0, "{stdout}");
    assert_eq!(missed, processed, "every DPU job overruns: {stdout}");
    assert_eq!(cancelled, 0, "a DPU job is never cancelled: {stdout}");
    assert!(
        stderr.contains("fake DPU (rtinfer test double)"),
        "{stderr}"
    );
}

/// A watch folder holding one fake model, `slow.xmodel`, whose DPU jobs take `latency_ms`.
fn slow_model_folder(dir: &std::path::Path, latency_ms: u32) -> std::path::PathBuf {
    let models = dir.join("models");
    std::fs::create_dir(&models).expect("models folder");
    fake::model(
        &models,
        "slow",
        &format!(
            "input data int8 1 32 32 3 fix 6\noutput scores int8 1 10 fix 4\nop affine 1 0\n\
             latency_ms {latency_ms}\n"
        ),
    );
    models
}

#[test]
fn sigterm_during_a_long_model_load_stops_at_once() {
    let dir = util::tempdir();
    // 1 s per DPU job and 20 warm-up runs: the load takes 20 s, well inside the 60 s timeout.
    let models = slow_model_folder(dir.path(), 1000);
    let config = fake::config(dir.path(), &fake::library(Variant::Full));
    let sock = dir.path().join("status.sock");
    let child = rtinfer()
        .args([
            "run",
            "--backend",
            "vitis",
            "--source",
            "synthetic://64x48@30",
        ])
        .args(["--warmup", "20", "--config"])
        .arg(&config)
        .arg("--models")
        .arg(&models)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    assert!(wait_for(&sock, 20.0), "socket never appeared");
    let v = util::status_until(&sock, 10.0, |v| {
        v["state"] == "waiting" && v["swaps"].as_array().is_some()
    });
    assert_eq!(v["state"], "waiting", "the load is running: {v}");
    std::thread::sleep(Duration::from_millis(1500));
    let t = std::time::Instant::now();
    util::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let out = child.wait_with_output().expect("exits");
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Far less than the 18 s left of the load (systemd's TimeoutStopSec is 20 s).
    assert!(
        took < Duration::from_secs(5),
        "stopped after {took:?}: {stderr}"
    );
    assert!(
        stderr.contains("the load of slow.xmodel is left unfinished"),
        "{stderr}"
    );
}

#[test]
fn a_reload_during_a_long_load_retries_the_file_with_the_new_settings() {
    let dir = util::tempdir();
    // 500 ms per DPU job: 20 warm-up runs take 10 s, 1 takes 0.5 s.
    let models = slow_model_folder(dir.path(), 500);
    let config = fake::config(dir.path(), &fake::library(Variant::Full));
    let base = std::fs::read_to_string(&config).expect("config");
    let with_warmup = |n: u32| {
        let text = format!(
            "{base}[models]\nwatch_dir = \"{}\"\nwarmup = {n}\n",
            models.display()
        );
        std::fs::write(&config, text).expect("config")
    };
    with_warmup(20);
    let sock = dir.path().join("status.sock");
    let child = rtinfer()
        .args([
            "run",
            "--backend",
            "vitis",
            "--source",
            "synthetic://64x48@30",
            "--config",
        ])
        .arg(&config)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    assert!(wait_for(&sock, 20.0), "socket never appeared");
    std::thread::sleep(Duration::from_millis(1000));
    with_warmup(1);
    util::signal(&child, nix::sys::signal::Signal::SIGHUP);
    // The new loader takes the same file again, with one warm-up run.
    let v = util::status_until(&sock, 8.0, |v| v["state"] == "running");
    util::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let out = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(v["state"], "running", "{v}\n{stderr}");
    assert_eq!(v["model"]["name"], "slow", "{v}");
    assert!(
        stderr.contains("the load of slow.xmodel is left unfinished"),
        "{stderr}"
    );
}

#[test]
fn bench_times_dpu_jobs_with_the_study_protocol() {
    let dir = util::tempdir();
    // 3 ms per job: every measured run takes at least that, on the DPU's int8 input.
    let model = fake::model(
        dir.path(),
        "timed",
        "input data int8 1 32 32 3 fix 6\noutput scores int8 1 10 fix 4\nop affine 1 0\nlatency_ms 3\n",
    );
    let config = fake::config(dir.path(), &fake::library(Variant::Full));
    let o = rtinfer()
        .args(["bench", "--backend", "vitis", "--config"])
        .arg(&config)
        .arg(&model)
        .args(["--trials", "2", "--warmup", "2", "--runs", "5", "--json"])
        .output()
        .expect("run bench");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["backend"], "vitis", "{v}");
    assert_eq!(v["precision"], "int8", "{v}");
    let l = &v["latency_ms"];
    assert_eq!(l["count"], 10, "2 trials x 5 measured runs: {v}");
    assert!(l["min"].as_f64() >= Some(3.0), "{v}");
}

#[test]
fn a_missing_shim_is_a_start_up_failure_listing_the_paths() {
    let dir = util::tempdir();
    let model = fake::model(
        dir.path(),
        "m",
        "input data int8 1 4 4 3 fix 6\noutput y int8 1 10 fix 2\n",
    );
    let missing = dir.path().join("no/librtinfer_vart.so");
    let config = fake::config(dir.path(), &missing);
    let out = rtinfer()
        .args(["run", "--source", "synthetic://64x48@60", "--duration", "1"])
        .arg("--config")
        .arg(&config)
        .arg("--model")
        .arg(&model)
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .expect("run rtinfer");
    // `auto` picks Vitis by the .xmodel extension.
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{} (config vitis.library)", missing.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("/usr/lib/rtinfer/librtinfer_vart.so"),
        "{stderr}"
    );
}

#[test]
fn check_config_validates_the_vitis_section() {
    let dir = util::tempdir();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[vitis]\nlibrary = \"/usr/lib/rtinfer/librtinfer_vart.so\"\ntimeout_ms = 2000\n",
    )
    .unwrap();
    let o = rtinfer().arg("check-config").arg(&good).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[vitis]\ntimeout_ms = 0\n").unwrap();
    let o = rtinfer().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("vitis.timeout_ms"));

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[vitis]\nlibary = \"/x.so\"\n").unwrap();
    let o = rtinfer().arg("check-config").arg(&typo).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("libary"));
}

/// The systemd watchdog is fed only while the pipeline loop advances: a DPU job stuck for seconds
/// (the fake's latency) withholds `WATCHDOG=1`, which is what gets a hung service restarted.
#[test]
fn a_stuck_inference_withholds_the_watchdog_ping() {
    let dir = util::tempdir();
    let model = fake::model(
        dir.path(),
        "stuck",
        "input data int8 1 32 32 3 fix 6\noutput scores int8 1 10 fix 4\nop affine 1 0\nlatency_ms 2500\n",
    );
    let config = fake::config(dir.path(), &fake::library(Variant::Full));
    let (notify, notify_path) = util::fake_notify_socket(dir.path());
    let sock = dir.path().join("status.sock");
    let mut child = rtinfer()
        .args([
            "run",
            "--backend",
            "vitis",
            "--source",
            "synthetic://64x48@60",
        ])
        .args(["--warmup", "0", "--config"])
        .arg(&config)
        .arg("--model")
        .arg(&model)
        .arg("--socket")
        .arg(&sock)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    let msgs = util::collect_datagrams(&notify, 20.0, |m| m.contains("READY=1"));
    let mut buf = [0u8; 512];
    assert!(msgs.iter().any(|m| m.contains("READY=1")), "{msgs:?}");
    // The first frame's job runs 2.5 s: at most one ping may still be in flight in 2 s.
    std::thread::sleep(Duration::from_millis(300));
    let end = std::time::Instant::now() + Duration::from_secs(2);
    let mut pings = 0;
    while std::time::Instant::now() < end {
        if let Ok(n) = notify.recv(&mut buf)
            && &buf[..n] == b"WATCHDOG=1"
        {
            pings += 1;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let mut err = String::new();
    use std::io::Read;
    let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
    assert!(pings <= 1, "{pings} pings while the inference was stuck");
    assert!(err.contains("withholding the watchdog ping"), "{err}");
}
