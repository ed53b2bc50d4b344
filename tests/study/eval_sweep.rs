//! `eval` on generated labelled sets that a known model classifies perfectly (or, with a
//! deliberately wrong label, predictably not), and `sweep` writing one CSV row per model and
//! SVG charts that parse as XML.

use std::path::{Path, PathBuf};

use rtinfer::onnx::pb::{
    self as onnx_pb, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    ValueInfoProto,
};

use crate::util;

/// The "colour classifier": GlobalAveragePool then Flatten, so the 3 scores are the mean of the
/// normalised R, G and B planes. Under CIFAR-10 normalisation a saturated colour (255 in one
/// channel, 0 in the others) scores about +2 in its channel and below -1.7 in the others, so
/// class = dominant channel (0 red, 1 green, 2 blue).
fn colour_model(path: &Path) {
    let node = |op: &str, i: &str, o: &str, attribute: Vec<AttributeProto>| NodeProto {
        name: op.into(),
        op_type: op.into(),
        input: vec![i.into()],
        output: vec![o.into()],
        attribute,
        ..Default::default()
    };
    let g = GraphProto {
        node: vec![
            node("GlobalAveragePool", "input", "pooled", Vec::new()),
            node(
                "Flatten",
                "pooled",
                "output",
                vec![AttributeProto::int("axis", 1)],
            ),
        ],
        input: vec![ValueInfoProto::float_tensor("input", &[1, 3, 32, 32])],
        output: vec![ValueInfoProto::float_tensor("output", &[1, 3])],
        ..Default::default()
    };
    let m = ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(g),
        ..Default::default()
    };
    onnx_pb::write_model(path, &m).expect("write model");
}

const COLOURS: [[u8; 3]; 3] = [[255, 0, 0], [0, 255, 0], [0, 0, 255]];

/// ImageFolder: red/, green/, blue/ (sorted: blue = 0, green = 1, red = 2) with 2 images each
/// of different sizes.
fn image_folder(root: &Path) {
    for (name, c) in [("red", 0), ("green", 1), ("blue", 2)] {
        let d = root.join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        for (i, (w, h)) in [(32, 32), (48, 20)].into_iter().enumerate() {
            let img = image::RgbImage::from_pixel(w, h, image::Rgb(COLOURS[c]));
            img.save(d.join(format!("{i}.png"))).expect("save png");
        }
    }
}

fn eval_json(model: &Path, images: &Path) -> serde_json::Value {
    let o = util::rtinfer_ort()
        .arg("eval")
        .arg(model)
        .arg("--images")
        .arg(images)
        .arg("--json")
        .output()
        .expect("run eval");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json")
}

#[test]
fn image_folder_classes_follow_folder_order() {
    let dir = util::tempdir();
    let model = dir.path().join("colour.onnx");
    colour_model(&model);
    let images = dir.path().join("set");
    image_folder(&images);
    let v = eval_json(&model, &images);
    // Folder order is blue, green, red but the model's class 0 is red: remap by naming.
    // blue/ (label 0) is predicted 2, so only green (label 1 = class 1) is right: top-1 = 1/3.
    assert_eq!(v["samples"], 6);
    assert!(
        (v["top1"].as_f64().expect("top1") - 1.0 / 3.0).abs() < 1e-9,
        "{v}"
    );
    assert_eq!(v["top5"], 1.0);
    assert_eq!(v["per_class"][1]["name"], "green");
    assert_eq!(v["per_class"][1]["recall"], 1.0);
    assert_eq!(v["per_class"][0]["recall"], 0.0);
}

/// Class folders named so that sorted order matches the model's classes: all correct.
#[test]
fn image_folder_in_model_order_scores_one() {
    let dir = util::tempdir();
    let model = dir.path().join("colour.onnx");
    colour_model(&model);
    let images = dir.path().join("set");
    for (name, c) in [("0_red", 0), ("1_green", 1), ("2_blue", 2)] {
        let d = images.join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        let img = image::RgbImage::from_pixel(40, 30, image::Rgb(COLOURS[c]));
        img.save(d.join("a.png")).expect("save");
        let img = image::RgbImage::from_pixel(8, 8, image::Rgb(COLOURS[c]));
        img.save(d.join("b.png")).expect("save");
    }
    let v = eval_json(&model, &images);
    assert_eq!(
        (v["samples"].as_u64(), v["top1"].as_f64()),
        (Some(6), Some(1.0))
    );
    for c in 0..3 {
        assert_eq!(v["per_class"][c]["recall"], 1.0, "{v}");
    }
}

