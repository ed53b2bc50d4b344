//! Issue 15, `postprocess.kind = "detect"`: constructed ONNX graphs whose output is a planted
//! YOLO head (a constant tensor plus 0 x ReduceMean(input), so ONNX Runtime really runs them),
//! decoded in process through the real pipeline and end to end through the daemon.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rtinfer::backend::Backend;
use rtinfer::backend::onnx::{OnnxBackend, OrtOptions};
use rtinfer::onnx::pb::{AttributeProto, GraphProto, ModelProto};
use rtinfer::pipeline::{self, Pipeline};
use rtinfer::postprocess::detect::{HeadLayout, Objectness};
use rtinfer::postprocess::{DetectOptions, Detection, Kind, Plan, PostprocessOptions};
use rtinfer::preprocess::{PreprocessOptions, Preprocessor, ResizeMode};
use rtinfer::source::Frame;
use serde_json::Value;

use crate::models::{floats, model, node, stderr, value, write};
use crate::util;

/// A head of `n` candidates, each `attrs` values (`cands` first, zeros after: no score), laid
/// out channels-first (`[1, attrs, n]`) or channels-last (`[1, n, attrs]`).
pub fn head(
    cands: &[Vec<f32>],
    attrs: usize,
    n: usize,
    channels_first: bool,
) -> (Vec<i64>, Vec<f32>) {
    let mut data = vec![0.0; attrs * n];
    for (i, c) in cands.iter().enumerate() {
        assert_eq!(c.len(), attrs);
        for (k, v) in c.iter().enumerate() {
            data[if channels_first {
                k * n + i
            } else {
                i * attrs + k
            }] = *v;
        }
    }
    let shape = if channels_first {
        vec![1, attrs as i64, n as i64]
    } else {
        vec![1, n as i64, attrs as i64]
    };
    (shape, data)
}

/// `x [1, 3, h, w]` → `out = head + 0 * ReduceMean(x)`: the planted head on every frame.
pub fn head_model(h: i64, w: i64, shape: &[i64], data: &[f32]) -> ModelProto {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let dims: Vec<&str> = dims.iter().map(String::as_str).collect();
    let (hs, ws) = (h.to_string(), w.to_string());
    model(GraphProto {
        node: vec![
            node(
                "ReduceMean",
                &["x"],
                &["mean"],
                vec![AttributeProto::int("keepdims", 0)],
            ),
            node("Mul", &["mean", "zero"], &["nothing"], vec![]),
            node("Add", &["head", "nothing"], &["out"], vec![]),
        ],
        name: "yolo".into(),
        initializer: vec![floats("head", shape, data), floats("zero", &[], &[0.0])],
        input: vec![value("x", &["1", "3", &hs, &ws])],
        output: vec![value("out", &dims)],
        ..Default::default()
    })
}

/// The daemon's pipeline for `model`: ONNX Runtime, `resize`, the plan `[postprocess]` decides.
pub fn detect_pipeline(model: &Path, post: &PostprocessOptions, resize: ResizeMode) -> Pipeline {
    detect_pipeline_with(
        model,
        post,
        PreprocessOptions {
            resize,
            ..Default::default()
        },
    )
}

/// [`detect_pipeline`] with every preprocessing option given.
pub fn detect_pipeline_with(
    model: &Path,
    post: &PostprocessOptions,
    pre: PreprocessOptions,
) -> Pipeline {
    let backend = OnnxBackend::new(OrtOptions {
        library: Some(util::ort_library()),
        ..OrtOptions::default()
    })
    .expect("ONNX Runtime loads");
    let engine = backend
        .load(model, &rtinfer::backend::LoadOptions::default())
        .expect("model loads");
    let info = engine.info().clone();
    let pre = Preprocessor::new(info.input, pre).expect("preprocessor");
    let plan = Plan::decide(post, &info.output_shape, info.output_op.as_deref()).expect("a head");
    Pipeline::with_plan(engine, pre, plan)
}

fn detect(d: DetectOptions) -> PostprocessOptions {
    PostprocessOptions {
        kind: Kind::Detect,
        detect: d,
        ..Default::default()
    }
}

