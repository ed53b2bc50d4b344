//! Which width ratio meets my budget? Three answers of increasing cost and trust: the study's
//! published lines (Eq. 1 on Tables 4/5), a line fitted to the user's own sweep, and a measured
//! search that benches random-weight models on this board. The search exists because the lines
//! are loose (the study's CIFAR-100 model at Eq. 1's 0.80 missed the budget at 18.2 ms) while
//! latency does not depend on weight values, so a measured answer is exact before training.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::fit::{self, Device, Eq1, LinearFit, Metric, Precision};
use super::zoo::{self, Arch, Dataset, ZooSpec};

/// `rtinfer advise` arguments.
#[derive(Debug, clap::Args)]
pub struct AdviseArgs {
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: Device,
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    /// Target latency (ms): Eq. 1 on the latency line.
    #[arg(long, conflicts_with = "memory_mb")]
    pub latency_ms: Option<f64>,
    /// Target memory (MB): Eq. 1 on the memory line.
    #[arg(long)]
    pub memory_mb: Option<f64>,
    /// Parameters of the original (ratio 1.0) model, P_o.
    #[arg(long)]
    pub params: Option<f64>,
    /// Fit the line to this sweep CSV instead of using the study's tables.
    #[arg(long, value_name = "SWEEP.csv")]
    pub fit: Option<PathBuf>,
    /// x column of --fit.
    #[arg(long, default_value = "params")]
    pub x_column: String,
    /// y column of --fit (default: mean_ms for --latency-ms, session_rss_mb for --memory-mb).
    #[arg(long)]
    pub y_column: Option<String>,
    /// Measured search: bench zoo models at candidate ratios on this device.
    #[arg(long)]
    pub search: bool,
    #[arg(long, default_value = "mobilenetv2")]
    pub arch: String,
    #[arg(long, default_value = "cifar10")]
    pub dataset: String,
    /// Budget the searched model's p99 latency must meet (ms).
    #[arg(long, default_value_t = 1000.0 / 60.0)]
    pub target_ms: f64,
    #[arg(long, default_value_t = 0.1)]
    pub min_ratio: f64,
    #[arg(long, default_value_t = 1.0)]
    pub max_ratio: f64,
    /// Ratio resolution of the search.
    #[arg(long, default_value_t = 0.01)]
    pub step: f64,
    /// Bench trials per searched ratio.
    #[arg(long, default_value_t = 2)]
    pub trials: u32,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, default_value = "auto")]
    pub backend: String,
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// Fit NeuralScale power laws to a pruning trace (tau, then per-layer filters) and write
    /// the fits JSON to --output (stdout without).
    #[arg(long, value_name = "TRACE.csv")]
    pub fit_neuralscale: Option<PathBuf>,
    /// Key of the fit written by --fit-neuralscale (e.g. vgg11_cifar10).
    #[arg(long, default_value = "custom")]
    pub name: String,
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Eq. 1's answer with the line it used.
#[derive(Debug, Clone, Serialize)]
pub struct Advice {
    pub metric: Metric,
    pub target: f64,
    pub p_original: f64,
    /// "table" (the study's) or the sweep CSV path.
    pub line_source: String,
    pub slope: f64,
    pub bias: f64,
    pub r: f64,
    pub p_value: Option<f64>,
    pub result: Eq1,
    pub warnings: Vec<String>,
}

/// Eq. 1 on a line, with warnings for a weak r and an unreachable target.
pub fn advise(
    metric: Metric,
    target: f64,
    p_original: f64,
    line: (f64, f64, f64, Option<f64>),
    line_source: String,
) -> Advice {
    let (slope, bias, r, p_value) = line;
    let result = fit::eq1(slope, bias, target, p_original);
    let mut warnings = Vec::new();
    if r.abs() < fit::WEAK_R {
        warnings.push(format!(
            "weak correlation (r = {r:.3}): the line explains little of the spread; \
             confirm with `advise --search`"
        ));
    }
    if result == Eq1::Unreachable {
        warnings.push(format!(
            "unreachable: target {target} is not above the line's bias {bias} \
             (even a model with no parameters misses it)"
        ));
    }
    Advice {
        metric,
        target,
        p_original,
        line_source,
        slope,
        bias,
        r,
        p_value,
        result,
        warnings,
    }
}

/// A measured search's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchOutcome {
    /// The largest ratio on the grid whose p99 meets the target; `None` if even the smallest
    /// misses it.
    pub ratio: Option<f64>,
    pub p99_ms: Option<f64>,
    pub target_ms: f64,
    /// Every (ratio, p99 ms) measured, in order.
    pub probes: Vec<(f64, f64)>,
}

