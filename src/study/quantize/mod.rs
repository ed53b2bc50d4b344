//! int8 post-training quantization on the device (`rtinfer quantize`), so a board engineer gets
//! the study's best first step (int8: 3x lower latency on its CPU) without a Python stack.
//!
//! The pipeline: ONNX Runtime optimises the float model at the basic level and writes it out
//! (Conv+BN folded, constants folded, every tensor typed) — quantizing that graph rather than the
//! exported one is what lets every Conv become integer; [`plan`] chooses the Q/DQ layout ORT
//! fuses; calibration samples made by the daemon's own preprocessing run through that graph with
//! the planned activations exposed as outputs, into fixed-size [`histogram`]s; [`qdq`] writes
//! the QDQ graph; and before anything is saved ORT optimises the result at the ALL level and the
//! graph it would run is checked for float convolutions, and compared with the float model.

pub mod agree;
pub mod calib;
pub mod cli;
pub mod histogram;
pub mod ort_run;
pub mod plan;
pub mod qdq;
pub mod qparams;
pub mod speed;
mod tmp;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ort::session::builder::GraphOptimizationLevel;
use prost::Message;

pub use agree::Agreement;
pub use calib::{CalibError, CalibSource};
pub use histogram::Method;
pub use plan::LeftFloat;
pub use qparams::ActivationType;

use crate::backend::{BackendError, image_input_spec};
use crate::onnx::pb::{self as onnx_pb, ModelProto, OnnxError, ValueInfoProto};
use crate::preprocess::PreprocessOptions;
use crate::tensor::{InputElement, Layout};

/// Everything `rtinfer quantize` can be told.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizeOptions {
    pub calib: CalibSource,
    pub samples: usize,
    pub method: Method,
    pub per_channel: bool,
    pub activation: ActivationType,
    pub preprocess: PreprocessOptions,
    /// Calibration samples kept to compare the int8 model with the float one.
    pub check_samples: usize,
    /// Intra-op threads for calibration (0 = ONNX Runtime's default).
    pub threads: usize,
    /// Write the model even when ORT would leave some convolutions in float.
    pub allow_float_conv: bool,
    /// Least top-1 agreement of int8 with float on the kept samples below which nothing is
    /// written (`--min-agreement`).
    pub min_agreement: f64,
    /// Least Pearson correlation of int8 with float logits (`--min-pearson`).
    pub min_pearson: f64,
    /// Write the model whatever the agreement (`--force`).
    pub force: bool,
    /// `--input-shape`: symbolic input dims pinned (the written model keeps the pinned shape).
    pub input_shape: Option<Vec<i64>>,
    /// `--symmetric`: the Q/DQ form TensorRT 10 builds (int8 activations and weights, zero
    /// points 0, weights per channel from opset 13, biases float); ONNX Runtime's CPU kernels
    /// may leave convolutions of it in float, which is reported, not refused.
    pub symmetric: bool,
    /// Time int8 against fp32 after writing and warn when int8 is slower (`--no-bench` clears).
    pub bench: bool,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions {
            calib: CalibSource::Random { seed: 0 },
            samples: 1000,
            method: Method::MinMax,
            per_channel: false,
            activation: ActivationType::U8,
            preprocess: PreprocessOptions::default(),
            check_samples: 64,
            threads: 0,
            allow_float_conv: false,
            min_agreement: 0.5,
            min_pearson: 0.9,
            force: false,
            input_shape: None,
            symmetric: false,
            bench: true,
        }
    }
}

/// What a quantization did and found.
#[derive(Debug, Clone, Default)]
pub struct QuantizeReport {
    pub output: PathBuf,
    /// Calibration samples actually used.
    pub samples: usize,
    /// Quantized nodes per operator type.
    pub quantized: std::collections::BTreeMap<String, usize>,
    pub activations: usize,
    /// Nodes the quantizer left in float, with the reason.
    pub left_float: Vec<LeftFloat>,
    /// Convolutions ONNX Runtime still runs in float (`op (name)`), from its optimised graph.
    pub float_convs: Vec<String>,
    /// Operator histogram of ONNX Runtime's optimised int8 graph (`domain:op` -> count).
    pub ort_ops: std::collections::BTreeMap<String, usize>,
    pub agreement: Agreement,
    /// Whether the weights were quantized per output channel (asked for, or `--symmetric`, and
    /// opset >= 13).
    pub per_channel: bool,
    /// int8 against fp32 on this machine (`None` with `--no-bench`, or when timing failed).
    pub speed: Option<speed::Speed>,
    /// Why int8 is slower here, when it is.
    pub speed_warning: Option<String>,
    pub calibration_s: f64,
    pub total_s: f64,
}