/// One `w x h` frame through the pipeline; the boxes it kept.
fn boxes_of(p: &mut Pipeline, w: u32, h: u32) -> Vec<Detection> {
    let frame = Frame::rgb24(w, h);
    let rec = pipeline::process(p, &frame, Duration::from_secs(5));
    assert_eq!(rec.kind_name(), "detect");
    assert_eq!(rec.detections, Some(p.detections().len() as u16));
    p.detections().to_vec()
}

/// A channels-first head of 8 candidates, 2 classes, planting two boxes in a 320x320 model:
/// class 0 at (110, 130)-(210, 190) with 0.9, class 1 at (140, 30)-(180, 50) with 0.8.
fn two_boxes_head() -> (Vec<i64>, Vec<f32>) {
    let cands = vec![
        vec![160.0, 160.0, 100.0, 60.0, 0.9, 0.0],
        vec![160.0, 40.0, 40.0, 20.0, 0.0, 0.8],
    ];
    head(&cands, 6, 8, true)
}

fn model_file(dir: &Path, name: &str, h: i64, w: i64, head: &(Vec<i64>, Vec<f32>)) -> PathBuf {
    write(dir, name, &head_model(h, w, &head.0, &head.1))
}

fn close(d: &Detection, class: u32, score: f32, b: [f32; 4]) -> bool {
    d.class == class
        && (d.score - score).abs() < 1e-5
        && [d.x1, d.y1, d.x2, d.y2]
            .iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() < 1e-3)
}

#[test]
fn both_head_layouts_decode_with_and_without_objectness() {
    let dir = util::tempdir();
    // Three classes. Candidate A: box (20, 24, 10, 8), class 2 at 0.9; B: (40, 40, 6, 6), class
    // 0 at 0.6; C: class 1 at 0.2 (under the threshold). With objectness A's is 0.5 (0.45 in
    // all) and B's 1.0.
    let plain = vec![
        vec![20.0, 24.0, 10.0, 8.0, 0.1, 0.0, 0.9],
        vec![40.0, 40.0, 6.0, 6.0, 0.6, 0.1, 0.0],
        vec![10.0, 10.0, 4.0, 4.0, 0.0, 0.2, 0.0],
    ];
    let with_obj: Vec<Vec<f32>> = plain
        .iter()
        .zip([0.5, 1.0, 1.0])
        .map(|(c, o)| [&c[..4], &[o], &c[4..]].concat())
        .collect();
    let want_plain = [
        (2, 0.9, [15.0, 20.0, 25.0, 28.0]),
        (0, 0.6, [37.0, 37.0, 43.0, 43.0]),
    ];
    let want_obj = [
        (0, 0.6, [37.0, 37.0, 43.0, 43.0]),
        (2, 0.45, [15.0, 20.0, 25.0, 28.0]),
    ];
    // (channels-first, objectness, what auto gives; the keys set when it is not auto's choice)
    for (first, obj) in [(true, false), (false, true), (true, true), (false, false)] {
        let cands = if obj { &with_obj } else { &plain };
        let h = head(cands, cands[0].len(), 16, first);
        let m = model_file(dir.path(), &format!("h{first}{obj}.onnx"), 64, 64, &h);
        let auto_guess = !first;
        let opts = DetectOptions {
            layout: HeadLayout::Auto,
            objectness: if obj == auto_guess {
                Objectness::Auto
            } else if obj {
                Objectness::Yes
            } else {
                Objectness::No
            },
            ..Default::default()
        };
        let mut p = detect_pipeline(&m, &detect(opts), ResizeMode::Stretch);
        let Plan::Detect(d) = *p.plan() else {
            panic!("{:?}", p.plan())
        };
        assert_eq!(
            (d.channels_first, d.objectness, d.classes()),
            (first, obj, 3)
        );
        let got = boxes_of(&mut p, 64, 64);
        let want = if obj { &want_obj } else { &want_plain };
        assert_eq!(got.len(), 2, "first {first} obj {obj}: {got:?}");
        for (g, (c, s, b)) in got.iter().zip(want) {
            assert!(close(g, *c, *s, *b), "first {first} obj {obj}: {g:?}");
        }
    }
}

