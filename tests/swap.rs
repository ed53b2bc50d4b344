//! Hot swap through the real binary: files renamed or written into a real watch folder while the
//! daemon runs at 60 FPS; bad files are rejected with reasons and the active model keeps serving.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::{self, curl, rtinfer_timed, status_until, wait_for, zoo_model};

/// A running daemon on a watch folder, killed (SIGINT) and reaped on drop.
struct Daemon {
    child: Child,
    sock: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, models: &Path, extra: &[&str]) -> Daemon {
    let sock = dir.join("s.sock");
    let child = rtinfer_timed()
        .args([
            "run",
            "--source",
            "synthetic://64x48@60",
            "--warmup",
            "5",
            "--socket",
        ])
        .arg(&sock)
        .arg("--models")
        .arg(models)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start daemon");
    assert!(wait_for(&sock, 30.0), "socket never appeared");
    Daemon { child, sock }
}

/// The documented atomic way: copy to a dotfile in the folder, then rename into place.
fn drop_in(src: &Path, models: &Path, name: &str) {
    let tmp = models.join(format!(".{name}.tmp"));
    std::fs::copy(src, &tmp).expect("copy");
    std::fs::rename(&tmp, models.join(name)).expect("rename");
}

fn swaps(v: &Value) -> Vec<Value> {
    v["swaps"].as_array().cloned().unwrap_or_default()
}

