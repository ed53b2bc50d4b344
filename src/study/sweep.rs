//! The study's experiment in one command: many models (a folder, or a generated grid of
//! architectures x ratios x datasets), each benched in a fresh process, one CSV row per model,
//! and the study's figures as SVG. Fresh processes keep one model's allocations and thread
//! pools from colouring the next one's latency and memory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::Serialize;

use super::bench::{self, BenchArgs, BenchReport};
use super::eval::EvalReport;
use super::fit;
use super::inspect;
use super::plot::{self, Scatter};
use super::zoo::{self, ZooSpec};

/// `rtinfer sweep` arguments.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Folder of models (every *.onnx); without it, the grid below is generated.
    pub models: Option<PathBuf>,
    /// Architectures of the generated grid.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "vgg11,mobilenetv2,resnet50"
    )]
    pub arch: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,0.75,1.0")]
    pub ratios: Vec<f64>,
    #[arg(long, value_delimiter = ',', default_value = "cifar10")]
    pub datasets: Vec<String>,
    /// fp32 and/or int8 (each generated model quantized by `rtinfer quantize`'s code, calibrated
    /// on seeded noise: latency does not depend on the calibration, accuracy would).
    #[arg(long, value_delimiter = ',', default_value = "fp32")]
    pub precisions: Vec<String>,
    /// Output folder (sweep.csv, *.svg, generated models under models/).
    #[arg(short, long, default_value = "sweep")]
    pub output: PathBuf,
    /// Labelled images: adds top-1/top-5 columns and the accuracy-vs-latency chart.
    #[arg(long)]
    pub images: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    pub trials: u32,
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[arg(long, default_value = "auto")]
    pub backend: String,
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    /// The budget line of the charts (ms).
    #[arg(long, default_value_t = 1000.0 / 60.0)]
    pub budget_ms: f64,
}

/// One CSV row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub inspect: inspect::InspectReport,
    pub bench: BenchReport,
    pub eval: Option<EvalReport>,
}

