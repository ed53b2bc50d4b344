//! int8 post-training quantization: every zoo arch quantizes to a graph ONNX Runtime runs with
//! no float convolution and that follows the float model; the QDQ arithmetic of one Conv equals
//! hand-computed values; bad inputs fail (or are left float) with a clear report.

use std::collections::HashMap;
use std::path::Path;

use rtinfer::onnx::pb::{
    self as onnx_pb, AttributeProto, DATA_TYPE_FLOAT, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, ValueInfoProto,
};
use rtinfer::study::quantize::{self, ActivationType, plan, qdq, qparams};

use crate::util;

/// `rtinfer quantize MODEL -o OUT ARGS...` with ONNX Runtime: (success, stdout, stderr).
fn quantize_cli(model: &Path, out: &Path, args: &[&str]) -> (bool, String, String) {
    let o = util::rtinfer_ort()
        .arg("quantize")
        .arg(model)
        .arg("-o")
        .arg(out)
        .args(args)
        .output()
        .expect("run rtinfer quantize");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The number after `key ` in the report.
fn figure(report: &str, key: &str) -> f64 {
    let at = report
        .find(key)
        .unwrap_or_else(|| panic!("no '{key}' in:\n{report}"));
    report[at + key.len()..]
        .split(|c: char| c == ',' || c.is_whitespace())
        .find(|w| !w.is_empty())
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number after '{key}' in:\n{report}"))
}

#[test]
fn every_zoo_arch_quantizes_with_no_float_conv_and_follows_the_float_model() {
    let dir = util::tempdir();
    for arch in ["vgg11", "mobilenetv2", "resnet50"] {
        for ratio in [0.25, 1.0] {
            let model = util::zoo_model(dir.path(), arch, "cifar10", ratio);
            let out = quantize::int8_variant(&model);
            let (ok, stdout, stderr) = quantize_cli(
                &model,
                &out,
                &["--calib-source", "synthetic://48x40@1000", "--samples", "8"],
            );
            assert!(ok, "{arch} x{ratio}: {stderr}");
            assert!(
                stdout.contains("float convolutions in ONNX Runtime's optimised graph: none"),
                "{arch} x{ratio}:\n{stdout}"
            );
            assert!(stdout.contains("QLinearConv"), "{stdout}");
            let pearson = figure(&stdout, "pearson");
            let rel_l2 = figure(&stdout, "relative L2");
            let top1 = figure(&stdout, "top-1");
            eprintln!("{arch} x{ratio}: pearson {pearson}, relative L2 {rel_l2}, top-1 {top1} %");
            assert!(pearson >= 0.98, "{arch} x{ratio}: pearson {pearson}");

            // It loads in the daemon's backend and is reported as int8 (NAME.int8.onnx).
            util::ort_env();
            let backend =
                rtinfer::backend::onnx::OnnxBackend::new(Default::default()).expect("ONNX Runtime");
            let engine = rtinfer::backend::Backend::load(&backend, &out, &Default::default())
                .expect("load the int8 model");
            assert_eq!(engine.info().precision, rtinfer::backend::Precision::Int8);
            assert_eq!(
                quantize::float_original(&out).as_deref(),
                Some(model.as_path())
            );
        }
    }
}

fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DATA_TYPE_FLOAT,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn model(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(graph),
        ..Default::default()
    }
}

/// One 1x1 Conv (weight 0.5, bias 0.3) on a 1x1x1x4 input, output `y`.
fn one_conv() -> ModelProto {
    model(GraphProto {
        name: "one_conv".into(),
        node: vec![NodeProto {
            op_type: "Conv".into(),
            name: "conv".into(),
            input: vec!["x".into(), "w".into(), "b".into()],
            output: vec!["y".into()],
            ..Default::default()
        }],
        initializer: vec![
            float_tensor("w", &[1, 1, 1, 1], &[0.5]),
            float_tensor("b", &[1], &[0.3]),
        ],
        input: vec![ValueInfoProto::float_tensor("x", &[1, 1, 1, 4])],
        output: vec![ValueInfoProto::float_tensor("y", &[1, 1, 1, 4])],
        ..Default::default()
    })
}

fn init<'m>(m: &'m ModelProto, name: &str) -> &'m TensorProto {
    m.graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no initializer {name}"))
}

