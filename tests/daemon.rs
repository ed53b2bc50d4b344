//! The run loop end to end through the real binary: the status socket queried by real curl,
//! ffmpeg as a live client on stdin, deadline accounting, and the exit codes of bad input.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{self, curl, rtinfer_ort, summary_field, wait_for, zoo_model};

fn pct(v: &Value, stage: &str, key: &str) -> f64 {
    v["latency_ms"][stage][key]
        .as_f64()
        .unwrap_or_else(|| panic!("latency_ms.{stage}.{key} missing in {v}"))
}

#[test]
fn synthetic_run_serves_every_status_key_and_counters_add_up() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let sock = dir.path().join("status.sock");
    let child = rtinfer_ort()
        .args([
            "run",
            "--source",
            "synthetic://320x240@60",
            "--duration",
            "4",
            "--warmup",
            "2",
            "--socket",
        ])
        .arg(&sock)
        .arg("--model")
        .arg(&model)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start daemon");
    assert!(wait_for(&sock, 20.0), "socket never appeared");
    std::thread::sleep(Duration::from_millis(2500));
    let (code, body) = curl(&sock, "/status");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("status is JSON");
    for key in [
        "uptime_s",
        "state",
        "budget_ms",
        "target_fps",
        "fps",
        "model",
        "frames",
        "latency_ms",
        "latency_ms_lifetime",
        "last_miss",
        "source",
        "realtime",
        "system",
        "power",
        "swaps",
        "config",
        "last_result",
    ] {
        assert!(
            v.get(key).is_some(),
            "key {key} absent from /status: {body}"
        );
    }
    for key in [
        "name",
        "path",
        "file_present",
        "backend",
        "precision",
        "input_shape",
        "params",
        "can_cancel",
    ] {
        assert!(v["model"].get(key).is_some(), "model.{key} absent");
    }
    assert_eq!(v["model"]["backend"], "onnxruntime");
    assert_eq!(v["model"]["input_shape"], serde_json::json!([1, 3, 32, 32]));
    assert_eq!(v["state"], "running");
    let f = &v["frames"];
    let n = |k: &str| {
        f[k].as_u64()
            .unwrap_or_else(|| panic!("frames.{k} missing"))
    };
    assert!(n("processed") > 0, "{f}");
    assert_eq!(
        n("captured"),
        n("processed") + n("dropped") + n("cancelled") + n("in_flight"),
        "{f}"
    );
    for stage in ["end_to_end", "inference", "preprocess", "postprocess"] {
        let (p50, p99, max) = (
            pct(&v, stage, "p50"),
            pct(&v, stage, "p99"),
            pct(&v, stage, "max"),
        );
        assert!(
            p50 <= p99 && p99 <= max,
            "{stage}: p50 {p50} p99 {p99} max {max}"
        );
    }
    assert!(pct(&v, "inference", "p50") <= pct(&v, "end_to_end", "p50"));
    // Every nested key of the contract (../shared/DESIGN.md), present (null where it does not
    // apply yet).
    let nested: [(&str, &[&str]); 7] = [
        (
            "frames",
            &[
                "captured",
                "processed",
                "missed_deadline",
                "dropped",
                "cancelled",
                "in_flight",
            ],
        ),
        (
            "source",
            &[
                "uri",
                "connected",
                "width",
                "height",
                "fps",
                "interval_jitter_ms_p99",
                "skipped_frames",
            ],
        ),
        ("realtime", &["priority", "cpus", "memory_locked"]),
        ("system", &["rss_bytes", "cpu_load", "temperature_c"]),
        ("memory", &["rss_bytes"]),
        ("config", &["path", "loaded_at", "restart_required"]),
        ("last_result", &["seq", "top"]),
    ];
    for (section, keys) in nested {
        for key in keys {
            assert!(v[section].get(key).is_some(), "{section}.{key} absent: {v}");
        }
    }
    for window in ["latency_ms", "latency_ms_lifetime"] {
        for stage in [
            "end_to_end",
            "capture",
            "queue",
            "inference",
            "preprocess",
            "postprocess",
        ] {
            for key in ["p50", "p90", "p95", "p99", "p999", "max", "mean", "count"] {
                assert!(
                    v[window][stage].get(key).is_some(),
                    "{window}.{stage}.{key} absent"
                );
            }
        }
    }
    let top = &v["last_result"]["top"][0];
    assert!(top["class"].is_u64() && top["score"].is_f64(), "{top}");
    assert!(
        v["last_result"]["top"]
            .as_array()
            .is_some_and(|t| t.len() == 5)
    );
    assert!(
        v["system"]["rss_bytes"]
            .as_u64()
            .is_some_and(|r| r > 1_000_000)
    );
    let (hcode, _) = curl(&sock, "/healthz");
    assert!(hcode == 200 || hcode == 503);
    let (nf, nbody) = curl(&sock, "/nope");
    assert_eq!(nf, 404, "{nbody}");

    let out = child.wait_with_output().expect("daemon exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let processed = summary_field(&stdout, "processed").expect("summary has processed");
    assert!(processed >= n("processed"), "{stdout}");
    assert!(!sock.exists(), "socket removed at exit");
}

