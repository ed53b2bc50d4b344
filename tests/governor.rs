//! The real-time governor through the real daemon: a ladder of fake-DPU models whose latency the
//! test changes while it runs (the fake's `latency_scale_file`: behaviour, not timing), and a
//! ladder of real ONNX Runtime models ordered by measurement, refused by output, stepped by the
//! budget. Status, metrics, the table row and the pin controls are checked on the way.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{self, curl, curl_unix, status_until, wait_for, zoo_model};
use crate::vitis::fake::{self, Variant};

/// A daemon whose log goes to a file, stopped (SIGINT) and reaped on drop.
struct Daemon {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        util::signal(&self.child, nix::sys::signal::Signal::SIGINT);
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(mut cmd: std::process::Command, dir: &Path, args: &[&str]) -> Daemon {
        let sock = dir.join("s.sock");
        let log = dir.join("daemon.log");
        let child = cmd
            .arg("run")
            .args(args)
            .arg("--socket")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the daemon");
        assert!(wait_for(&sock, 30.0), "socket never appeared");
        Daemon { child, sock, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/status` `governor` once `pred` holds (or the last one after `secs`).
    fn governor_until(&self, secs: f64, pred: impl Fn(&Value) -> bool) -> Value {
        status_until(&self.sock, secs, |v| pred(&v["governor"]))["governor"].clone()
    }
}

fn steps(g: &Value) -> u64 {
    g["steps_total"].as_u64().unwrap_or(u64::MAX)
}

/// The fake DPU at this speed factor from now on (written atomically: the fake reads it at every
/// job).
fn set_scale(file: &Path, factor: f64) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, format!("{factor}\n")).expect("write the scale");
    std::fs::rename(&tmp, file).expect("rename the scale");
}

/// Four fake models whose DPU jobs take 24, 14, 8 and 3 ms times the scale file's factor, named
/// so that their names do not sort by speed.
fn fake_ladder(dir: &Path, scale: &Path) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir(&models).expect("models folder");
    for (name, ms) in [("r1", 14), ("r2", 3), ("r3", 24), ("r4", 8)] {
        fake::model(
            &models,
            name,
            &format!(
                "input data int8 1 32 32 3 fix 6\noutput scores int8 1 10 fix 4\nop affine 1 0\n\
                 latency_ms {ms}\nlatency_scale_file {}\n",
                scale.display()
            ),
        );
    }
    models
}

/// The names of the ladder's rungs, fastest first.
fn ladder_names(g: &Value) -> Vec<String> {
    g["ladder"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|r| r["name"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn timed_the_governor_steps_down_when_latency_rises_up_when_it_falls_holds_pins_and_never_oscillates()
 {
    let _serial = util::serial();
    let dir = util::tempdir();
    let scale = dir.path().join("scale");
    set_scale(&scale, 1.0);
    let models = fake_ladder(dir.path(), &scale);
    let config = fake::config(dir.path(), &fake::library(Variant::Full));
    let mut text = std::fs::read_to_string(&config).expect("config");
    // A 40 ms budget (25 FPS): at x1 every rung fits; at x2.5 the 24 ms rung takes 60 ms and
    // the 14 ms one is predicted at 35 ms, above 40 x 0.75 = 30: the 8 ms rung (20 ms) is the
    // largest that fits, with 20 ms of margin each way, so scheduling noise cannot move it.
    text.push_str(
        "[governor]\nenabled = true\nwindow_s = 1.0\ndown_after_s = 0.3\nup_after_s = 0.6\n\
         cool_down_s = 1.0\nmeasure_runs = 10\nkeep_loaded = \"neighbours\"\n",
    );
    std::fs::write(&config, text).expect("config");
    let port = 20000 + (std::process::id() % 20000) as u16 + 7;
    let tcp_cfg = format!("[status]\ntcp = \"127.0.0.1:{port}\"\n");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).expect("config") + &tcp_cfg,
    )
    .expect("config");
    let cfg = config.to_str().expect("utf-8");
    let m = models.to_str().expect("utf-8");
    let d = Daemon::start(
        util::rtinfer_timed(),
        dir.path(),
        &[
            "--config",
            cfg,
            "--models",
            m,
            "--source",
            "synthetic://64x48@25",
            "--fps",
            "25",
            "--warmup",
            "2",
        ],
    );

    // Measured at load and ordered by latency, not by name; the largest rung that fits serves
    // (at once, or after a step up when a busy machine inflated r3's measured median).
    let g = d.governor_until(30.0, |g| {
        g["model"] == "r3" && g["ladder"][2]["loaded"] == true
    });
    assert_eq!(g["model"], "r3", "{g}");
    assert_eq!(ladder_names(&g), ["r2", "r4", "r1", "r3"], "{g}");
    for (i, want) in [3.0, 8.0, 14.0, 24.0].iter().enumerate() {
        let p50 = g["ladder"][i]["p50_ms"].as_f64().expect("p50");
        assert!(
            p50 >= *want,
            "rung {i} measured {p50} ms < its {want} ms job: {g}"
        );
        assert!(
            g["ladder"][i]["p99_ms"].as_f64().expect("p99") >= p50,
            "{g}"
        );
        assert!(g["ladder"][i]["memory_bytes"].is_u64(), "{g}");
    }
    // Neighbours kept loaded: r1 beside r3; r2 and r4 are not.
    let loaded: Vec<bool> = (0..4)
        .map(|i| g["ladder"][i]["loaded"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(loaded, [false, false, true, true], "{g}");
    assert_eq!(g["steps"]["down"], 0, "{g}");
    let started = steps(&g);
    let s = util::status_until(&d.sock, 5.0, |v| v["last_result"]["model"] == "r3");
    assert_eq!(s["model"]["name"], "r3", "{s}");
    assert!(
        s["swaps"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("governor start: ")),
        "{s}"
    );

    // Constant latency at x1 on the top rung: no step.
    std::thread::sleep(Duration::from_secs(3));
    let g = d.governor_until(1.0, |_| true);
    assert_eq!(
        (g["model"].clone(), steps(&g)),
        ("r3".into(), started),
        "{g}"
    );

    // Latency rises 2.5x: a step down, to r4 (predicted to fit), and it stays there.
    set_scale(&scale, 2.5);
    let g = d.governor_until(15.0, |g| g["model"] == "r4");
    assert_eq!(
        g["model"], "r4",
        "stepped down to the largest rung that fits: {g}"
    );
    assert_eq!(g["last_step"]["direction"], "down", "{g}");
    assert!(
        g["last_step"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("over budget")),
        "{g}"
    );
    let after_down = steps(&g);
    std::thread::sleep(Duration::from_secs(5));
    let g = d.governor_until(1.0, |_| true);
    assert_eq!(g["model"], "r4", "constant latency: it stays: {g}");
    assert_eq!(
        steps(&g),
        after_down,
        "no oscillation under constant latency: {g}"
    );

    // Latency falls back: up to the top (straight to r3 when it is predicted to fit from r4, else
    // by r1), never down on the way.
    let downs = g["steps"]["down"].clone();
    set_scale(&scale, 1.0);
    let g = d.governor_until(20.0, |g| g["model"] == "r3");
    assert_eq!(g["model"], "r3", "stepped back up: {g}");
    assert_eq!(g["steps"]["down"], downs, "{g}");
    assert!(
        (1..=2).contains(&g["steps"]["up"].as_u64().unwrap_or(0)),
        "{g}"
    );
    let top = steps(&g);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        steps(&d.governor_until(1.0, |_| true)),
        top,
        "it stays on top"
    );

    // A pin holds whatever the latency.
    let (code, body) = curl_unix(&d.sock, &["-X", "POST"], "/governor/pin?model=r3");
    assert_eq!(code, 202, "{body}");
    let g = d.governor_until(5.0, |g| g["pinned"] == "r3");
    assert_eq!(g["pinned"], "r3", "{g}");
    set_scale(&scale, 2.5);
    std::thread::sleep(Duration::from_secs(4));
    let s = util::status_until(&d.sock, 1.0, |_| true);
    assert_eq!(s["governor"]["model"], "r3", "pinned: {s}");
    assert!(
        s["frames"]["missed_deadline"].as_u64().unwrap_or(0) > 0,
        "it misses, and holds: {s}"
    );
    // Over TCP control is refused, and changes nothing.
    let o = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("http://127.0.0.1:{port}/governor/unpin"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "403");
    assert_eq!(d.governor_until(0.5, |_| true)["pinned"], "r3");
    // Pinning a model that is not a rung is a 404 naming the rungs.
    let (code, body) = curl_unix(&d.sock, &["-X", "POST"], "/governor/pin?model=nope");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("r2, r4, r1, r3"), "{body}");
    // Unpinned, it steps down again.
    let (code, body) = curl_unix(&d.sock, &["-X", "POST"], "/governor/unpin");
    assert_eq!(code, 202, "{body}");
    let g = d.governor_until(15.0, |g| g["model"] == "r4" && g["pinned"].is_null());
    assert_eq!(
        (g["model"].clone(), g["pinned"].clone()),
        ("r4".into(), Value::Null),
        "{g}"
    );

    // Metrics, the table and the log agree with /status.
    let (code, metrics) = curl(&d.sock, "/metrics");
    assert_eq!(code, 200);
    let g = d.governor_until(1.0, |_| true);
    let m = crate::service::parse_prometheus(&metrics);
    let get = |k: &str| m.get(k).and_then(Value::as_f64).unwrap_or(-1.0);
    assert_eq!(get("rtinfer_governor_rung{}"), 1.0, "{metrics}");
    assert_eq!(get("rtinfer_governor_rungs{}"), 4.0, "{metrics}");
    assert_eq!(
        get("rtinfer_governor_steps_total{direction=up}"),
        g["steps"]["up"].as_f64().unwrap_or(-2.0),
        "{metrics}"
    );
    assert_eq!(
        get("rtinfer_governor_steps_total{direction=down}"),
        g["steps"]["down"].as_f64().unwrap_or(-2.0),
        "{metrics}"
    );
    let out = util::rtinfer()
        .args(["status", "--socket"])
        .arg(&d.sock)
        .output()
        .expect("rtinfer status");
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("governor"))
        .unwrap_or_else(|| panic!("no governor row:\n{table}"));
    assert!(row.contains("rung 2/4 r4"), "{row}");
    let log = d.log();
    let logged = log
        .lines()
        .filter(|l| l.contains("governor: step "))
        .count() as u64;
    assert_eq!(logged, steps(&g), "one log line per step:\n{log}");
    // Each step went through the swap history (start included).
    let s = util::status_until(&d.sock, 1.0, |_| true);
    let governed = s["swaps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|w| {
                    w["reason"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("governor "))
                })
                .count()
        })
        .unwrap_or(0) as u64;
    assert_eq!(governed, steps(&g) + 1, "{s}");
    assert!(util::counters_add_up(&s), "{s}");
}

#[test]
fn timed_real_onnx_runtime_models_form_a_ladder_ordered_by_measurement_and_follow_the_budget() {
    let _serial = util::serial();
    let dir = util::tempdir();
    let generated = dir.path().join("gen");
    std::fs::create_dir(&generated).expect("gen");
    let models = dir.path().join("models");
    std::fs::create_dir(&models).expect("models");
    // Names that sort against the size: "a" is the largest model, "c" the smallest.
    for (ratio, name) in [
        (1.0, "a-large.onnx"),
        (0.5, "b-medium.onnx"),
        (0.25, "c-small.onnx"),
    ] {
        let p = zoo_model(&generated, "mobilenetv2", "cifar10", ratio);
        std::fs::rename(p, models.join(name)).expect("move");
    }
    // Another task's model (200 classes) is refused from the auto ladder.
    let other = zoo_model(&generated, "mobilenetv2", "tinyimagenet", 0.25);
    std::fs::rename(other, models.join("d-other.onnx")).expect("move");
    let config = dir.path().join("c.toml");
    let write_budget = |budget_ms: f64| {
        std::fs::write(
            &config,
            format!(
                "[run]\nbudget_ms = {budget_ms}\n[governor]\nenabled = true\nwindow_s = 1.0\n\
                 down_after_s = 0.3\nup_after_s = 0.5\ncool_down_s = 0.5\nmeasure_runs = 30\n"
            ),
        )
        .expect("config");
    };
    write_budget(1000.0);
    let d = Daemon::start(
        util::rtinfer_timed(),
        dir.path(),
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--models",
            models.to_str().expect("utf-8"),
            "--source",
            "synthetic://64x48@30",
            "--warmup",
            "3",
        ],
    );
    let g = d.governor_until(60.0, |g| g["rung"].is_u64());
    assert_eq!(g["rungs"], 3, "{g}");
    assert_eq!(g["refused"], 1, "{g}");
    // Ordered by measured cost (p10); with a 1 s budget everything fits and the slowest serves.
    let names = ladder_names(&g);
    let p10: Vec<f64> = (0..3)
        .map(|i| g["ladder"][i]["p10_ms"].as_f64().expect("p10"))
        .collect();
    assert!(p10.windows(2).all(|w| w[0] <= w[1]), "{g}");
    assert_eq!(g["model"].as_str(), names.last().map(String::as_str), "{g}");
    assert_eq!(g["ladder"][0]["backend"], "onnxruntime");
    let listing = curl(&d.sock, "/models").1;
    let listing: Value = serde_json::from_str(&listing).expect("GET /models is JSON");
    let state = |name: &str| {
        listing["files"]
            .as_array()
            .and_then(|f| f.iter().find(|x| x["name"] == name))
            .map(|x| x["state"].as_str().unwrap_or("?").to_string())
    };
    assert_eq!(
        state("d-other.onnx").as_deref(),
        Some("rejected"),
        "{listing}"
    );
    let reason = listing["files"]
        .as_array()
        .and_then(|f| f.iter().find(|x| x["name"] == "d-other.onnx"))
        .map(|x| x["reason"].to_string())
        .unwrap_or_default();
    assert!(
        reason.contains("[1, 200]") && reason.contains("[1, 10]"),
        "{reason}"
    );
    let active = format!("{}.onnx", g["model"].as_str().unwrap_or("?"));
    assert_eq!(state(&active).as_deref(), Some("active"), "{listing}");
    assert_eq!(
        listing["files"]
            .as_array()
            .map(|f| f.iter().filter(|x| x["state"] == "ladder").count()),
        Some(2),
        "{listing}"
    );

    // A budget nothing meets (SIGHUP): down to the fastest rung, which stays.
    write_budget(0.001);
    util::signal(&d.child, nix::sys::signal::Signal::SIGHUP);
    let fastest = names[0].clone();
    let g = d.governor_until(20.0, |g| g["model"] == fastest.as_str());
    assert_eq!(g["model"], fastest.as_str(), "{g}");
    assert_eq!(g["rung"], 0);
    let bottom = steps(&g);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        steps(&d.governor_until(0.5, |_| true)),
        bottom,
        "nothing lower to go to"
    );

    // A generous budget again: back up to the slowest.
    write_budget(1000.0);
    util::signal(&d.child, nix::sys::signal::Signal::SIGHUP);
    let slowest = names[2].clone();
    let t = Instant::now();
    let g = d.governor_until(30.0, |g| g["model"] == slowest.as_str());
    assert_eq!(g["model"], slowest.as_str(), "after {:?}: {g}", t.elapsed());
    let s = util::status_until(&d.sock, 5.0, |v| {
        v["last_result"]["model"] == slowest.as_str()
    });
    assert_eq!(
        s["model"]["name"],
        slowest.as_str(),
        "results come from the rung: {s}"
    );
    // The step log says why, with the figures.
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("governor: step down") && l.contains("budget 0.00 ms")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("governor: step up") && l.contains("predicted p99")),
        "{log}"
    );
}

#[test]
fn the_governor_is_refused_without_a_watch_folder_or_with_a_fixed_model() {
    let dir = util::tempdir();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[governor]\nenabled = true\n").expect("config");
    let o = util::rtinfer()
        .arg("check-config")
        .arg(&cfg)
        .output()
        .expect("check-config");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("governor.enabled") && err.contains("watch_dir"),
        "{err}"
    );
    std::fs::write(
        &cfg,
        "[run]\nmodel = \"/m/a.onnx\"\n[models]\nwatch_dir = \"/m\"\n[governor]\nenabled = true\n",
    )
    .expect("config");
    let o = util::rtinfer()
        .arg("check-config")
        .arg(&cfg)
        .output()
        .expect("check-config");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("run.model"));
}

#[test]
fn without_the_governor_status_says_so_and_pins_are_refused() {
    let dir = util::tempdir();
    let model = zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let d = Daemon::start(
        util::rtinfer_ort(),
        dir.path(),
        &[
            "--model",
            model.to_str().expect("utf-8"),
            "--source",
            "synthetic://64x48@30",
            "--warmup",
            "1",
        ],
    );
    let v = status_until(&d.sock, 20.0, |v| v["state"] == "running");
    assert_eq!(v["governor"]["enabled"], false, "{v}");
    assert!(v["governor"]["rung"].is_null() && v["governor"]["ladder"] == serde_json::json!([]));
    let (code, body) = curl_unix(&d.sock, &["-X", "POST"], "/governor/pin");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("[governor] enabled"), "{body}");
    let (_, metrics) = curl(&d.sock, "/metrics");
    assert!(!metrics.contains("rtinfer_governor"), "{metrics}");
}

#[test]
fn rtinfer_ladder_writes_a_working_ladder_from_nothing() {
    let dir = util::tempdir();
    let to = dir.path().join("models");
    let o = util::rtinfer_ort()
        .args([
            "ladder",
            "--arch",
            "mobilenetv2",
            "--dataset",
            "cifar10",
            "--ratios",
            "0.5,0.25",
            "--precisions",
            "fp32,int8",
            "--budget-ms",
            "1000",
            "--trials",
            "1",
            "--json",
            "--to",
        ])
        .arg(&to)
        .output()
        .expect("rtinfer ladder");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&o.stdout).expect("a JSON report");
    let candidates = report["candidates"].as_array().expect("candidates");
    assert_eq!(candidates.len(), 4, "{report}");
    // Largest first: 0.5 fp32, 0.5 int8, 0.25 fp32, 0.25 int8; the first always fits 1 s.
    assert_eq!(candidates[0]["file"], "mobilenetv2-cifar10-r0.5.onnx");
    assert_eq!(candidates[1]["precision"], "int8");
    assert_eq!(candidates[0]["kept"], true, "{report}");
    let mut kept: Vec<String> = candidates
        .iter()
        .filter(|c| c["kept"] == true)
        .map(|c| c["file"].as_str().unwrap_or("?").to_string())
        .collect();
    // Each kept rung is faster (p50) than the one kept above it; each dropped one says why.
    let p50s: Vec<f64> = candidates
        .iter()
        .filter(|c| c["kept"] == true)
        .map(|c| c["p50_ms"].as_f64().unwrap_or(f64::NAN))
        .collect();
    assert!(p50s.windows(2).all(|w| w[1] < w[0]), "{report}");
    assert!(
        candidates
            .iter()
            .all(|c| c["kept"] == true || c["reason"].is_string()),
        "{report}"
    );
    // The folder holds exactly the rungs: nothing half-written, no work folder left.
    let mut files: Vec<String> = std::fs::read_dir(&to)
        .expect("the folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    kept.sort();
    assert_eq!(files, kept, "{report}");

    // The daemon's governor takes them as its ladder.
    let config = dir.path().join("c.toml");
    let list: Vec<String> = kept.iter().map(|k| format!("\"{k}\"")).collect();
    std::fs::write(
        &config,
        format!(
            "[governor]\nenabled = true\nmeasure_runs = 10\nladder = [{}]\n",
            list.join(", ")
        ),
    )
    .expect("config");
    let d = Daemon::start(
        util::rtinfer_ort(),
        dir.path(),
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "--models",
            to.to_str().expect("utf-8"),
            "--source",
            "synthetic://64x48@30",
            "--warmup",
            "2",
            "--budget-ms",
            "1000",
        ],
    );
    let g = d.governor_until(60.0, |g| g["rung"].is_u64() && g["rungs"] == kept.len());
    assert_eq!(g["rungs"], kept.len(), "{g}");
    let v = status_until(&d.sock, 10.0, |v| v["state"] == "running");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["model"]["name"], g["model"], "{v}");
}
