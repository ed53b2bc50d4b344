//! `rtinfer ladder`: build the governor's ladder for this board from nothing.
//!
//! The study scales a model (width ratio, precision) until it meets the budget; the governor
//! needs the scaled models that are worth switching between. This generates the candidates from
//! the zoo, quantizes them when asked, benches each in a fresh process with the study's protocol,
//! keeps the rungs worth having and moves them into a watch folder, each by a rename (a running
//! daemon sees only complete files).
//!
//! A rung is worth having when its p99 fits the budget with the governor's headroom on this
//! board (above that the governor never serves it) and, walking from the largest model down
//! (more parameters first, fp32 before int8 at equal parameters), its median is faster than the
//! rung kept above it by at least `--min-gain`: a smaller model that buys no speed only costs
//! accuracy. Speed is compared on medians, which a busy board barely moves; its p99s over a few
//! hundred runs it moves a lot.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::bench::{self, BenchArgs};
use super::zoo::{self, Arch, Dataset, ZooSpec};

/// `rtinfer ladder` arguments.
#[derive(Debug, clap::Args)]
pub struct LadderArgs {
    /// vgg11 | mobilenetv2 | resnet50
    #[arg(long, default_value = "mobilenetv2")]
    pub arch: String,
    /// cifar10 | tinyimagenet
    #[arg(long, default_value = "cifar10")]
    pub dataset: String,
    /// Width ratios of the candidates.
    #[arg(long, value_delimiter = ',', default_value = "1.0,0.75,0.5,0.25")]
    pub ratios: Vec<f64>,
    /// fp32 and/or int8 (int8: quantized on this board, calibrated on seeded noise: right for
    /// latency, not for accuracy; quantize your trained model with your data for real use).
    #[arg(long, value_delimiter = ',', default_value = "fp32")]
    pub precisions: Vec<String>,
    /// The per-frame budget the ladder is for (ms).
    #[arg(long, default_value_t = 1000.0 / 60.0)]
    pub budget_ms: f64,
    /// The governor's headroom: a rung whose p99 exceeds budget x (1 - headroom) is never served.
    #[arg(long, default_value_t = 0.25)]
    pub headroom: f64,
    /// A rung's median must be this much faster (a fraction) than the rung kept above it.
    #[arg(long, default_value_t = 0.05)]
    pub min_gain: f64,
    /// The watch folder to write the rungs into (created if missing).
    #[arg(long)]
    pub to: PathBuf,
    /// Bench trials per candidate (20 warm-up + 80 measured runs each).
    #[arg(long, default_value_t = 2)]
    pub trials: u32,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, default_value = "auto")]
    pub backend: String,
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// One candidate and what became of it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Candidate {
    pub file: String,
    pub ratio: f64,
    pub precision: String,
    pub params: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub session_rss_mb: f64,
    /// Kept as a rung.
    pub kept: bool,
    /// Why it was dropped.
    pub reason: Option<String>,
}

/// The answer: every candidate (largest first) and where the rungs went.
#[derive(Debug, Clone, Serialize)]
pub struct LadderReport {
    pub budget_ms: f64,
    pub threshold_ms: f64,
    pub to: PathBuf,
    pub candidates: Vec<Candidate>,
}

/// Decides which candidates are rungs (see the module docs). `c` is sorted largest first.
pub fn select(c: &mut [Candidate], threshold_ms: f64, min_gain: f64) {
    let mut above: Option<f64> = None;
    for x in c.iter_mut() {
        if x.p99_ms > threshold_ms {
            x.kept = false;
            x.reason = Some(format!(
                "p99 {:.3} ms exceeds {threshold_ms:.3} ms (budget less headroom): never served",
                x.p99_ms
            ));
            continue;
        }
        match above {
            Some(a) if x.p50_ms > a * (1.0 - min_gain) => {
                x.kept = false;
                x.reason = Some(format!(
                    "p50 {:.3} ms is not {:.0} % faster than the rung above ({a:.3} ms)",
                    x.p50_ms,
                    min_gain * 100.0
                ));
            }
            _ => {
                x.kept = true;
                x.reason = None;
                above = Some(x.p50_ms);
            }
        }
    }
}