/// The ratio grid of a search: `k / per_unit` for `k` in `lo..=hi`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    pub lo: u32,
    pub hi: u32,
    pub per_unit: u32,
}

impl Grid {
    /// The grid from `min` to `max` in steps of `step` (bounds rounded inwards).
    pub fn new(min: f64, max: f64, step: f64) -> anyhow::Result<Grid> {
        if !(step > 0.0 && min > 0.0 && max >= min && (1.0 / step).is_finite()) {
            anyhow::bail!("ratio grid {min}..{max} step {step} is empty or invalid");
        }
        let per_unit = (1.0 / step).round().max(1.0) as u32;
        let lo = (min * f64::from(per_unit) - 1e-9).ceil() as u32;
        let hi = (max * f64::from(per_unit) + 1e-9).floor() as u32;
        if hi < lo {
            anyhow::bail!("ratio grid {min}..{max} step {step} holds no ratio");
        }
        Ok(Grid { lo, hi, per_unit })
    }

    fn ratio(&self, k: u32) -> f64 {
        f64::from(k) / f64::from(self.per_unit)
    }
}

/// Bisection on the grid for the largest ratio whose `p99(ratio)` is `<= target` (latency
/// grows with width, so the predicate is monotone). `p99` measures one ratio.
pub fn search(
    grid: Grid,
    target: f64,
    mut p99: impl FnMut(f64) -> anyhow::Result<f64>,
) -> anyhow::Result<SearchOutcome> {
    let mut probes = Vec::new();
    let mut probe = |k: u32| -> anyhow::Result<f64> {
        let r = grid.ratio(k);
        let v = p99(r)?;
        probes.push((r, v));
        Ok(v)
    };
    let at_lo = probe(grid.lo)?;
    let (ratio, best) = if at_lo > target {
        (None, None)
    } else {
        let at_hi = if grid.hi == grid.lo {
            at_lo
        } else {
            probe(grid.hi)?
        };
        if at_hi <= target {
            (Some(grid.hi), Some(at_hi))
        } else {
            let (mut good, mut bad, mut good_v) = (grid.lo, grid.hi, at_lo);
            while bad - good > 1 {
                let mid = good + (bad - good) / 2;
                let v = probe(mid)?;
                if v <= target {
                    (good, good_v) = (mid, v);
                } else {
                    bad = mid;
                }
            }
            (Some(good), Some(good_v))
        }
    };
    Ok(SearchOutcome {
        ratio: ratio.map(|k| grid.ratio(k)),
        p99_ms: best,
        target_ms: target,
        probes,
    })
}

/// Columns of a CSV (header row), quote-aware, for `--fit`.
pub fn read_csv(path: &Path) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = split_csv(lines.next().unwrap_or_default());
    Ok((header, lines.map(split_csv).collect()))
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Fits `y_col` against `x_col` of a sweep CSV (rows with empty or non-numeric cells skipped).
/// Fits `y_col` against `x_col` over the rows of a sweep CSV. When the CSV has a `precision`
/// column (`sweep --precisions fp32,int8` writes both kinds), only rows of `precision` count
/// (`int8` also takes TensorRT's `mixed`): one line per precision, as the study fitted them.
pub fn fit_csv(
    path: &Path,
    x_col: &str,
    y_col: &str,
    precision: Precision,
) -> anyhow::Result<LinearFit> {
    let (header, rows) = read_csv(path)?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| format!("{}: no column {name:?} (has {header:?})", path.display()))
    };
    let (xi, yi) = (col(x_col)?, col(y_col)?);
    let pi = header.iter().position(|h| h.trim() == "precision");
    let wanted = |p: &str| match precision {
        Precision::Fp32 => p == "fp32",
        Precision::Int8 => matches!(p, "int8" | "mixed"),
    };
    let (xs, ys): (Vec<f64>, Vec<f64>) = rows
        .iter()
        .filter(|r| pi.is_none_or(|i| r.get(i).is_some_and(|p| wanted(p.trim()))))
        .filter_map(|r| {
            let x = r.get(xi)?.trim().parse::<f64>().ok()?;
            let y = r.get(yi)?.trim().parse::<f64>().ok()?;
            Some((x, y))
        })
        .unzip();
    fit::linear_fit(&xs, &ys).with_context(|| format!("fit {}", path.display()))
}

