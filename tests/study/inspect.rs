//! `inspect` counts on every zoo variant against closed forms written from the architecture
//! text (layer lists of VGG-11, MobileNetV2 and ResNet-50), and on hand-built graphs.

use rtinfer::onnx::pb::{self as onnx_pb, GraphProto, ModelProto, NodeProto, OperatorSetIdProto};
use rtinfer::onnx::pb::{TensorProto, ValueInfoProto};
use rtinfer::study::inspect::{self, critical_datapath_length};
use rtinfer::study::zoo::{self, Arch, Dataset, ZooSpec};

use crate::util;

/// Folded-ONNX parameters, MACs of Conv/Gemm, and nodes on the longest path.
#[derive(Debug, Default, PartialEq)]
struct Expect {
    params: u64,
    macs: u64,
}

impl Expect {
    /// Conv with bias: `cout` outputs of `side x side`, `cin_g` inputs per group, `k x k`.
    fn conv(&mut self, cout: u64, cin_g: u64, k: u64, side: u64) {
        self.params += cout * cin_g * k * k + cout;
        self.macs += cout * side * side * cin_g * k * k;
    }
    fn fc(&mut self, fan_in: u64, out: u64) {
        self.params += fan_in * out + out;
        self.macs += fan_in * out;
    }
}

fn floor_scale(base: &[u64], r: f64) -> Vec<u64> {
    base.iter()
        .map(|&w| (w as f64 * r).floor() as u64)
        .collect()
}

fn side_classes(d: Dataset) -> (u64, u64) {
    match d {
        Dataset::Cifar10 => (32, 10),
        Dataset::TinyImageNet => (64, 200),
    }
}

/// VGG-11: 64 M 128 M 256 256 M 512 512 M 512 512 M, 3x3 pad 1, then one FC.
/// CDL = 8 Conv + 8 Relu + 5 MaxPool + Reshape + Gemm.
fn vgg11(d: Dataset, r: f64) -> (Expect, usize) {
    let (mut s, classes) = side_classes(d);
    let w = floor_scale(&[64, 128, 256, 256, 512, 512, 512, 512], r);
    let mut e = Expect::default();
    let mut cin = 3;
    for (i, &c) in w.iter().enumerate() {
        e.conv(c, cin, 3, s);
        cin = c;
        if [0, 1, 3, 5, 7].contains(&i) {
            s /= 2;
        }
    }
    e.fc(cin * s * s, classes);
    (e, 8 + 8 + 5 + 1 + 1)
}

/// MobileNetV2 (CIFAR form): stem 3x3 s1, 17 inverted residuals (t = 1 then 6; stage strides
/// 1,2,2,2,1,2,1, the fifth stage also 2 on 64x64), 1x1 last conv, GAP, 1x1 classifier conv.
/// Every block: expand, ReLU6, depthwise, ReLU6, project, Add (a 1x1 shortcut conv when the
/// shape changes); longest path = stem (Conv Relu Clip) + 6 per block + Conv Relu Clip GAP Conv
/// Reshape.
fn mobilenetv2(d: Dataset, r: f64) -> (Expect, usize) {
    let (mut s, classes) = side_classes(d);
    let base = [
        32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280,
    ];
    let w = floor_scale(&base, r);
    let strides = match d {
        Dataset::Cifar10 => [1, 2, 2, 2, 1, 2, 1],
        Dataset::TinyImageNet => [1, 2, 2, 2, 2, 2, 1],
    };
    let mut e = Expect::default();
    e.conv(w[0], 3, 3, s);
    let mut c = w[0];
    let mut i = 1;
    for (stage, n) in [1, 2, 3, 4, 3, 3, 1].into_iter().enumerate() {
        let t = if stage == 0 { 1 } else { 6 };
        for b in 0..n {
            let o = w[i];
            i += 1;
            let stride = if b == 0 { strides[stage] } else { 1 };
            let h = c * t;
            e.conv(h, c, 1, s);
            let so = s / stride;
            e.conv(h, 1, 3, so);
            e.conv(o, h, 1, so);
            if stride != 1 || c != o {
                e.conv(o, c, 1, so);
            }
            c = o;
            s = so;
        }
    }
    e.conv(w[18], c, 1, s);
    e.conv(classes, w[18], 1, 1);
    (e, 3 + 17 * 6 + 6)
}

/// ResNet-50 v1.5: 7x7/2 stem, 3x3/2 max pool, bottlenecks [3,4,6,3] (1x1, 3x3 with the
/// stride, 1x1 to 4x planes; 1x1 downsample on each stage's first block), GAP, Flatten, FC.
/// Longest path: Conv Relu MaxPool + 7 per block (3 Conv, 2 Relu, Add, Relu) + GAP Flatten Gemm.
fn resnet50(d: Dataset, r: f64) -> (Expect, usize) {
    let (s0, classes) = side_classes(d);
    let w = floor_scale(&[64, 64, 128, 256, 512], r);
    let mut e = Expect::default();
    let mut s = s0 / 2;
    e.conv(w[0], 3, 7, s);
    s /= 2;
    let mut c = w[0];
    for (stage, n) in [3, 4, 6, 3].into_iter().enumerate() {
        let p = w[stage + 1];
        for b in 0..n {
            let stride = if b == 0 && stage > 0 { 2 } else { 1 };
            e.conv(p, c, 1, s);
            let so = s / stride;
            e.conv(p, p, 3, so);
            e.conv(4 * p, p, 1, so);
            if b == 0 {
                e.conv(4 * p, c, 1, so);
            }
            c = 4 * p;
            s = so;
        }
    }
    e.fc(c, classes);
    (e, 3 + 16 * 7 + 3)
}