/// Runs `rtinfer ladder`.
pub fn run(a: LadderArgs) -> anyhow::Result<u8> {
    let arch: Arch = a.arch.parse().map_err(|e| anyhow::anyhow!("--arch: {e}"))?;
    let dataset: Dataset = a
        .dataset
        .parse()
        .map_err(|e| anyhow::anyhow!("--dataset: {e}"))?;
    if let Some(p) = a
        .precisions
        .iter()
        .find(|p| !matches!(p.as_str(), "fp32" | "int8"))
    {
        anyhow::bail!("--precisions {p}: expected fp32 or int8");
    }
    if !(a.budget_ms.is_finite() && a.budget_ms > 0.0) {
        anyhow::bail!("--budget-ms {} is not a budget", a.budget_ms);
    }
    if !(0.0..1.0).contains(&a.headroom) || !(0.0..1.0).contains(&a.min_gain) {
        anyhow::bail!("--headroom and --min-gain are fractions in [0, 1)");
    }
    if a.ratios.is_empty() || a.ratios.iter().any(|r| !(*r > 0.0 && *r <= 4.0)) {
        anyhow::bail!("--ratios must be in (0, 4]");
    }
    std::fs::create_dir_all(&a.to).with_context(|| format!("create {}", a.to.display()))?;
    // Generated inside the folder (hidden: the watcher ignores dotfiles and does not look into
    // sub-folders), so moving a rung in is a rename on one filesystem.
    let work = a.to.join(format!(".rtinfer-ladder.{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let result = build(&a, arch, dataset, &work);
    let _ = std::fs::remove_dir_all(&work);
    let report = result?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(0)
}

fn build(
    a: &LadderArgs,
    arch: Arch,
    dataset: Dataset,
    work: &Path,
) -> anyhow::Result<LadderReport> {
    let mut ratios = a.ratios.clone();
    ratios.sort_by(|x, y| y.total_cmp(x));
    ratios.dedup();
    let mut candidates = Vec::new();
    let mut files = Vec::new();
    for &ratio in &ratios {
        let spec = ZooSpec {
            arch,
            dataset,
            ratio,
            widths: None,
            seed: 0,
        };
        let fp32 = work.join(zoo::default_output_name(&spec));
        let model = zoo::generate(&spec)?;
        let params = crate::onnx::pb::model_params(&model);
        crate::onnx::pb::write_model(&fp32, &model)?;
        let mut variants = Vec::new();
        if a.precisions.iter().any(|p| p == "fp32") {
            variants.push(("fp32", fp32.clone()));
        }
        if a.precisions.iter().any(|p| p == "int8") {
            eprintln!("quantizing {}", fp32.display());
            variants.push((
                "int8",
                super::sweep::int8_for_latency(&fp32, a.ort_library.as_deref())?,
            ));
        }
        for (precision, path) in variants {
            let mut b = BenchArgs::new(path.clone());
            b.trials = a.trials;
            b.threads = a.threads;
            b.backend.clone_from(&a.backend);
            b.ort_library.clone_from(&a.ort_library);
            let r = bench::bench_in_child(&b)?;
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            eprintln!(
                "{file}: p50 {:.3} ms, p99 {:.3} ms",
                r.latency_ms.p50, r.latency_ms.p99
            );
            candidates.push(Candidate {
                file,
                ratio,
                precision: precision.to_string(),
                params,
                p50_ms: r.latency_ms.p50,
                p99_ms: r.latency_ms.p99,
                session_rss_mb: r.session_rss_mb,
                kept: false,
                reason: None,
            });
            files.push(path);
        }
    }
    // Largest first: more parameters, then fp32 before int8.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&x, &y| {
        let (cx, cy) = (&candidates[x], &candidates[y]);
        cy.params
            .cmp(&cx.params)
            .then_with(|| (cx.precision != "fp32").cmp(&(cy.precision != "fp32")))
    });
    let mut sorted: Vec<Candidate> = order.iter().map(|&i| candidates[i].clone()).collect();
    let paths: Vec<PathBuf> = order.iter().map(|&i| files[i].clone()).collect();
    let threshold_ms = a.budget_ms * (1.0 - a.headroom);
    select(&mut sorted, threshold_ms, a.min_gain);
    if !sorted.iter().any(|c| c.kept) {
        let fastest = sorted
            .iter()
            .map(|c| c.p99_ms)
            .fold(f64::INFINITY, f64::min);
        anyhow::bail!(
            "no candidate fits {threshold_ms:.3} ms (budget {:.3} ms less {:.0} % headroom) on \
             this board: the fastest p99 is {fastest:.3} ms; try smaller --ratios or int8",
            a.budget_ms,
            a.headroom * 100.0
        );
    }
    for (c, path) in sorted.iter().zip(&paths) {
        if !c.kept {
            continue;
        }
        let dest = a.to.join(&c.file);
        std::fs::rename(path, &dest)
            .with_context(|| format!("move {} into {}", c.file, a.to.display()))?;
    }
    Ok(LadderReport {
        budget_ms: a.budget_ms,
        threshold_ms,
        to: a.to.clone(),
        candidates: sorted,
    })
}