/// Runs the daemon on `source` (stdin from `stdin`) until it processed 30 frames, and checks
/// that the chained stages add up to `end_to_end`.
fn assert_stages_add_up(source: &str, stdin: Stdio) {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let sock = dir.path().join("s.sock");
    let mut child = rtinfer_ort()
        .args(["run", "--source", source, "--warmup", "1", "--socket"])
        .arg(&sock)
        .arg("--model")
        .arg(&model)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start daemon");
    assert!(wait_for(&sock, 20.0), "{source}: socket never appeared");
    let v = util::status_until(&sock, 20.0, |v| {
        v["frames"]["processed"].as_u64().unwrap_or(0) >= 30
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        v["frames"]["processed"].as_u64().unwrap_or(0) >= 30,
        "{source}: {v}"
    );
    if let Err(e) = util::stages_add_up(&v) {
        panic!("{source}: {e}: {}", v["latency_ms_lifetime"]);
    }
}

#[test]
fn stages_add_up_to_end_to_end_on_every_source() {
    assert_stages_add_up("synthetic://320x240@60", Stdio::null());
    let dir = util::tempdir();
    let clip = y4m_clip(dir.path(), 20);
    assert_stages_add_up(
        &format!("file://{}?loop=true", clip.display()),
        Stdio::null(),
    );
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).expect("frames folder");
    for i in 0..3u8 {
        image::RgbImage::from_pixel(40, 30, image::Rgb([i * 80, 100, 200]))
            .save(frames.join(format!("{i}.png")))
            .expect("write a PNG");
    }
    assert_stages_add_up(
        &format!("{}?loop=true&fps=60", frames.display()),
        Stdio::null(),
    );
    let mut ff = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=60",
        ])
        .args(["-t", "20", "-pix_fmt", "yuv422p", "-f", "yuv4mpegpipe", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg is installed (scripts/setup.sh)");
    assert_stages_add_up("pipe://", ff.stdout.take().expect("ffmpeg stdout").into());
    let _ = ff.kill();
    let _ = ff.wait();
}

#[test]
fn ffmpeg_pipe_is_processed_and_ends_cleanly() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let sock = dir.path().join("s.sock");
    let mut ff = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=60",
            "-t",
            "3",
        ])
        .args(["-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg is installed (scripts/setup.sh)");
    let out = rtinfer_ort()
        .args(["run", "--source", "pipe://", "--warmup", "1", "--socket"])
        .arg(&sock)
        .arg("--model")
        .arg(&model)
        .stdin(ff.stdout.take().expect("ffmpeg stdout"))
        .output()
        .expect("run daemon");
    assert!(ff.wait().expect("ffmpeg exits").success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let captured = summary_field(&stdout, "captured").expect("captured");
    let processed = summary_field(&stdout, "processed").expect("processed");
    assert_eq!(captured, 180, "3 s at 60 FPS: {stdout}");
    assert!(processed > 0 && processed <= captured, "{stdout}");
}

#[test]
fn timed_duration_is_a_capture_window_that_ends_on_the_period() {
    // `--duration 2` at 100 FPS opens a 2 s window at the first read: 200 frames at most. (Before
    // the window, the stop came from a 20 ms polling loop and counted 201-204.) A loaded machine
    // may lose a few to the pacer's re-anchoring, never add one.
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let out = util::rtinfer_timed()
        .args([
            "run",
            "--source",
            "synthetic://64x48@100",
            "--duration",
            "2",
        ])
        .args(["--warmup", "1", "--socket"])
        .arg(dir.path().join("s.sock"))
        .arg("--model")
        .arg(&model)
        .output()
        .expect("run daemon");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let captured = summary_field(&stdout, "captured").expect("captured");
    assert!((190..=200).contains(&captured), "{stdout}");
    assert!(
        stderr.contains(&format!("duration reached after {captured} frames")),
        "{stderr}"
    );
}

/// Variables ONNX Runtime 1.31 takes as "running on a CI runner" (it then keeps telemetry off
/// by itself), from the library's strings.
const CI_VARIABLES: [&str; 12] = [
    "CI",
    "TF_BUILD",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "CIRCLECI",
    "TRAVIS",
    "JENKINS_URL",
    "CODEBUILD_BUILD_ID",
    "BUILDKITE",
    "TEAMCITY_VERSION",
    "APPVEYOR",
    "BITBUCKET_BUILD_NUMBER",
];

#[test]
fn onnx_runtime_telemetry_is_off_unless_the_user_keeps_it() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let run = |home: &std::path::Path, setting: Option<&str>| {
        std::fs::create_dir_all(home).expect("home");
        let mut c = rtinfer_ort();
        c.args(["run", "--source", "synthetic://64x48@60", "--duration", "1"])
            .args(["--warmup", "1", "--socket"])
            .arg(home.join("s.sock"))
            .arg("--model")
            .arg(&model)
            .env("HOME", home)
            .env_remove("XDG_CACHE_HOME")
            .env_remove("ORT_DISABLE_TELEMETRY");
        for v in CI_VARIABLES {
            c.env_remove(v);
        }
        if let Some(s) = setting {
            c.env("ORT_DISABLE_TELEMETRY", s);
        }
        let out = c.output().expect("run daemon");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        home.join(".cache/Microsoft").exists()
    };
    assert!(
        !run(&dir.path().join("off"), None),
        "ONNX Runtime wrote its telemetry files although rtinfer turns telemetry off"
    );
    // Control: `=0` keeps ONNX Runtime's default, which writes a device id under ~/.cache (unless
    // this machine is a CI runner ONNX Runtime recognises some other way).
    if !run(&dir.path().join("on"), Some("0")) {
        eprintln!("control inconclusive: ONNX Runtime kept telemetry off on its own here");
    }
}