#[test]
fn zoo_variants_match_closed_forms() {
    for arch in [Arch::Vgg11, Arch::MobileNetV2, Arch::ResNet50] {
        for dataset in [Dataset::Cifar10, Dataset::TinyImageNet] {
            for ratio in [0.25, 0.5, 1.0] {
                let spec = ZooSpec {
                    arch,
                    dataset,
                    ratio,
                    widths: None,
                    seed: 1,
                };
                let model = zoo::generate(&spec).expect("generate");
                let r = inspect::inspect(&model).expect("inspect");
                let (e, cdl) = match arch {
                    Arch::Vgg11 => vgg11(dataset, ratio),
                    Arch::MobileNetV2 => mobilenetv2(dataset, ratio),
                    Arch::ResNet50 => resnet50(dataset, ratio),
                };
                let what = format!("{arch} {dataset} {ratio}");
                assert!(r.macs_complete, "{what}: {:?}", r.unsized_ops);
                assert_eq!(r.params, e.params, "{what}: params");
                assert_eq!(r.macs, e.macs, "{what}: MACs");
                assert_eq!(r.flops, 2 * e.macs, "{what}: FLOPs");
                assert_eq!(r.cdl, cdl, "{what}: CDL");
                assert!(r.params_torch.is_some() && r.flops_thop.is_some(), "{what}");
            }
        }
    }
}

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn model_of(graph: GraphProto) -> ModelProto {
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

/// Two branches from the input: a chain of 5 nodes (listed out of order) and a chain of 2,
/// joined by an Add and followed by one more: longest path 5 + Add + 1 = 7.
#[test]
fn hand_built_graph_longest_path() {
    let g = GraphProto {
        node: vec![
            node("c3", "Relu", &["c2"], &["c3"]),
            node("c1", "Relu", &["x"], &["c1"]),
            node("add", "Add", &["c5", "d2"], &["sum"]),
            node("d1", "Relu", &["x"], &["d1"]),
            node("c2", "Relu", &["c1"], &["c2"]),
            node("c5", "Relu", &["c4"], &["c5"]),
            node("d2", "Relu", &["d1"], &["d2"]),
            node("c4", "Relu", &["c3"], &["c4"]),
            node("out", "Relu", &["sum"], &["y"]),
            node("lonely", "Relu", &["x"], &["z"]),
        ],
        ..Default::default()
    };
    assert_eq!(critical_datapath_length(&g), Ok(7));
    let mut cyclic = g.clone();
    cyclic.node[1].input = vec!["c3".into()];
    assert!(critical_datapath_length(&cyclic).is_err());
}

/// Grouped conv MACs (closed form), and an unknown operator named in the CLI output with its
/// downstream node counted as unsized rather than guessed.
#[test]
fn unsupported_ops_are_named_and_grouped_convs_counted() {
    let weight = TensorProto {
        name: "w".into(),
        dims: vec![8, 2, 3, 3],
        data_type: 1,
        raw_data: vec![0; 8 * 2 * 9 * 4],
        ..Default::default()
    };
    let mut conv = node("conv", "Conv", &["x", "w"], &["c"]);
    conv.attribute = vec![
        onnx_pb::AttributeProto::int("group", 2),
        onnx_pb::AttributeProto::ints("pads", &[1, 1, 1, 1]),
        onnx_pb::AttributeProto::ints("strides", &[2, 2]),
    ];
    let g = GraphProto {
        node: vec![
            conv,
            node("mystery", "FancyOp", &["c"], &["f"]),
            node("after", "Relu", &["f"], &["y"]),
        ],
        initializer: vec![weight],
        input: vec![ValueInfoProto::float_tensor("x", &[1, 4, 10, 10])],
        output: vec![ValueInfoProto::float_tensor("y", &[1, 8, 5, 5])],
        ..Default::default()
    };
    let dir = util::tempdir();
    let path = dir.path().join("hand.onnx");
    onnx_pb::write_model(&path, &model_of(g)).expect("write");
    let o = util::rtinfer()
        .args(["inspect", "--json"])
        .arg(&path)
        .output()
        .expect("run inspect");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    // Output 8 x 5 x 5 (10 + 2 - 3) / 2 + 1 = 5; each output sums 4/2 channels x 3 x 3.
    assert_eq!(v["macs"], 8 * 5 * 5 * 2 * 9);
    assert_eq!(v["params"], 8 * 2 * 9);
    assert_eq!(v["cdl"], 3);
    assert_eq!(v["macs_complete"], false);
    let unsized_ops = v["unsized_ops"].to_string();
    assert!(unsized_ops.contains("mystery (FancyOp)"), "{unsized_ops}");
    assert_eq!(v["unsized_downstream"], 1);
    let text = util::rtinfer()
        .arg("inspect")
        .arg(&path)
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&text.stdout).contains("FancyOp"));
}

#[test]
fn width_profile_plot_is_svg() {
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "vgg11", "cifar10", 0.5);
    let svg = dir.path().join("widths.svg");
    let o = util::rtinfer()
        .arg("inspect")
        .arg(&model)
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("conv widths  32 64 128 128 256 256 256 256"),
        "{out}"
    );
    let text = std::fs::read_to_string(&svg).expect("svg written");
    let doc = roxmltree::Document::parse(&text).expect("valid XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
}