#[test]
fn nms_threshold_and_cap_on_a_planted_head() {
    let dir = util::tempdir();
    let cands = vec![
        vec![30.0, 30.0, 20.0, 20.0, 0.9, 0.0], // a
        vec![32.0, 30.0, 20.0, 20.0, 0.8, 0.0], // b: same class, IoU 360/440 with a: suppressed
        vec![32.0, 30.0, 20.0, 20.0, 0.0, 0.7], // c: b's box, other class: kept
        vec![50.0, 50.0, 4.0, 4.0, 0.2, 0.0],   // d: under 0.25
        vec![10.0, 50.0, 6.0, 6.0, 0.0, 0.6],   // e
    ];
    let h = head(&cands, 6, 32, true);
    let m = model_file(dir.path(), "nms.onnx", 64, 64, &h);
    let scores = |d: DetectOptions| -> Vec<f32> {
        let mut p = detect_pipeline(&m, &detect(d), ResizeMode::Stretch);
        boxes_of(&mut p, 64, 64).iter().map(|d| d.score).collect()
    };
    let def = DetectOptions::default();
    assert_eq!(scores(def), [0.9, 0.7, 0.6]);
    assert_eq!(
        scores(DetectOptions {
            confidence: 0.1,
            ..def
        }),
        [0.9, 0.7, 0.6, 0.2]
    );
    assert_eq!(
        scores(DetectOptions {
            max_detections: 2,
            ..def
        }),
        [0.9, 0.7]
    );
    assert_eq!(
        scores(DetectOptions { iou: 0.9, ..def }),
        [0.9, 0.8, 0.7, 0.6]
    );
    // The kept box of class 1 is b's box, as planted.
    let mut p = detect_pipeline(&m, &detect(def), ResizeMode::Stretch);
    let got = boxes_of(&mut p, 64, 64);
    assert!(close(&got[1], 1, 0.7, [22.0, 20.0, 42.0, 40.0]), "{got:?}");
}

#[test]
fn boxes_map_back_to_source_pixels_through_every_resize_mode() {
    // A 640x480 frame into a 320x320 model. Box 0 at model (110, 130)-(210, 190); box 1 at
    // (140, 30)-(180, 50), in the letterbox's top padding for its upper part.
    let dir = util::tempdir();
    let h = two_boxes_head();
    let m = model_file(dir.path(), "map.onnx", 320, 320, &h);
    for (mode, b0, b1) in [
        // Stretch: x2, y1.5.
        (
            ResizeMode::Stretch,
            [220.0, 195.0, 420.0, 285.0],
            [280.0, 45.0, 360.0, 75.0],
        ),
        // Letterbox: scale 1/2, picture at y 40..280 of the model; y 30 is padding (clipped to 0).
        (
            ResizeMode::Letterbox,
            [220.0, 180.0, 420.0, 300.0],
            [280.0, 0.0, 360.0, 20.0],
        ),
        // Centre crop: the middle 480x480 (x from 80), scale 1.5.
        (
            ResizeMode::CenterCrop,
            [245.0, 195.0, 395.0, 285.0],
            [290.0, 45.0, 350.0, 75.0],
        ),
    ] {
        let mut p = detect_pipeline(&m, &detect(DetectOptions::default()), mode);
        let got = boxes_of(&mut p, 640, 480);
        assert_eq!(got.len(), 2, "{mode}: {got:?}");
        assert!(close(&got[0], 0, 0.9, b0), "{mode}: {:?}", got[0]);
        assert!(close(&got[1], 1, 0.8, b1), "{mode}: {:?}", got[1]);
    }
    // Letterbox aligned top-left (`[preprocess] align`): the picture fills y 0..240 of the model,
    // so the same boxes land 40 model rows (80 source rows) lower than centred.
    let mut p = detect_pipeline_with(
        &m,
        &detect(DetectOptions::default()),
        PreprocessOptions {
            resize: ResizeMode::Letterbox,
            align: "top-left".parse().expect("an alignment"),
            ..Default::default()
        },
    );
    let got = boxes_of(&mut p, 640, 480);
    assert!(
        close(&got[0], 0, 0.9, [220.0, 260.0, 420.0, 380.0]),
        "{got:?}"
    );
    assert!(
        close(&got[1], 1, 0.8, [280.0, 60.0, 360.0, 100.0]),
        "{got:?}"
    );
}

