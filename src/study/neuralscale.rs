//! NeuralScale layouts without training: per-layer widths from published power-law fits
//! `filters_l = alpha_l * tau^beta_l`, with tau solved so the layout has the parameters of the
//! uniform model at the same ratio. The study's finding is that such layouts keep the
//! parameters but spend more FLOPs (wider early layers), so their latency differs: generating
//! them lets a board measure that before anyone trains them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::zoo::{self, Arch, Dataset, ZooSpec};

/// The published fits (`data/neuralscale_fits.json`, a copy of the study's shared data),
/// built in so tests and users need no extra file.
pub const PUBLISHED_FITS: &str = include_str!("../../data/neuralscale_fits.json");

/// One network's per-layer fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerFits {
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub descent_iteration: Option<u32>,
}

/// A fits file: `{"about": ..., "fits": {"vgg11_cifar10": {alpha, beta}, ...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitsFile {
    #[serde(default)]
    pub about: String,
    pub fits: BTreeMap<String, LayerFits>,
}

/// What went wrong building a NeuralScale layout or fitting one.
#[derive(Debug, thiserror::Error)]
pub enum NeuralScaleError {
    #[error("cannot read NeuralScale fits {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "no NeuralScale fit for {arch} on {dataset} in {source_name} (has: {available}); \
         none was published for this combination"
    )]
    NoFit {
        arch: Arch,
        dataset: Dataset,
        source_name: String,
        available: String,
    },
    #[error("fit {key}: {got} alpha/beta pairs, {arch} has {expected} widths")]
    LayerCount {
        key: String,
        arch: Arch,
        expected: usize,
        got: usize,
    },
    #[error("fit {key}: alpha and beta must be finite and > 0")]
    BadFit { key: String },
    #[error(transparent)]
    Zoo(#[from] zoo::ZooError),
    #[error("pruning trace {path}: {reason}")]
    Trace { path: PathBuf, reason: String },
    #[error(
        "NeuralScale widths for {arch} at ratio {ratio} have {params} parameters, {pct:+.2} % from \
         the uniform model's {target}: beyond the 1 % the layout search promises"
    )]
    Budget {
        arch: Arch,
        ratio: f64,
        params: u64,
        target: u64,
        pct: f64,
    },
}

