//! The study's three CNNs (VGG-11, MobileNetV2, ResNet-50) at any width, generated directly as
//! ONNX so benchmarks and tests never need PyTorch or committed model files.
//!
//! Latency depends on the architecture and widths, not on trained weights, so the weights are
//! random (He-initialised from a seeded PRNG: the same spec always gives the same file). The
//! graph is what an eval-mode export produces: BatchNorm folded into the preceding Conv, so every
//! Conv carries a bias. The parameter and FLOP counts the study reported were taken with thop on
//! the *unfolded* PyTorch model; they are recomputed here layer by layer and stored as metadata,
//! so results can be joined with the paper's tables.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::onnx::pb::{
    AttributeProto, DATA_TYPE_FLOAT, DATA_TYPE_INT64, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, ValueInfoProto,
};

/// ONNX IR version written (7 = ONNX 1.7; every ONNX Runtime since 1.5 reads it).
pub const IR_VERSION: i64 = 7;
/// Default-domain operator set written (Clip takes min/max as inputs from 11 on).
pub const OPSET: i64 = 13;
/// A protobuf message cannot exceed 2 GiB; refuse layouts whose weights alone approach it.
const MAX_PARAMS: u64 = 500_000_000;
/// Widest layer accepted; keeps every channel product (expansion x 6, bottleneck x 4) in `u32`.
pub const MAX_WIDTH: u32 = 1 << 16;

/// Which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    Vgg11,
    MobileNetV2,
    ResNet50,
}

/// Which dataset the network is shaped for (input size and class count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dataset {
    /// 1x3x32x32 input, 10 classes.
    Cifar10,
    /// 1x3x64x64 input, 200 classes.
    TinyImageNet,
}

/// Everything that determines a generated model.
#[derive(Debug, Clone, PartialEq)]
pub struct ZooSpec {
    pub arch: Arch,
    pub dataset: Dataset,
    /// Uniform width multiplier: every width `w` becomes `floor(w * ratio)`. Ignored for the
    /// widths when `widths` is given (it is still recorded in the metadata).
    pub ratio: f64,
    /// Per-layer widths overriding the scaled defaults (see [`Arch::width_count`]).
    pub widths: Option<Vec<u32>>,
    /// PRNG seed of the weights.
    pub seed: u64,
}

/// A spec that cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum ZooError {
    #[error("unknown architecture {name:?} (expected vgg11, mobilenetv2 or resnet50)")]
    UnknownArch { name: String },
    #[error("unknown dataset {name:?} (expected cifar10 or tinyimagenet)")]
    UnknownDataset { name: String },
    #[error("{arch}: width ratio {ratio} must be a finite number > 0")]
    BadRatio { arch: Arch, ratio: f64 },
    #[error("{arch}: ratio {ratio} scales width {base} (layer {index}) to 0")]
    RatioTooSmall {
        arch: Arch,
        ratio: f64,
        base: u32,
        index: usize,
    },
    #[error("{arch}: expected {expected} widths ({layout}), got {got}")]
    WidthCount {
        arch: Arch,
        expected: usize,
        got: usize,
        layout: &'static str,
    },
    #[error("{arch}: width {index} is 0")]
    ZeroWidth { arch: Arch, index: usize },
    #[error("{arch}: width {index} is {width}, above the maximum {MAX_WIDTH}")]
    WidthTooLarge {
        arch: Arch,
        index: usize,
        width: u64,
    },
    #[error("{arch}: {params} parameters exceed the {MAX_PARAMS} an ONNX file can hold")]
    TooLarge { arch: Arch, params: u64 },
}

impl Arch {
    /// The CLI / metadata name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Vgg11 => "vgg11",
            Arch::MobileNetV2 => "mobilenetv2",
            Arch::ResNet50 => "resnet50",
        }
    }

    /// Full-width per-layer widths, in the order `ZooSpec::widths` takes them.
    pub fn base_widths(self) -> &'static [u32] {
        match self {
            Arch::Vgg11 => &VGG11_WIDTHS,
            Arch::MobileNetV2 => &MNV2_WIDTHS,
            Arch::ResNet50 => &RESNET50_WIDTHS,
        }
    }

    /// How many entries `ZooSpec::widths` must have.
    pub fn width_count(self) -> usize {
        self.base_widths().len()
    }

    fn width_layout(self) -> &'static str {
        match self {
            Arch::Vgg11 => "the 8 conv widths",
            Arch::MobileNetV2 => "stem, 17 block outputs, last conv",
            Arch::ResNet50 => "stem, then the planes of the 4 stages",
        }
    }
}

