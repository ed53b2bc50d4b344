//! The `rtinfer` command line: parses arguments, sets up logging, runs a subcommand and maps its
//! outcome to DESIGN.md's exit codes (0 clean, 1 run-time failure, 2 usage/config, 3 start-up).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use rtinfer::config::{self, Config, RawConfig};
use rtinfer::daemon;
use rtinfer::study::zoo;

#[derive(Parser)]
#[command(name = "rtinfer", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("RTINFER_TARGET"), ")"),
    about = "Real-time CNN inference daemon for embedded Linux boards", after_help = rtinfer::source::uri::USAGE)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the inference loop on a source, serving the status socket.
    Run(RunArgs),
    /// Query a running daemon's status socket (a table, or --json).
    Status {
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Read the socket path from this config file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Generate a study CNN (random He-initialised weights) as an ONNX file.
    Zoo(ZooArgs),
    /// Validate a configuration file with the daemon's own code (exit 0 when valid).
    CheckConfig { file: PathBuf },
    /// Parameters, MACs/FLOPs, critical datapath length and width profile of an ONNX model.
    Inspect(rtinfer::study::inspect::InspectArgs),
    /// Latency (mean, std, percentiles) and memory of a model under the study's protocol.
    Bench(rtinfer::study::bench::BenchArgs),
    /// Which width ratio meets a latency or memory target (Eq. 1, a fit, or a measured search).
    Advise(rtinfer::study::advise::AdviseArgs),
    /// Top-1/top-5 accuracy and per-class recall on a labelled image set.
    Eval(rtinfer::study::eval::EvalArgs),
    /// Bench many models (a folder or a generated grid) in fresh processes: one CSV, SVG charts.
    Sweep(rtinfer::study::sweep::SweepArgs),
    /// int8 post-training quantization (QDQ) of a float ONNX model.
    Quantize(rtinfer::study::quantize::cli::QuantizeArgs),
    /// Build the governor's ladder: generate, quantize and measure candidates on this board and
    /// write the rungs worth having into a watch folder.
    Ladder(rtinfer::study::ladder::LadderArgs),
}

#[derive(Args)]
struct RunArgs {
    /// TOML configuration file (CLI flags override its values).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Frame source URI.
    #[arg(long)]
    source: Option<String>,
    /// Model file (.onnx).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Watch folder: the newest model in it starts; files dropped in later are swapped in.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Write every result as a JSON line to this file.
    #[arg(long)]
    results: Option<PathBuf>,
    /// auto | onnxruntime | tensorrt | vitis
    #[arg(long)]
    backend: Option<String>,
    /// Target frame rate; the budget defaults to 1000/fps ms.
    #[arg(long)]
    fps: Option<f64>,
    /// Per-frame budget in milliseconds (end to end, from capture to result).
    #[arg(long)]
    budget_ms: Option<f64>,
    /// Status socket path.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Intra-op threads of the runtime.
    #[arg(long)]
    threads: Option<usize>,
    /// Warm-up runs before the loop starts.
    #[arg(long)]
    warmup: Option<u32>,
    /// Path of libonnxruntime.so (searched first).
    #[arg(long)]
    ort_library: Option<PathBuf>,
    /// ONNX Runtime graph optimisation: disable | basic | extended | all (onnxruntime.optimization).
    #[arg(long)]
    optimization: Option<String>,
    /// ONNX Runtime intra-op spinning: true | false (onnxruntime.spinning; off by default, so an
    /// idle pool does not burn a core between frames).
    #[arg(long)]
    spinning: Option<bool>,
    /// stretch | center-crop | letterbox
    #[arg(long)]
    resize: Option<String>,
    /// Pin the model's symbolic input dims, e.g. 1x3x48x192 (model.input_shape).
    #[arg(long, value_name = "NxCxHxW")]
    input_shape: Option<String>,
}

