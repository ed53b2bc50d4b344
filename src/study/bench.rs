//! The study's latency protocol as a command: batch 1, seeded random input, warm-up runs
//! excluded, measured runs in trials. Each bench runs in a fresh child process (this binary
//! re-executed with `--in-process`), because memory is "the RSS increase caused by creating the
//! session": a process that already loaded other models, or ran for a while, would blur it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::{Config, RawConfig};
use crate::tensor::InputBufMut;

/// How many runs, how grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protocol {
    /// Unmeasured runs at the start of every trial.
    pub warmup: u32,
    /// Measured runs per trial.
    pub runs: u32,
    pub trials: u32,
}

impl Default for Protocol {
    /// The study's protocol with 5 trials (it used 50).
    fn default() -> Self {
        Protocol {
            warmup: 20,
            runs: 80,
            trials: 5,
        }
    }
}

/// Runs `once` as the protocol says and returns the measured samples (warm-ups dropped), in
/// order. `once` returns one run's latency in milliseconds.
pub fn measure<E>(p: Protocol, mut once: impl FnMut() -> Result<f64, E>) -> Result<Vec<f64>, E> {
    let mut samples = Vec::with_capacity(p.runs as usize * p.trials as usize);
    for _ in 0..p.trials {
        for _ in 0..p.warmup {
            once()?;
        }
        for _ in 0..p.runs {
            samples.push(once()?);
        }
    }
    Ok(samples)
}

/// Summary statistics of latency samples (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1).
    pub std: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    /// Statistics of `samples`; percentiles interpolate linearly between order statistics
    /// (numpy's default, as the study's Python harness computed them). `None` when empty.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let mean = s.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            s.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Summary {
            count: n,
            mean,
            std: var.sqrt(),
            min: s[0],
            p50: percentile(&s, 50.0),
            p90: percentile(&s, 90.0),
            p99: percentile(&s, 99.0),
            max: s[n - 1],
        })
    }
}

/// Linear-interpolated percentile of sorted, non-empty `s`.
pub fn percentile(s: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Power figures of a bench, as the study defined them, when `[power]` names a meter (config
/// file via `--config`); `None` without one.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PowerFigures {
    pub idle_w: Option<f64>,
    pub peak_w: Option<f64>,
    pub dynamic_w: Option<f64>,
    /// Inferences per second per watt of peak power (the study's throughput per watt).
    pub throughput_per_w: Option<f64>,
}

/// One model's bench.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub model: PathBuf,
    pub backend: String,
    /// The engine's precision (`fp32`, `int8` for a QDQ or `NAME.int8.onnx` model, `mixed` for a
    /// TensorRT int8 engine): what tells a sweep's fp32 and int8 rows apart.
    #[serde(default)]
    pub precision: String,
    pub threads: usize,
    pub protocol: Protocol,
    pub seed: u64,
    pub latency_ms: Summary,
    /// The accelerator's own time of the same measured runs (TensorRT: CUDA events), when the
    /// backend measures one.
    #[serde(default)]
    pub device_ms: Option<Summary>,
    /// RSS increase caused by creating the session, MiB.
    pub session_rss_mb: f64,
    /// Peak RSS of the bench process, MiB.
    pub peak_rss_mb: f64,
    /// The engine's own memory as the study reported it for TensorRT (serialized + persistent
    /// + activation), when the backend knows it.
    #[serde(default)]
    pub engine_memory: Option<crate::backend::EngineMemory>,
    pub power: PowerFigures,
}

/// `rtinfer bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Model file.
    pub model: PathBuf,
    /// auto | onnxruntime | tensorrt | vitis
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Trials of (warm-up + measured) runs; the study used 50.
    #[arg(long, default_value_t = 5)]
    pub trials: u32,
    /// Unmeasured runs per trial.
    #[arg(long, default_value_t = 20)]
    pub warmup: u32,
    /// Measured runs per trial.
    #[arg(long, default_value_t = 80)]
    pub runs: u32,
    /// Seed of the random input.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Config file whose engine options ([onnxruntime], ...) apply.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Path of libonnxruntime.so.
    #[arg(long)]
    pub ort_library: Option<PathBuf>,
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    #[arg(long)]
    pub csv: bool,
    /// Measure in this process (what the fresh child runs).
    #[arg(long, hide = true)]
    pub in_process: bool,
}