impl Dataset {
    /// The CLI / metadata name.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Cifar10 => "cifar10",
            Dataset::TinyImageNet => "tinyimagenet",
        }
    }

    /// Input height = width.
    pub fn input_size(self) -> u32 {
        match self {
            Dataset::Cifar10 => 32,
            Dataset::TinyImageNet => 64,
        }
    }

    /// Number of output classes.
    pub fn classes(self) -> u32 {
        match self {
            Dataset::Cifar10 => 10,
            Dataset::TinyImageNet => 200,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = ZooError;
    fn from_str(s: &str) -> Result<Self, ZooError> {
        [Arch::Vgg11, Arch::MobileNetV2, Arch::ResNet50]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ZooError::UnknownArch { name: s.to_owned() })
    }
}

impl FromStr for Dataset {
    type Err = ZooError;
    fn from_str(s: &str) -> Result<Self, ZooError> {
        [Dataset::Cifar10, Dataset::TinyImageNet]
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ZooError::UnknownDataset { name: s.to_owned() })
    }
}

/// VGG-11 conv widths (`64 M 128 M 256 256 M 512 512 M 512 512 M`).
const VGG11_WIDTHS: [u32; 8] = [64, 128, 256, 256, 512, 512, 512, 512];
/// Index of each VGG-11 conv followed by a MaxPool.
const VGG11_POOL_AFTER: [usize; 5] = [0, 1, 3, 5, 7];
/// MobileNetV2: stem, the 17 block outputs, the last conv.
const MNV2_WIDTHS: [u32; 19] = [
    32, 16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320, 1280,
];
/// MobileNetV2 blocks per stage.
const MNV2_BLOCKS: [usize; 7] = [1, 2, 3, 4, 3, 3, 1];
/// ResNet-50: stem, then planes of the four stages.
const RESNET50_WIDTHS: [u32; 5] = [64, 64, 128, 256, 512];
/// ResNet-50 bottleneck blocks per stage.
const RESNET50_BLOCKS: [usize; 4] = [3, 4, 6, 3];
/// Bottleneck expansion: a block outputs `planes * 4` channels.
const RESNET50_EXPANSION: u32 = 4;

/// MobileNetV2 stage strides: 1,2,2,2,1,2,1 on 32x32; on 64x64 (200 classes) the 96-wide stage
/// also halves.
fn mnv2_strides(dataset: Dataset) -> [u32; 7] {
    match dataset {
        Dataset::Cifar10 => [1, 2, 2, 2, 1, 2, 1],
        Dataset::TinyImageNet => [1, 2, 2, 2, 2, 2, 1],
    }
}

/// The per-layer widths a spec resolves to (`floor(w * ratio)`, or the override, checked).
pub fn resolved_widths(spec: &ZooSpec) -> Result<Vec<u32>, ZooError> {
    let arch = spec.arch;
    if !spec.ratio.is_finite() || spec.ratio <= 0.0 {
        return Err(ZooError::BadRatio {
            arch,
            ratio: spec.ratio,
        });
    }
    let widths = match &spec.widths {
        Some(w) => {
            if w.len() != arch.width_count() {
                return Err(ZooError::WidthCount {
                    arch,
                    expected: arch.width_count(),
                    got: w.len(),
                    layout: arch.width_layout(),
                });
            }
            if let Some(index) = w.iter().position(|&x| x == 0) {
                return Err(ZooError::ZeroWidth { arch, index });
            }
            w.clone()
        }
        None => scale_widths(arch, spec.ratio)?,
    };
    if let Some(index) = widths.iter().position(|&x| x > MAX_WIDTH) {
        return Err(ZooError::WidthTooLarge {
            arch,
            index,
            width: u64::from(widths[index]),
        });
    }
    Ok(widths)
}

