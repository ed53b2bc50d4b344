//! Generated models: ONNX Runtime loads and runs every arch x ratio x dataset, and the parameter
//! and FLOP counts match closed forms written here from the architecture text (not from the
//! generator's code).

use std::path::Path;

use rtinfer::onnx::pb::{self as onnx_pb, ModelProto, OnnxError};
use rtinfer::study::zoo::{self, Arch, Dataset, ZooError, ZooSpec};

use crate::util;

const RATIOS: [f64; 4] = [0.25, 0.5, 0.75, 1.0];
const DATASETS: [Dataset; 2] = [Dataset::Cifar10, Dataset::TinyImageNet];

/// (input side, classes) straight from the dataset definitions.
fn geometry(dataset: Dataset) -> (u64, u64) {
    match dataset {
        Dataset::Cifar10 => (32, 10),
        Dataset::TinyImageNet => (64, 200),
    }
}

/// `floor(w * r)` of every width.
fn scaled(widths: &[u64], r: f64) -> Vec<u64> {
    widths
        .iter()
        .map(|&w| (w as f64 * r).floor() as u64)
        .collect()
}

/// Parameters of the folded ONNX graph, parameters thop counts on the unfolded PyTorch model,
/// and FLOPs = 2 x thop MACs.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    onnx: u64,
    torch: u64,
    flops: u64,
}

impl Counts {
    /// A conv with `cout` outputs of `side x side`, `cin_g` inputs per group, `k x k` kernel.
    /// ONNX: weight + bias (BN folded). PyTorch: weight, optional bias, BN weight + bias.
    /// thop MACs: out_elements * cin_g * k * k, plus 4 * out_elements for BN.
    fn conv(&mut self, cout: u64, cin_g: u64, k: u64, side: u64, torch_bias: bool, bn: bool) {
        let weights = cout * cin_g * k * k;
        let out_elements = cout * side * side;
        self.onnx += weights + cout;
        self.torch += weights + if torch_bias { cout } else { 0 } + if bn { 2 * cout } else { 0 };
        let macs = out_elements * cin_g * k * k + if bn { 4 * out_elements } else { 0 };
        self.flops += 2 * macs;
    }

    /// nn.Linear with bias: params in*out + out, MACs in*out.
    fn linear(&mut self, fan_in: u64, out: u64) {
        self.onnx += fan_in * out + out;
        self.torch += fan_in * out + out;
        self.flops += 2 * fan_in * out;
    }
}

/// VGG-11: `64 M 128 M 256 256 M 512 512 M 512 512 M`, conv 3x3 (bias, BN), one Linear.
fn vgg11_counts(widths: &[u64], dataset: Dataset) -> Counts {
    let (mut side, classes) = geometry(dataset);
    let pool_after = [true, true, false, true, false, true, false, true];
    let mut c = Counts::default();
    let mut cin = 3;
    for (&w, &pool) in widths.iter().zip(&pool_after) {
        c.conv(w, cin, 3, side, true, true);
        cin = w;
        if pool {
            side /= 2;
        }
    }
    c.linear(cin * side * side, classes);
    c
}

/// MobileNetV2 (CIFAR variant): stem 3x3/1, 17 inverted-residual blocks with an always-present
/// shortcut, 1x1 conv to the last width, functional average pool (0 MACs), 1x1 classifier conv
/// (bias, no BN).
fn mobilenetv2_counts(widths: &[u64], dataset: Dataset) -> Counts {
    let (mut side, classes) = geometry(dataset);
    let mut c = Counts::default();
    c.conv(widths[0], 3, 3, side, true, true);
    let blocks = [1, 2, 3, 4, 3, 3, 1];
    let strides = match dataset {
        Dataset::Cifar10 => [1, 2, 2, 2, 1, 2, 1],
        Dataset::TinyImageNet => [1, 2, 2, 2, 2, 2, 1],
    };
    let mut cin = widths[0];
    let mut outs = widths[1..18].iter();
    for stage in 0..7 {
        let t = if stage == 0 { 1 } else { 6 };
        for b in 0..blocks[stage] {
            let out = *outs.next().expect("17 block widths");
            let stride = if b == 0 { strides[stage] } else { 1 };
            let hidden = cin * t;
            c.conv(hidden, cin, 1, side, true, true);
            let side_out = side / stride;
            c.conv(hidden, 1, 3, side_out, true, true);
            c.conv(out, hidden, 1, side_out, true, true);
            if stride != 1 || cin != out {
                c.conv(out, cin, 1, side_out, true, true);
            }
            cin = out;
            side = side_out;
        }
    }
    c.conv(widths[18], cin, 1, side, true, true);
    c.conv(classes, widths[18], 1, 1, true, false);
    c
}