/// The table `rtinfer ladder` prints, and the `[governor]` lines to use it.
pub fn render(r: &LadderReport) -> String {
    let mut s = format!(
        "{:<40} {:>9} {:>10} {:>9} {:>9} {:>8}  verdict\n",
        "candidate (largest first)", "precision", "params", "p50 ms", "p99 ms", "MiB"
    );
    for c in &r.candidates {
        s.push_str(&format!(
            "{:<40} {:>9} {:>10} {:>9.3} {:>9.3} {:>8.1}  {}\n",
            c.file,
            c.precision,
            c.params,
            c.p50_ms,
            c.p99_ms,
            c.session_rss_mb,
            c.reason.as_deref().unwrap_or("rung")
        ));
    }
    let kept: Vec<String> = r
        .candidates
        .iter()
        .filter(|c| c.kept)
        .map(|c| format!("\"{}\"", c.file))
        .collect();
    s.push_str(&format!(
        "{} rungs written to {} (budget {:.2} ms, served up to {:.2} ms). To run them:\n\
         [models]\nwatch_dir = \"{}\"\n[governor]\nenabled = true\nladder = [{}]\n",
        kept.len(),
        r.to.display(),
        r.budget_ms,
        r.threshold_ms,
        r.to.display(),
        kept.join(", ")
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(file: &str, p50: f64) -> Candidate {
        Candidate {
            file: file.into(),
            ratio: 1.0,
            precision: "fp32".into(),
            params: 0,
            p50_ms: p50,
            p99_ms: p50 * 1.25,
            session_rss_mb: 0.0,
            kept: false,
            reason: None,
        }
    }

    #[test]
    fn rungs_must_fit_and_each_must_be_faster_than_the_one_above() {
        let mut v = vec![
            c("1.0", 16.0),
            c("0.75", 9.0),
            c("0.75.int8", 8.9),
            c("0.5", 6.0),
            c("0.5.int8", 7.0),
            c("0.25", 2.0),
        ];
        select(&mut v, 12.5, 0.05);
        let kept: Vec<&str> = v
            .iter()
            .filter(|c| c.kept)
            .map(|c| c.file.as_str())
            .collect();
        assert_eq!(kept, ["0.75", "0.5", "0.25"]);
        assert!(
            v[0].reason
                .as_deref()
                .is_some_and(|r| r.contains("never served"))
        );
        assert!(
            v[2].reason
                .as_deref()
                .is_some_and(|r| r.contains("not 5 % faster"))
        );
        assert!(
            v[4].reason
                .as_deref()
                .is_some_and(|r| r.contains("6.000 ms"))
        );
    }
}