fn scale_widths(arch: Arch, ratio: f64) -> Result<Vec<u32>, ZooError> {
    arch.base_widths()
        .iter()
        .enumerate()
        .map(|(index, &base)| {
            let w = (f64::from(base) * ratio).floor();
            if w < 1.0 {
                Err(ZooError::RatioTooSmall {
                    arch,
                    ratio,
                    base,
                    index,
                })
            } else if w > f64::from(MAX_WIDTH) {
                Err(ZooError::WidthTooLarge {
                    arch,
                    index,
                    width: w as u64,
                })
            } else {
                Ok(w as u32)
            }
        })
        .collect()
}

/// A file name that identifies the spec, e.g. `resnet50-cifar10-r0.5.onnx`.
pub fn default_output_name(spec: &ZooSpec) -> PathBuf {
    let shape = match &spec.widths {
        Some(w) => format!("w{}", join(w, "_")),
        None => format!("r{}", spec.ratio),
    };
    PathBuf::from(format!("{}-{}-{shape}.onnx", spec.arch, spec.dataset))
}

fn join(widths: &[u32], sep: &str) -> String {
    widths
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(sep)
}

/// Generates the model a spec describes.
pub fn generate(spec: &ZooSpec) -> Result<ModelProto, ZooError> {
    let widths = resolved_widths(spec)?;
    let size = spec.dataset.input_size();
    let mut net = Net::new(size);
    let input = Value {
        name: "input".into(),
        c: 3,
        h: size,
        w: size,
    };
    let classes = spec.dataset.classes();
    let output = match spec.arch {
        Arch::Vgg11 => vgg11(&mut net, input, &widths, classes),
        Arch::MobileNetV2 => mobilenetv2(&mut net, input, &widths, spec.dataset),
        Arch::ResNet50 => resnet50(&mut net, input, &widths, classes),
    };
    let params = net.folded_params();
    if params > MAX_PARAMS {
        return Err(ZooError::TooLarge {
            arch: spec.arch,
            params,
        });
    }
    Ok(net.finish(spec, &widths, &output))
}

/// A value flowing through the graph and its (batch-1) geometry.
#[derive(Debug, Clone)]
struct Value {
    name: String,
    c: u32,
    h: u32,
    w: u32,
}

impl Value {
    fn elements(&self) -> u64 {
        u64::from(self.c) * u64::from(self.h) * u64::from(self.w)
    }
}

/// How the original PyTorch layer looked, for the thop-style counts.
#[derive(Debug, Clone, Copy)]
struct Torch {
    /// The conv had its own bias.
    bias: bool,
    /// A BatchNorm2d followed (folded away in ONNX).
    bn: bool,
}

/// How an initializer's data is produced when the graph is finished.
#[derive(Debug)]
enum Fill {
    /// Normal(0, std).
    Normal { std: f64 },
    /// Bytes known up front (shapes, clip bounds).
    Literal(Vec<u8>),
}

/// A graph under construction plus the thop-style tallies of the model it stands for.
struct Net {
    nodes: Vec<NodeProto>,
    inits: Vec<(TensorProto, Fill)>,
    next_id: usize,
    input_size: u32,
    clip_bounds: bool,
    torch_params: u64,
    thop_macs: u64,
}

const BIAS_STD: f64 = 0.01;

impl Net {
    fn new(input_size: u32) -> Self {
        Net {
            nodes: Vec::new(),
            inits: Vec::new(),
            next_id: 0,
            input_size,
            clip_bounds: false,
            torch_params: 0,
            thop_macs: 0,
        }
    }

    fn id(&mut self) -> usize {
        self.next_id += 1;
        self.next_id
    }

    fn init(&mut self, name: String, dims: Vec<i64>, data_type: i32, fill: Fill) -> String {
        let t = TensorProto {
            dims,
            data_type,
            name: name.clone(),
            ..Default::default()
        };
        self.inits.push((t, fill));
        name
    }