/// `rtinfer run` on `model` for `secs` of 640x480 synthetic frames with `config`; /status is
/// read while it runs (once a detect result is there), then /metrics.
fn run_daemon(dir: &Path, model: &Path, config: &str, secs: u32) -> Daemon {
    let results = dir.join("results.jsonl");
    let sock = dir.join("d.sock");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, config).expect("config");
    let child = util::rtinfer_ort()
        .args(["run", "--source", "synthetic://640x480@30", "--duration"])
        .arg(secs.to_string())
        .args(["--warmup", "1", "--budget-ms", "1000", "--socket"])
        .arg(&sock)
        .arg("--model")
        .arg(model)
        .arg("--results")
        .arg(&results)
        .arg("--config")
        .arg(&cfg)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run rtinfer");
    let mut child = child;
    let end = std::time::Instant::now() + Duration::from_secs(20);
    // Until the socket is bound, or the daemon refused to start and left.
    while !sock.exists()
        && std::time::Instant::now() < end
        && child.try_wait().expect("wait").is_none()
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, metrics) = if sock.exists() {
        let st = util::status_until(&sock, 20.0, |v| v["last_result"]["kind"] == "detect");
        (st, util::curl(&sock, "/metrics").1)
    } else {
        (Value::Null, String::new())
    };
    // A second of the GET /results stream (curl ends it at --max-time).
    let stream = if sock.exists() {
        let o = std::process::Command::new("curl")
            .args(["-sN", "--max-time", "1", "--unix-socket"])
            .arg(&sock)
            .arg("http://localhost/results")
            .output()
            .expect("curl is installed (scripts/setup.sh)");
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    } else {
        Vec::new()
    };
    let out = child.wait_with_output().expect("rtinfer ends");
    let records = std::fs::read_to_string(&results)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a results line is JSON"))
        .collect();
    Daemon {
        code: out.status.code().unwrap_or(-1),
        err: stderr(&out),
        status,
        metrics,
        records,
        stream,
    }
}

/// What [`run_daemon`] saw.
struct Daemon {
    code: i32,
    err: String,
    status: Value,
    metrics: String,
    records: Vec<Value>,
    /// Records from GET /results.
    stream: Vec<Value>,
}

#[test]
fn the_daemon_carries_boxes_in_source_pixels_to_status_and_results() {
    let dir = util::tempdir();
    let cands = vec![
        vec![160.0, 160.0, 100.0, 60.0, 0.9, 0.0],
        vec![160.0, 40.0, 40.0, 20.0, 0.0, 0.8],
        vec![162.0, 160.0, 100.0, 60.0, 0.7, 0.0], // suppressed by the first
    ];
    let h = head(&cands, 6, 8, true);
    let m = model_file(dir.path(), "yolo.onnx", 320, 320, &h);
    let config = "[preprocess]\nresize = \"letterbox\"\n[postprocess]\nkind = \"detect\"\n";
    let Daemon {
        code,
        err,
        status,
        metrics,
        records,
        stream,
    } = run_daemon(dir.path(), &m, config, 3);
    assert_eq!(code, 0, "{err}");
    assert!(metrics.contains("\nrtinfer_detections 2\n"), "{metrics}");
    let total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rtinfer_detections_total "))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("rtinfer_detections_total");
    assert!(total >= 2.0 && total % 2.0 == 0.0, "{metrics}");
    assert!(err.contains("detect (8 candidates, 2 classes"), "{err}");
    let want = serde_json::json!([
        {"class": 0, "score": 0.9f32, "box": [220.0, 180.0, 420.0, 300.0]},
        {"class": 1, "score": 0.8f32, "box": [280.0, 0.0, 360.0, 20.0]},
    ]);
    let last = &status["last_result"];
    assert_eq!(last["kind"], "detect", "{status}");
    assert_eq!(last["detections"], 2, "{last}");
    assert_eq!(last["boxes"], want, "{last}");
    assert_eq!(last["top"], serde_json::json!([]));
    assert!(!records.is_empty(), "{err}");
    assert!(!stream.is_empty(), "GET /results gave nothing");
    for r in records.iter().chain(&stream) {
        assert_eq!(r["kind"], "detect", "{r}");
        assert_eq!(r["detections"], 2, "{r}");
        assert_eq!(r["boxes"], want, "{r}");
    }
}