#[test]
fn impossible_budget_makes_every_frame_a_miss_with_at_most_two_log_lines_per_second() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let sock = dir.path().join("s.sock");
    let out = rtinfer_ort()
        .args([
            "run",
            "--source",
            "synthetic://64x48@120",
            "--duration",
            "3",
            "--warmup",
            "1",
        ])
        .args(["--budget-ms", "0.001", "--socket"])
        .arg(&sock)
        .arg("--model")
        .arg(&model)
        .output()
        .expect("run daemon");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let processed = summary_field(&stdout, "processed").expect("processed");
    let missed = summary_field(&stdout, "missed_deadline").expect("missed_deadline");
    assert!(processed > 100, "{stdout}");
    assert_eq!(missed, processed, "every processed frame is late: {stdout}");
    // Log lines about misses, bucketed by the wall-clock second of their timestamp.
    let mut per_second = std::collections::BTreeMap::<String, u32>::new();
    let mut total = 0;
    for line in stderr
        .lines()
        .filter(|l| l.contains("rtinfer::pipeline") && l.contains("WARN"))
    {
        total += 1;
        let second = line.get(1..20).unwrap_or("").to_string();
        *per_second.entry(second).or_default() += 1;
    }
    assert!(total >= 2, "expected miss lines, got:\n{stderr}");
    assert!(
        per_second.values().all(|n| *n <= 2),
        "more than two miss lines in a second: {per_second:?}\n{stderr}"
    );
    assert!(total <= 2 * 5, "{total} miss lines in a 3 s run");
    // Every frame misses, so each period's summary follows its own detailed line ("first shown
    // above"), before the next period's: never two detailed lines in a row.
    let kinds: Vec<bool> = stderr
        .lines()
        .filter(|l| l.contains("rtinfer::pipeline") && l.contains("WARN"))
        .map(|l| l.contains("deadline missed: frame"))
        .collect();
    assert!(
        kinds.windows(2).all(|w| !(w[0] && w[1])),
        "a summary came after the next detailed line:\n{stderr}"
    );
}