impl BenchArgs {
    /// Defaults for `model` (as the CLI's).
    pub fn new(model: PathBuf) -> Self {
        BenchArgs {
            model,
            backend: "auto".into(),
            threads: 1,
            trials: 5,
            warmup: 20,
            runs: 80,
            seed: 0,
            config: None,
            ort_library: None,
            json: false,
            csv: false,
            in_process: false,
        }
    }

    fn protocol(&self) -> Protocol {
        Protocol {
            warmup: self.warmup,
            runs: self.runs,
            trials: self.trials,
        }
    }
}

/// Runs `rtinfer bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<u8> {
    let report = if args.in_process {
        bench_here(&args)?
    } else {
        bench_in_child(&args)?
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.csv {
        println!("{}", CSV_HEADER);
        println!("{}", csv_row(&report));
    } else {
        print!("{}", table(&report));
    }
    Ok(0)
}

/// Runs the bench in a fresh `rtinfer bench --in-process --json` child and parses its report.
pub fn bench_in_child(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let exe = std::env::current_exe().context("locate the rtinfer binary")?;
    let mut c = Command::new(exe);
    c.arg("bench")
        .arg(&args.model)
        .arg("--in-process")
        .arg("--json");
    c.args(["--backend", &args.backend]);
    for (k, v) in [
        ("--threads", args.threads.to_string()),
        ("--trials", args.trials.to_string()),
        ("--warmup", args.warmup.to_string()),
        ("--runs", args.runs.to_string()),
        ("--seed", args.seed.to_string()),
    ] {
        c.args([k, &v]);
    }
    if let Some(p) = &args.config {
        c.arg("--config").arg(p);
    }
    if let Some(p) = &args.ort_library {
        c.arg("--ort-library").arg(p);
    }
    c.stderr(std::process::Stdio::inherit());
    let out = c.output().context("start the bench child process")?;
    if !out.status.success() {
        anyhow::bail!("bench of {} failed ({})", args.model.display(), out.status);
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("bench child of {} printed no report", args.model.display()))
}

/// The engine options of a bench: the config file's, overridden by the flags.
fn bench_config(args: &BenchArgs) -> anyhow::Result<Config> {
    let mut raw = match &args.config {
        Some(p) => crate::config::read_raw(p)?,
        None => RawConfig::default(),
    };
    raw.run.model = Some(args.model.clone());
    raw.run.backend = Some(args.backend.clone());
    raw.run.threads = Some(args.threads);
    if args.ort_library.is_some() {
        raw.onnxruntime.library.clone_from(&args.ort_library);
    }
    Ok(Config::from_raw(raw, args.config.as_deref())?)
}

/// Measures in this process (call it in a fresh one).
pub fn bench_here(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let cfg = bench_config(args)?;
    // Idle power is measured before the model is loaded (or taken from power.idle_watts).
    let meter = crate::power::monitor::start_with_idle(cfg.power.as_ref())
        .context("start the power meter")?;
    let backend = crate::backend::open(&cfg.backend, &args.model)?;
    let before = proc_status_kib("VmRSS:").unwrap_or(0);
    let mut engine = backend.load(&args.model, &cfg.backend.load_options())?;
    let after = proc_status_kib("VmRSS:").unwrap_or(0);
    fill_random(engine.input(), args.seed);
    let protocol = args.protocol();
    let per_trial = (protocol.warmup + protocol.runs) as usize;
    let mut device = Vec::with_capacity(per_trial * protocol.trials as usize);
    let t0 = crate::time::MonoTime::now();
    let samples = measure(protocol, || {
        let t = Instant::now();
        engine.run()?;
        let host = t.elapsed().as_secs_f64() * 1000.0;
        device.push(engine.device_time().map(|d| d.as_secs_f64() * 1000.0));
        Ok::<_, crate::backend::BackendError>(host)
    })?;
    let t1 = crate::time::MonoTime::now();
    let latency_ms = Summary::of(&samples).context("no measured runs (--runs or --trials is 0)")?;
    // The device times of the measured runs (each trial's warm-up skipped), if every run had one.
    let measured_device: Option<Vec<f64>> = device
        .chunks(per_trial.max(1))
        .flat_map(|trial| trial.iter().skip(protocol.warmup as usize))
        .copied()
        .collect();
    let device_ms = measured_device.as_deref().and_then(Summary::of);
    let power = meter.as_ref().map_or_else(PowerFigures::default, |m| {
        let f = m.figures(t0, t1, Some(1000.0 / latency_ms.mean));
        if let Some(s) = f.covers_only_s {
            log::warn!(
                "power figures cover only the last {s:.1} s of the {:.1} s bench: the meter's ring \
                 holds 4096 samples (raise power.interval_ms, or bench fewer runs)",
                t1.saturating_since(t0).as_secs_f64()
            );
        }
        m.stop();
        PowerFigures {
            idle_w: f.idle_watts,
            peak_w: f.peak_watts,
            dynamic_w: f.dynamic_watts,
            throughput_per_w: f.throughput_per_watt,
        }
    });
    Ok(BenchReport {
        model: args.model.clone(),
        backend: backend.kind().name().into(),
        precision: engine.info().precision.name().into(),
        threads: cfg.backend.threads,
        protocol: args.protocol(),
        seed: args.seed,
        latency_ms,
        device_ms,
        session_rss_mb: after.saturating_sub(before) as f64 / 1024.0,
        peak_rss_mb: proc_status_kib("VmHWM:").unwrap_or(0) as f64 / 1024.0,
        engine_memory: engine.memory(),
        power,
    })
}