#[test]
fn timed_ten_renames_swap_between_two_frames_with_no_gap() {
    let _serial = util::serial();
    let dir = util::tempdir();
    let small = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let large = zoo_model(dir.path(), "mobilenetv2", "tinyimagenet", 0.25);
    let models = dir.path().join("models");
    std::fs::create_dir(&models).expect("mkdir");
    drop_in(&small, &models, "start.onnx");
    let results = dir.path().join("results.jsonl");
    let d = start(
        dir.path(),
        &models,
        &["--results", results.to_str().expect("utf-8")],
    );
    let v = status_until(&d.sock, 30.0, |v| v["state"] == "running");
    assert_eq!(v["model"]["name"], "start", "{v}");

    for i in 0..10 {
        let (src, name) = if i % 2 == 0 {
            (&large, format!("m{i}.onnx"))
        } else {
            (&small, format!("m{i}.onnx"))
        };
        drop_in(src, &models, &name);
        let want = i + 2; // the start model's load is the first swap
        let v = status_until(&d.sock, 30.0, |v| swaps(v).len() >= want);
        let s = swaps(&v);
        assert_eq!(s.len(), want, "swap {i} never happened: {v}");
        let last = &s[want - 1];
        assert_eq!(last["result"], "ok", "{last}");
        assert_eq!(last["to"], format!("m{i}"), "{last}");
        assert!(last["load_ms"].as_f64().is_some_and(|x| x > 0.0), "{last}");
        let expect_shape = if i % 2 == 0 {
            [1, 3, 64, 64]
        } else {
            [1, 3, 32, 32]
        };
        let v = status_until(&d.sock, 5.0, |v| {
            v["last_result"]["model"] == format!("m{i}")
        });
        assert_eq!(
            v["last_result"]["model"],
            format!("m{i}"),
            "results come from the new model"
        );
        assert_eq!(v["model"]["input_shape"], serde_json::json!(expect_shape));
        std::thread::sleep(Duration::from_millis(300));
    }
    let v = status_until(&d.sock, 1.0, |_| true);
    let f = &v["frames"];
    let n = |k: &str| f[k].as_u64().unwrap_or(u64::MAX);
    assert_eq!(
        n("captured"),
        n("processed") + n("dropped") + n("cancelled") + n("in_flight"),
        "{f}"
    );
    drop(d);

    // Consecutive results, across every swap: no gap of two frame periods or more.
    let text = std::fs::read_to_string(&results).expect("results file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let models_seen: std::collections::BTreeSet<String> = lines
        .iter()
        .filter_map(|l| l["model"].as_str().map(String::from))
        .collect();
    assert_eq!(
        models_seen.len(),
        11,
        "results from every model: {models_seen:?}"
    );
    let mut worst = (0.0f64, 0u64);
    for w in lines.windows(2) {
        let gap = w[1]["done_ms"].as_f64().unwrap_or(0.0) - w[0]["done_ms"].as_f64().unwrap_or(0.0);
        if gap > worst.0 {
            worst = (gap, w[1]["seq"].as_u64().unwrap_or(0));
        }
    }
    assert!(
        worst.0 < 2.0 * 1000.0 / 60.0,
        "largest gap {:.1} ms before frame {}",
        worst.0,
        worst.1
    );
}

#[test]
fn bad_files_are_rejected_and_the_active_model_keeps_serving() {
    let _serial = util::serial();
    let dir = util::tempdir();
    let good = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let models = dir.path().join("models");
    std::fs::create_dir(&models).expect("mkdir");
    drop_in(&good, &models, "good.onnx");
    let d = start(dir.path(), &models, &[]);
    status_until(&d.sock, 30.0, |v| v["state"] == "running");

    // Garbage, a truncated copy of a good model, an unknown extension, a dotfile.
    std::fs::write(models.join("garbage.onnx"), b"definitely not protobuf").expect("write");
    let bytes = std::fs::read(&good).expect("read");
    std::fs::write(models.join("truncated.onnx"), &bytes[..bytes.len() / 2]).expect("write");
    std::fs::write(models.join("notes.txt"), b"hello").expect("write");
    std::fs::write(models.join(".hidden.onnx"), &bytes).expect("write");
    // And a valid ONNX model whose input is not an image (1 x 16).
    let vector = dir.path().join("vector.onnx");
    rtinfer::onnx::pb::write_model(&vector, &crate::daemon::gemm_model(16, 4))
        .expect("write model");
    drop_in(&vector, &models, "vector.onnx");
    let lifetime = |v: &Value| v["latency_ms_lifetime"]["end_to_end"]["count"].as_u64();
    let v = status_until(&d.sock, 30.0, |v| {
        swaps(v)
            .iter()
            .filter(|s| s["result"] == "rejected")
            .count()
            >= 3
    });
    let rejected: Vec<Value> = swaps(&v)
        .into_iter()
        .filter(|s| s["result"] == "rejected")
        .collect();
    assert_eq!(rejected.len(), 3, "{v}");
    for r in &rejected {
        assert!(r["reason"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    }
    assert!(
        rejected.iter().any(|r| r["reason"]
            .as_str()
            .is_some_and(|s| s.contains("not an image input"))),
        "{v}"
    );
    assert_eq!(
        v["model"]["name"], "good",
        "the active model is unchanged: {v}"
    );
    let before = v["frames"]["processed"].as_u64().unwrap_or(0);
    let later = status_until(&d.sock, 5.0, |w| {
        w["frames"]["processed"].as_u64().unwrap_or(0) > before + 30
    });
    assert!(
        later["frames"]["processed"].as_u64().unwrap_or(0) > before + 30,
        "frames keep flowing"
    );
    // The percentiles carry on: the lifetime histogram keeps every frame across the rejections.
    assert!(lifetime(&later) > lifetime(&v), "{later}");
    assert!(util::counters_add_up(&later), "{later}");
    assert_eq!(later["model"]["name"], "good");

    let (code, body) = curl(&d.sock, "/models");
    assert_eq!(code, 200, "{body}");
    let listing: Value = serde_json::from_str(&body).expect("JSON");
    let state = |name: &str| {
        listing["files"]
            .as_array()
            .and_then(|f| f.iter().find(|x| x["name"] == name))
            .map(|x| x["state"].clone())
    };
    assert_eq!(state("good.onnx"), Some(Value::from("active")), "{listing}");
    assert_eq!(
        state("garbage.onnx"),
        Some(Value::from("rejected")),
        "{listing}"
    );
    assert_eq!(
        state("truncated.onnx"),
        Some(Value::from("rejected")),
        "{listing}"
    );
    assert_eq!(
        state("notes.txt"),
        Some(Value::from("ignored")),
        "{listing}"
    );
    assert_eq!(
        state(".hidden.onnx"),
        Some(Value::from("ignored")),
        "{listing}"
    );

    // Re-activating a rejected file goes through the same load path and is rejected again.
    let (code, body) = util::curl_unix(&d.sock, &["-X", "POST"], "/models/garbage.onnx/activate");
    assert_eq!(code, 202, "{body}");
    let v = status_until(&d.sock, 30.0, |v| {
        swaps(v)
            .iter()
            .filter(|s| s["result"] == "rejected")
            .count()
            >= 4
    });
    assert_eq!(
        swaps(&v)
            .iter()
            .filter(|s| s["result"] == "rejected")
            .count(),
        4,
        "{v}"
    );
    let (code, _) = curl(&d.sock, "/models/nope.onnx/activate");
    assert_eq!(code, 405, "GET on activate is refused");

    // Deleting the active file changes nothing but file_present.
    std::fs::remove_file(models.join("good.onnx")).expect("rm");
    let v = status_until(&d.sock, 5.0, |v| v["model"]["file_present"] == false);
    assert_eq!(v["model"]["file_present"], false, "{v}");
    assert_eq!(v["model"]["name"], "good");
}

#[test]
fn a_slow_writer_is_loaded_only_after_close_and_a_missing_folder_is_waited_for() {
    let _serial = util::serial();
    let dir = util::tempdir();
    let good = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let models = dir.path().join("later");
    let d = start(dir.path(), &models, &[]);
    let v = status_until(&d.sock, 5.0, |v| v["state"] == "waiting");
    assert_eq!(
        v["state"], "waiting",
        "no folder, no model: waiting and serving: {v}"
    );
    assert!(v["model"].is_null(), "{v}");

    std::fs::create_dir(&models).expect("mkdir");
    // Wait until the daemon watches the new folder: files written from then on are announced by
    // their close (a file written before the watch exists is taken from a scan).
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < end {
        let (_, body) = curl(&d.sock, "/models");
        if serde_json::from_str::<Value>(&body).is_ok_and(|l| l["watching"] == true) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let bytes = std::fs::read(&good).expect("read");
    let mut f = std::fs::File::create(models.join("slow.onnx")).expect("create");
    f.write_all(&bytes[..bytes.len() / 2]).expect("write half");
    f.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(1500));
    let v = status_until(&d.sock, 1.0, |_| true);
    assert!(
        swaps(&v).is_empty(),
        "nothing is loaded before the writer closes: {v}"
    );
    f.write_all(&bytes[bytes.len() / 2..]).expect("write rest");
    drop(f);
    let v = status_until(&d.sock, 30.0, |v| v["state"] == "running");
    assert_eq!(v["model"]["name"], "slow", "{v}");
    let s = swaps(&v);
    assert_eq!(s.len(), 1, "exactly one load, after the close: {v}");
    assert_eq!(s[0]["result"], "ok");
}