#[derive(Args)]
struct ZooArgs {
    /// vgg11 | mobilenetv2 | resnet50
    #[arg(long)]
    arch: String,
    /// cifar10 (1x3x32x32, 10 classes) | tinyimagenet (1x3x64x64, 200 classes)
    #[arg(long, default_value = "cifar10")]
    dataset: String,
    /// Uniform width ratio: every width w becomes floor(w * R).
    #[arg(long, default_value_t = 1.0)]
    ratio: f64,
    /// Per-layer widths (comma-separated), overriding --ratio.
    #[arg(long, value_delimiter = ',')]
    widths: Option<Vec<u32>>,
    /// Seed of the weight initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// NeuralScale layout: per-layer widths from these power-law fits, with the parameters of
    /// the uniform model at --ratio (e.g. data/neuralscale_fits.json).
    #[arg(long, value_name = "FITS.json", conflicts_with = "widths")]
    neuralscale: Option<PathBuf>,
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
}

/// An error with the exit code it deserves.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn fail(code: u8) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { code, error }
}

fn main() -> ExitCode {
    // Before any thread exists: ONNX Runtime's telemetry off unless ORT_DISABLE_TELEMETRY is set.
    rtinfer::backend::ort_telemetry::disable_unless_chosen();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let is_run = matches!(cli.cmd, Cmd::Run(_));
    if !is_run {
        init_logging(log::LevelFilter::Info);
    }
    let result = match cli.cmd {
        Cmd::Run(args) => run(args),
        Cmd::Status {
            socket,
            json,
            config,
        } => status(socket, json, config),
        Cmd::Zoo(args) => zoo_cmd(args).map_err(fail(1)),
        Cmd::CheckConfig { file } => check_config(&file),
        Cmd::Inspect(args) => rtinfer::study::inspect::run(args).map_err(refusal),
        Cmd::Bench(args) => rtinfer::study::bench::run(args).map_err(refusal),
        Cmd::Advise(args) => rtinfer::study::advise::run(args).map_err(refusal),
        Cmd::Eval(args) => rtinfer::study::eval::run(args).map_err(refusal),
        Cmd::Sweep(args) => rtinfer::study::sweep::run(args).map_err(fail(1)),
        Cmd::Quantize(args) => rtinfer::study::quantize::cli::run(args).map_err(refusal),
        Cmd::Ladder(args) => rtinfer::study::ladder::run(args).map_err(fail(1)),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("rtinfer: error: {}", chain(&f.error));
            ExitCode::from(f.code)
        }
    }
}

/// A study command's error with the exit code `run` gives the same refusal: 3 for a model or
/// runtime that cannot be opened (start-up), 2 for a bad configuration, a child's own code, else 1.
fn refusal(error: anyhow::Error) -> Failure {
    use rtinfer::study::quantize::QuantizeError as Q;
    let code = error
        .chain()
        .find_map(|e| {
            if let Some(c) = e.downcast_ref::<config::ConfigError>() {
                return Some(match c {
                    config::ConfigError::Invalid {
                        key: "run.source", ..
                    } => 3,
                    _ => 2,
                });
            }
            if let Some(c) = e.downcast_ref::<rtinfer::study::bench::ChildFailed>() {
                return Some(c.code);
            }
            if e.is::<rtinfer::backend::BackendError>() || e.is::<rtinfer::onnx::pb::OnnxError>() {
                return Some(3);
            }
            if let Some(i) = e.downcast_ref::<rtinfer::study::inspect::InspectError>() {
                return Some(match i {
                    rtinfer::study::inspect::InspectError::Cycle { .. } => 1,
                    _ => 3,
                });
            }
            match e.downcast_ref::<Q>() {
                Some(Q::Onnx(_) | Q::Input { .. } | Q::Shape { .. }) => Some(3),
                _ => None,
            }
        })
        .unwrap_or(1);
    Failure { code, error }
}