/// The models of a sweep, in order.
pub fn models(a: &SweepArgs) -> anyhow::Result<Vec<PathBuf>> {
    if let Some(dir) = &a.models {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("read models folder {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
            .collect();
        v.sort();
        if v.is_empty() {
            anyhow::bail!("no .onnx models in {}", dir.display());
        }
        return Ok(v);
    }
    if let Some(p) = a
        .precisions
        .iter()
        .find(|p| !matches!(p.as_str(), "fp32" | "int8"))
    {
        anyhow::bail!("--precisions {p}: expected fp32 or int8");
    }
    let dir = a.output.join("models");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let mut out = Vec::new();
    for arch in &a.arch {
        for ds in &a.datasets {
            for &ratio in &a.ratios {
                let spec = ZooSpec {
                    arch: arch.parse()?,
                    dataset: ds.parse()?,
                    ratio,
                    widths: None,
                    seed: 0,
                };
                let path = dir.join(zoo::default_output_name(&spec));
                crate::onnx::pb::write_model(&path, &zoo::generate(&spec)?)?;
                if a.precisions.iter().any(|p| p == "int8") {
                    let q = int8_for_latency(&path, a.ort_library.as_deref())?;
                    if a.precisions.iter().any(|p| p == "fp32") {
                        out.push(path);
                    }
                    out.push(q);
                } else {
                    out.push(path);
                }
            }
        }
    }
    Ok(out)
}

/// Runs `rtinfer sweep`.
pub fn run(a: SweepArgs) -> anyhow::Result<u8> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&a.output).with_context(|| format!("create {}", a.output.display()))?;
    let models = models(&a)?;
    let bar = indicatif::ProgressBar::new(models.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    for m in &models {
        let name = m
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        bar.set_message(name.clone());
        let mut b = BenchArgs::new(m.clone());
        b.trials = a.trials;
        b.threads = a.threads;
        b.backend.clone_from(&a.backend);
        b.ort_library.clone_from(&a.ort_library);
        let bench = bench::bench_in_child(&b)?;
        let eval = match &a.images {
            Some(dir) => Some(eval_in_child(m, dir, &a)?),
            None => None,
        };
        rows.push(Row {
            name,
            inspect: inspect::inspect_file(m)?,
            bench,
            eval,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let csv = a.output.join("sweep.csv");
    std::fs::write(&csv, to_csv(&rows)).with_context(|| format!("write {}", csv.display()))?;
    let charts = charts(&a.output, &rows, a.budget_ms)?;
    println!(
        "{} models in {:.1} s: {}",
        rows.len(),
        started.elapsed().as_secs_f64(),
        csv.display()
    );
    for c in charts {
        println!("  {}", c.display());
    }
    Ok(0)
}

fn eval_in_child(model: &Path, images: &Path, a: &SweepArgs) -> anyhow::Result<EvalReport> {
    let exe = std::env::current_exe().context("locate the rtinfer binary")?;
    let mut c = Command::new(exe);
    c.arg("eval")
        .arg(model)
        .arg("--images")
        .arg(images)
        .arg("--json");
    c.args(["--backend", &a.backend, "--threads", &a.threads.to_string()]);
    if let Some(p) = &a.ort_library {
        c.arg("--ort-library").arg(p);
    }
    let out = c.output().context("start the eval child process")?;
    if !out.status.success() {
        anyhow::bail!(
            "eval of {} failed: {}",
            model.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("eval child of {} printed no report", model.display()))
}

/// Column names of the sweep CSV.
pub const CSV_HEADER: &str = "name,params,params_torch,flops,flops_thop,cdl,model,backend,precision,threads,trials,runs,mean_ms,std_ms,min_ms,p50_ms,p90_ms,p99_ms,max_ms,session_rss_mb,peak_rss_mb,idle_w,peak_w,dynamic_w,throughput_per_w,top1,top5";

/// The sweep CSV text.
pub fn to_csv(rows: &[Row]) -> String {
    let mut s = String::from(CSV_HEADER);
    s.push('\n');
    let o = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
    for r in rows {
        let i = &r.inspect;
        let (t1, t5) = r.eval.as_ref().map_or((String::new(), String::new()), |e| {
            (format!("{:.5}", e.top1), format!("{:.5}", e.top5))
        });
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{t1},{t5}\n",
            bench::csv_field(&r.name),
            i.params,
            o(i.params_torch),
            i.flops,
            o(i.flops_thop),
            i.cdl,
            bench::csv_row(&r.bench)
        ));
    }
    s
}

/// Draws the study's charts; returns the files written.
pub fn charts(dir: &Path, rows: &[Row], budget: f64) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let budget_label = format!("budget {budget:.2} ms");
    let lat: Vec<(f64, f64)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (i as f64, r.bench.latency_ms.mean))
        .collect();
    let p99: Vec<(f64, f64)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (i as f64, r.bench.latency_ms.p99))
        .collect();
    let p = dir.join("latency.svg");
    plot::scatter(
        &p,
        &Scatter {
            title: "latency per model (x = model index, CSV order)",
            x_label: "model",
            y_label: "latency (ms): mean (dots), p99 (triangles)",
            points: &lat,
            hline: Some((budget, &budget_label)),
            fit: None,
            joined: false,
            extra: Some((&p99, "p99")),
        },
    )?;
    written.push(p);
    let params = |r: &Row| r.inspect.params as f64;
    for (file, title, y_label, y) in [
        (
            "latency_vs_params.svg",
            "latency vs parameters",
            "mean latency (ms)",
            (|r: &Row| r.bench.latency_ms.mean) as fn(&Row) -> f64,
        ),
        (
            "memory_vs_params.svg",
            "memory vs parameters",
            "session RSS (MiB)",
            |r: &Row| r.bench.session_rss_mb,
        ),
    ] {
        let pts: Vec<(f64, f64)> = rows.iter().map(|r| (params(r), y(r))).collect();
        let (xs, ys): (Vec<f64>, Vec<f64>) = pts.iter().copied().unzip();
        let f = fit::linear_fit(&xs, &ys).ok();
        let label = f.map(|f| format!("y = {:.3e} x + {:.3} (r = {:.3})", f.slope, f.bias, f.r));
        let p = dir.join(file);
        plot::scatter(
            &p,
            &Scatter {
                title,
                x_label: "parameters",
                y_label,
                points: &pts,
                hline: None,
                fit: f.zip(label.as_deref()).map(|(f, l)| (f.slope, f.bias, l)),
                joined: false,
                extra: None,
            },
        )?;
        written.push(p);
    }
    let acc: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.bench.latency_ms.mean, r.eval.as_ref()?.top1)))
        .collect();
    if !acc.is_empty() {
        let p = dir.join("accuracy_vs_latency.svg");
        plot::vline_scatter(&p, "top-1 accuracy vs latency", &acc, budget, &budget_label)?;
        written.push(p);
        // The study's other trade-off: accuracy against the memory a model costs.
        let mem: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| Some((r.bench.session_rss_mb, r.eval.as_ref()?.top1)))
            .collect();
        let p = dir.join("accuracy_vs_memory.svg");
        plot::scatter(
            &p,
            &Scatter {
                title: "top-1 accuracy vs memory",
                x_label: "session memory (MiB)",
                y_label: "top-1 accuracy",
                points: &mem,
                hline: None,
                fit: None,
                joined: false,
                extra: None,
            },
        )?;
        written.push(p);
    }
    Ok(written)
}

/// The int8 (QDQ) variant of a generated model, `NAME.int8.onnx` beside it, for latency and memory
/// studies: calibrated on seeded noise (a few samples; latency does not depend on the ranges).
pub fn int8_for_latency(fp32: &Path, ort_library: Option<&Path>) -> anyhow::Result<PathBuf> {
    crate::backend::ort_library::load(ort_library)?;
    let out = super::quantize::int8_variant(fp32);
    let opts = super::quantize::QuantizeOptions {
        samples: 16,
        check_samples: 4,
        ..Default::default()
    };
    super::quantize::quantize(fp32, &out, &opts)
        .with_context(|| format!("quantize {}", fp32.display()))?;
    Ok(out)
}
