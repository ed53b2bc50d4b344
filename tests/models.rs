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
pub fn value(name: &str, dims: &[&str]) -> ValueInfoProto {
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

pub fn floats(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: pb::DATA_TYPE_FLOAT,
        name: name.into(),
        raw_data: data.iter().flat_map(|f| f.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub fn node(
    op: &str,
    inputs: &[&str],
    outputs: &[&str],
    attribute: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        op_type: op.into(),
        attribute,
        ..Default::default()
    }
}

pub fn model(graph: GraphProto) -> ModelProto {
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

pub fn write(dir: &Path, name: &str, m: &ModelProto) -> PathBuf {
    let p = dir.join(name);
    pb::write_model(&p, m).expect("write model");
    p
}

/// `rtinfer run` for 1 s of synthetic frames, results written; returns the output and records.
pub fn run(dir: &Path, model: &Path, extra: &[&str], config: Option<&str>) -> (Output, Vec<Value>) {
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

pub fn stderr(o: &Output) -> String {
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
fn a_pinned_model_finds_its_external_weights_next_to_it() {
    // Pinning loads the rewritten model from memory; its external-data file must still be
    // found in the model's folder (it was not: "External data path validation failed").
    let dir = util::tempdir();
    let mut m = classifier([1.0, 0.0], false);
    let graph = m.graph.as_mut().expect("graph");
    let b = graph
        .initializer
        .iter_mut()
        .find(|t| t.name == "b")
        .expect("bias initializer");
    std::fs::write(dir.path().join("cls.bin"), &b.raw_data).expect("external data");
    let entry = |key: &str, value: String| pb::StringStringEntryProto {
        key: key.into(),
        value,
    };
    b.external_data = vec![
        entry("location", "cls.bin".into()),
        entry("offset", "0".into()),
        entry("length", b.raw_data.len().to_string()),
    ];
    b.data_location = 1;
    b.raw_data.clear();
    let path = write(dir.path(), "cls.onnx", &m);
    let (out, recs) = run(dir.path(), &path, &["--input-shape", "1x3x20x30"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!recs.is_empty(), "frames were processed");
    // Zero weights: the bias alone decides, so class 0 wins only if the file was read.
    assert!(
        recs.iter().all(|r| r["top"][0][0] == 0),
        "{:?}",
        recs.first()
    );
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

/// Class names reach the results: from the model's metadata (`names`, Ultralytics' dict), and from
/// a label file beside the model, which wins; an unreadable label file does not stop the model.
#[test]
fn class_names_from_metadata_or_a_label_file_name_the_results() {
    let dir = util::tempdir();
    let mut m = classifier([8.0, 0.0], true);
    m.metadata_props
        .push(rtinfer::onnx::pb::StringStringEntryProto {
            key: "names".into(),
            value: "{0: 'cat', 1: 'dog'}".into(),
        });
    let path = write(dir.path(), "pets.onnx", &m);
    let (out, recs) = run(dir.path(), &path, &["--input-shape", "1x3x8x8"], None);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("2 class names from the model's metadata 'names'"),
        "{err}"
    );
    let last = recs.last().expect("a result");
    assert_eq!(last["top"][0][0], 0, "{last}");
    assert_eq!(last["labels"], serde_json::json!(["cat", "dog"]), "{last}");

    // A label file beside it wins; a class without a name is null.
    std::fs::write(dir.path().join("pets.labels.txt"), "tabby\n").expect("labels");
    let (out, recs) = run(dir.path(), &path, &["--input-shape", "1x3x8x8"], None);
    let err = stderr(&out);
    assert!(err.contains("1 class names from"), "{err}");
    assert!(err.contains("1 class names for 2 classes"), "warned: {err}");
    let last = recs.last().expect("a result");
    assert_eq!(last["labels"], serde_json::json!(["tabby", null]), "{last}");

    // An unreadable label file is said and skipped: the metadata names it again.
    std::fs::write(dir.path().join("pets.labels.txt"), [0xffu8, 0xfe]).expect("labels");
    let (out, recs) = run(dir.path(), &path, &["--input-shape", "1x3x8x8"], None);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("not UTF-8"), "{err}");
    assert_eq!(
        recs.last().expect("a result")["labels"],
        serde_json::json!(["cat", "dog"])
    );

    // Without names, `labels` is null and `top` unchanged.
    let plain = write(dir.path(), "plain.onnx", &classifier([8.0, 0.0], true));
    let (_, recs) = run(dir.path(), &plain, &["--input-shape", "1x3x8x8"], None);
    let last = recs.last().expect("a result");
    assert_eq!(last["labels"], Value::Null, "{last}");
    assert_eq!(last["top"][0][0], 0, "{last}");
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

/// Dark strokes in three lines on white, like a page of text (a detector's map lights up).
fn text_like_page() -> image::RgbImage {
    let mut img = image::RgbImage::from_pixel(320, 240, image::Rgb([250, 250, 245]));
    for line in 0..3u32 {
        let y0 = 40 + line * 70;
        for ch in 0..14u32 {
            let x0 = 20 + ch * 20;
            for (x, y, p) in img.enumerate_pixels_mut() {
                let (dx, dy) = (x.wrapping_sub(x0), y.wrapping_sub(y0));
                let stroke = dx < 14
                    && dy < 24
                    && (dx < 3 || dy < 3 || dy.abs_diff(12) < 2 || (dx + ch) % 7 < 2);
                if stroke {
                    *p = image::Rgb([20, 20, 30]);
                }
            }
        }
    }
    img
}

/// The pretrained models `scripts/setup.sh` takes from the rapidocr-onnxruntime wheel.
fn wheel_model(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".cache/models/rapidocr-1.4.4")
        .join(name);
    assert!(p.is_file(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// One third-party model end to end: the daemon starts with the pinned shape and lists the
/// output; the scores rtinfer computes on a preprocessed frame equal ONNX Runtime's Python API
/// on the same tensor within 1e-4; inspect's parameter count equals the initializer and
/// Constant-node weights (counted with the onnx package). Returns the postprocessed summary.
fn third_party(
    name: &str,
    shape: [i64; 4],
    output: &str,
    kind: &str,
) -> rtinfer::postprocess::Summary {
    use rtinfer::backend::onnx::{OnnxBackend, OrtOptions};
    use rtinfer::backend::{Backend, LoadOptions};
    let model = wheel_model(name);
    let dir = util::tempdir();
    let shape_text = rtinfer::onnx::shape::format_shape(&shape);
    // Start-up accepted with a pinned shape, the outputs listed, the results of the right kind.
    let (out, recs) = run(dir.path(), &model, &["--input-shape", &shape_text], None);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("outputs {output} ")),
        "outputs listed: {err}"
    );
    assert_eq!(recs.last().expect("a result")["kind"], kind);

    // In process: the daemon's own engine and preprocessing on one synthetic frame.
    util::ort_env();
    let backend = OnnxBackend::new(OrtOptions {
        library: Some(util::ort_library()),
        ..OrtOptions::default()
    })
    .expect("ONNX Runtime");
    let opts = LoadOptions {
        input_shape: Some(shape.to_vec()),
        ..LoadOptions::default()
    };
    let mut engine = backend.load(&model, &opts).expect("pinned model loads");
    let info = engine.info().clone();
    assert_eq!(info.outputs[info.output].name, output);
    let mut pre = rtinfer::preprocess::Preprocessor::new(info.input, Default::default())
        .expect("preprocessor");
    let frames = dir.path().join("frames");
    std::fs::create_dir_all(&frames).expect("mkdir");
    text_like_page().save(frames.join("0.png")).expect("png");
    let uri = format!("file://{}/", frames.display());
    let mut src = rtinfer::source::open(&rtinfer::source::SourceSpec::parse(&uri).expect("uri"))
        .expect("image folder");
    let mut frame = rtinfer::source::Frame::with_capacity(320 * 240 * 3);
    while !matches!(
        src.next(&mut frame, std::time::Duration::from_secs(1))
            .expect("frame"),
        rtinfer::source::Capture::Frame
    ) {}
    pre.run(&frame, engine.input()).expect("preprocess");
    let input: Vec<f32> = match engine.input() {
        rtinfer::tensor::InputBufMut::F32(b) => b.to_vec(),
        rtinfer::tensor::InputBufMut::I8(_) => panic!("ONNX Runtime takes float32"),
    };
    engine.run().expect("run");
    let ours = engine.output().to_vec();

    let input_path = dir.path().join("input.f32");
    let out_path = dir.path().join("out.f32");
    std::fs::write(
        &input_path,
        input
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .expect("write input");
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/venv-models/bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models_reference.py");
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let o = std::process::Command::new(&python)
        .arg(&script)
        .arg(&model)
        .arg(&input_path)
        .args(&dims)
        .arg(output)
        .arg(&out_path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/setup.sh makes it)", python.display()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference: Value = serde_json::from_slice(&o.stdout).expect("reference JSON");
    let theirs: Vec<f32> = std::fs::read(&out_path)
        .expect("reference output")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(
        ours.len(),
        theirs.len(),
        "{:?} vs {}",
        info.output_shape,
        reference["shape"]
    );
    assert_eq!(
        serde_json::json!(info.output_shape),
        reference["shape"],
        "output shape"
    );
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4,
        "{name}: max |rtinfer - onnxruntime| = {worst}"
    );
    eprintln!(
        "{name}: {} values, max |rtinfer - onnxruntime (python)| = {worst:e}",
        ours.len()
    );

    // inspect's params: initializers and Constant-node weights.
    let o = rtinfer_ort()
        .args(["inspect", "--json", "--input-shape", &shape_text])
        .arg(&model)
        .output()
        .expect("inspect");
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).expect("inspect JSON");
    assert!(reference["params"].as_u64().expect("count") > 0);
    assert_eq!(r["params"], reference["params"], "inspect params");
    // MACs with every node sized (Resize, Slice, Reduce*, shape arithmetic), equal to a count
    // over onnx's own shape inference.
    assert_eq!(r["macs_complete"], true, "{}", r["unsized_ops"]);
    assert!(
        reference["macs"].as_u64().is_some(),
        "onnx sized every MAC node"
    );
    assert_eq!(r["macs"], reference["macs"], "inspect MACs");
    eprintln!("{name}: params {} MACs {}", r["params"], r["macs"]);

    // What the pipeline makes of the output, as the daemon decides it.
    let post = rtinfer::postprocess::Plan::decide(
        &Default::default(),
        &info.output_shape,
        info.output_op.as_deref(),
    )
    .expect("auto never refuses");
    let mut scratch = rtinfer::postprocess::Scratch::for_plan(&post, ours.len());
    post.run(
        &ours,
        &mut scratch,
        &rtinfer::postprocess::BoxMap::identity(1, 1),
    )
}

#[test]
fn a_pretrained_paddle_classifier_from_a_wheel_matches_onnx_runtime() {
    let s = third_party(
        "ch_ppocr_mobile_v2.0_cls_infer.onnx",
        [1, 3, 48, 192],
        "save_infer_model/scale_0.tmp_1",
        "classify",
    );
    // It ends in Softmax: its two scores sum to 1 as they are, and are reported as they are.
    let top = s.top();
    assert_eq!(top.len(), 2);
    assert!((top[0].1 + top[1].1 - 1.0).abs() < 1e-4, "{top:?}");
}

#[test]
fn a_pretrained_paddle_text_detector_from_a_wheel_matches_onnx_runtime() {
    let s = third_party(
        "ch_PP-OCRv4_det_infer.onnx",
        [1, 3, 96, 128],
        "sigmoid_0.tmp_0",
        "raw",
    );
    let r = s.raw().expect("a probability map is raw");
    assert_eq!(r.shape(), &[1, 1, 96, 128]);
    assert!(s.top().is_empty(), "never classes");
    assert!(r.min >= 0.0 && r.max <= 1.0, "{r:?}");
    assert!(r.max > r.min, "a map, not a constant: {r:?}");
    eprintln!("{r:?}");
}

/// An exporter's graph: weights in Constant nodes, Identity copies, shape arithmetic
/// (`Shape -> Gather -> Mul -> Concat -> Reshape`), Resize by scales, Slice, ReduceMean, Split.
/// inspect counts the Constant weights, sizes every node (so MACs are complete), and its CDL
/// counts compute nodes only.
#[test]
fn inspect_counts_constant_weights_sizes_exporter_ops_and_skips_copies_in_the_cdl() {
    let int64 = |name: &str, v: &[i64]| TensorProto {
        dims: vec![v.len() as i64],
        data_type: pb::DATA_TYPE_INT64,
        name: name.into(),
        raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ..Default::default()
    };
    let constant = |t: TensorProto| {
        let out = t.name.clone();
        NodeProto {
            output: vec![out],
            op_type: "Constant".into(),
            attribute: vec![AttributeProto {
                name: "value".into(),
                t: Some(t),
                r#type: pb::attribute_type::TENSOR,
                ..Default::default()
            }],
            ..Default::default()
        }
    };
    let g = GraphProto {
        node: vec![
            constant(floats("w", &[4, 3, 3, 3], &[0.1; 108])),
            node(
                "Conv",
                &["x", "w"],
                &["c"],
                vec![AttributeProto::ints("pads", &[1, 1, 1, 1])],
            ),
            node("Identity", &["c"], &["c2"], vec![]),
            node("Relu", &["c2"], &["r"], vec![]),
            // Resize x2 by constant scales: [1, 4, 8, 8] -> [1, 4, 16, 16].
            constant(floats("scales", &[4], &[1.0, 1.0, 2.0, 2.0])),
            node("Resize", &["r", "", "scales"], &["up"], vec![]),
            // Keep rows 0..8 of 16: [1, 4, 8, 16].
            constant(int64("s0", &[0])),
            constant(int64("s1", &[8])),
            constant(int64("ax", &[2])),
            node("Slice", &["up", "s0", "s1", "ax"], &["sl"], vec![]),
            node(
                "ReduceMean",
                &["sl"],
                &["m"],
                vec![AttributeProto::ints("axes", &[3])],
            ),
            // Shape arithmetic: reshape [1, 4, 8, 1] to [1, 4 * 8].
            node("Shape", &["m"], &["shp"], vec![]),
            constant(int64("i1", &[1])),
            constant(int64("i2", &[2])),
            node("Gather", &["shp", "i1"], &["d1"], vec![]),
            node("Gather", &["shp", "i2"], &["d2"], vec![]),
            node("Mul", &["d1", "d2"], &["d12"], vec![]),
            constant(int64("one", &[1])),
            node(
                "Concat",
                &["one", "d12"],
                &["target"],
                vec![AttributeProto::int("axis", 0)],
            ),
            node("Reshape", &["m", "target"], &["flat"], vec![]),
            constant(floats("fw", &[32, 2], &[0.0; 64])),
            node("MatMul", &["flat", "fw"], &["y"], vec![]),
        ],
        name: "exporter".into(),
        input: vec![value("x", &["N", "3", "H", "W"])],
        output: vec![value("y", &["N", "2"])],
        ..Default::default()
    };
    let dir = util::tempdir();
    let m = write(dir.path(), "exp.onnx", &model(g));
    let o = rtinfer_ort()
        .args(["inspect", "--json", "--input-shape", "1x3x8x8"])
        .arg(&m)
        .output()
        .expect("inspect");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["params"], 108 + 64, "Constant-node weights count: {v}");
    assert_eq!(v["conv_widths"], serde_json::json!([4]));
    assert_eq!(v["macs_complete"], true, "{}", v["unsized_ops"]);
    // Conv: 4 x 8 x 8 outputs x 27; MatMul: 1 x 2 x 32.
    assert_eq!(v["macs"], 4 * 8 * 8 * 27 + 2 * 32);
    // Conv, Relu, Resize, Slice, ReduceMean, Reshape, MatMul (no Identity, Constant, Shape,
    // nor the shape arithmetic).
    assert_eq!(v["cdl"], 7, "{v}");
}

#[test]
fn an_opset_11_model_quantizes_and_a_disagreeing_int8_model_is_not_written_without_force() {
    let model = wheel_model("ch_ppocr_mobile_v2.0_cls_infer.onnx");
    let dir = util::tempdir();
    let out = dir.path().join("cls.int8.onnx");
    let q = |extra: &[&str]| {
        let o = rtinfer_ort()
            .arg("quantize")
            .arg(&model)
            .arg("-o")
            .arg(&out)
            .args([
                "--input-shape",
                "1x3x48x192",
                "--samples",
                "16",
                "--check-samples",
                "8",
            ])
            .args(extra)
            .output()
            .expect("quantize");
        (
            o.status.code(),
            stderr(&o),
            String::from_utf8_lossy(&o.stdout).to_string(),
        )
    };
    // Opset 11 (was "QDQ needs >= 13"); per-channel falls back to per-tensor, said once.
    let (code, err, report) = q(&["--per-channel"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("opset 11 has no per-channel"), "{err}");
    assert!(report.contains("QLinearConv 53"), "{report}");
    // Noise calibration is said loudly, in the log and the report.
    assert!(err.contains("FIT FOR LATENCY MEASUREMENTS ONLY"), "{err}");
    assert!(
        report.contains("WARNING: calibrated on random noise"),
        "{report}"
    );
    // The int8 model serves in the daemon with the pinned shape.
    let (o, recs) = run(dir.path(), &out, &["--input-shape", "1x3x48x192"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(recs.last().expect("a result")["kind"], "classify");
    // An agreement below the threshold: nothing written, non-zero exit, the figures said.
    std::fs::remove_file(&out).expect("rm");
    let (code, err, _) = q(&["--min-pearson", "1.01"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("disagrees") && err.contains("--force"),
        "{err}"
    );
    assert!(!out.exists(), "a refused model is not written");
    let (code, err, _) = q(&["--min-pearson", "1.01", "--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.exists());
}