/// The error and its causes, each said once: many errors already print their cause in their own
/// message (`cannot read config X: <io error>`), so a cause whose text is already there is not
/// repeated.
fn chain(e: &anyhow::Error) -> String {
    rtinfer::causes::join(e.chain().map(ToString::to_string))
}

/// Logging: `RUST_LOG` when set (per-module targets, e.g. `RUST_LOG=rtinfer::power=debug`), else
/// the configured level. Under systemd (`JOURNAL_STREAM` set) lines carry `<N>` syslog priority
/// prefixes and no timestamps, so `journalctl -p warning -u rtinfer` shows exactly the warnings
/// (deadline misses among them).
fn init_logging(level: log::LevelFilter) {
    use std::io::Write;
    let mut b = env_logger::Builder::new();
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            b.parse_filters(&spec);
        }
        // Everything passes the builder; `log::set_max_level` is the live knob (SIGHUP reload).
        _ => {
            b.filter_level(log::LevelFilter::Trace);
        }
    }
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        b.format(|buf, r| {
            let prio = match r.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            writeln!(buf, "<{prio}>{}: {}", r.target(), r.args())
        });
    } else {
        b.format_timestamp_millis();
    }
    b.init();
    if std::env::var_os("RUST_LOG").is_none() {
        log::set_max_level(level);
    }
}

/// Reads the config file (if any) and overlays the CLI flags: start-up and SIGHUP reload alike.
fn load_config(args: &RunArgs) -> Result<(RawConfig, Config), config::ConfigError> {
    let mut raw = match &args.config {
        Some(p) => config::read_raw(p)?,
        None => RawConfig::default(),
    };
    overlay(&mut raw, args);
    let cfg = Config::from_raw(raw.clone(), args.config.as_deref())?;
    Ok((raw, cfg))
}

fn run(args: RunArgs) -> Result<u8, Failure> {
    // Before any other thread exists, so every thread allocates from the capped arenas and
    // inherits the signal mask.
    let arenas = rtinfer::rt::limit_malloc_arenas();
    let signals = rtinfer::signals::install().map_err(|e| fail(1)(e.into()))?;
    let loaded = load_config(&args);
    init_logging(
        loaded
            .as_ref()
            .map_or(log::LevelFilter::Info, |(_, c)| c.log_level),
    );
    let (raw, cfg) = loaded.map_err(|e| {
        // A source that cannot be named is a source that cannot open: a start-up failure (3),
        // like a missing model; every other invalid key is a configuration error (2).
        let code = if matches!(
            e,
            config::ConfigError::Invalid {
                key: "run.source",
                ..
            }
        ) {
            3
        } else {
            2
        };
        fail(code)(e.into())
    })?;
    if let Some(n) = arenas {
        log::debug!("malloc arenas capped at {n} (MALLOC_ARENA_MAX overrides)");
    }
    let duration = cfg.duration;
    let notifier = std::sync::Arc::new(rtinfer::systemd::Notifier::from_env());
    let d = {
        // A start-up load (a TensorRT engine build) may outlast TimeoutStartSec: ask for more.
        let _extend = rtinfer::systemd::ExtendTimeout::start(
            std::sync::Arc::clone(&notifier),
            std::time::Duration::from_secs(60),
        );
        daemon::Daemon::build(cfg, raw, std::sync::Arc::clone(&notifier))
            .and_then(daemon::Daemon::spawn)
            .map_err(|e| fail(3)(e.into()))?
    };
    notifier.send(&format!("READY=1\nSTATUS={}", d.shared.status_line()));
    let shared = std::sync::Arc::clone(&d.shared);
    let reload = || load_config(&args).map_err(|e| e.to_string());
    let finished = d.wait(&signals, duration, &reload);
    println!("{}", rtinfer::daemon::report::final_summary(&shared));
    finished.result.map(|()| 0).map_err(|e| fail(1)(e.into()))
}