#[test]
fn runtime_knobs_have_flags_that_override_the_file() {
    let dir = util::tempdir();
    let sock = dir.path().join("s.sock");
    let sock = sock.to_str().expect("utf-8");
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let m = model.to_str().expect("utf-8");
    let (code, err) = run_fail(
        &["--model", m, "--socket", sock, "--optimization", "turbo"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("onnxruntime.optimization"), "{err}");
    let (code, err) = run_fail(
        &["--model", m, "--socket", sock, "--spinning", "maybe"],
        &[],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--spinning"), "{err}");
    let (code, err) = run_fail(
        &[
            "--model",
            m,
            "--socket",
            sock,
            "--optimization",
            "basic",
            "--spinning",
            "true",
            "--duration",
            "0.3",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
}

#[cfg(not(feature = "tensorrt-double"))]
#[test]
fn a_backend_not_compiled_in_is_a_start_up_failure_saying_how_to_get_it() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let sock = dir.path().join("s.sock");
    let (code, err) = run_fail(
        &[
            "--backend",
            "tensorrt",
            "--model",
            model.to_str().expect("utf-8"),
            "--socket",
            sock.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("tensorrt backend is not compiled into this build"),
        "{err}"
    );
    assert!(err.contains("--features tensorrt"), "{err}");
    assert_eq!(error_lines(&err).len(), 1, "{err}");
}

#[test]
fn onnx_runtime_is_found_in_a_python_environment() {
    // A conda (or virtualenv) prefix holding the onnxruntime wheel's library, and nothing else
    // pointing at it: the search finds it under site-packages/onnxruntime/capi.
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    for var in ["CONDA_PREFIX", "VIRTUAL_ENV"] {
        let prefix = dir.path().join(var);
        let capi = prefix.join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).expect("mkdir");
        std::os::unix::fs::symlink(util::ort_library(), capi.join("libonnxruntime.so.1.31.1"))
            .expect("symlink");
        let out = util::rtinfer()
            .args([
                "run",
                "--source",
                "synthetic://32x32@60",
                "--duration",
                "0.3",
                "--socket",
            ])
            .arg(dir.path().join("s.sock"))
            .arg("--model")
            .arg(&model)
            .env_remove("ORT_DYLIB_PATH")
            .env_remove(if var == "CONDA_PREFIX" {
                "VIRTUAL_ENV"
            } else {
                "CONDA_PREFIX"
            })
            .env(var, &prefix)
            .env("HOME", dir.path().join("nohome"))
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{var}: {err}");
        assert!(
            err.contains(&format!("{}", capi.display())) && err.contains("Python onnxruntime"),
            "{var}: {err}"
        );
    }
}

/// Runs `rtinfer run` with `args` and returns (exit code, stderr).
fn run_fail(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut c = rtinfer_ort();
    c.arg("run").args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run rtinfer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("rtinfer: error"))
        .collect()
}

#[test]
fn bad_input_fails_at_start_with_one_clear_line_and_exit_3() {
    let dir = util::tempdir();
    let sock = dir.path().join("s.sock");
    let sock = sock.to_str().expect("utf-8 path");
    let missing = dir.path().join("missing.onnx");
    let (code, err) = run_fail(
        &[
            "--model",
            missing.to_str().expect("utf-8"),
            "--socket",
            sock,
        ],
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert_eq!(error_lines(&err).len(), 1, "{err}");
    assert!(
        err.contains("missing.onnx") && err.contains("not found"),
        "{err}"
    );

    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, b"this is not a protobuf").expect("write");
    let (code, err) = run_fail(
        &["--model", junk.to_str().expect("utf-8"), "--socket", sock],
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("junk.onnx"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let m = model.to_str().expect("utf-8");
    let (code, err) = run_fail(
        &["--model", m, "--source", "bogus://x", "--socket", sock],
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("bogus://x"), "{err}");

    let (code, err) = run_fail(
        &["--model", m, "--socket", sock],
        &[
            ("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so"),
            ("HOME", "/nonexistent"),
        ],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("tried") && err.contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );
    assert!(err.contains("scripts/setup.sh"), "the fix is named: {err}");
    assert_eq!(err.matches("tried:").count(), 1, "the list once: {err}");
}

#[test]
fn model_with_a_non_image_input_is_refused() {
    use rtinfer::onnx::pb;
    let dir = util::tempdir();
    // A one-node Gemm model: input (1, 16) -> output (1, 4); valid ONNX, not an image.
    let path = dir.path().join("vector.onnx");
    pb::write_model(&path, &gemm_model(16, 4)).expect("write model");
    let sock = dir.path().join("s.sock");
    let (code, err) = run_fail(
        &[
            "--model",
            path.to_str().expect("utf-8"),
            "--socket",
            sock.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("vector.onnx") && err.contains("not an image input"),
        "{err}"
    );
}

/// Writes a Y4M clip of `frames` frames with ffmpeg.
fn y4m_clip(dir: &std::path::Path, frames: u32) -> std::path::PathBuf {
    let p = dir.join("clip.y4m");
    let st = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=60",
            "-frames:v",
        ])
        .arg(frames.to_string())
        .args(["-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe"])
        .arg(&p)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    p
}

#[test]
fn truncated_stream_exits_1_and_frame_boundary_exits_0() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let m = model.to_str().expect("utf-8");
    let sock = dir.path().join("s.sock");
    let sock = sock.to_str().expect("utf-8");
    let clip = y4m_clip(dir.path(), 30);
    let uri = format!("file://{}", clip.display());
    let (code, err) = run_fail(
        &[
            "--model", m, "--source", &uri, "--socket", sock, "--warmup", "1",
        ],
        &[],
    );
    assert_eq!(
        code, 0,
        "a file ending on a frame boundary is a clean stop: {err}"
    );

    let bytes = std::fs::read(&clip).expect("read clip");
    let cut = dir.path().join("cut.y4m");
    let mut f = std::fs::File::create(&cut).expect("create");
    f.write_all(&bytes[..bytes.len() - 1000]).expect("write");
    drop(f);
    let uri = format!("file://{}", cut.display());
    let (code, err) = run_fail(
        &[
            "--model", m, "--source", &uri, "--socket", sock, "--warmup", "1",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert_eq!(error_lines(&err).len(), 1, "{err}");
}

#[test]
fn check_config_accepts_the_example_and_rejects_unknown_keys_with_position() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/rtinfer.toml");
    let out = util::rtinfer()
        .arg("check-config")
        .arg(&example)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = util::tempdir();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[run]\nfps = 60\nbudgett_ms = 5\n").expect("write");
    let out = util::rtinfer()
        .arg("check-config")
        .arg(&bad)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 3, column 1") && err.contains("budgett_ms"),
        "{err}"
    );
}

/// A valid one-node ONNX model, `output = Gemm(input, W, b)` with input (1, n_in): a vector
/// model, the kind of file that must be refused as "not an image input".
pub fn gemm_model(n_in: i64, n_out: i64) -> rtinfer::onnx::pb::ModelProto {
    use rtinfer::onnx::pb;
    let tensor = |name: &str, dims: Vec<i64>| pb::TensorProto {
        name: name.into(),
        data_type: pb::DATA_TYPE_FLOAT,
        float_data: vec![0.5; dims.iter().product::<i64>() as usize],
        dims,
        ..Default::default()
    };
    let node = pb::NodeProto {
        input: vec!["input".into(), "W".into(), "b".into()],
        output: vec!["output".into()],
        name: "gemm".into(),
        op_type: "Gemm".into(),
        attribute: vec![pb::AttributeProto::int("transB", 1)],
        ..Default::default()
    };
    let graph = pb::GraphProto {
        node: vec![node],
        name: "vector".into(),
        initializer: vec![tensor("W", vec![n_out, n_in]), tensor("b", vec![n_out])],
        input: vec![pb::ValueInfoProto::float_tensor("input", &[1, n_in])],
        output: vec![pb::ValueInfoProto::float_tensor("output", &[1, n_out])],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 7,
        producer_name: "rtinfer-tests".into(),
        graph: Some(graph),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        ..Default::default()
    }
}

/// glibc's non-main malloc arenas in a process: each is an anonymous heap whose start is aligned
/// to its reservation (64 MiB on 64-bit targets), read from `/proc/PID/maps`.
fn malloc_arenas(pid: u32) -> usize {
    const HEAP_MAX: u64 = 64 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    maps.lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let start = f[0].split('-').next().expect("range");
            let start = u64::from_str_radix(start, 16).expect("hex address");
            f.len() == 5 && f[1] == "rw-p" && start.is_multiple_of(HEAP_MAX)
        })
        .count()
}