/// Why a model could not be quantized. Every variant names the model, tensor or source.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(transparent)]
    Qdq(#[from] qdq::QdqError),
    #[error(transparent)]
    Calib(#[from] CalibError),
    #[error("ONNX Runtime, {what}: {reason}")]
    Ort { what: String, reason: String },
    #[error("model {}: {source}", path.display())]
    Input { path: PathBuf, source: BackendError },
    #[error("model {}: {reason}", path.display())]
    Shape { path: PathBuf, reason: String },
    #[error(
        "the int8 model disagrees with the float model on {} kept calibration samples: top-1 agreement {:.1} % (--min-agreement {min_top1}), pearson {:.3} (--min-pearson {min_pearson}); {} not written (--force writes it anyway; calibrate on real frames with --calib DIR, or try --method percentile)",
        agreement.samples, agreement.top1 * 100.0, agreement.pearson, output.display()
    )]
    Disagrees {
        output: PathBuf,
        agreement: agree::Agreement,
        min_top1: f64,
        min_pearson: f64,
    },
    #[error("calibration source {source_name} gave no sample")]
    NoSamples { source_name: String },
    #[error(
        "ONNX Runtime would run {} convolution(s) in float: {} (nothing written; --allow-float-conv writes anyway)",
        nodes.len(), nodes.join(", ")
    )]
    FloatConvs { nodes: Vec<String> },
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `NAME.int8.onnx` for `NAME.onnx`: the int8 variant the watch folder, `bench` and `sweep` pair
/// with the float model (DESIGN.md naming rule).
pub fn int8_variant(path: &Path) -> PathBuf {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    path.with_file_name(format!("{stem}.int8.onnx"))
}

/// The float model `NAME.onnx` an int8 variant `NAME.int8.onnx` belongs to, if `path` is one.
pub fn float_original(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let base = name.strip_suffix(".int8.onnx")?;
    (!base.is_empty()).then(|| path.with_file_name(format!("{base}.onnx")))
}

/// Convolutions left in float in an ORT-optimised graph: `Conv` in any domain (the NCHWc layout
/// on x86 is `com.microsoft.nchwc:Conv`) and `FusedConv` (Arm).
pub fn float_convs(optimised: &ModelProto) -> Vec<String> {
    optimised
        .graph
        .iter()
        .flat_map(|g| &g.node)
        .filter(|n| n.op_type == "Conv" || n.op_type == "FusedConv")
        .map(|n| {
            let domain = if n.domain.is_empty() { "" } else { &n.domain };
            format!(
                "{domain}{}{} ({})",
                if domain.is_empty() { "" } else { ":" },
                n.op_type,
                n.name
            )
        })
        .collect()
}

fn op_histogram(m: &ModelProto) -> std::collections::BTreeMap<String, usize> {
    let mut h = std::collections::BTreeMap::new();
    for n in m.graph.iter().flat_map(|g| &g.node) {
        let key = if n.domain.is_empty() {
            n.op_type.clone()
        } else {
            format!("{}:{}", n.domain, n.op_type)
        };
        *h.entry(key).or_default() += 1;
    }
    h
}

/// The optimised float graph with the planned activations added as graph outputs.
fn with_activation_outputs(model: &ModelProto, tensors: &[String]) -> ModelProto {
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        let existing: std::collections::HashSet<String> =
            g.output.iter().map(|o| o.name.clone()).collect();
        for t in tensors.iter().filter(|t| !existing.contains(*t)) {
            let mut v = ValueInfoProto::float_tensor(t, &[]);
            if let Some(onnx_pb::type_proto::Value::TensorType(tt)) =
                v.r#type.as_mut().and_then(|t| t.value.as_mut())
            {
                tt.shape = None;
            }
            g.output.push(v);
        }
    }
    m
}