/// ResNet-50 (torchvision v1.5): conv 7x7/2 + maxpool 3x3/2, bottlenecks [3,4,6,3] (no conv bias,
/// BN everywhere), adaptive average pool ((area + 1) x C MACs), Linear.
fn resnet50_counts(widths: &[u64], dataset: Dataset) -> Counts {
    let (input, classes) = geometry(dataset);
    let mut c = Counts::default();
    let mut side = input / 2;
    c.conv(widths[0], 3, 7, side, false, true);
    side /= 2;
    let mut cin = widths[0];
    for (stage, blocks) in [3, 4, 6, 3].into_iter().enumerate() {
        let planes = widths[stage + 1];
        let out = planes * 4;
        for b in 0..blocks {
            let stride = if b == 0 && stage > 0 { 2 } else { 1 };
            c.conv(planes, cin, 1, side, false, true);
            let side_out = side / stride;
            c.conv(planes, planes, 3, side_out, false, true);
            c.conv(out, planes, 1, side_out, false, true);
            if b == 0 {
                c.conv(out, cin, 1, side_out, false, true);
            }
            cin = out;
            side = side_out;
        }
    }
    c.flops += 2 * (side * side + 1) * cin;
    c.linear(cin, classes);
    c
}

fn expected_counts(arch: Arch, widths: &[u64], dataset: Dataset) -> Counts {
    match arch {
        Arch::Vgg11 => vgg11_counts(widths, dataset),
        Arch::MobileNetV2 => mobilenetv2_counts(widths, dataset),
        Arch::ResNet50 => resnet50_counts(widths, dataset),
    }
}

/// Full-width layer widths as the architecture text lists them.
fn base_widths(arch: Arch) -> Vec<u64> {
    match arch {
        Arch::Vgg11 => vec![64, 128, 256, 256, 512, 512, 512, 512],
        Arch::MobileNetV2 => vec![
            32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280,
        ],
        Arch::ResNet50 => vec![64, 64, 128, 256, 512],
    }
}

/// Elements of the weight and bias initializers of every Conv and Gemm, counted here from the
/// graph (independently of `onnx_pb::model_params`).
fn conv_gemm_params(model: &ModelProto) -> u64 {
    let graph = model.graph.as_ref().expect("graph");
    let size = |name: &str| -> u64 {
        let t = graph.initializer.iter().find(|t| t.name == name);
        let t = t.unwrap_or_else(|| panic!("initializer {name}"));
        t.dims.iter().product::<i64>() as u64
    };
    graph
        .node
        .iter()
        .filter(|n| n.op_type == "Conv" || n.op_type == "Gemm")
        .map(|n| n.input[1..].iter().map(|i| size(i)).sum::<u64>())
        .sum()
}

fn meta_u64(model: &ModelProto, key: &str) -> u64 {
    onnx_pb::metadata(model, key)
        .unwrap_or_else(|| panic!("metadata {key}"))
        .parse()
        .unwrap_or_else(|e| panic!("metadata {key}: {e}"))
}

/// Runs a zero image through ONNX Runtime; returns the output's shape and values.
fn run_zero_input(path: &Path, side: usize) -> (Vec<i64>, Vec<f32>) {
    let mut session = ort::session::Session::builder(util::ort_env())
        .expect("session builder")
        .with_intra_threads(1)
        .expect("intra threads")
        .commit_from_file(path)
        .unwrap_or_else(|e| panic!("ONNX Runtime loads {}: {e}", path.display()));
    let names: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    assert_eq!(names, ["input"]);
    let outs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    assert_eq!(outs, ["output"]);
    let n = 3 * side * side;
    let input = ort::value::Tensor::from_array(([1usize, 3, side, side], vec![0f32; n]))
        .expect("input tensor");
    let outputs = session.run(ort::inputs!["input" => input]).expect("run");
    let (shape, data) = outputs["output"]
        .try_extract_tensor::<f32>()
        .expect("f32 output");
    (shape.to_vec(), data.to_vec())
}