#[test]
fn the_daemon_caps_malloc_arenas_unless_the_environment_says_otherwise() {
    // Every thread that allocates (loader, status workers, stats, ONNX Runtime's) would get an
    // arena of its own, up to 8 per core; the daemon allows two (the main heap and one more).
    let dir = util::tempdir();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).expect("models folder");
    let a = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    std::fs::copy(&a, models.join("a.onnx")).expect("copy a model");
    let sock = dir.path().join("status.sock");
    let mut child = util::Guard::new(
        rtinfer_ort()
            .env_remove("MALLOC_ARENA_MAX")
            .args([
                "run",
                "--source",
                "synthetic://320x240@60",
                "--duration",
                "30",
            ])
            .arg("--socket")
            .arg(&sock)
            .arg("--models")
            .arg(&models)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon"),
    );
    assert!(wait_for(&sock, 20.0), "socket never appeared");
    // A swap (a load on a new loader thread) and status requests on the server's workers.
    std::fs::copy(&a, models.join(".b.tmp")).expect("stage b");
    std::fs::rename(models.join(".b.tmp"), models.join("b.onnx")).expect("rename b in");
    let v = util::status_until(&sock, 20.0, |v| v["model"]["name"] == "b");
    assert_eq!(v["model"]["name"], "b", "b never went live: {v}");
    for _ in 0..20 {
        let (code, _) = curl(&sock, "/status");
        assert_eq!(code, 200);
    }
    let arenas = malloc_arenas(child.id());
    assert!(
        arenas <= 1,
        "{arenas} malloc arenas beside the main heap (at most 1 expected)"
    );
    util::signal(&child, nix::sys::signal::Signal::SIGTERM);
    assert!(child.wait().expect("wait").success());
}