fn run(bytes: &[u8], level: ort::session::builder::GraphOptimizationLevel, x: &[f32]) -> Vec<f32> {
    util::ort_env();
    let s = quantize::ort_run::session("test", bytes, level, 1, None).expect("session");
    let mut r = quantize::ort_run::Runner::new("test", s, &[1, 1, 1, 4]).expect("runner");
    let mut y = Vec::new();
    r.run(x, |_, v| y.extend_from_slice(v)).expect("run");
    y
}

#[test]
fn one_conv_qdq_arithmetic_equals_hand_computation() {
    use prost::Message;
    let m = one_conv();
    let g = m.graph.clone().unwrap();
    let p = plan::plan(&g, false).expect("plan");
    assert_eq!(p.tensors, vec!["x".to_string(), "y".to_string()]);
    // Input range [0, 255/64]: scale 1/64, zero point 0. Output [0, 255/32]: scale 1/32.
    let ranges: HashMap<String, (f32, f32)> = [
        ("x".to_string(), (0.0, 255.0 / 64.0)),
        ("y".to_string(), (0.0, 255.0 / 32.0)),
    ]
    .into();
    let (q, _) = qdq::insert_qdq(&m, &p, &ranges, qdq::QdqOptions::default()).expect("qdq");

    assert_eq!(init(&q, "x_scale").raw_data, (1.0f32 / 64.0).to_le_bytes());
    assert_eq!(init(&q, "x_zero_point").raw_data, vec![0u8]);
    assert_eq!(init(&q, "x_zero_point").data_type, qparams::DATA_TYPE_UINT8);
    assert_eq!(init(&q, "y_scale").raw_data, (1.0f32 / 32.0).to_le_bytes());
    // Weight: symmetric int8, scale 0.5 / 127, value 127.
    let w = init(&q, "w_quantized");
    assert_eq!(
        (w.data_type, w.raw_data.clone()),
        (qparams::DATA_TYPE_INT8, vec![127u8])
    );
    assert_eq!(init(&q, "w_scale").raw_data, (0.5f32 / 127.0).to_le_bytes());
    // Bias: int32 with scale (1/64) * (0.5/127) = 0.5/8128: 0.3 / (0.5/8128) = 4876.8 -> 4877.
    let b = init(&q, "b_conv_quantized");
    assert_eq!(b.data_type, qparams::DATA_TYPE_INT32);
    assert_eq!(b.raw_data, 4877i32.to_le_bytes());

    // Inputs: 2.5 and 3.5 quantization steps (ties: to even, 2 and 4), 5.0 above the range
    // (saturates at 255), -1 below it (saturates at 0). Dequantized: 2/64, 4/64, 255/64, 0.
    // y = 0.5 x + 4877 * 0.5/8128 = [0.315637, 0.331262, 2.292200, 0.300012]; in steps of
    // 1/32: 10.10, 10.60, 73.35, 9.60 -> 10, 11, 73, 10.
    let x = [2.5 / 64.0, 3.5 / 64.0, 5.0, -1.0];
    let want: Vec<f32> = [10.0, 11.0, 73.0, 10.0].iter().map(|v| v / 32.0).collect();
    let bytes = q.encode_to_vec();
    use ort::session::builder::GraphOptimizationLevel as L;
    // Reference QDQ semantics (no fusion) and ORT's fused integer QLinearConv.
    for level in [L::Disable, L::All] {
        let y = run(&bytes, level, &x);
        assert_eq!(y, want, "{level:?}");
    }
}

#[test]
fn signed_activations_put_a_relu_range_at_minus_128() {
    let p = qparams::activation_params(0.0, 255.0 / 64.0, ActivationType::S8);
    assert_eq!(p.scale, 1.0 / 64.0);
    assert_eq!(p.zero_point, -128);
    // 2.5 steps -> 2 (half to even) - 128.
    assert_eq!(qparams::quantize(2.5 / 64.0, p, -128, 127), -126);
}