/// CLI flags override the file's values.
fn overlay(raw: &mut RawConfig, a: &RunArgs) {
    let r = &mut raw.run;
    if a.source.is_some() {
        r.source.clone_from(&a.source);
    }
    if a.model.is_some() {
        r.model.clone_from(&a.model);
    }
    if a.results.is_some() {
        r.results.clone_from(&a.results);
    }
    if a.models.is_some() {
        raw.models.watch_dir.clone_from(&a.models);
    }
    let r = &mut raw.run;
    if a.backend.is_some() {
        r.backend.clone_from(&a.backend);
    }
    r.fps = a.fps.or(r.fps);
    r.budget_ms = a.budget_ms.or(r.budget_ms);
    r.duration_s = a.duration.or(r.duration_s);
    r.threads = a.threads.or(r.threads);
    r.warmup = a.warmup.or(r.warmup);
    if a.socket.is_some() {
        raw.status.socket.clone_from(&a.socket);
    }
    if a.ort_library.is_some() {
        raw.onnxruntime.library.clone_from(&a.ort_library);
    }
    if a.optimization.is_some() {
        raw.onnxruntime.optimization.clone_from(&a.optimization);
    }
    raw.onnxruntime.spinning = a.spinning.or(raw.onnxruntime.spinning);
    if a.resize.is_some() {
        raw.preprocess.resize.clone_from(&a.resize);
    }
    if let Some(s) = &a.input_shape {
        raw.model.input_shape = Some(rtinfer::backend::ShapeValue::Text(s.clone()));
    }
}

fn status(socket: Option<PathBuf>, json: bool, config: Option<PathBuf>) -> Result<u8, Failure> {
    let socket = match (socket, config) {
        (Some(s), _) => s,
        (None, Some(c)) => Config::from_file(&c).map_err(|e| fail(2)(e.into()))?.socket,
        (None, None) => PathBuf::from(config::DEFAULT_SOCKET),
    };
    let (code, body) =
        rtinfer::status::client::get(&socket, "/status", std::time::Duration::from_secs(5))
            .map_err(|e| fail(1)(e.into()))?;
    if code != 200 {
        return Err(fail(1)(anyhow::anyhow!(
            "{} answered {code}: {body}",
            socket.display()
        )));
    }
    if json {
        println!("{body}");
    } else {
        let v: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("{} sent invalid JSON", socket.display()))
            .map_err(fail(1))?;
        print!("{}", rtinfer::status::table::render(&v));
    }
    Ok(0)
}

fn zoo_cmd(a: ZooArgs) -> anyhow::Result<u8> {
    let mut spec = zoo::ZooSpec {
        arch: a.arch.parse().map_err(|e| anyhow::anyhow!("--arch: {e}"))?,
        dataset: a
            .dataset
            .parse()
            .map_err(|e| anyhow::anyhow!("--dataset: {e}"))?,
        ratio: a.ratio,
        widths: a.widths,
        seed: a.seed,
    };
    if let Some(fits) = &a.neuralscale {
        spec.widths = Some(rtinfer::study::neuralscale::zoo_cmd_widths(fits, &spec)?);
    }
    let model = zoo::generate(&spec)?;
    rtinfer::onnx::pb::write_model(&a.output, &model)?;
    let params = rtinfer::onnx::pb::model_params(&model);
    println!("wrote {} ({params} parameters)", a.output.display());
    Ok(0)
}

fn check_config(file: &std::path::Path) -> Result<u8, Failure> {
    let cfg = Config::from_file(file).map_err(|e| fail(2)(e.into()))?;
    println!(
        "{}: valid (source {}, model {}, budget {:.2} ms, socket {})",
        file.display(),
        cfg.source,
        cfg.model
            .as_ref()
            .map_or("-".into(), |m| m.display().to_string()),
        cfg.budget.as_secs_f64() * 1000.0,
        cfg.socket.display()
    );
    Ok(0)
}