impl FitsFile {
    /// Parses a fits file.
    pub fn parse(text: &str, path: &Path) -> Result<FitsFile, NeuralScaleError> {
        serde_json::from_str(text).map_err(|e| NeuralScaleError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Reads a fits file.
    pub fn read(path: &Path) -> Result<FitsFile, NeuralScaleError> {
        let text = std::fs::read_to_string(path).map_err(|e| NeuralScaleError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        FitsFile::parse(&text, path)
    }

    /// The built-in published fits.
    pub fn published() -> FitsFile {
        FitsFile::parse(PUBLISHED_FITS, Path::new("data/neuralscale_fits.json")).unwrap_or_else(
            |_| FitsFile {
                about: String::new(),
                fits: BTreeMap::new(),
            },
        )
    }

    /// The fit for `arch` on `dataset`, checked against the architecture's width count.
    pub fn get(
        &self,
        arch: Arch,
        dataset: Dataset,
        source_name: &str,
    ) -> Result<&LayerFits, NeuralScaleError> {
        let key = format!("{arch}_{dataset}");
        let f = self.fits.get(&key).ok_or_else(|| NeuralScaleError::NoFit {
            arch,
            dataset,
            source_name: source_name.to_owned(),
            available: self.fits.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
        let expected = arch.width_count();
        if f.alpha.len() != expected || f.beta.len() != expected {
            return Err(NeuralScaleError::LayerCount {
                key,
                arch,
                expected,
                got: f.alpha.len().min(f.beta.len()),
            });
        }
        let ok = |v: &f64| v.is_finite() && *v > 0.0;
        if !f.alpha.iter().all(ok) || !f.beta.iter().all(ok) {
            return Err(NeuralScaleError::BadFit { key });
        }
        Ok(f)
    }
}

/// Widths at `tau`: `floor(alpha * tau^beta)`, at least 1, at most zoo's maximum.
pub fn widths_at(f: &LayerFits, tau: f64) -> Vec<u32> {
    f.alpha
        .iter()
        .zip(&f.beta)
        .map(|(a, b)| {
            (a * tau.powf(*b))
                .floor()
                .clamp(1.0, f64::from(zoo::MAX_WIDTH)) as u32
        })
        .collect()
}

/// A solved layout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layout {
    pub tau: f64,
    pub widths: Vec<u32>,
    /// Parameters (PyTorch convention, unfolded BatchNorm) of the layout.
    pub params: u64,
    /// Parameters of the uniform model at the same ratio: the budget.
    pub target: u64,
    /// `params / target - 1`.
    pub rel_error: f64,
}

/// Solves tau so the layout's parameters match the uniform model's at `ratio` (bisection on
/// log tau over the monotone, stepwise parameter count; the closer of the two steps around the
/// target wins).
pub fn layout(
    f: &LayerFits,
    arch: Arch,
    dataset: Dataset,
    ratio: f64,
) -> Result<Layout, NeuralScaleError> {
    let uniform = zoo::resolved_widths(&ZooSpec {
        arch,
        dataset,
        ratio,
        widths: None,
        seed: 0,
    })?;
    let target = torch_params(arch, dataset, &uniform);
    let params = |tau: f64| torch_params(arch, dataset, &widths_at(f, tau));
    let (mut lo, mut hi) = (0.0f64, 40.0f64); // ln tau: 1 .. 2.4e17
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if params(mid.exp()) <= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (below, above) = (params(lo.exp()), params(hi.exp()));
    let tau = if target.abs_diff(below) <= above.abs_diff(target) {
        lo.exp()
    } else {
        hi.exp()
    };
    let widths = widths_at(f, tau);
    let p = torch_params(arch, dataset, &widths);
    Ok(Layout {
        tau,
        widths,
        params: p,
        target,
        rel_error: p as f64 / target as f64 - 1.0,
    })
}

/// Parameters of the PyTorch model zoo's graph stands for (conv weights, conv bias where the
/// layer had one, BatchNorm weight and bias, classifier), by the architecture's layer list.
pub fn torch_params(arch: Arch, dataset: Dataset, w: &[u32]) -> u64 {
    let w: Vec<u64> = w.iter().map(|&x| u64::from(x)).collect();
    let classes = u64::from(dataset.classes());
    // conv + bias + BatchNorm (gamma, beta): 3 extra per output channel.
    let conv_bn = |cin: u64, cout: u64, k: u64| cout * cin * k * k + 3 * cout;
    match arch {
        Arch::Vgg11 => {
            let mut p = 0;
            let mut cin = 3;
            for &c in &w {
                p += conv_bn(cin, c, 3);
                cin = c;
            }
            let side = u64::from(dataset.input_size()) / 32;
            p + cin * side * side * classes + classes
        }
        Arch::MobileNetV2 => {
            let mut p = conv_bn(3, w[0], 3);
            let mut c = w[0];
            let strides: [u64; 7] = match dataset {
                Dataset::Cifar10 => [1, 2, 2, 2, 1, 2, 1],
                Dataset::TinyImageNet => [1, 2, 2, 2, 2, 2, 1],
            };
            let blocks = [1usize, 2, 3, 4, 3, 3, 1];
            let mut out = w[1..18].iter();
            for (stage, &n) in blocks.iter().enumerate() {
                let t = if stage == 0 { 1 } else { 6 };
                for b in 0..n {
                    let o = *out.next().unwrap_or(&c);
                    let stride = if b == 0 { strides[stage] } else { 1 };
                    let h = c * t;
                    p += conv_bn(c, h, 1) + (h * 9 + 3 * h) + conv_bn(h, o, 1);
                    if stride != 1 || c != o {
                        p += conv_bn(c, o, 1);
                    }
                    c = o;
                }
            }
            p + conv_bn(c, w[18], 1) + classes * w[18] + classes
        }
        Arch::ResNet50 => {
            // No bias on convs: weight + BatchNorm only.
            let conv = |cin: u64, cout: u64, k: u64| cout * cin * k * k + 2 * cout;
            let mut p = conv(3, w[0], 7);
            let mut c = w[0];
            for (stage, &n) in [3usize, 4, 6, 3].iter().enumerate() {
                let planes = w[stage + 1];
                for b in 0..n {
                    p += conv(c, planes, 1) + conv(planes, planes, 3) + conv(planes, 4 * planes, 1);
                    if b == 0 {
                        p += conv(c, 4 * planes, 1);
                    }
                    c = 4 * planes;
                }
            }
            p + c * classes + classes
        }
    }
}

/// Fits alpha/beta per layer from a pruning trace CSV: rows are pruning steps, the first column
/// the total parameters (tau), the rest each layer's filter count. A header row is skipped.
pub fn fit_trace(path: &Path, name: &str) -> Result<FitsFile, NeuralScaleError> {
    let bad = |reason: String| NeuralScaleError::Trace {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let cells: Result<Vec<f64>, _> = line.split(',').map(|c| c.trim().parse::<f64>()).collect();
        match cells {
            Ok(c) => rows.push(c),
            Err(_) if i == 0 => continue,
            Err(e) => return Err(bad(format!("line {}: {e}", i + 1))),
        }
    }
    let cols = rows.first().map_or(0, Vec::len);
    if cols < 2 || rows.iter().any(|r| r.len() != cols) {
        return Err(bad("rows must all have tau plus at least one layer".into()));
    }
    let tau: Vec<f64> = rows.iter().map(|r| r[0]).collect();
    let mut fit = LayerFits {
        alpha: Vec::new(),
        beta: Vec::new(),
        source_run: Some(path.display().to_string()),
        descent_iteration: None,
    };
    for l in 1..cols {
        let f: Vec<f64> = rows.iter().map(|r| r[l]).collect();
        let (a, b) =
            super::fit::power_law_fit(&tau, &f).map_err(|e| bad(format!("layer {l}: {e}")))?;
        fit.alpha.push(a);
        fit.beta.push(b);
    }
    Ok(FitsFile {
        about: format!(
            "NeuralScale power-law fits from pruning trace {}",
            path.display()
        ),
        fits: BTreeMap::from([(name.to_owned(), fit)]),
    })
}

/// `zoo --neuralscale FITS.json`: the widths to generate for `arch`/`dataset` at `ratio`.
pub fn zoo_widths(
    fits_path: &Path,
    arch: Arch,
    dataset: Dataset,
    ratio: f64,
) -> Result<Layout, NeuralScaleError> {
    let fits = FitsFile::read(fits_path)?;
    let f = fits.get(arch, dataset, &fits_path.display().to_string())?;
    layout(f, arch, dataset, ratio)
}

/// The `zoo --neuralscale` step: solves the layout for `spec` and reports it on stderr.
pub fn zoo_cmd_widths(fits_path: &Path, spec: &ZooSpec) -> Result<Vec<u32>, NeuralScaleError> {
    let l = zoo_widths(fits_path, spec.arch, spec.dataset, spec.ratio)?;
    if l.rel_error.abs() > 0.01 {
        return Err(NeuralScaleError::Budget {
            arch: spec.arch,
            ratio: spec.ratio,
            params: l.params,
            target: l.target,
            pct: 100.0 * l.rel_error,
        });
    }
    eprintln!(
        "neuralscale: tau {:.6e}, {} parameters vs {} uniform at ratio {} ({:+.3} %)",
        l.tau,
        l.params,
        l.target,
        spec.ratio,
        100.0 * l.rel_error
    );
    Ok(l.widths)
}
