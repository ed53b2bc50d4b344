//! Issue 15: models as users bring them — symbolic dims, a final Softmax, several outputs, maps —
//! on constructed ONNX graphs through the real binary. Each test fails on the code before it.

use std::path::{Path, PathBuf};
use std::process::Output;

use rtinfer::onnx::pb::{
    self, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, ValueInfoProto, tensor_shape_proto::Dimension,
    tensor_shape_proto::dimension::Value as Dim, type_proto,
};
use serde_json::Value;

use crate::util::{self, rtinfer_ort};

/// A float tensor value whose dims are numbers or symbolic names.
fn value(name: &str, dims: &[&str]) -> ValueInfoProto {
    let mut v = ValueInfoProto::float_tensor(name, &[]);
    if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.shape = Some(TensorShapeProto {
            dim: dims
                .iter()
                .map(|d| Dimension {
                    value: Some(match d.parse::<i64>() {
                        Ok(v) => Dim::DimValue(v),
                        Err(_) => Dim::DimParam(d.to_string()),
                    }),
                    denotation: String::new(),
                })
                .collect(),
        });
    }
    v
}

fn floats(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: pb::DATA_TYPE_FLOAT,
        name: name.into(),
        raw_data: data.iter().flat_map(|f| f.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        op_type: op.into(),
        attribute,
        ..Default::default()
    }
}

fn model(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 8,
        producer_name: "rtinfer-tests".into(),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    }
}

/// `x [N, 3, ?, ?]` (H and W share the name `?`, as Paddle exports) → global average pool →
/// a 2-class Gemm with zero weights and bias `bias` → optional Softmax. The scores are therefore
/// `bias` (or its softmax) on every frame.
fn classifier(bias: [f32; 2], softmax: bool) -> ModelProto {
    let mut nodes = vec![
        node("GlobalAveragePool", &["x"], &["pooled"], vec![]),
        node("Flatten", &["pooled"], &["flat"], vec![]),
        node(
            "Gemm",
            &["flat", "w", "b"],
            &["logits"],
            vec![AttributeProto::int("transB", 1)],
        ),
    ];
    let out = if softmax {
        nodes.push(node("Softmax", &["logits"], &["prob"], vec![]));
        "prob"
    } else {
        "logits"
    };
    model(GraphProto {
        node: nodes,
        name: "cls".into(),
        initializer: vec![floats("w", &[2, 3], &[0.0; 6]), floats("b", &[2], &bias)],
        input: vec![value("x", &["N", "3", "?", "?"])],
        output: vec![value(out, &["N", "2"])],
        ..Default::default()
    })
}

/// `x [N, 3, H, W]` → 1x1 Conv to one channel → Sigmoid: a probability map `[N, 1, H, W]`, as a
/// text detector ends; a second output `logits` (the map before the Sigmoid) when `two`.
fn map_model(two: bool) -> ModelProto {
    let mut output = vec![value("map", &["N", "1", "H", "W"])];
    if two {
        output.push(value("pre", &["N", "1", "H", "W"]));
    }
    model(GraphProto {
        node: vec![
            node("Conv", &["x", "cw", "cb"], &["pre"], vec![]),
            node("Sigmoid", &["pre"], &["map"], vec![]),
        ],
        name: "det".into(),
        initializer: vec![
            floats("cw", &[1, 3, 1, 1], &[0.0; 3]),
            floats("cb", &[1], &[2.0]),
        ],
        input: vec![value("x", &["N", "3", "H", "W"])],
        output,
        ..Default::default()
    })
}

fn write(dir: &Path, name: &str, m: &ModelProto) -> PathBuf {
    let p = dir.join(name);
    pb::write_model(&p, m).expect("write model");
    p
}

