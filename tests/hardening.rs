//! Issue 18's defects, each reproduced as it was found: user numbers that overflowed a
//! `Duration`, check-config and run disagreeing, models that never finish, full disks, symlink
//! switches of the watch folder, unbounded per-file state and queues, repeated error causes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::util::{self, signal, status_until, wait_for, zoo_model};

/// `rtinfer check-config` on `text`: (exit code, stderr).
fn check_config(text: &str) -> (Option<i32>, String) {
    let dir = util::tempdir();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).expect("write config");
    let out = util::rtinfer()
        .arg("check-config")
        .arg(&path)
        .output()
        .expect("run check-config");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rtinfer run ARGS` that must refuse to start: (exit code, stderr).
fn run_refused(args: &[&str]) -> (Option<i32>, String) {
    let dir = util::tempdir();
    let sock = dir.path().join("s.sock");
    let out = util::rtinfer_ort()
        .arg("run")
        .args(args)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn overflowing_numbers_are_configuration_errors_not_panics() {
    // check-config itself panicked on duration_s = 1e300 (exit 101).
    let (code, err) = check_config("[run]\nduration_s = 1e300\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("run.duration_s") && !err.contains("panicked"),
        "{err}"
    );
    let (code, err) = check_config("[run]\nduration_s = 1e20\n");
    assert_eq!(code, Some(2), "{err}");
    // run.fps = 1e-20 with budget_ms = 10 made every GET /healthz panic.
    let (code, err) = check_config("[run]\nfps = 1e-20\nbudget_ms = 10\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("run.fps"), "{err}");
    let (code, err) = check_config("[run]\nsource = \"synthetic://320x240@1e-300\"\n");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("run.source") && err.contains("fps"), "{err}");
    let (code, err) = check_config("[realtime]\ncancel_after_ms = inf\n");
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = check_config("[models]\nwatch_dir = \"/tmp\"\nload_timeout_s = 1e300\n");
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn overflowing_numbers_on_the_command_line_are_refused_at_start() {
    let dir = util::tempdir();
    let clip = dir.path().join("c.y4m");
    std::fs::write(
        &clip,
        b"YUV4MPEG2 W2 H2 F30:1 C444\nFRAME\n\0\0\0\0\0\0\0\0\0\0\0\0",
    )
    .unwrap();
    let file_uri = format!("file://{}?fps=1e-30", clip.display());
    // A bad number is a configuration error (2); a source URI that cannot be named is a source
    // that cannot open (3, README "Exit codes"). All four panicked (101).
    for (args, want) in [
        (vec!["--duration", "1e20"], 2),
        (vec!["--source", file_uri.as_str()], 3),
        (vec!["--source", "pipe://?fps=1e-30"], 3),
        (vec!["--source", "synthetic://320x240@1e-300"], 3),
    ] {
        let (code, err) = run_refused(&args);
        assert_eq!(code, Some(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn sighup_with_an_overflowing_value_logs_and_changes_nothing() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let cfg = dir.path().join("rtinfer.toml");
    let sock = dir.path().join("s.sock");
    let source = "[run]\nsource = \"synthetic://64x48@30\"\nbudget_ms = 40\n";
    std::fs::write(&cfg, source).unwrap();
    let child = util::rtinfer_ort()
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
    // The panic of the report: a SIGHUP with duration_s = 1e20 killed the daemon (exit 101).
    std::fs::write(&cfg, format!("{source}duration_s = 1e20\n")).unwrap();
    signal(&child, Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    // And a rate that was "applied" and ran unpaced.
    std::fs::write(
        &cfg,
        "[run]\nsource = \"synthetic://64x48@1e-300\"\nbudget_ms = 40\n",
    )
    .unwrap();
    signal(&child, Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    let v = status_until(&sock, 5.0, |v| v["state"] == "running");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["source"]["fps"].as_f64(), Some(30.0), "{v}");
    assert_eq!(v["budget_ms"].as_f64(), Some(40.0), "{v}");
    signal(&child, Signal::SIGTERM);
    let out = child.wait_with_output().expect("exit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("reload failed").count(), 2, "{err}");
    assert!(
        err.contains("run.duration_s") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn a_full_disk_under_results_is_logged_once_counted_and_shown() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let sock = dir.path().join("s.sock");
    let child = util::rtinfer_ort()
        .args(["run", "--warmup", "1", "--source", "synthetic://64x48@60"])
        .args(["--results", "/dev/full", "--model"])
        .arg(&model)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    assert!(wait_for(&sock, 20.0));
    let v = status_until(&sock, 20.0, |v| v["results"]["lost"].as_u64() > Some(0));
    assert_eq!(v["results"]["path"], "/dev/full", "{v}");
    assert_eq!(v["results"]["written"], 0, "{v}");
    assert!(
        v["results"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left")),
        "{v}"
    );
    signal(&child, Signal::SIGTERM);
    let out = child.wait_with_output().expect("exit");
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(err.matches("results file /dev/full").count(), 1, "{err}");
    assert!(stdout.contains("results /dev/full: 0 written"), "{stdout}");
}

#[test]
fn check_config_and_run_agree_on_every_reproduced_file() {
    let dir = util::tempdir();
    let a_file = dir.path().join("not-a-folder");
    std::fs::write(&a_file, "x").unwrap();
    let cases = [
        ("[preprocess]\nmean = [nan, 0.5, 0.5]\n", "preprocess.mean"),
        ("[status]\nsocket = \"\"\n", "status.socket"),
        (
            "[preprocess]\nmean = [0.1, 0.2, 0.3, 0.4]\n",
            "preprocess.mean",
        ),
        ("[preprocess]\nstd = [1e-45, 0.5, 0.5]\n", "preprocess.std"),
        (
            &format!("[models]\nwatch_dir = \"{}\"\n", a_file.display()),
            "models.watch_dir",
        ),
        (
            "[run]\nsource = \"synthetic://64x48?fps=30&fps=60\"\n",
            "given twice",
        ),
    ];
    for (text, key) in cases {
        let (code, err) = check_config(text);
        assert_eq!(code, Some(2), "check-config {text:?}: {err}");
        assert!(err.contains(key), "check-config {text:?}: {err}");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        // No --socket flag: it would override status.socket.
        let out = util::rtinfer_ort()
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .expect("run");
        let (code, run_err) = (out.status.code(), String::from_utf8_lossy(&out.stderr));
        assert!(
            matches!(code, Some(2 | 3)) && run_err.contains(key),
            "run {text:?} ({code:?}): {run_err}"
        );
    }
    // ?loop=true&loop=false on a file was accepted (the last one won).
    let clip = dir.path().join("c.y4m");
    std::fs::write(
        &clip,
        b"YUV4MPEG2 W2 H2 F30:1 C444\nFRAME\n\0\0\0\0\0\0\0\0\0\0\0\0",
    )
    .unwrap();
    let (code, err) = check_config(&format!(
        "[run]\nsource = \"file://{}?loop=true&loop=false\"\n",
        clip.display()
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("'loop' is given twice"), "{err}");
}

#[test]
fn deep_dotted_keys_report_their_position_and_key_path() {
    for (text, want) in [
        ("run.source.x.y = 1\n", "run.source"),
        ("[power]\nidle_watts.a.b.c = 1\n", "power.idle_watts"),
        ("[preprocess]\nmean.a.b = 1\n", "preprocess.mean"),
    ] {
        let (code, err) = check_config(text);
        assert_eq!(code, Some(2), "{text:?}: {err}");
        assert!(!err.contains("line 0"), "{text:?}: {err}");
        assert!(err.contains(want), "{text:?}: {err}");
    }
}

#[test]
fn the_daemons_own_errors_say_each_cause_once() {
    use rtinfer::causes::each_once;
    use rtinfer::status::StatusError;
    let enoent = || std::io::Error::from_raw_os_error(2);
    // "status socket: status socket ... is already in use: ... already in use" before.
    let in_use = rtinfer::daemon::StartError::Status(StatusError::AlreadyInUse {
        path: "/run/rtinfer/status.sock".into(),
    });
    for line in [each_once(&in_use), in_use.to_string()] {
        assert_eq!(line.matches("already in use").count(), 1, "{line}");
        assert_eq!(line.matches("status socket").count(), 1, "{line}");
    }
    let read = rtinfer::config::ConfigError::Read {
        path: "/etc/rtinfer/x.toml".into(),
        source: enoent(),
    };
    let source = rtinfer::source::SourceError::Open {
        path: "/clip.y4m".into(),
        source: enoent(),
    };
    let meter = rtinfer::power::MeterError::Open {
        device: "/dev/ttyACM0".into(),
        source: enoent(),
    };
    for line in [each_once(&read), each_once(&source), each_once(&meter)] {
        assert_eq!(line.matches("os error 2").count(), 1, "{line}");
    }
}

#[test]
fn the_cli_says_each_cause_once() {
    // A missing ONNX Runtime library: the loader's reason sits one level down in libloading's
    // error and used to be appended twice per place tried.
    let dir = util::tempdir();
    let out = util::rtinfer()
        .args([
            "run",
            "--model",
            "/nonexistent.onnx",
            "--ort-library",
            "/nonexistent/libonnxruntime.so",
        ])
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    for line in err.lines() {
        let n = line.matches("No such file or directory").count();
        assert!(n <= 1, "a cause repeated: {line}");
    }
}

/// How many times the `Loop` of [`looping_model`] turns.
#[derive(Clone, Copy, PartialEq)]
enum Trips {
    /// `max(input) + trips`: the warm-up (on a zero input) never ends.
    WarmUp,
    /// `max(input) * trips`: zero on the warm-up's zero input, endless on real frames.
    RealFrames,
}

/// A model (input 1x3x32x32, 10 scores) whose one node is an ONNX `Loop` that does nothing, many
/// times (see [`Trips`]).
fn looping_model(trips: f32, how: Trips) -> rtinfer::onnx::pb::ModelProto {
    use rtinfer::onnx::pb;
    let typed = |name: &str, elem: i32, shape: &[i64]| {
        let mut v = pb::ValueInfoProto::float_tensor(name, shape);
        if let Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(t)),
            ..
        }) = v.r#type.as_mut()
        {
            t.elem_type = elem;
        }
        v
    };
    const BOOL: i32 = 9;
    let node = |op: &str, inputs: &[&str], outputs: &[&str], attribute| pb::NodeProto {
        input: inputs.iter().map(ToString::to_string).collect(),
        output: outputs.iter().map(ToString::to_string).collect(),
        name: outputs[0].into(),
        op_type: op.into(),
        attribute,
        ..Default::default()
    };
    let body = pb::GraphProto {
        name: "body".into(),
        node: vec![
            node("Identity", &["cond_in"], &["cond_out"], vec![]),
            node("Identity", &["v_in"], &["v_out"], vec![]),
        ],
        input: vec![
            typed("iter", pb::DATA_TYPE_INT64, &[]),
            typed("cond_in", BOOL, &[]),
            pb::ValueInfoProto::float_tensor("v_in", &[1, 10]),
        ],
        output: vec![
            typed("cond_out", BOOL, &[]),
            pb::ValueInfoProto::float_tensor("v_out", &[1, 10]),
        ],
        ..Default::default()
    };
    let mut loop_attr = pb::AttributeProto::int("body", 0);
    loop_attr.i = None;
    loop_attr.g = Some(body);
    loop_attr.r#type = 5; // GRAPH
    let mut nodes = vec![];
    {
        nodes.push(node(
            "ReduceMax",
            &["input"],
            &["peak"],
            vec![pb::AttributeProto::int("keepdims", 0)],
        ));
        let op = if how == Trips::WarmUp { "Add" } else { "Mul" };
        nodes.push(node(op, &["peak", "trips"], &["scaled"], vec![]));
        nodes.push(node(
            "Cast",
            &["scaled"],
            &["M"],
            vec![pb::AttributeProto::int("to", 7)],
        ));
    }
    nodes.push(node(
        "Loop",
        &["M", "cond", "zeros"],
        &["output"],
        vec![loop_attr],
    ));
    let graph = pb::GraphProto {
        node: nodes,
        name: "looping".into(),
        initializer: vec![
            pb::TensorProto {
                name: "trips".into(),
                data_type: pb::DATA_TYPE_FLOAT,
                float_data: vec![trips],
                ..Default::default()
            },
            pb::TensorProto {
                name: "cond".into(),
                data_type: BOOL,
                int32_data: vec![1],
                ..Default::default()
            },
            pb::TensorProto {
                name: "zeros".into(),
                data_type: pb::DATA_TYPE_FLOAT,
                dims: vec![1, 10],
                float_data: vec![0.0; 10],
                ..Default::default()
            },
        ],
        input: vec![pb::ValueInfoProto::float_tensor("input", &[1, 3, 32, 32])],
        output: vec![pb::ValueInfoProto::float_tensor("output", &[1, 10])],
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

/// Polls `GET /models` until `pred` holds.
fn models_until(sock: &Path, secs: f64, pred: impl Fn(&Value) -> bool) -> Value {
    let end = std::time::Instant::now() + Duration::from_secs_f64(secs);
    let mut last = Value::Null;
    while std::time::Instant::now() < end {
        let (code, body) = util::curl(sock, "/models");
        if code == 200 {
            last = serde_json::from_str(&body).unwrap_or(Value::Null);
            if pred(&last) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

fn file_state(models: &Value, name: &str) -> Option<String> {
    models["files"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)
        .and_then(|f| f["state"].as_str().map(String::from))
}

#[test]
fn a_warm_up_that_never_ends_is_terminated_and_a_later_model_loads() {
    // Issue 18 item 5: the abandoned thread spun a core forever and every later model waited
    // for it; `activate` answered 202 and did nothing.
    let _serial = util::serial();
    let dir = util::tempdir();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let good = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let cfg = dir.path().join("rtinfer.toml");
    std::fs::write(
        &cfg,
        format!(
            "[run]\nsource = \"synthetic://64x48@30\"\nwarmup = 2\n[models]\nwatch_dir = \"{}\"\nload_timeout_s = 2\n",
            models.display()
        ),
    )
    .unwrap();
    let sock = dir.path().join("s.sock");
    let child = util::rtinfer_ort()
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    assert!(wait_for(&sock, 20.0));
    let drop_in = |from: &Path, name: &str| {
        let tmp = models.join(format!(".{name}.tmp"));
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, models.join(name)).unwrap();
    };
    let endless = dir.path().join("endless.onnx");
    rtinfer::onnx::pb::write_model(&endless, &looping_model(1e15, Trips::WarmUp)).unwrap();
    drop_in(&endless, "endless.onnx");
    let m = models_until(&sock, 20.0, |m| {
        file_state(m, "endless.onnx").as_deref() == Some("rejected")
    });
    assert_eq!(
        file_state(&m, "endless.onnx").as_deref(),
        Some("rejected"),
        "{m}"
    );
    assert_eq!(
        m["stuck_loads"],
        serde_json::json!([]),
        "terminated, not stuck: {m}"
    );
    // The folder is alive: the next model loads, and activate does what it says.
    drop_in(&good, "good.onnx");
    let m = models_until(&sock, 20.0, |m| {
        file_state(m, "good.onnx").as_deref() == Some("active")
    });
    assert_eq!(
        file_state(&m, "good.onnx").as_deref(),
        Some("active"),
        "{m}"
    );
    let (code, body) = util::curl_unix(&sock, &["-X", "POST"], "/models/endless.onnx/activate");
    assert_eq!(code, 202, "{body}");
    let v = status_until(&sock, 20.0, |v| {
        v["swaps"].as_array().is_some_and(|s| s.len() >= 3)
    });
    let swaps = v["swaps"].as_array().cloned().unwrap_or_default();
    assert_eq!(swaps.len(), 3, "the activation was tried again: {v}");
    assert!(
        swaps[2]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("terminated")),
        "{v}"
    );
    signal(&child, Signal::SIGTERM);
    let out = child.wait_with_output().expect("exit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("\u{1b}["),
        "no ANSI colour from ONNX Runtime: {err}"
    );
}

#[test]
fn a_model_that_hangs_on_real_frames_is_stalled_swappable_and_stoppable() {
    // Issue 18 item 6: /healthz 503 but state `running`, a new model rejected ("did not take the
    // model within 5 s"), SIGTERM ignored.
    let _serial = util::serial();
    let dir = util::tempdir();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let good = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let hang = dir.path().join("hang.onnx");
    rtinfer::onnx::pb::write_model(&hang, &looping_model(1e15, Trips::RealFrames)).unwrap();
    std::fs::copy(&hang, models.join("hang.onnx")).unwrap();
    let sock = dir.path().join("s.sock");
    let child = util::rtinfer_ort()
        .args([
            "run",
            "--warmup",
            "2",
            "--source",
            "synthetic://64x48@30",
            "--models",
        ])
        .arg(&models)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    assert!(wait_for(&sock, 20.0));
    let v = status_until(&sock, 20.0, |v| v["state"] == "stalled");
    assert_eq!(v["state"], "stalled", "{v}");
    let (code, _) = util::curl(&sock, "/healthz");
    assert_eq!(code, 503);
    // A new model still goes live: the stuck run is cancelled (ONNX Runtime can).
    let tmp = models.join(".good.onnx.tmp");
    std::fs::copy(&good, &tmp).unwrap();
    std::fs::rename(&tmp, models.join("good.onnx")).unwrap();
    let v = status_until(&sock, 30.0, |v| {
        v["state"] == "running" && v["model"]["name"] == "good"
    });
    assert_eq!(v["model"]["name"], "good", "{v}");
    assert_eq!(v["state"], "running", "{v}");
    assert!(util::counters_add_up(&v), "{v}");
    signal(&child, Signal::SIGTERM);
    let out = child.wait_with_output().expect("exit");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_ends_a_daemon_whose_model_hangs() {
    let _serial = util::serial();
    let dir = util::tempdir();
    let hang = dir.path().join("hang.onnx");
    rtinfer::onnx::pb::write_model(&hang, &looping_model(1e15, Trips::RealFrames)).unwrap();
    let sock = dir.path().join("s.sock");
    let child = util::rtinfer_ort()
        .args([
            "run",
            "--warmup",
            "2",
            "--source",
            "synthetic://64x48@30",
            "--model",
        ])
        .arg(&hang)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    assert!(wait_for(&sock, 20.0));
    let v = status_until(&sock, 20.0, |v| v["state"] == "stalled");
    assert_eq!(v["state"], "stalled", "{v}");
    signal(&child, Signal::SIGTERM);
    // The stop cancels the stuck run (ONNX Runtime can): a clean exit, not a SIGKILL.
    let out = child.wait_with_output().expect("exit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("cancelling it"), "{err}");
}

#[test]
fn onnx_runtime_log_lines_go_through_our_logger_rate_limited() {
    // Issue 18 item 6: every cancel printed an ANSI-coloured ONNX Runtime ERROR line straight to
    // stderr (148 lines in 7 s).
    let _serial = util::serial();
    let dir = util::tempdir();
    let hang = dir.path().join("hang.onnx");
    rtinfer::onnx::pb::write_model(&hang, &looping_model(1e15, Trips::RealFrames)).unwrap();
    let cfg = dir.path().join("rtinfer.toml");
    std::fs::write(&cfg, "[realtime]\ncancel_after_ms = 20\n").unwrap();
    let sock = dir.path().join("s.sock");
    let child = util::rtinfer_ort()
        .args([
            "run",
            "--warmup",
            "2",
            "--source",
            "synthetic://64x48@60",
            "--config",
        ])
        .arg(&cfg)
        .arg("--model")
        .arg(&hang)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    assert!(wait_for(&sock, 20.0));
    let v = status_until(&sock, 20.0, |v| {
        v["frames"]["cancelled"].as_u64() >= Some(40)
    });
    let cancelled = v["frames"]["cancelled"].as_u64().unwrap_or(0);
    let t = v["uptime_s"].as_f64().unwrap_or(0.0);
    assert!(cancelled >= 40, "{v}");
    signal(&child, Signal::SIGTERM);
    let out = child.wait_with_output().expect("exit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("\u{1b}["), "ANSI colour on stderr: {err}");
    let ort_lines = err
        .lines()
        .filter(|l| l.contains("rtinfer::onnxruntime"))
        .count();
    assert!(
        ort_lines >= 1,
        "ONNX Runtime's lines come through our logger: {err}"
    );
    // At most two a second (plus the second that was running at the stop).
    assert!(
        (ort_lines as f64) <= 2.0 * (t + 2.0) && (ort_lines as u64) < cancelled,
        "{ort_lines} lines for {cancelled} cancels in {t:.1} s"
    );
}

#[test]
fn the_config_regression_inputs_are_refused_without_a_panic() {
    // The inputs in fuzz/regressions/config (issue 18's numbers and keys), through the same
    // steps as the config fuzz target: parse, check, and the reload's rate change (old\0new).
    use rtinfer::config::{Config, changed_keys, parse_raw};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/regressions/config") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        let (old, new) = match bytes.iter().position(|&b| b == 0) {
            Some(i) => (&bytes[..i], &bytes[i + 1..]),
            None => (&b""[..], &bytes[..]),
        };
        let load = |b: &[u8]| {
            let raw = parse_raw(std::str::from_utf8(b).ok()?, Path::new("f.toml")).ok()?;
            let checked = Config::from_raw(raw.clone(), None).ok();
            Some((raw, checked))
        };
        let old = load(old).unwrap_or_default();
        if let Some(new) = load(new) {
            assert!(
                new.1.is_none(),
                "{:?} is accepted",
                String::from_utf8_lossy(&bytes)
            );
            let _ = changed_keys(&old.0, &new.0);
        }
        n += 1;
    }
    assert!(n >= 7, "{n} inputs");
}

/// `POST path` on the Unix socket with std only (1000 curl processes would take longer than the
/// requests): the status code.
fn post_unix(sock: &Path, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_thousand_activations_do_not_queue_a_thousand_reloads() {
    // Issue 18 item 12: 1,000 POST /models/NAME/activate queued 1,000 reloads.
    let _serial = util::serial();
    let dir = util::tempdir();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let good = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    std::fs::copy(&good, models.join("a.onnx")).unwrap();
    let sock = dir.path().join("s.sock");
    let child = util::rtinfer_ort()
        .args([
            "run",
            "--warmup",
            "20",
            "--source",
            "synthetic://64x48@30",
            "--models",
        ])
        .arg(&models)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    assert!(wait_for(&sock, 20.0));
    status_until(&sock, 20.0, |v| v["model"]["name"] == "a");
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..1000 {
        *codes
            .entry(post_unix(&sock, "/models/a.onnx/activate"))
            .or_insert(0) += 1;
    }
    let accepted = codes.get(&202).copied().unwrap_or(0);
    assert_eq!(
        accepted + codes.get(&409).copied().unwrap_or(0),
        1000,
        "every answer is 202 (queued) or 409 (already queued): {codes:?}"
    );
    // Let the loader finish what was queued: at most one activation waits at any time.
    std::thread::sleep(Duration::from_secs(3));
    let (_, metrics) = util::curl(&sock, "/metrics");
    let total = |result: &str| -> u64 {
        let key = format!("rtinfer_swaps_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    let swaps = total("ok") + total("rejected");
    signal(&child, Signal::SIGTERM);
    let _ = child.wait_with_output();
    assert!(accepted < 1000, "some were coalesced: {codes:?}");
    // The start-up load, then one load per accepted activation at most.
    assert!(
        swaps <= accepted + 1,
        "{swaps} swaps for {accepted} accepted: {codes:?}"
    );
}

#[test]
fn an_atomic_symlink_switch_of_the_watch_folder_swaps_the_model() {
    // Issue 18 item 8, end to end: `ln -s relB models.new && mv -T models.new models`.
    let _serial = util::serial();
    let dir = util::tempdir();
    let good = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let (a, b) = (dir.path().join("relA"), dir.path().join("relB"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::copy(&good, a.join("a.onnx")).unwrap();
    std::fs::copy(&good, b.join("b.onnx")).unwrap();
    let link = dir.path().join("models");
    std::os::unix::fs::symlink("relA", &link).unwrap();
    let sock = dir.path().join("s.sock");
    let child = util::rtinfer_ort()
        .args([
            "run",
            "--warmup",
            "2",
            "--source",
            "synthetic://64x48@30",
            "--models",
        ])
        .arg(&link)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    assert!(wait_for(&sock, 20.0));
    let v = status_until(&sock, 20.0, |v| v["model"]["name"] == "a");
    assert_eq!(v["model"]["name"], "a", "{v}");
    let new = dir.path().join("models.new");
    std::os::unix::fs::symlink("relB", &new).unwrap();
    std::fs::rename(&new, &link).unwrap();
    let v = status_until(&sock, 20.0, |v| v["model"]["name"] == "b");
    assert_eq!(v["model"]["name"], "b", "the new folder's model: {v}");
    let m = models_until(&sock, 5.0, |m| file_state(m, "b.onnx").is_some());
    assert_eq!(file_state(&m, "b.onnx").as_deref(), Some("active"), "{m}");
    assert_eq!(
        file_state(&m, "a.onnx"),
        None,
        "the old folder is not listed: {m}"
    );
    signal(&child, Signal::SIGTERM);
    let out = child.wait_with_output().expect("exit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("now resolves to"), "{err}");
}