    fn node(&mut self, op: &str, inputs: Vec<String>, attrs: Vec<AttributeProto>) -> String {
        let id = self.id();
        let out = format!("{}_{id}", op.to_ascii_lowercase());
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![out.clone()],
            name: format!("{op}_{id}"),
            op_type: op.to_owned(),
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    /// Conv with bias (BatchNorm folded), He-initialised.
    fn conv(&mut self, x: &Value, spec: ConvSpec, torch: Torch) -> Value {
        let ConvSpec {
            out,
            k,
            stride,
            pad,
            groups,
        } = spec;
        let cin_g = x.c / groups;
        let fan_in = u64::from(cin_g) * u64::from(k * k);
        let id = self.id();
        let dims = vec![i64::from(out), i64::from(cin_g), i64::from(k), i64::from(k)];
        let std = (2.0 / fan_in as f64).sqrt();
        let w = self.init(
            format!("conv{id}.weight"),
            dims,
            DATA_TYPE_FLOAT,
            Fill::Normal { std },
        );
        let b = self.bias(format!("conv{id}.bias"), out);
        let mut attrs = vec![
            AttributeProto::ints("kernel_shape", &[i64::from(k), i64::from(k)]),
            AttributeProto::ints("strides", &[i64::from(stride), i64::from(stride)]),
            AttributeProto::ints("pads", &[i64::from(pad); 4]),
        ];
        if groups != 1 {
            attrs.push(AttributeProto::int("group", i64::from(groups)));
        }
        let name = self.node("Conv", vec![x.name.clone(), w, b], attrs);
        let y = Value {
            name,
            c: out,
            h: (x.h + 2 * pad - k) / stride + 1,
            w: (x.w + 2 * pad - k) / stride + 1,
        };
        self.count_conv(&y, fan_in, torch);
        y
    }

    fn bias(&mut self, name: String, n: u32) -> String {
        let fill = Fill::Normal { std: BIAS_STD };
        self.init(name, vec![i64::from(n)], DATA_TYPE_FLOAT, fill)
    }

    /// thop: Conv = out_elements x (Cin/groups) x k x k MACs, BatchNorm = 4 x elements.
    fn count_conv(&mut self, y: &Value, fan_in: u64, torch: Torch) {
        let out = u64::from(y.c);
        self.torch_params += out * fan_in;
        self.thop_macs += y.elements() * fan_in;
        if torch.bias {
            self.torch_params += out;
        }
        if torch.bn {
            self.torch_params += 2 * out;
            self.thop_macs += 4 * y.elements();
        }
    }

    fn unary(&mut self, op: &str, x: &Value, attrs: Vec<AttributeProto>) -> Value {
        let name = self.node(op, vec![x.name.clone()], attrs);
        Value { name, ..x.clone() }
    }

    fn relu(&mut self, x: &Value) -> Value {
        self.unary("Relu", x, Vec::new())
    }

    /// ReLU6 as opset-13 `Clip` with min 0 and max 6 given as (shared) scalar initializers.
    fn relu6(&mut self, x: &Value) -> Value {
        if !self.clip_bounds {
            self.clip_bounds = true;
            let lit = |v: f32| Fill::Literal(v.to_le_bytes().to_vec());
            self.init("clip.min".into(), Vec::new(), DATA_TYPE_FLOAT, lit(0.0));
            self.init("clip.max".into(), Vec::new(), DATA_TYPE_FLOAT, lit(6.0));
        }
        let inputs = vec![x.name.clone(), "clip.min".into(), "clip.max".into()];
        let name = self.node("Clip", inputs, Vec::new());
        Value { name, ..x.clone() }
    }

    fn maxpool(&mut self, x: &Value, k: u32, stride: u32, pad: u32) -> Value {
        let attrs = vec![
            AttributeProto::ints("kernel_shape", &[i64::from(k), i64::from(k)]),
            AttributeProto::ints("strides", &[i64::from(stride), i64::from(stride)]),
            AttributeProto::ints("pads", &[i64::from(pad); 4]),
        ];
        let name = self.node("MaxPool", vec![x.name.clone()], attrs);
        Value {
            name,
            c: x.c,
            h: (x.h + 2 * pad - k) / stride + 1,
            w: (x.w + 2 * pad - k) / stride + 1,
        }
    }

    fn add(&mut self, a: &Value, b: &Value) -> Value {
        let name = self.node("Add", vec![a.name.clone(), b.name.clone()], Vec::new());
        Value { name, ..a.clone() }
    }

    /// GlobalAveragePool; `adaptive` = the original was an `nn.AdaptiveAvgPool2d` module, which
    /// thop counts as (kernel_area + 1) x out_elements (a functional pool counts 0).
    fn global_avg_pool(&mut self, x: &Value, adaptive: bool) -> Value {
        let name = self.node("GlobalAveragePool", vec![x.name.clone()], Vec::new());
        if adaptive {
            self.thop_macs += (u64::from(x.h) * u64::from(x.w) + 1) * u64::from(x.c);
        }
        Value {
            name,
            c: x.c,
            h: 1,
            w: 1,
        }
    }

    /// `Reshape` to `(1, C*H*W)` with a constant shape; the result is a 2-D value (h = w = 1).
    fn reshape_2d(&mut self, x: &Value) -> Value {
        let flat = x.elements();
        let id = self.id();
        let mut bytes = 1i64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&(flat as i64).to_le_bytes());
        let shape = self.init(
            format!("shape{id}"),
            vec![2],
            DATA_TYPE_INT64,
            Fill::Literal(bytes),
        );
        let name = self.node("Reshape", vec![x.name.clone(), shape], Vec::new());
        Value {
            name,
            c: flat as u32,
            h: 1,
            w: 1,
        }
    }