#[test]
fn a_model_without_float_weights_is_refused() {
    let dir = util::tempdir();
    let relu_only = model(GraphProto {
        name: "relu_only".into(),
        node: vec![NodeProto {
            op_type: "Relu".into(),
            name: "relu".into(),
            input: vec!["x".into()],
            output: vec!["y".into()],
            ..Default::default()
        }],
        input: vec![ValueInfoProto::float_tensor("x", &[1, 3, 8, 8])],
        output: vec![ValueInfoProto::float_tensor("y", &[1, 3, 8, 8])],
        ..Default::default()
    });
    let path = dir.path().join("relu.onnx");
    onnx_pb::write_model(&path, &relu_only).unwrap();
    let (ok, _, stderr) = quantize_cli(&path, &dir.path().join("o.onnx"), &["--samples", "2"]);
    assert!(!ok);
    assert!(stderr.contains("nothing to quantize"), "{stderr}");

    // An already quantized model has no float weights left either.
    let zoo = util::zoo_model(dir.path(), "vgg11", "cifar10", 0.25);
    let int8 = dir.path().join("v.int8.onnx");
    let (ok, _, stderr) = quantize_cli(&zoo, &int8, &["--samples", "2"]);
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("random noise"),
        "no warning about noise: {stderr}"
    );
    let (ok, _, stderr) = quantize_cli(&int8, &dir.path().join("again.onnx"), &["--samples", "2"]);
    assert!(!ok);
    assert!(stderr.contains("already QDQ-quantized"), "{stderr}");
    assert!(!dir.path().join("again.onnx").exists());
}

/// Conv -> Sin -> Conv: Sin has no integer kernel; it stays float and is reported, and both
/// convolutions still become integer.
#[test]
fn an_op_without_integer_kernel_is_left_float_and_reported() {
    let dir = util::tempdir();
    let w: Vec<f32> = (0..9).map(|i| (i as f32 - 4.0) / 10.0).collect();
    let conv = |name: &str, x: &str, y: &str| NodeProto {
        op_type: "Conv".into(),
        name: name.into(),
        input: vec![x.into(), "w".into(), "b".into()],
        output: vec![y.into()],
        attribute: vec![AttributeProto::ints("kernel_shape", &[1, 1])],
        ..Default::default()
    };
    let m = model(GraphProto {
        name: "sin".into(),
        node: vec![
            conv("conv_a", "x", "a"),
            NodeProto {
                op_type: "Sin".into(),
                name: "the_sin".into(),
                input: vec!["a".into()],
                output: vec!["s".into()],
                ..Default::default()
            },
            conv("conv_b", "s", "y"),
        ],
        initializer: vec![
            float_tensor("w", &[3, 3, 1, 1], &w),
            float_tensor("b", &[3], &[0.1, -0.2, 0.3]),
        ],
        input: vec![ValueInfoProto::float_tensor("x", &[1, 3, 8, 8])],
        output: vec![ValueInfoProto::float_tensor("y", &[1, 3, 8, 8])],
        ..Default::default()
    });
    let path = dir.path().join("sin.onnx");
    onnx_pb::write_model(&path, &m).unwrap();
    let (ok, stdout, stderr) = quantize_cli(
        &path,
        &dir.path().join("sin.int8.onnx"),
        &["--samples", "4", "--seed", "3"],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("left float: the_sin (Sin)"), "{stdout}");
    assert!(
        stdout.contains("float convolutions in ONNX Runtime's optimised graph: none"),
        "{stdout}"
    );
    assert!(
        stdout.contains("com.microsoft:QLinearConv 2") || stdout.contains("QLinearConv 2"),
        "{stdout}"
    );
}