/// `rtinfer run` for 1 s of synthetic frames, results written; returns the output and records.
fn run(dir: &Path, model: &Path, extra: &[&str], config: Option<&str>) -> (Output, Vec<Value>) {
    let results = dir.join("results.jsonl");
    let _ = std::fs::remove_file(&results);
    let mut c = rtinfer_ort();
    c.args(["run", "--source", "synthetic://64x48@30", "--duration", "1"])
        .args(["--warmup", "1", "--budget-ms", "1000", "--socket"])
        .arg(dir.join("s.sock"))
        .arg("--model")
        .arg(model)
        .arg("--results")
        .arg(&results)
        .args(extra);
    if let Some(text) = config {
        let cfg = dir.join("c.toml");
        std::fs::write(&cfg, text).expect("config");
        c.arg("--config").arg(cfg);
    }
    let out = c.output().expect("run rtinfer");
    let records = std::fs::read_to_string(&results)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a results line is JSON"))
        .collect();
    (out, records)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn a_symbolic_input_is_refused_with_the_key_to_set_and_the_declared_dims() {
    let dir = util::tempdir();
    let m = write(dir.path(), "cls.onnx", &classifier([1.0, 0.0], false));
    let (out, _) = run(dir.path(), &m, &[], None);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("model.input_shape"), "names the key: {err}");
    assert!(
        err.contains("[N, 3, ?, ?]"),
        "names the declared dims: {err}"
    );
    assert!(err.contains("--input-shape"), "says the flag: {err}");
    // A pin that contradicts a fixed dim is refused naming the key too.
    let (out, _) = run(dir.path(), &m, &["--input-shape", "1x1x8x8"], None);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("model.input_shape 1x1x8x8") && err.contains("fixes it at 3"),
        "{err}"
    );
}