/// Generate, write, read back, run in ONNX Runtime and check the counts, for every ratio and
/// dataset of one architecture.
fn check_arch(arch: Arch) {
    let dir = util::tempdir();
    for dataset in DATASETS {
        for ratio in RATIOS {
            let spec = ZooSpec {
                arch,
                dataset,
                ratio,
                widths: None,
                seed: 42,
            };
            let what = format!("{arch} {dataset} x{ratio}");
            let widths = scaled(&base_widths(arch), ratio);
            check_model(&spec, &widths, dir.path(), &what);
        }
    }
}

fn check_model(spec: &ZooSpec, widths: &[u64], dir: &Path, what: &str) {
    let model = zoo::generate(spec).unwrap_or_else(|e| panic!("{what}: {e}"));
    let path = dir.join(zoo::default_output_name(spec));
    onnx_pb::write_model(&path, &model).expect("write");
    let back = onnx_pb::read_model(&path).expect("read back");
    assert!(back == model, "{what}: read-back model differs");
    drop(model);

    let want = expected_counts(spec.arch, widths, spec.dataset);
    let got = Counts {
        onnx: conv_gemm_params(&back),
        torch: meta_u64(&back, "rtinfer.params_torch"),
        flops: meta_u64(&back, "rtinfer.flops_thop"),
    };
    assert_eq!(got, want, "{what}");
    assert_eq!(
        onnx_pb::model_params(&back),
        want.onnx,
        "{what}: model_params"
    );
    let listed: Vec<String> = widths.iter().map(u64::to_string).collect();
    assert_eq!(
        onnx_pb::metadata(&back, "rtinfer.widths"),
        Some(listed.join(",").as_str())
    );
    assert_eq!(
        onnx_pb::metadata(&back, "rtinfer.arch"),
        Some(spec.arch.to_string().as_str())
    );
    assert_eq!(
        (back.ir_version >= 7, back.producer_name.as_str()),
        (true, "rtinfer")
    );
    assert_eq!(back.opset_import[0].version, 13);
    drop(back);

    let (side, classes) = geometry(spec.dataset);
    let (shape, values) = run_zero_input(&path, side as usize);
    assert_eq!(shape, [1, classes as i64], "{what}: output shape");
    assert!(
        values.iter().all(|v| v.is_finite()),
        "{what}: non-finite output"
    );
    std::fs::remove_file(&path).expect("remove model");
}

#[test]
fn vgg11_every_ratio_and_dataset_runs_and_counts_match() {
    check_arch(Arch::Vgg11);
}

#[test]
fn mobilenetv2_every_ratio_and_dataset_runs_and_counts_match() {
    check_arch(Arch::MobileNetV2);
}

#[test]
fn resnet50_every_ratio_and_dataset_runs_and_counts_match() {
    check_arch(Arch::ResNet50);
}

/// Public full-width figures: VGG-11-BN without hidden FC on CIFAR-10 ~9.23 M parameters;
/// torchvision ResNet-50 has 25,557,032 with its 1000-class fc (2048*1000 + 1000), so with a
/// 10-class fc it has 25,557,032 - 2,049,000 + 20,490; MobileNetV2 (CIFAR) about 2.2-2.3 M.
#[test]
fn full_width_parameter_counts_match_public_figures() {
    let torch_params = |arch| {
        let spec = ZooSpec {
            arch,
            dataset: Dataset::Cifar10,
            ratio: 1.0,
            widths: None,
            seed: 1,
        };
        meta_u64(
            &zoo::generate(&spec).expect("generate"),
            "rtinfer.params_torch",
        )
    };
    let vgg = torch_params(Arch::Vgg11);
    assert!((9_225_000..9_235_000).contains(&vgg), "VGG-11 {vgg}");
    assert_eq!(
        torch_params(Arch::ResNet50),
        25_557_032 - 2_049_000 + 20_490
    );
    let mnv2 = torch_params(Arch::MobileNetV2);
    assert!((2_200_000..2_350_000).contains(&mnv2), "MobileNetV2 {mnv2}");
}