    fn flatten(&mut self, x: &Value) -> Value {
        let attrs = vec![AttributeProto::int("axis", 1)];
        let name = self.node("Flatten", vec![x.name.clone()], attrs);
        Value {
            name,
            c: x.elements() as u32,
            h: 1,
            w: 1,
        }
    }

    /// `Gemm` (an `nn.Linear` with bias) on a `(1, in)` value.
    fn gemm(&mut self, x: &Value, out: u32) -> Value {
        let id = self.id();
        let fan_in = u64::from(x.c);
        let dims = vec![i64::from(out), i64::from(x.c)];
        let std = (1.0 / fan_in as f64).sqrt();
        let w = self.init(
            format!("fc{id}.weight"),
            dims,
            DATA_TYPE_FLOAT,
            Fill::Normal { std },
        );
        let b = self.bias(format!("fc{id}.bias"), out);
        let attrs = vec![AttributeProto::int("transB", 1)];
        let name = self.node("Gemm", vec![x.name.clone(), w, b], attrs);
        self.torch_params += fan_in * u64::from(out) + u64::from(out);
        self.thop_macs += fan_in * u64::from(out);
        Value {
            name,
            c: out,
            h: 1,
            w: 1,
        }
    }

    /// Parameters of the folded (ONNX) model: every Normal-filled initializer is a weight/bias.
    fn folded_params(&self) -> u64 {
        self.inits
            .iter()
            .filter(|(_, f)| matches!(f, Fill::Normal { .. }))
            .map(|(t, _)| t.element_count().unwrap_or(0))
            .sum()
    }

    /// Draws the weights, renames the last value `output` and wraps it all in a model.
    fn finish(mut self, spec: &ZooSpec, widths: &[u32], output: &Value) -> ModelProto {
        if let Some(last) = self.nodes.last_mut() {
            last.output = vec!["output".into()];
        }
        let mut rng = Rng::new(spec.seed);
        let initializer = self
            .inits
            .into_iter()
            .map(|(mut t, fill)| {
                t.raw_data = match fill {
                    Fill::Literal(b) => b,
                    Fill::Normal { std } => {
                        rng.normal_f32_le(t.element_count().unwrap_or(0) as usize, std)
                    }
                };
                t
            })
            .collect();
        let size = i64::from(self.input_size);
        let graph = GraphProto {
            node: self.nodes,
            name: format!("{}_{}", spec.arch, spec.dataset),
            initializer,
            input: vec![ValueInfoProto::float_tensor("input", &[1, 3, size, size])],
            output: vec![ValueInfoProto::float_tensor(
                "output",
                &[1, i64::from(output.c)],
            )],
            ..Default::default()
        };
        let metadata = [
            ("rtinfer.arch", spec.arch.to_string()),
            ("rtinfer.dataset", spec.dataset.to_string()),
            ("rtinfer.ratio", spec.ratio.to_string()),
            ("rtinfer.widths", join(widths, ",")),
            ("rtinfer.seed", spec.seed.to_string()),
            ("rtinfer.params_torch", self.torch_params.to_string()),
            ("rtinfer.flops_thop", (2 * self.thop_macs).to_string()),
        ];
        ModelProto {
            ir_version: IR_VERSION,
            producer_name: "rtinfer".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc_string(spec, widths),
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto {
                    key: key.into(),
                    value,
                })
                .collect(),
            ..Default::default()
        }
    }
}