/// A `/proc/self/status` field in KiB (`VmRSS:`, `VmHWM:`).
fn proc_status_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&text, key)
}

fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Fills an input with seeded uniform noise in [-1, 1) (int8: the full range).
pub fn fill_random(buf: InputBufMut<'_>, seed: u64) {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    match buf {
        InputBufMut::F32(b) => b
            .iter_mut()
            .for_each(|x| *x = (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0),
        InputBufMut::I8(b) => b.iter_mut().for_each(|x| *x = (next() >> 56) as u8 as i8),
    }
}

/// Column names of [`csv_row`].
pub const CSV_HEADER: &str = "model,backend,precision,threads,trials,runs,mean_ms,std_ms,min_ms,p50_ms,p90_ms,p99_ms,max_ms,session_rss_mb,peak_rss_mb,idle_w,peak_w,dynamic_w,throughput_per_w";

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.3}"))
}

/// One CSV line (no trailing newline); empty cells for absent power figures.
pub fn csv_row(r: &BenchReport) -> String {
    let l = &r.latency_ms;
    format!(
        "{},{},{},{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.2},{:.2},{},{},{},{}",
        csv_field(&r.model.display().to_string()),
        r.backend,
        r.precision,
        r.threads,
        r.protocol.trials,
        r.protocol.runs,
        l.mean,
        l.std,
        l.min,
        l.p50,
        l.p90,
        l.p99,
        l.max,
        r.session_rss_mb,
        r.peak_rss_mb,
        opt(r.power.idle_w),
        opt(r.power.peak_w),
        opt(r.power.dynamic_w),
        opt(r.power.throughput_per_w),
    )
}

/// Quotes a CSV field when it needs it.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The default human-readable table.
pub fn table(r: &BenchReport) -> String {
    let l = &r.latency_ms;
    let p = &r.power;
    let w = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let engine = r.engine_memory.as_ref().map_or(String::new(), |m| {
        format!(
            "engine MiB serialized {:.2}  persistent {:.2} ({})  activation {:.2}  total {:.2}\n",
            mib(m.serialized_bytes),
            mib(m.persistent_bytes),
            m.persistent_source,
            mib(m.activation_bytes),
            mib(m.total_bytes())
        )
    });
    let device = r.device_ms.map_or(String::new(), |d| {
        format!(
            "device ms  mean {:.3}  p50 {:.3}  p99 {:.3}  max {:.3}  (the device's own clock)\n",
            d.mean, d.p50, d.p99, d.max
        )
    });
    format!(
        "model      {}\nbackend    {} {} ({} threads), {} trials x ({} warm-up + {} runs), seed {}\n\
         latency ms mean {:.3}  std {:.3}  min {:.3}  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  (n={})\n\
         {}memory MiB session {:.1}  peak RSS {:.1}\n\
         {}\
         power W    idle {}  peak {}  dynamic {}  inferences/s/W {}\n",
        r.model.display(),
        r.backend,
        r.precision,
        r.threads,
        r.protocol.trials,
        r.protocol.warmup,
        r.protocol.runs,
        r.seed,
        l.mean,
        l.std,
        l.min,
        l.p50,
        l.p90,
        l.p99,
        l.max,
        l.count,
        device,
        r.session_rss_mb,
        r.peak_rss_mb,
        engine,
        w(p.idle_w),
        w(p.peak_w),
        w(p.dynamic_w),
        w(p.throughput_per_w),
    )
}

/// Reads a status-file value, exposed for tests of the parser.
pub fn status_kib(text: &str, key: &str) -> Option<u64> {
    parse_status_kib(text, key)
}