#[test]
fn explicit_widths_give_that_layout() {
    let dir = util::tempdir();
    let cases: [(Arch, Vec<u64>); 3] = [
        (Arch::Vgg11, vec![8, 16, 24, 40, 48, 56, 64, 72]),
        (
            Arch::MobileNetV2,
            vec![
                12, 8, 20, 28, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 200,
            ],
        ),
        (Arch::ResNet50, vec![20, 64, 24, 40, 8]),
    ];
    for (arch, widths) in cases {
        let spec = ZooSpec {
            arch,
            dataset: Dataset::Cifar10,
            ratio: 1.0,
            widths: Some(widths.iter().map(|&w| w as u32).collect()),
            seed: 3,
        };
        check_model(
            &spec,
            &widths,
            dir.path(),
            &format!("{arch} explicit widths"),
        );
    }
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let spec = |seed| ZooSpec {
        arch: Arch::MobileNetV2,
        dataset: Dataset::Cifar10,
        ratio: 0.25,
        widths: None,
        seed,
    };
    let a = zoo::generate(&spec(5)).expect("generate");
    let b = zoo::generate(&spec(5)).expect("generate");
    let c = zoo::generate(&spec(6)).expect("generate");
    let weights = |m: &ModelProto| {
        m.graph.as_ref().expect("graph").initializer[0]
            .raw_data
            .clone()
    };
    assert_eq!(weights(&a), weights(&b));
    assert_ne!(weights(&a), weights(&c));
}

#[test]
fn bad_widths_and_ratios_are_errors() {
    let spec = |arch, ratio, widths: Option<Vec<u32>>| ZooSpec {
        arch,
        dataset: Dataset::Cifar10,
        ratio,
        widths,
        seed: 0,
    };
    let err = zoo::generate(&spec(Arch::Vgg11, 1.0, Some(vec![64; 7]))).expect_err("7 widths");
    assert!(
        matches!(
            err,
            ZooError::WidthCount {
                expected: 8,
                got: 7,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("vgg11"), "{err}");
    let err = zoo::generate(&spec(Arch::ResNet50, 1.0, Some(vec![64, 64, 0, 256, 512])))
        .expect_err("zero width");
    assert!(matches!(err, ZooError::ZeroWidth { index: 2, .. }), "{err}");
    let err = zoo::generate(&spec(Arch::MobileNetV2, 1.0, Some(vec![32; 18]))).expect_err("18");
    assert!(
        matches!(err, ZooError::WidthCount { expected: 19, .. }),
        "{err}"
    );
    for ratio in [0.0, -0.5, f64::NAN, f64::INFINITY] {
        let err = zoo::generate(&spec(Arch::Vgg11, ratio, None)).expect_err("bad ratio");
        assert!(matches!(err, ZooError::BadRatio { .. }), "{ratio}: {err}");
    }
    // 16 * 0.05 truncates to 0 channels.
    let err = zoo::generate(&spec(Arch::MobileNetV2, 0.05, None)).expect_err("tiny ratio");
    assert!(
        matches!(err, ZooError::RatioTooSmall { base: 16, .. }),
        "{err}"
    );
    let err = zoo::generate(&spec(Arch::Vgg11, 1.0, Some(vec![1 << 20; 8]))).expect_err("wide");
    assert!(
        matches!(err, ZooError::WidthTooLarge { index: 0, .. }),
        "{err}"
    );
    let err = zoo::generate(&spec(Arch::ResNet50, 1e6, None)).expect_err("wide ratio");
    assert!(matches!(err, ZooError::WidthTooLarge { .. }), "{err}");
    // 65536 channels are allowed one by one, but eight such layers need ~2.7e11 weights.
    let err = zoo::generate(&spec(Arch::Vgg11, 1.0, Some(vec![1 << 16; 8]))).expect_err("huge");
    assert!(matches!(err, ZooError::TooLarge { .. }), "{err}");
    assert!("alexnet".parse::<Arch>().is_err());
    assert!("mnist".parse::<Dataset>().is_err());
}

#[test]
fn non_onnx_files_are_errors_naming_the_path() {
    let dir = util::tempdir();
    let cases: [(&str, &[u8]); 3] = [
        ("text.onnx", b"this is not a model\n"),
        ("empty.onnx", b""),
        (
            "png.onnx",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0",
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let err = onnx_pb::read_model(&path).expect_err(name);
        assert!(matches!(err, OnnxError::NotOnnx { .. }), "{name}: {err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
    let missing = dir.path().join("missing.onnx");
    let err = onnx_pb::read_model(&missing).expect_err("missing");
    assert!(matches!(err, OnnxError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.onnx"), "{err}");
}