fn doc_string(spec: &ZooSpec, widths: &[u32]) -> String {
    format!(
        "{} for {} (widths {}), random He-initialised weights (seed {}), BatchNorm folded into \
         Conv; generated by `rtinfer zoo` for latency studies, not trained.",
        spec.arch,
        spec.dataset,
        join(widths, ","),
        spec.seed
    )
}

/// Geometry of one convolution.
#[derive(Debug, Clone, Copy)]
struct ConvSpec {
    out: u32,
    k: u32,
    stride: u32,
    pad: u32,
    groups: u32,
}

impl ConvSpec {
    /// Square kernel `k`, padding `k / 2`, no groups.
    fn same(out: u32, k: u32, stride: u32) -> Self {
        ConvSpec {
            out,
            k,
            stride,
            pad: k / 2,
            groups: 1,
        }
    }
}

/// VGG-11 (BN variant, no hidden FC): conv widths `[w0 M w1 M w2 w3 M w4 w5 M w6 w7 M]`, then one
/// Reshape and one Gemm.
fn vgg11(net: &mut Net, input: Value, widths: &[u32], classes: u32) -> Value {
    let torch = Torch {
        bias: true,
        bn: true,
    };
    let mut x = input;
    for (i, &w) in widths.iter().enumerate() {
        x = net.conv(&x, ConvSpec::same(w, 3, 1), torch);
        x = net.relu(&x);
        if VGG11_POOL_AFTER.contains(&i) {
            x = net.maxpool(&x, 2, 2, 0);
        }
    }
    let x = net.reshape_2d(&x);
    net.gemm(&x, classes)
}

/// MobileNetV2, CIFAR variant (stride-1 stem, every block with a shortcut).
fn mobilenetv2(net: &mut Net, input: Value, widths: &[u32], dataset: Dataset) -> Value {
    let bn = Torch {
        bias: true,
        bn: true,
    };
    let mut x = net.conv(&input, ConvSpec::same(widths[0], 3, 1), bn);
    x = net.relu(&x);
    x = net.relu6(&x);
    let mut outs = widths[1..18].iter().copied();
    for (stage, (&blocks, stride)) in MNV2_BLOCKS.iter().zip(mnv2_strides(dataset)).enumerate() {
        let t = if stage == 0 { 1 } else { 6 };
        for b in 0..blocks {
            let out = outs.next().unwrap_or(x.c);
            let stride = if b == 0 { stride } else { 1 };
            x = inverted_residual(net, &x, out, t, stride);
        }
    }
    x = net.conv(&x, ConvSpec::same(widths[18], 1, 1), bn);
    x = net.relu(&x);
    x = net.relu6(&x);
    x = net.global_avg_pool(&x, false);
    let classifier = Torch {
        bias: true,
        bn: false,
    };
    x = net.conv(&x, ConvSpec::same(dataset.classes(), 1, 1), classifier);
    net.reshape_2d(&x)
}

