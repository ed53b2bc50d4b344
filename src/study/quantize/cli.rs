//! `rtinfer quantize`: the command-line edge of [`super::quantize`].

use std::path::PathBuf;

use anyhow::Context;

use super::{CalibSource, QuantizeOptions, QuantizeReport};
use crate::backend::ort_library;

/// Arguments of `rtinfer quantize`.
#[derive(Debug, clap::Args)]
pub struct QuantizeArgs {
    /// Float ONNX model to quantize.
    pub model: PathBuf,
    /// Output file (default: NAME.int8.onnx next to NAME.onnx).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Pin the model's symbolic input dims, e.g. 1x3x48x192 (model.input_shape).
    #[arg(long, value_name = "NxCxHxW")]
    pub input_shape: Option<crate::tensor::Shape>,
    /// Folder of PNG/JPEG calibration images.
    #[arg(long, conflicts_with = "calib_source")]
    pub calib: Option<PathBuf>,
    /// Calibration frames from a source URI (e.g. the live camera).
    #[arg(long)]
    pub calib_source: Option<String>,
    /// Calibration samples (fewer if the source ends first).
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// minmax | percentile (99.999 %) | entropy (KL, TensorRT-style)
    #[arg(long, default_value = "minmax")]
    pub method: String,
    /// Percentile kept by --method percentile.
    #[arg(long, default_value_t = 99.999)]
    pub percentile: f64,
    /// Per-output-channel weight scales (Conv, Gemm).
    #[arg(long)]
    pub per_channel: bool,
    /// Activation type: u8 (default) or s8 (s8 with --symmetric).
    #[arg(long)]
    pub activation_type: Option<String>,
    /// Write the symmetric form TensorRT 10 builds int8 from (explicit quantization): int8
    /// activations and weights with zero points 0, weights per channel (opset >= 13), biases
    /// float. The default form (uint8 asymmetric) is ONNX Runtime's.
    #[arg(long)]
    pub symmetric: bool,
    /// Seed of the random calibration data used when no --calib/--calib-source is given.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// stretch | center-crop | letterbox (as the daemon's preprocess.resize; overrides --config).
    #[arg(long)]
    pub resize: Option<String>,
    /// The daemon's config file: its `[preprocess]` (resize, filter, fill, align, mean/std,
    /// channel order) prepares the calibration data exactly as the daemon prepares frames, and
    /// its `onnxruntime.library` is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Calibration samples kept to compare the int8 model with the float model.
    #[arg(long, default_value_t = 64)]
    pub check_samples: usize,
    /// Intra-op threads (0 = ONNX Runtime's default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Write the model even if ONNX Runtime leaves convolutions in float.
    #[arg(long)]
    pub allow_float_conv: bool,
    /// Least top-1 agreement (0..1) of int8 with float on the kept samples for the model to be
    /// written.
    #[arg(long, default_value_t = 0.5)]
    pub min_agreement: f64,
    /// Least Pearson correlation of int8 with float logits for the model to be written.
    #[arg(long, default_value_t = 0.9)]
    pub min_pearson: f64,
    /// Write the model even when it disagrees with the float model.
    #[arg(long)]
    pub force: bool,
    /// Skip timing int8 against fp32 on this machine after writing.
    #[arg(long)]
    pub no_bench: bool,
    /// Path of libonnxruntime.so (searched first).
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
}