#[test]
fn shared_symbolic_names_are_pinned_by_position_from_the_flag_or_the_config() {
    let dir = util::tempdir();
    // H and W share the name `?` but get 20 and 30.
    let m = write(dir.path(), "cls.onnx", &classifier([1.0, 0.0], false));
    let (out, recs) = run(dir.path(), &m, &["--input-shape", "1x3x20x30"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!recs.is_empty(), "frames were processed");
    assert!(
        stderr(&out).contains("pinned to 1x3x20x30"),
        "{}",
        stderr(&out)
    );
    let (out, recs) = run(
        dir.path(),
        &m,
        &[],
        Some("[model]\ninput_shape = [1, 3, 16, 40]\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!recs.is_empty());
    assert!(stderr(&out).contains("input 3x16x40"), "{}", stderr(&out));
}

#[test]
fn a_model_ending_in_softmax_reports_its_own_probability_not_a_second_softmax() {
    let dir = util::tempdir();
    // softmax([8, 0]) = [0.999665, 0.000335]; a second softmax would make it 0.7309.
    let expect = 1.0 / (1.0 + (-8.0f64).exp());
    let m = write(dir.path(), "cls.onnx", &classifier([8.0, 0.0], true));
    let (out, recs) = run(dir.path(), &m, &["--input-shape", "1x3x8x8"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let last = recs.last().expect("a result");
    assert_eq!(last["kind"], "classify");
    let p = last["top"][0][1].as_f64().expect("score");
    assert_eq!(last["top"][0][0], 0);
    assert!(
        (p - expect).abs() < 1e-5,
        "top-1 {p}, expected {expect}: {last}"
    );
    // Logits (no Softmax in the graph) still get one softmax.
    let m = write(dir.path(), "logits.onnx", &classifier([8.0, 0.0], false));
    let (_, recs) = run(dir.path(), &m, &["--input-shape", "1x3x8x8"], None);
    let p = recs.last().expect("a result")["top"][0][1]
        .as_f64()
        .expect("score");
    assert!((p - expect).abs() < 1e-5, "{p}");
    // `scores = "logits"` overrides the graph: the user asked for the second softmax.
    let m = write(dir.path(), "cls.onnx", &classifier([8.0, 0.0], true));
    let (_, recs) = run(
        dir.path(),
        &m,
        &["--input-shape", "1x3x8x8"],
        Some("[postprocess]\nscores = \"logits\"\n"),
    );
    let p = recs.last().expect("a result")["top"][0][1]
        .as_f64()
        .expect("score");
    let twice = 1.0 / (1.0 + (-(expect - (1.0 - expect))).exp());
    assert!((p - twice).abs() < 1e-5, "{p} vs {twice}");
}

#[test]
fn a_probability_map_is_raw_with_its_shape_never_classes() {
    let dir = util::tempdir();
    let m = write(dir.path(), "det.onnx", &map_model(false));
    let (out, recs) = run(dir.path(), &m, &["--input-shape", "1x3x12x16"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let last = recs.last().expect("a result");
    assert_eq!(last["kind"], "raw", "{last}");
    assert_eq!(last["top"], serde_json::json!([]), "no classes: {last}");
    assert_eq!(last["raw"]["shape"], serde_json::json!([1, 1, 12, 16]));
    // The map is sigmoid(2) everywhere.
    let s = 1.0 / (1.0 + (-2.0f64).exp());
    for k in ["min", "max", "mean"] {
        let v = last["raw"][k].as_f64().expect(k);
        assert!((v - s).abs() < 1e-5, "{k} {v}");
    }
    assert!(!stderr(&out).contains("192 classes"), "{}", stderr(&out));
}

#[test]
fn several_outputs_are_listed_the_one_used_is_said_and_postprocess_output_picks() {
    let dir = util::tempdir();
    let m = write(dir.path(), "two.onnx", &map_model(true));
    let sock = dir.path().join("st.sock");
    let child = rtinfer_ort()
        .args(["run", "--source", "synthetic://64x48@30", "--duration", "3"])
        .args([
            "--warmup",
            "1",
            "--budget-ms",
            "1000",
            "--input-shape",
            "1x3x4x4",
        ])
        .arg("--socket")
        .arg(&sock)
        .arg("--model")
        .arg(&m)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start");
    assert!(util::wait_for(&sock, 20.0), "socket");
    let v = util::status_until(&sock, 10.0, |v| v["last_result"].is_object());
    let outs = v["model"]["outputs"].as_array().expect("outputs listed");
    let names: Vec<&str> = outs.iter().filter_map(|o| o["name"].as_str()).collect();
    assert_eq!(names, ["map", "pre"], "{v}");
    assert_eq!(outs[0]["dtype"], "float32");
    assert_eq!(outs[0]["used"], true);
    assert_eq!(v["last_result"]["kind"], "raw");
    let out = child.wait_with_output().expect("wait");
    let err = stderr(&out);
    assert!(
        err.contains("2 outputs") && err.contains("reading the first, 'map'"),
        "{err}"
    );
    // postprocess.output = "pre": the map before its Sigmoid, 2.0 everywhere.
    let (out, recs) = run(
        dir.path(),
        &m,
        &["--input-shape", "1x3x4x4"],
        Some("[postprocess]\noutput = \"pre\"\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let max = recs.last().expect("a result")["raw"]["max"]
        .as_f64()
        .expect("max");
    assert!((max - 2.0).abs() < 1e-6, "{max}");
    // A name the model does not have: exit 3 listing the outputs.
    let (out, _) = run(
        dir.path(),
        &m,
        &["--input-shape", "1x3x4x4"],
        Some("[postprocess]\noutput = \"nope\"\n"),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("'nope'") && err.contains("map") && err.contains("pre"),
        "{err}"
    );
}

/// One PNG in a one-class ImageFolder tree, for `eval`.
fn image_folder(dir: &Path) -> PathBuf {
    let root = dir.join("images");
    std::fs::create_dir_all(root.join("a")).expect("mkdir");
    image::RgbImage::from_pixel(16, 12, image::Rgb([90, 120, 200]))
        .save(root.join("a/0.png"))
        .expect("png");
    root
}

#[test]
fn the_same_refusal_exits_3_in_every_subcommand_and_the_shape_flag_fixes_each() {
    let dir = util::tempdir();
    let m = write(dir.path(), "cls.onnx", &classifier([1.0, 0.0], false));
    let images = image_folder(dir.path());
    let sub = |args: &[&str]| {
        let out = rtinfer_ort().args(args).output().expect("run rtinfer");
        (
            out.status.code(),
            stderr(&out),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let model = m.to_str().expect("utf-8 path");
    let images = images.to_str().expect("utf-8 path");
    let bench = [
        "bench", model, "--trials", "1", "--warmup", "1", "--runs", "3",
    ];
    let eval = ["eval", model, "--images", images];
    let quantize = ["quantize", model, "--samples", "4", "--check-samples", "2"];
    let (run_code, _) = {
        let (out, _) = run(dir.path(), &m, &[], None);
        (out.status.code(), ())
    };
    assert_eq!(run_code, Some(3));
    for args in [&bench[..], &eval[..], &quantize[..]] {
        let (code, err, _) = sub(args);
        assert_eq!(code, Some(3), "{args:?}: {err}");
        assert!(
            err.contains("model.input_shape") && err.contains("[N, 3, ?, ?]"),
            "{args:?}: {err}"
        );
    }
    // A shape that contradicts the model is the same refusal in inspect.
    let (code, err, _) = sub(&["inspect", model, "--input-shape", "1x4x8x8"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("fixes it at 3"), "{err}");
    // Pinned, each of them runs.
    let (code, err, out) = sub(&[&bench[..], &["--input-shape", "1x3x8x8"]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("(1 thread)"), "singular: {out}");
    let (code, err, out) = sub(&[&eval[..], &["--input-shape", "1x3x8x8"]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("1 samples") || out.contains("samples"),
        "{out}"
    );
    let (code, err, out) = sub(&["inspect", model, "--input-shape", "1x3x8x8", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["macs"], 6, "Gemm 3 -> 2: {v}");
}