#[test]
fn an_empty_calibration_folder_is_an_error() {
    let dir = util::tempdir();
    let zoo = util::zoo_model(dir.path(), "vgg11", "cifar10", 0.25);
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = dir.path().join("o.int8.onnx");
    let (ok, _, stderr) = quantize_cli(&zoo, &out, &["--calib", empty.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("no PNG or JPEG images"), "{stderr}");
    assert!(stderr.contains(empty.to_str().unwrap()), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn images_of_another_size_are_resized_like_the_daemon_does() {
    let dir = util::tempdir();
    let zoo = util::zoo_model(dir.path(), "resnet50", "cifar10", 0.25);
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for i in 0..5u32 {
        // 50x40 (the model takes 32x32), a different gradient in each.
        let img = image::RgbImage::from_fn(50, 40, |x, y| {
            image::Rgb([
                (x * 5 + i * 20) as u8,
                (y * 6) as u8,
                ((x + y) * 3 + i) as u8,
            ])
        });
        img.save(imgs.join(format!("{i:03}.png"))).unwrap();
    }
    let out = dir.path().join("r.int8.onnx");
    let (ok, stdout, stderr) = quantize_cli(
        &zoo,
        &out,
        &["--calib", imgs.to_str().unwrap(), "--samples", "100"],
    );
    assert!(ok, "{stderr}");
    // The folder ends before --samples: every image used once.
    assert!(stdout.contains("(5 calibration samples"), "{stdout}");
    assert!(out.exists());
}

/// The scale of the QuantizeLinear that quantizes the graph's input in a QDQ model.
fn input_scale(path: &Path) -> f32 {
    let m = onnx_pb::read_model(path).expect("read the int8 model");
    let g = m.graph.as_ref().expect("graph");
    let input = &g.input[0].name;
    let q = g
        .node
        .iter()
        .find(|n| n.op_type == "QuantizeLinear" && &n.input[0] == input)
        .expect("the input is quantized");
    let scale = g
        .initializer
        .iter()
        .find(|t| t.name == q.input[1])
        .expect("scale initializer");
    if !scale.float_data.is_empty() {
        return scale.float_data[0];
    }
    f32::from_le_bytes(scale.raw_data[..4].try_into().expect("4 bytes"))
}

#[test]
fn the_daemon_config_prepares_calibration_data_as_it_prepares_frames() {
    let dir = util::tempdir();
    let zoo = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    // Black and white halves: every channel spans 0..255.
    let img = image::RgbImage::from_fn(32, 32, |x, _| {
        image::Rgb(if x < 16 { [0, 0, 0] } else { [255, 255, 255] })
    });
    img.save(imgs.join("bw.png")).unwrap();
    let cfg = dir.path().join("rtinfer.toml");
    std::fs::write(
        &cfg,
        "[preprocess]\nmean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\nchannel_order = \"bgr\"\n",
    )
    .unwrap();
    let calib = imgs.to_str().unwrap();
    let with = dir.path().join("with.int8.onnx");
    let (ok, _, stderr) = quantize_cli(
        &zoo,
        &with,
        &["--calib", calib, "--config", cfg.to_str().unwrap()],
    );
    assert!(ok, "{stderr}");
    let without = dir.path().join("without.int8.onnx");
    let (ok, _, stderr) = quantize_cli(&zoo, &without, &["--calib", calib]);
    assert!(ok, "{stderr}");
    // x = v / 255 spans [0, 1]: u8 scale 1/255. With CIFAR-10's statistics the input spans
    // [min_c -mean/std, max_c (1 - mean)/std], about [-1.99, 2.13].
    let s = input_scale(&with);
    assert!((s - 1.0 / 255.0).abs() < 1e-6, "with the config: {s}");
    let d = input_scale(&without);
    let (mean, std) = ([0.4914f32, 0.4822, 0.4465], [0.2470f32, 0.2435, 0.2616]);
    let hi = (0..3)
        .map(|c| (1.0 - mean[c]) / std[c])
        .fold(f32::MIN, f32::max);
    let lo = (0..3).map(|c| -mean[c] / std[c]).fold(f32::MAX, f32::min);
    let cifar = (hi - lo) / 255.0;
    assert!((d - cifar).abs() < 1e-6, "defaults: {d} vs {cifar}");
}

/// ONNX Runtime's optimised-model files carry no value_info; the quantizer fills it from what ORT
/// infers. Conv 3->4, 3x3, pad 1 on 1x3x8x8 then Relu: the inner tensor is float 1x4x8x8.
#[test]
fn every_tensor_of_the_optimised_graph_is_typed() {
    let w = vec![0.1f32; 4 * 3 * 9];
    let m = model(GraphProto {
        name: "typed".into(),
        node: vec![
            NodeProto {
                op_type: "Conv".into(),
                name: "conv".into(),
                input: vec!["x".into(), "w".into()],
                output: vec!["c".into()],
                attribute: vec![AttributeProto::ints("pads", &[1, 1, 1, 1])],
                ..Default::default()
            },
            NodeProto {
                op_type: "Relu".into(),
                name: "relu".into(),
                input: vec!["c".into()],
                output: vec!["y".into()],
                ..Default::default()
            },
        ],
        initializer: vec![float_tensor("w", &[4, 3, 3, 3], &w)],
        input: vec![ValueInfoProto::float_tensor("x", &[1, 3, 8, 8])],
        output: vec![ValueInfoProto::float_tensor("y", &[1, 4, 8, 8])],
        ..Default::default()
    });
    util::ort_env();
    let typed = quantize::ort_run::shape_infer("test", &m).expect("shape inference");
    let vi = &typed.graph.as_ref().unwrap().value_info;
    assert_eq!(vi.len(), 1, "{vi:?}");
    assert_eq!(vi[0].name, "c");
    assert_eq!(vi[0].fixed_dims(), Some(vec![1, 4, 8, 8]));
    assert_eq!(
        plan::elem_types(typed.graph.as_ref().unwrap())["c"],
        DATA_TYPE_FLOAT
    );
}

/// Every QuantizeLinear/DequantizeLinear of `m`, with its zero point initializer (if any).
fn qdq_zero_points(m: &ModelProto) -> Vec<(String, Option<TensorProto>)> {
    let g = m.graph.as_ref().expect("graph");
    g.node
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear")
        .map(|n| {
            let zp = n.input.get(2).filter(|z| !z.is_empty()).map(|z| {
                g.initializer
                    .iter()
                    .find(|t| &t.name == z)
                    .unwrap_or_else(|| panic!("zero point {z} of {} is no initializer", n.name))
                    .clone()
            });
            (n.name.clone(), zp)
        })
        .collect()
}

#[test]
fn symmetric_one_conv_keeps_negatives_and_a_float_bias() {
    use prost::Message;
    let m = one_conv();
    let g = m.graph.clone().unwrap();
    let p = plan::plan(&g, false).expect("plan");
    // |x| <= 127/64: scale 1/64; |y| <= 127/32: scale 1/32; zero points 0, int8.
    let ranges: HashMap<String, (f32, f32)> = [
        ("x".to_string(), (-1.0, 127.0 / 64.0)),
        ("y".to_string(), (0.0, 127.0 / 32.0)),
    ]
    .into();
    let opts = qdq::QdqOptions {
        symmetric: true,
        ..Default::default()
    };
    let (q, _) = qdq::insert_qdq(&m, &p, &ranges, opts).expect("qdq");
    for name in ["x_zero_point", "y_zero_point", "w_zero_point"] {
        let t = init(&q, name);
        assert_eq!(
            (t.data_type, t.raw_data.clone()),
            (qparams::DATA_TYPE_INT8, vec![0])
        );
    }
    assert_eq!(init(&q, "x_scale").raw_data, (1.0f32 / 64.0).to_le_bytes());
    // The bias stays the float initializer the Conv reads (TensorRT takes no int32 Q/DQ).
    let conv = q
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .find(|n| n.op_type == "Conv")
        .unwrap();
    assert_eq!(conv.input[2], "b");
    assert!(
        q.graph
            .as_ref()
            .unwrap()
            .initializer
            .iter()
            .all(|t| t.data_type != qparams::DATA_TYPE_INT32),
        "no int32 initializer"
    );
    // x: 2.5 and 3.5 steps (ties to even: 2, 4), 5.0 saturates at 127, -1.0 is -64 (kept: an
    // asymmetric u8 with zero point 0 would clip it to 0). y = 0.5 x + 0.3 =
    // [0.315625, 0.33125, 1.2921875, -0.2], in steps of 1/32: 10.1, 10.6, 41.35, -6.4.
    let x = [2.5 / 64.0, 3.5 / 64.0, 5.0, -1.0];
    let want: Vec<f32> = [10.0, 11.0, 41.0, -6.0].iter().map(|v| v / 32.0).collect();
    let bytes = q.encode_to_vec();
    use ort::session::builder::GraphOptimizationLevel as L;
    for level in [L::Disable, L::All] {
        let y = run(&bytes, level, &x);
        for (a, b) in y.iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{level:?}: {y:?} vs {want:?}");
        }
    }
}

#[test]
fn symmetric_mode_writes_int8_zero_point_qdq_that_follows_the_float_model() {
    let dir = util::tempdir();
    for arch in ["mobilenetv2", "resnet50"] {
        let model = util::zoo_model(dir.path(), arch, "cifar10", 0.25);
        let calib = ["--calib-source", "synthetic://48x40@1000", "--samples", "8"];
        let sym = dir.path().join(format!("{arch}.sym.onnx"));
        let mut args = calib.to_vec();
        args.push("--symmetric");
        let (ok, stdout, stderr) = quantize_cli(&model, &sym, &args);
        assert!(ok, "{arch}: {stderr}");
        assert!(
            stdout.contains(
                "s8 symmetric (zero point 0, for TensorRT) activations, per-channel weights"
            ),
            "{arch}:\n{stdout}"
        );
        let pearson = figure(&stdout, "pearson");
        let top1 = figure(&stdout, "top-1");
        eprintln!("{arch} x0.25 symmetric: pearson {pearson}, top-1 {top1} %");
        assert!(pearson >= 0.98, "{arch}: pearson {pearson}");

        let m = onnx_pb::read_model(&sym).expect("symmetric model");
        let zps = qdq_zero_points(&m);
        assert!(zps.len() > 10, "{arch}: {} Q/DQ nodes", zps.len());
        for (node, zp) in &zps {
            let zp = zp
                .as_ref()
                .unwrap_or_else(|| panic!("{node}: no zero point"));
            assert_eq!(zp.data_type, qparams::DATA_TYPE_INT8, "{node}");
            assert!(
                zp.raw_data.iter().all(|b| *b == 0),
                "{node}: {:?}",
                zp.raw_data
            );
        }
        // Weights per output channel (the zoo models are opset >= 13).
        let g = m.graph.as_ref().unwrap();
        let per_channel = g
            .node
            .iter()
            .filter(|n| n.op_type == "DequantizeLinear" && n.input[0].ends_with("_quantized"))
            .filter(|n| n.attribute.iter().any(|a| a.name == "axis"))
            .count();
        assert!(per_channel > 0, "{arch}: no per-channel weight");

        // The default form is unchanged: uint8 activations, int32 biases.
        let asym = dir.path().join(format!("{arch}.asym.onnx"));
        let (ok, stdout, stderr) = quantize_cli(&model, &asym, &calib);
        assert!(ok, "{arch}: {stderr}");
        assert!(
            stdout.contains("u8 activations, per-tensor weights"),
            "{stdout}"
        );
        let m = onnx_pb::read_model(&asym).expect("default model");
        let types: std::collections::HashSet<i32> = qdq_zero_points(&m)
            .into_iter()
            .filter_map(|(_, zp)| zp.map(|t| t.data_type))
            .collect();
        assert!(types.contains(&qparams::DATA_TYPE_UINT8), "{types:?}");
        assert!(types.contains(&qparams::DATA_TYPE_INT32), "{types:?}");
    }
    // u8 contradicts --symmetric.
    let model = util::zoo_model(dir.path(), "vgg11", "cifar10", 0.25);
    let out = dir.path().join("never.onnx");
    let (ok, _, stderr) = quantize_cli(
        &model,
        &out,
        &["--symmetric", "--activation-type", "u8", "--samples", "2"],
    );
    assert!(
        !ok && stderr.contains("--activation-type u8 contradicts"),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn quantize_times_int8_against_fp32_and_no_bench_skips_it() {
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "vgg11", "cifar10", 0.25);
    let calib = ["--calib-source", "synthetic://48x40@1000", "--samples", "4"];
    let out = dir.path().join("timed.onnx");
    let (ok, stdout, stderr) = quantize_cli(&model, &out, &calib);
    assert!(ok, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("speed on this machine"))
        .unwrap_or_else(|| panic!("no speed line:\n{stdout}"));
    assert!(
        line.contains("batch 1, median of 30 runs after 5 warm-up"),
        "{line}"
    );
    let fp32 = figure(line, "fp32");
    let int8 = figure(line, "int8");
    let ratio = figure(line, "int8/fp32");
    eprintln!("vgg11 x0.25: fp32 {fp32} ms, int8 {int8} ms, ratio {ratio}");
    assert!(fp32 > 0.0 && int8 > 0.0, "{line}");
    // The printed ratio is the printed medians' (to the rounding of 3 decimals).
    assert!((ratio - int8 / fp32).abs() < 0.01 + 0.001 / fp32, "{line}");
    // A slower int8 model is a warning in the report (the two-decimal ratio cannot tell 1.00
    // apart: no claim there).
    let warned = stdout.contains("WARNING: the int8 model is");
    if ratio > 1.005 {
        assert!(warned, "{stdout}");
    } else if ratio < 0.995 {
        assert!(!warned, "{stdout}");
    }

    let out = dir.path().join("untimed.onnx");
    let mut args = calib.to_vec();
    args.push("--no-bench");
    let (ok, stdout, stderr) = quantize_cli(&model, &out, &args);
    assert!(ok, "{stderr}");
    assert!(out.exists());
    assert!(!stdout.contains("speed on this machine"), "{stdout}");
}