/// Runs `rtinfer advise`.
pub fn run(a: AdviseArgs) -> anyhow::Result<u8> {
    if let Some(trace) = &a.fit_neuralscale {
        let fits = super::neuralscale::fit_trace(trace, &a.name)?;
        let text = serde_json::to_string_pretty(&fits)?;
        match &a.output {
            Some(o) => {
                std::fs::write(o, text + "\n").with_context(|| format!("write {}", o.display()))?
            }
            None => println!("{text}"),
        }
        return Ok(0);
    }
    if a.search {
        return run_search(&a);
    }
    let (metric, target) = match (a.latency_ms, a.memory_mb) {
        (Some(y), None) => (Metric::Latency, y),
        (None, Some(y)) => (Metric::Memory, y),
        _ => anyhow::bail!("give --latency-ms or --memory-mb (or --search)"),
    };
    let p_o = a
        .params
        .context("--params P_o (parameters of the ratio-1.0 model) is required")?;
    let advice = match &a.fit {
        Some(csv) => {
            let y = a.y_column.clone().unwrap_or_else(|| match metric {
                Metric::Latency => "mean_ms".into(),
                Metric::Memory => "session_rss_mb".into(),
            });
            let f = fit_csv(csv, &a.x_column, &y, a.precision)?;
            let line = (f.slope, f.bias, f.r, f.p_value);
            advise(metric, target, p_o, line, csv.display().to_string())
        }
        None => {
            let t = fit::table_fit(a.device, a.precision, metric).with_context(|| {
                format!(
                    "the study has no {metric:?} fit for {:?} {:?}",
                    a.device, a.precision
                )
            })?;
            advise(metric, target, p_o, (t.m, t.b, t.r, None), "table".into())
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&advice)?);
    } else {
        print!("{}", render(&advice));
    }
    Ok(0)
}

/// The human-readable answer.
pub fn render(a: &Advice) -> String {
    let mut s = format!(
        "line ({}): y = {:e} x + {} (r = {:.3}{})\n",
        a.line_source,
        a.slope,
        a.bias,
        a.r,
        a.p_value
            .map_or(String::new(), |p| format!(", p = {p:.3e}"))
    );
    match a.result {
        Eq1::Reachable { p_target, ratio } => s.push_str(&format!(
            "target {} -> P_t = {:.0} parameters -> ratio S = {:.4} (P_o = {})\n",
            a.target, p_target, ratio, a.p_original
        )),
        Eq1::Unreachable => s.push_str(&format!("target {}: unreachable\n", a.target)),
    }
    for w in &a.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    s
}

fn run_search(a: &AdviseArgs) -> anyhow::Result<u8> {
    let arch: Arch = a.arch.parse()?;
    let dataset: Dataset = a.dataset.parse()?;
    let grid = Grid::new(a.min_ratio, a.max_ratio, a.step)?;
    let dir = tempfile_dir()?;
    let outcome = search(grid, a.target_ms, |ratio| {
        let spec = ZooSpec {
            arch,
            dataset,
            ratio,
            widths: None,
            seed: 0,
        };
        let fp32 = dir.join(zoo::default_output_name(&spec));
        crate::onnx::pb::write_model(&fp32, &zoo::generate(&spec)?)?;
        let path = if a.precision == Precision::Int8 {
            let q = super::sweep::int8_for_latency(&fp32, a.ort_library.as_deref())?;
            let _ = std::fs::remove_file(&fp32);
            q
        } else {
            fp32
        };
        let mut b = super::bench::BenchArgs::new(path.clone());
        b.trials = a.trials;
        b.threads = a.threads;
        b.backend.clone_from(&a.backend);
        b.ort_library.clone_from(&a.ort_library);
        let r = super::bench::bench_in_child(&b)?;
        let _ = std::fs::remove_file(&path);
        eprintln!("ratio {ratio}: p99 {:.3} ms", r.latency_ms.p99);
        Ok(r.latency_ms.p99)
    });
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = outcome?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        match (outcome.ratio, outcome.p99_ms) {
            (Some(r), Some(p)) => println!(
                "{arch} {dataset}: ratio {r} (p99 {p:.3} ms <= {:.3} ms), {} ratios measured",
                outcome.target_ms,
                outcome.probes.len()
            ),
            _ => println!(
                "{arch} {dataset}: unreachable: even ratio {} misses {:.3} ms",
                a.min_ratio, outcome.target_ms
            ),
        }
    }
    Ok(0)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("rtinfer-advise-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
    Ok(d)
}