/// Quantizes the float ONNX model at `input` and writes the QDQ model to `output`. ONNX Runtime
/// must be loaded ([`crate::backend::ort_library::load`]).
pub fn quantize(
    input: &Path,
    output: &Path,
    opts: &QuantizeOptions,
) -> Result<QuantizeReport, QuantizeError> {
    let t0 = Instant::now();
    let bytes = std::fs::read(input).map_err(|source| QuantizeError::Io {
        what: "cannot read model",
        path: input.to_owned(),
        source,
    })?;
    let shape_err = |reason: String| QuantizeError::Shape {
        path: input.to_owned(),
        reason,
    };
    let bytes = match &opts.input_shape {
        Some(s) => crate::onnx::shape::pin_file(&bytes, s)
            .map_err(shape_err)?
            .unwrap_or(bytes),
        None => bytes,
    };
    let original = onnx_pb::decode(&bytes).map_err(|_| OnnxError::NotOnnx {
        path: input.to_owned(),
        reason: "protobuf decode failed or not a model".into(),
    })?;
    if let Some(reason) = crate::onnx::shape::unpinned(&original) {
        return Err(shape_err(reason));
    }
    if crate::onnx::graph::is_qdq(&original) {
        return Err(plan::PlanError::NoFloatWeights {
            graph: format!("{} (already QDQ-quantized)", input.display()),
        }
        .into());
    }
    let tmp = tmp::TempDir::new().map_err(|source| QuantizeError::Io {
        what: "cannot create temporary directory",
        path: std::env::temp_dir(),
        source,
    })?;
    let what = format!("optimising {}", input.display());
    let basic_path = tmp.path().join("basic.onnx");
    let (_, basic) =
        ort_run::optimised(&what, &bytes, GraphOptimizationLevel::Level1, &basic_path)?;
    let basic = ort_run::shape_infer(&what, &basic)?;
    let graph = basic.graph.clone().unwrap_or_default();
    let opset = qdq::default_opset(&basic);
    // TensorRT quantizes weights per output channel: the symmetric form does too where it can.
    let want_per_channel = opts.per_channel || opts.symmetric;
    let per_channel = want_per_channel && opset >= qdq::PER_CHANNEL_OPSET;
    if want_per_channel && !per_channel {
        log::warn!(
            "{}: opset {opset} has no per-channel DequantizeLinear (needs {}): weights are quantized per tensor",
            input.display(),
            qdq::PER_CHANNEL_OPSET
        );
    }
    let plan = plan::plan(&graph, per_channel)?;

    let Calibrated {
        samples,
        kept,
        ranges,
        seconds: calibration_s,
    } = calibrate(input, &basic, &plan, opts)?;
    let (qmodel, summary) = qdq::insert_qdq(
        &basic,
        &plan,
        &ranges,
        qdq::QdqOptions {
            activation: opts.activation,
            symmetric: opts.symmetric,
        },
    )?;
    let qbytes = qmodel.encode_to_vec();

    let verify_path = tmp.path().join("int8-all.onnx");
    let what = format!("loading the int8 model of {}", input.display());
    let session = ort_run::session(
        &what,
        &qbytes,
        GraphOptimizationLevel::All,
        opts.threads,
        Some(&verify_path),
    )?;
    let ort_graph = onnx_pb::read_model(&verify_path)?;
    let float_convs = float_convs(&ort_graph);
    if !float_convs.is_empty() && !opts.allow_float_conv {
        if !opts.symmetric {
            return Err(QuantizeError::FloatConvs { nodes: float_convs });
        }
        // The symmetric form is for TensorRT; ONNX Runtime here only checks its agreement.
        log::info!(
            "{}: ONNX Runtime on this CPU runs {} of the symmetric model's convolutions in float \
             (its integer kernels want other Q/DQ forms); TensorRT builds them in int8",
            output.display(),
            float_convs.len()
        );
    }
    let shape = ort_run::input_shape(&what, &session)?;
    let mut runner = ort_run::Runner::new(&what, session, &shape)?;
    let mut acc = agree::AgreementAcc::default();
    for (x, float_logits) in &kept {
        let mut got = Vec::new();
        runner.run(x, |i, v| {
            if i == 0 {
                got.extend_from_slice(v);
            }
        })?;
        acc.add(float_logits, &got);
    }
    let agreement = acc.finish();
    if agreement.samples > 0
        && (agreement.top1 < opts.min_agreement || agreement.pearson < opts.min_pearson)
    {
        if !opts.force {
            return Err(QuantizeError::Disagrees {
                output: output.to_owned(),
                agreement,
                min_top1: opts.min_agreement,
                min_pearson: opts.min_pearson,
            });
        }
        log::warn!(
            "{}: int8 disagrees with float (top-1 {:.1} %, pearson {:.3}); written because of --force",
            output.display(),
            agreement.top1 * 100.0,
            agreement.pearson,
        );
    }
    std::fs::write(output, &qbytes).map_err(|source| QuantizeError::Io {
        what: "cannot write",
        path: output.to_owned(),
        source,
    })?;
    let (speed, speed_warning) = if opts.bench {
        let what = format!("timing int8 against fp32 for {}", output.display());
        let x = kept.first().map(|(x, _)| x.as_slice());
        match speed::measure(&what, &bytes, &qbytes, x, opts.threads) {
            Ok(s) => {
                let cx = speed::Context {
                    int8_dot: speed::int8_dot_instructions(),
                    opset,
                    per_tensor_forced: want_per_channel && !per_channel,
                    float_convs: float_convs.len(),
                    symmetric: opts.symmetric,
                };
                let warning = speed::slower_warning(&s, &cx);
                if let Some(w) = &warning {
                    log::warn!("{}: {w}", output.display());
                }
                (Some(s), warning)
            }
            // The model is written and checked: a failed timing loses only the figures.
            Err(e) => {
                log::warn!("{what}: {e} (the model is written)");
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    Ok(QuantizeReport {
        output: output.to_owned(),
        samples,
        quantized: summary.quantized,
        activations: summary.activations,
        left_float: plan.left_float,
        float_convs,
        ort_ops: op_histogram(&ort_graph),
        agreement,
        per_channel,
        speed,
        speed_warning,
        calibration_s,
        total_s: t0.elapsed().as_secs_f64(),
    })
}

/// Samples kept for the agreement check: (input, float logits).
type Kept = Vec<(Vec<f32>, Vec<f32>)>;

/// What calibration produced.
struct Calibrated {
    samples: usize,
    kept: Kept,
    /// The chosen range per planned tensor.
    ranges: HashMap<String, (f32, f32)>,
    seconds: f64,
}

/// Runs the calibration set through the optimised float graph.
fn calibrate(
    input: &Path,
    basic: &ModelProto,
    plan: &plan::Plan,
    opts: &QuantizeOptions,
) -> Result<Calibrated, QuantizeError> {
    let t0 = Instant::now();
    let what = format!("calibrating {}", input.display());
    let aug = with_activation_outputs(basic, &plan.tensors).encode_to_vec();
    let session = ort_run::session(&what, &aug, GraphOptimizationLevel::All, opts.threads, None)?;
    let shape = ort_run::input_shape(&what, &session)?;
    let spec =
        image_input_spec(input, &shape, Layout::Nchw, InputElement::F32).map_err(|source| {
            QuantizeError::Input {
                path: input.to_owned(),
                source,
            }
        })?;
    let mut runner = ort_run::Runner::new(&what, session, &shape)?;
    // Output position -> index in plan.tensors (graph outputs may be planned tensors too).
    let slot: Vec<Option<usize>> = runner
        .outputs
        .iter()
        .map(|o| plan.tensors.iter().position(|t| t == o))
        .collect();
    let mut stats: Vec<histogram::TensorStats> = plan
        .tensors
        .iter()
        .map(|_| histogram::TensorStats::new(opts.method))
        .collect();
    let mut cal = calib::Calibration::open(&opts.calib, spec, opts.preprocess, opts.samples)?;
    let mut x = vec![0f32; spec.len()];
    let mut kept: Kept = Vec::new();
    let mut n = 0usize;
    while cal.next(&mut x)? {
        let keep = kept.len() < opts.check_samples;
        let mut logits = Vec::new();
        runner.run(&x, |i, v| {
            if let Some(s) = slot[i] {
                stats[s].add(v);
            }
            if keep && i == 0 {
                logits.extend_from_slice(v);
            }
        })?;
        if keep {
            kept.push((x.clone(), logits));
        }
        n += 1;
    }
    if n == 0 {
        return Err(QuantizeError::NoSamples {
            source_name: opts.calib.to_string(),
        });
    }
    let ranges = plan
        .tensors
        .iter()
        .zip(&stats)
        .filter_map(|(t, s)| {
            let r = s.range(opts.method)?;
            log::debug!(
                "{t}: observed [{}, {}], range [{}, {}]",
                s.min,
                s.max,
                r.0,
                r.1
            );
            Some((t.clone(), r))
        })
        .collect();
    Ok(Calibrated {
        samples: n,
        kept,
        ranges,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