/// A detector's class names (Ultralytics' `names` metadata) label its boxes in `/status` and the
/// results, and `/status` `model.labels` says how many and from where.
#[test]
fn a_detectors_class_names_label_its_boxes() {
    let dir = util::tempdir();
    let h = two_boxes_head();
    let mut m = head_model(320, 320, &h.0, &h.1);
    m.metadata_props
        .push(rtinfer::onnx::pb::StringStringEntryProto {
            key: "names".into(),
            value: "{0: 'person', 1: 'bicycle'}".into(),
        });
    let path = write(dir.path(), "named.onnx", &m);
    let config = "[preprocess]\nresize = \"letterbox\"\n[postprocess]\nkind = \"detect\"\n";
    let d = run_daemon(dir.path(), &path, config, 2);
    assert_eq!(d.code, 0, "{}", d.err);
    let labels = &d.status["model"]["labels"];
    assert_eq!(labels["count"], 2, "{labels}");
    assert_eq!(labels["source"], "the model's metadata 'names'", "{labels}");
    let want = serde_json::json!(["person", "bicycle"]);
    let of = |boxes: &Value| -> Value {
        boxes.as_array().map_or(Value::Null, |b| {
            b.iter().map(|x| x["label"].clone()).collect()
        })
    };
    assert_eq!(of(&d.status["last_result"]["boxes"]), want, "{}", d.status);
    assert!(!d.records.is_empty(), "{}", d.err);
    for r in &d.records {
        assert_eq!(of(&r["boxes"]), want, "{r}");
    }
}

#[test]
fn bad_detect_keys_and_unreadable_heads_are_refused_by_name() {
    let dir = util::tempdir();
    let h = head(&[vec![1.0; 6]], 6, 6, true); // [1, 6, 6]: square
    let m = model_file(dir.path(), "square.onnx", 32, 32, &h);
    // check-config and run refuse a bad key alike, naming it.
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[postprocess]\nkind = \"detect\"\niou = 1.5\n").expect("config");
    let check = util::rtinfer()
        .arg("check-config")
        .arg(&cfg)
        .output()
        .expect("check-config");
    assert_eq!(check.status.code(), Some(2), "{}", stderr(&check));
    assert!(
        stderr(&check).contains("postprocess.iou"),
        "{}",
        stderr(&check)
    );
    let Daemon { code, err, .. } = run_daemon(
        dir.path(),
        &m,
        "[postprocess]\nkind = \"detect\"\niou = 1.5\n",
        1,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("postprocess.iou"), "{err}");
    // A detect key under another kind is not silently ignored.
    let Daemon { code, err, .. } =
        run_daemon(dir.path(), &m, "[postprocess]\nconfidence = 0.5\n", 1);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("postprocess.confidence"), "{err}");
    // A square head cannot say which axis is which: refused at start-up naming the key; the key
    // makes it run.
    let Daemon { code, err, .. } =
        run_daemon(dir.path(), &m, "[postprocess]\nkind = \"detect\"\n", 1);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("postprocess.layout"), "{err}");
    let Daemon {
        code, err, records, ..
    } = run_daemon(
        dir.path(),
        &m,
        "[postprocess]\nkind = \"detect\"\nlayout = \"channels-last\"\nobjectness = false\n",
        1,
    );
    assert_eq!(code, 0, "{err}");
    assert!(records.iter().all(|r| r["kind"] == "detect"), "{err}");
}