/// expand 1x1 → ReLU6 → depthwise 3x3 → ReLU6 → project 1x1, plus the shortcut (identity when
/// shape-preserving, else a 1x1 conv).
fn inverted_residual(net: &mut Net, x: &Value, out: u32, t: u32, stride: u32) -> Value {
    let bn = Torch {
        bias: true,
        bn: true,
    };
    let hidden = x.c * t;
    let mut y = net.conv(x, ConvSpec::same(hidden, 1, 1), bn);
    y = net.relu6(&y);
    let dw = ConvSpec {
        groups: hidden,
        ..ConvSpec::same(hidden, 3, stride)
    };
    y = net.conv(&y, dw, bn);
    y = net.relu6(&y);
    y = net.conv(&y, ConvSpec::same(out, 1, 1), bn);
    let shortcut = if stride == 1 && x.c == out {
        x.clone()
    } else {
        net.conv(x, ConvSpec::same(out, 1, stride), bn)
    };
    net.add(&y, &shortcut)
}

/// ResNet-50 (torchvision v1.5: stride on the 3x3) on small inputs.
fn resnet50(net: &mut Net, input: Value, widths: &[u32], classes: u32) -> Value {
    let bn = Torch {
        bias: false,
        bn: true,
    };
    let mut x = net.conv(&input, ConvSpec::same(widths[0], 7, 2), bn);
    x = net.relu(&x);
    x = net.maxpool(&x, 3, 2, 1);
    for (stage, &blocks) in RESNET50_BLOCKS.iter().enumerate() {
        let planes = widths[stage + 1];
        let stride = if stage == 0 { 1 } else { 2 };
        for b in 0..blocks {
            x = bottleneck(net, &x, planes, if b == 0 { stride } else { 1 }, b == 0);
        }
    }
    x = net.global_avg_pool(&x, true);
    x = net.flatten(&x);
    net.gemm(&x, classes)
}

fn bottleneck(net: &mut Net, x: &Value, planes: u32, stride: u32, downsample: bool) -> Value {
    let bn = Torch {
        bias: false,
        bn: true,
    };
    let out = planes * RESNET50_EXPANSION;
    let mut y = net.conv(x, ConvSpec::same(planes, 1, 1), bn);
    y = net.relu(&y);
    y = net.conv(&y, ConvSpec::same(planes, 3, stride), bn);
    y = net.relu(&y);
    y = net.conv(&y, ConvSpec::same(out, 1, 1), bn);
    let shortcut = if downsample {
        net.conv(x, ConvSpec::same(out, 1, stride), bn)
    } else {
        x.clone()
    };
    let sum = net.add(&y, &shortcut);
    net.relu(&sum)
}

/// splitmix64 with Box-Muller normals: tiny, seedable, and identical on every platform.
struct Rng {
    state: u64,
    spare: Option<f64>,
}

impl Rng {
    fn new(seed: u64) -> Self {
        Rng {
            state: seed,
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal draw.
    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let r = (-2.0 * self.unit().ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * self.unit()).sin_cos();
        self.spare = Some(r * s);
        r * c
    }

    /// `n` draws of Normal(0, std) as little-endian float32 bytes (ONNX `raw_data`).
    fn normal_f32_le(&mut self, n: usize, std: f64) -> Vec<u8> {
        let mut out = vec![0u8; n * 4];
        for chunk in out.chunks_exact_mut(4) {
            chunk.copy_from_slice(&((self.normal() * std) as f32).to_le_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_standard_normal() {
        let mut rng = Rng::new(7);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }

    #[test]
    fn names_parse_both_ways() {
        for a in [Arch::Vgg11, Arch::MobileNetV2, Arch::ResNet50] {
            assert_eq!(a.to_string().parse::<Arch>().ok(), Some(a));
        }
        for d in [Dataset::Cifar10, Dataset::TinyImageNet] {
            assert_eq!(d.to_string().parse::<Dataset>().ok(), Some(d));
        }
        assert!("vgg16".parse::<Arch>().is_err());
        assert!("imagenet".parse::<Dataset>().is_err());
    }

    #[test]
    fn scaling_truncates() {
        let spec = ZooSpec {
            arch: Arch::MobileNetV2,
            dataset: Dataset::Cifar10,
            ratio: 0.3,
            widths: None,
            seed: 0,
        };
        let w = resolved_widths(&spec).expect("widths");
        // 16 * 0.3 = 4.8 -> 4; 1280 * 0.3 = 384.
        assert_eq!((w[1], w[18]), (4, 384));
    }
}
