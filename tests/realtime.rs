//! Hard real-time behaviour: the cancel watchdog (in process and through the binary), SCHED_FIFO
//! on the pipeline thread where the process may have it (and the warning path where it may not),
//! memory locking under `prlimit --memlock`, the `skip` overrun policy's counters.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use rtinfer::backend::onnx::{OnnxBackend, OrtOptions};
use rtinfer::backend::{Backend, LoadOptions};
use rtinfer::pipeline::{self, Pipeline};
use rtinfer::preprocess::{PreprocessOptions, Preprocessor};
use rtinfer::slot::Outcome;
use rtinfer::source::Frame;
use rtinfer::time::MonoTime;
use rtinfer::watchdog::Watchdog;

use crate::util::{self, status_until, wait_for, zoo_model};

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let p = dir.join("rt.toml");
    std::fs::write(&p, body).expect("write config");
    p
}

/// Starts `rtinfer run` on a synthetic source with the config text; returns the child.
fn start(cmd: &mut Command, dir: &Path, model: &Path, config: &str) -> std::process::Child {
    let cfg = write_config(dir, config);
    cmd.args(["run", "--source", "synthetic://320x240@60", "--warmup", "2"])
        .arg("--config")
        .arg(&cfg)
        .arg("--socket")
        .arg(dir.join("s.sock"))
        .arg("--model")
        .arg(model)
        .env("ORT_DYLIB_PATH", util::ort_library())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon")
}

fn stop(child: std::process::Child) -> (String, String) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let out = child.wait_with_output().expect("daemon exits");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn invariant(v: &Value) -> bool {
    let f = &v["frames"];
    let g = |k: &str| f[k].as_u64().unwrap_or(u64::MAX / 8);
    g("captured") == g("processed") + g("dropped") + g("cancelled") + g("in_flight")
}

#[test]
fn cancelled_run_is_followed_by_a_normal_one_in_process() {
    util::ort_env();
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "resnet50", "tinyimagenet", 1.0);
    let backend = OnnxBackend::new(OrtOptions {
        library: Some(util::ort_library()),
        ..OrtOptions::default()
    })
    .expect("ONNX Runtime loads");
    let engine = backend
        .load(&model, &LoadOptions { threads: 1 })
        .expect("model loads");
    assert!(engine.info().can_cancel, "ONNX Runtime engines can cancel");
    let pre = Preprocessor::new(engine.info().input, PreprocessOptions::default()).expect("pre");
    let mut p = Pipeline::new(engine, pre);
    let mut frame = Frame::default();
    frame.set_size(64, 64);

    // A deadline already past when the run starts: ResNet-50 cannot finish before the watchdog
    // sets the terminate flag.
    let tight = Arc::new(Watchdog::new(Duration::ZERO));
    tight.set_canceller(p.engine.canceller());
    let t = std::thread::spawn({
        let w = Arc::clone(&tight);
        move || w.run()
    });
    frame.captured_at = MonoTime::now();
    let rec = pipeline::process_guarded(&mut p, &frame, Duration::from_secs(1), Some(&tight));
    assert_eq!(rec.outcome, Outcome::Cancelled);
    assert_eq!(rec.top_len, 0, "a cancelled frame has no result");
    tight.stop();
    t.join().expect("watchdog");

    // The engine was re-armed (unterminate): the next run completes with a result.
    let loose = Watchdog::new(Duration::from_secs(30));
    loose.set_canceller(p.engine.canceller());
    frame.captured_at = MonoTime::now();
    let rec = pipeline::process_guarded(&mut p, &frame, Duration::from_secs(30), Some(&loose));
    assert_eq!(rec.outcome, Outcome::OnTime);
    assert_eq!(rec.top_len, 5);
}

#[test]
fn tiny_cancel_limit_counts_cancelled_frames_and_the_loop_runs_on() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "resnet50", "tinyimagenet", 1.0);
    let child = start(
        &mut util::rtinfer(),
        dir.path(),
        &model,
        "[realtime]\ncancel_after_ms = 0.5\n",
    );
    let sock = dir.path().join("s.sock");
    assert!(wait_for(&sock, 30.0), "socket never appeared");
    let first = status_until(&sock, 20.0, |v| v["frames"]["cancelled"].as_u64() > Some(5));
    let later = status_until(&sock, 20.0, |v| {
        v["frames"]["cancelled"].as_u64() > first["frames"]["cancelled"].as_u64()
    });
    let (_, err) = stop(child);
    assert!(first["frames"]["cancelled"].as_u64() > Some(5), "{first}");
    assert_eq!(first["model"]["can_cancel"], Value::Bool(true));
    assert!(
        later["frames"]["captured"].as_u64() > first["frames"]["captured"].as_u64(),
        "the loop kept running: {later}"
    );
    assert!(invariant(&later), "{later}");
    assert!(
        later["last_miss"].is_object(),
        "a cancel is logged like a miss"
    );
    assert!(!err.contains("panicked"), "{err}");
}