/// CIFAR-10 binary: red(0), green(1), blue(2) and a blue image labelled 0: top-1 3/4,
/// recall of class 0 = 1/2, top-5 = 1 (only 3 classes).
fn cifar_batch(path: &Path) {
    let mut bytes = Vec::new();
    for (label, c) in [(0u8, 0usize), (1, 1), (2, 2), (0, 2)] {
        bytes.push(label);
        for &v in &COLOURS[c] {
            bytes.extend(std::iter::repeat_n(v, 1024));
        }
    }
    std::fs::write(path, bytes).expect("write batch");
}

#[test]
fn cifar_binary_batches() {
    let dir = util::tempdir();
    let model = dir.path().join("colour.onnx");
    colour_model(&model);
    let bin = dir.path().join("test_batch.bin");
    cifar_batch(&bin);
    let v = eval_json(&model, &bin);
    assert_eq!(v["samples"], 4);
    assert_eq!(v["top1"], 0.75);
    assert_eq!(v["top5"], 1.0);
    assert_eq!(v["per_class"][0]["recall"], 0.5);
    assert_eq!(v["per_class"][2]["recall"], 1.0);
    let bad = dir.path().join("bad.bin");
    std::fs::write(&bad, [0u8; 100]).expect("write");
    let o = util::rtinfer_ort()
        .arg("eval")
        .arg(&model)
        .arg("--images")
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.bin"));
}

fn parse_svg(p: &PathBuf) {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
}

#[test]
fn sweep_writes_csv_rows_and_svg_charts() {
    let dir = util::tempdir();
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).expect("mkdir");
    colour_model(&models.join("a-colour.onnx"));
    util::zoo_model(&models, "mobilenetv2", "cifar10", 0.25);
    util::zoo_model(&models, "vgg11", "cifar10", 0.25);
    std::fs::write(models.join("notes.txt"), "not a model").expect("write");
    let images = dir.path().join("test_batch.bin");
    cifar_batch(&images);
    let out = dir.path().join("out");
    let o = util::rtinfer_ort()
        .arg("sweep")
        .arg(&models)
        .args(["--trials", "1", "-o"])
        .arg(&out)
        .arg("--images")
        .arg(&images)
        .output()
        .expect("run sweep");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("sweep.csv")).expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 3, "{csv}");
    let cols = lines[0].split(',').count();
    assert!(lines.iter().all(|l| l.split(',').count() == cols), "{csv}");
    assert!(lines[1].starts_with("a-colour,0,,0,,2,"), "{csv}");
    // The colour model scores 0.75 on the batch; its top1 column is the second to last.
    assert_eq!(lines[1].split(',').nth(cols - 2), Some("0.75000"), "{csv}");
    for svg in [
        "latency.svg",
        "latency_vs_params.svg",
        "memory_vs_params.svg",
        "accuracy_vs_latency.svg",
        "accuracy_vs_memory.svg",
    ] {
        parse_svg(&out.join(svg));
    }
}

/// A generated grid: one row per (arch, dataset, ratio, precision), models kept under
/// OUT/models.
#[test]
fn sweep_generated_grid() {
    let dir = util::tempdir();
    let out = dir.path().join("grid");
    let o = util::rtinfer_ort()
        .args([
            "sweep",
            "--arch",
            "vgg11,mobilenetv2",
            "--ratios",
            "0.25,0.5",
        ])
        .args(["--datasets", "cifar10", "--trials", "1", "-o"])
        .arg(&out)
        .output()
        .expect("run sweep");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(out.join("sweep.csv")).expect("csv");
    let names: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    assert_eq!(
        names,
        [
            "vgg11-cifar10-r0.25",
            "vgg11-cifar10-r0.5",
            "mobilenetv2-cifar10-r0.25",
            "mobilenetv2-cifar10-r0.5"
        ]
    );
    assert!(out.join("models/vgg11-cifar10-r0.5.onnx").is_file());
    assert!(!out.join("accuracy_vs_latency.svg").exists());
    assert!(!out.join("accuracy_vs_memory.svg").exists());
    // int8 grids: each generated model also quantized; an unknown precision is refused.
    let o = util::rtinfer_ort()
        .args([
            "sweep",
            "--arch",
            "mobilenetv2",
            "--ratios",
            "0.25",
            "--trials",
            "1",
        ])
        .args(["--datasets", "cifar10", "--precisions", "fp32,int8", "-o"])
        .arg(dir.path().join("int8"))
        .output()
        .expect("run sweep");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(dir.path().join("int8/sweep.csv")).expect("csv");
    let names: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    assert_eq!(
        names,
        [
            "mobilenetv2-cifar10-r0.25",
            "mobilenetv2-cifar10-r0.25.int8"
        ]
    );
    let o = util::rtinfer_ort()
        .args(["sweep", "--arch", "vgg11", "--precisions", "fp16", "-o"])
        .arg(dir.path().join("fp16"))
        .output()
        .expect("run sweep");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("fp16"));
}