/// Runs the subcommand; prints the report; exit code 0 on success.
pub fn run(a: QuantizeArgs) -> anyhow::Result<u8> {
    let mut opts = QuantizeOptions {
        samples: a.samples,
        method: a
            .method
            .parse()
            .map_err(|e| anyhow::anyhow!("--method: {e}"))?,
        per_channel: a.per_channel,
        activation: a
            .activation_type
            .as_deref()
            .unwrap_or(if a.symmetric { "s8" } else { "u8" })
            .parse()
            .map_err(|e| anyhow::anyhow!("--activation-type: {e}"))?,
        symmetric: a.symmetric,
        bench: !a.no_bench,
        check_samples: a.check_samples,
        threads: a.threads,
        allow_float_conv: a.allow_float_conv,
        min_agreement: a.min_agreement,
        min_pearson: a.min_pearson,
        force: a.force,
        input_shape: a.input_shape.clone().map(|s| s.0),
        ..QuantizeOptions::default()
    };
    anyhow::ensure!(
        !(opts.symmetric && opts.activation == super::ActivationType::U8),
        "--symmetric writes int8 activations (zero point 0): --activation-type u8 contradicts it"
    );
    if let super::Method::Percentile(_) = opts.method {
        anyhow::ensure!(
            a.percentile > 0.0 && a.percentile <= 100.0,
            "--percentile must be in (0, 100]"
        );
        opts.method = super::Method::Percentile(a.percentile);
    }
    let mut ort_library = a.ort_library.clone();
    if let Some(path) = &a.config {
        let raw = crate::config::read_raw(path)?;
        let cfg = crate::config::Config::from_raw(raw, Some(path))?;
        opts.preprocess = cfg.backend.preprocess;
        ort_library = ort_library.or(cfg.backend.ort.library);
    }
    if let Some(r) = &a.resize {
        opts.preprocess.resize = r.parse().context("--resize")?;
    }
    opts.calib = match (a.calib, a.calib_source) {
        (Some(dir), _) => CalibSource::Folder(dir),
        (None, Some(uri)) => CalibSource::Uri(uri),
        (None, None) => {
            log::warn!(
                "no --calib or --calib-source: calibrating on random noise (seed {}): THE INT8 MODEL \
                 IS FIT FOR LATENCY MEASUREMENTS ONLY, not for results; give real frames with \
                 --calib DIR or --calib-source URI",
                a.seed
            );
            CalibSource::Random { seed: a.seed }
        }
    };
    ort_library::load(ort_library.as_deref())?;
    let output = a.output.unwrap_or_else(|| super::int8_variant(&a.model));
    let report = super::quantize(&a.model, &output, &opts)
        .with_context(|| format!("quantizing {}", a.model.display()))?;
    print!("{}", render(&report, &opts));
    Ok(0)
}

/// The human-readable report.
pub fn render(r: &QuantizeReport, o: &QuantizeOptions) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let ops: Vec<String> = r
        .quantized
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        s,
        "wrote {} ({} calibration samples, {} method, {} activations, {} weights)",
        r.output.display(),
        r.samples,
        o.method.name(),
        if o.symmetric {
            "s8 symmetric (zero point 0, for TensorRT)"
        } else {
            o.activation.name()
        },
        if r.per_channel {
            "per-channel"
        } else {
            "per-tensor"
        }
    );
    let _ = writeln!(s, "quantized nodes: {}", ops.join(", "));
    let _ = writeln!(s, "quantized activations: {}", r.activations);
    for l in &r.left_float {
        let _ = writeln!(s, "left float: {} ({}): {}", l.node, l.op, l.reason);
    }
    if r.float_convs.is_empty() {
        let _ = writeln!(
            s,
            "float convolutions in ONNX Runtime's optimised graph: none"
        );
    } else {
        let _ = writeln!(
            s,
            "float convolutions in ONNX Runtime's optimised graph: {}",
            r.float_convs.join(", ")
        );
    }
    let ort: Vec<String> = r.ort_ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "ONNX Runtime runs: {}", ort.join(", "));
    let a = &r.agreement;
    let _ = writeln!(
        s,
        "agreement with float on {} calibration samples: pearson {:.5}, relative L2 {:.4}, top-1 {:.1} %",
        a.samples,
        a.pearson,
        a.rel_l2,
        a.top1 * 100.0
    );
    if let Some(sp) = &r.speed {
        let _ = writeln!(
            s,
            "speed on this machine (ONNX Runtime, batch 1, median of {} runs after {} warm-up): fp32 {:.3} ms, int8 {:.3} ms, int8/fp32 {:.2}",
            sp.runs,
            super::speed::WARMUP_RUNS,
            sp.fp32_ms,
            sp.int8_ms,
            sp.ratio()
        );
    }
    if let Some(w) = &r.speed_warning {
        let _ = writeln!(s, "WARNING: {w}");
    }
    let _ = writeln!(
        s,
        "time: calibration {:.2} s, total {:.2} s",
        r.calibration_s, r.total_s
    );
    if let CalibSource::Random { seed } = o.calib {
        let _ = writeln!(
            s,
            "WARNING: calibrated on random noise (seed {seed}): fit for latency measurements only"
        );
    }
    s
}
