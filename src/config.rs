//! Configuration: a TOML file and CLI overrides become one validated [`Config`].
//!
//! Two levels, as in the style guide: `Raw*` structs mirror the file (serde, unknown keys are
//! errors with line and column), and [`Config`] holds only checked values. `check-config`, start-up
//! and (later) SIGHUP reload all go through [`Config::from_file`] / [`Config::from_raw`], so a
//! file that `check-config` accepts is a file the daemon accepts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::BackendChoice;
use crate::backend::onnx::{OptLevel, OrtOptions};
use crate::backend::vitis::VitisOptions;
use crate::models::ModelsConfig;
use crate::preprocess::{PreprocessOptions, ResizeMode};
use crate::source::SourceSpec;

/// Default socket path when run by systemd (`RuntimeDirectory=rtinfer`).
pub const DEFAULT_SOCKET: &str = "/run/rtinfer/status.sock";
/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/rtinfer/rtinfer.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

/// The file as written. Every key optional; CLI flags override.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub run: RawRun,
    #[serde(default)]
    pub status: RawStatus,
    #[serde(default)]
    pub onnxruntime: RawOrt,
    #[serde(default)]
    pub preprocess: RawPreprocess,
    #[serde(default)]
    pub models: RawModels,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub vitis: RawVitis,
    #[serde(default)]
    pub tensorrt: crate::backend::tensorrt::config::RawTensorRt,
    #[serde(default)]
    pub power: crate::power::RawPower,
    #[serde(default)]
    pub realtime: crate::rt::RawRealtime,
    #[serde(default)]
    pub pipeline: RawPipeline,
}

/// `[pipeline]`.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// `latest` (default) or `skip`.
    pub overrun: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawRun {
    pub source: Option<String>,
    pub model: Option<PathBuf>,
    pub backend: Option<String>,
    pub fps: Option<f64>,
    pub budget_ms: Option<f64>,
    pub duration_s: Option<f64>,
    pub threads: Option<usize>,
    pub warmup: Option<u32>,
    pub results: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawModels {
    pub watch_dir: Option<PathBuf>,
    pub active: Option<String>,
    pub load_timeout_s: Option<f64>,
    pub warmup: Option<u32>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    pub socket: Option<PathBuf>,
    /// Optional read-only TCP listener (`GET /status`, `/metrics`, `/healthz` only).
    pub tcp: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// error | warn | info | debug | trace (`RUST_LOG`, when set, wins).
    pub level: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawOrt {
    pub library: Option<PathBuf>,
    pub optimization: Option<String>,
    pub spinning: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPreprocess {
    pub resize: Option<String>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
    /// `rgb` (default) or `bgr`.
    pub channel_order: Option<String>,
}

/// `[vitis]`: the VART shim library and the runner's wait timeout.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawVitis {
    pub library: Option<PathBuf>,
    pub timeout_ms: Option<u64>,
}

/// `run.source` when neither the file nor the command line sets one.
pub const DEFAULT_SOURCE: &str = "synthetic://320x240@60";

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    pub source: SourceSpec,
    pub model: Option<PathBuf>,
    pub backend: BackendChoice,
    pub target_fps: f64,
    pub budget: Duration,
    pub duration: Option<Duration>,
    pub threads: usize,
    pub warmup: u32,
    pub socket: PathBuf,
    /// The read-only TCP status listener, off by default.
    pub tcp: Option<std::net::SocketAddr>,
    /// Log level from the config (`RUST_LOG` overrides it).
    pub log_level: log::LevelFilter,
    /// The watch folder, when models are swapped by dropping files.
    pub models: Option<ModelsConfig>,
    /// JSON-lines file of every result, when set.
    pub results: Option<PathBuf>,
    pub ort: OrtOptions,
    pub preprocess: PreprocessOptions,
    pub vitis: VitisOptions,
    pub tensorrt: crate::backend::tensorrt::TensorRtOptions,
    /// `[power]`: the meter, or `None` without one.
    pub power: Option<crate::power::PowerOptions>,
    /// `[realtime]`: scheduling, affinity, memory locking, the hard deadline.
    pub realtime: crate::rt::RealtimeOptions,
    /// `pipeline.overrun`.
    pub overrun: crate::pipeline::Overrun,
}

impl Config {
    /// Reads and validates a file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let raw = read_raw(path)?;
        Config::from_raw(raw, Some(path))
    }

    /// Validates a raw configuration (file values already overlaid with CLI flags).
    pub fn from_raw(raw: RawConfig, path: Option<&Path>) -> Result<Config, ConfigError> {
        let p = path
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("<command line>"));
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: p.clone(),
            key,
            message,
        };
        let r = raw.run;
        let source_uri = r.source.unwrap_or_else(|| DEFAULT_SOURCE.into());
        let source =
            SourceSpec::parse(&source_uri).map_err(|e| invalid("run.source", e.to_string()))?;
        let backend = r
            .backend
            .as_deref()
            .unwrap_or("auto")
            .parse()
            .map_err(|e| invalid("run.backend", e))?;
        let target_fps = r.fps.unwrap_or(60.0);
        if !(target_fps.is_finite() && target_fps > 0.0 && target_fps <= 10_000.0) {
            return Err(invalid(
                "run.fps",
                format!("{target_fps} is not a frame rate in (0, 10000]"),
            ));
        }
        let budget_ms = r.budget_ms.unwrap_or(1000.0 / target_fps);
        if !(budget_ms.is_finite() && budget_ms > 0.0 && budget_ms <= 60_000.0) {
            return Err(invalid(
                "run.budget_ms",
                format!("{budget_ms} is not a budget in (0, 60000] ms"),
            ));
        }
        let duration = match r.duration_s {
            None => None,
            Some(d) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d)),
            Some(0.0) => None,
            Some(d) => {
                return Err(invalid(
                    "run.duration_s",
                    format!("{d} is not a duration in seconds"),
                ));
            }
        };
        let threads = r.threads.unwrap_or(1);
        if threads > 256 {
            return Err(invalid(
                "run.threads",
                format!("{threads} threads is more than 256"),
            ));
        }
        let optimization: OptLevel = match raw.onnxruntime.optimization.as_deref() {
            None => OptLevel::All,
            Some(s) => s
                .parse()
                .map_err(|e| invalid("onnxruntime.optimization", e))?,
        };
        let tensorrt = raw
            .tensorrt
            .check()
            .map_err(|(key, message)| invalid(key, message))?;
        let defaults = PreprocessOptions::default();
        let resize: ResizeMode = match raw.preprocess.resize.as_deref() {
            None => defaults.resize,
            Some(s) => s.parse().map_err(|e: crate::preprocess::PreprocessError| {
                invalid("preprocess.resize", e.to_string())
            })?,
        };
        let channel_order = match raw.preprocess.channel_order.as_deref() {
            None => defaults.channel_order,
            Some(s) => s.parse().map_err(|e: crate::preprocess::PreprocessError| {
                invalid("preprocess.channel_order", e.to_string())
            })?,
        };
        let std = raw.preprocess.std.unwrap_or(defaults.std);
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(invalid(
                "preprocess.std",
                format!("{std:?}: every value must be > 0"),
            ));
        }
        let models = models_config(raw.models, &p, r.warmup.unwrap_or(20), backend)?;
        let tcp = match raw.status.tcp.as_deref() {
            None | Some("") => None,
            Some(a) => Some(a.parse().map_err(|e| {
                invalid("status.tcp", format!("'{a}' is not an address:port ({e})"))
            })?),
        };
        let log_level = match raw.log.level.as_deref() {
            None => log::LevelFilter::Info,
            Some(l) => l.parse().map_err(|_| {
                invalid(
                    "log.level",
                    format!("'{l}' is not one of off, error, warn, info, debug, trace"),
                )
            })?,
        };
        let vitis_timeout_ms = raw.vitis.timeout_ms.unwrap_or(1000);
        if !(1..=600_000).contains(&vitis_timeout_ms) {
            return Err(invalid(
                "vitis.timeout_ms",
                format!("{vitis_timeout_ms} is not a timeout in [1, 600000] ms"),
            ));
        }
        let power = crate::power::PowerOptions::from_raw(raw.power)
            .map_err(|(key, message)| invalid(key, message))?;
        let realtime = crate::rt::RealtimeOptions::from_raw(&raw.realtime)
            .map_err(|(key, message)| invalid(key, message))?;
        let overrun = match raw.pipeline.overrun.as_deref() {
            None => crate::pipeline::Overrun::Latest,
            Some(o) => o.parse().map_err(|e| invalid("pipeline.overrun", e))?,
        };
        Ok(Config {
            path: path.map(Path::to_path_buf),
            source,
            model: r.model,
            backend,
            target_fps,
            budget: Duration::from_secs_f64(budget_ms / 1000.0),
            duration,
            threads,
            warmup: r.warmup.unwrap_or(20),
            models,
            tcp,
            log_level,
            results: r.results,
            socket: raw
                .status
                .socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            ort: OrtOptions {
                library: raw.onnxruntime.library,
                optimization,
                spinning: raw.onnxruntime.spinning.unwrap_or(false),
                cpus: realtime.cpus.clone().unwrap_or_default(),
            },
            preprocess: PreprocessOptions {
                resize,
                mean: raw.preprocess.mean.unwrap_or(defaults.mean),
                std,
                channel_order,
                ..defaults
            },
            vitis: VitisOptions {
                library: raw.vitis.library,
                timeout: Duration::from_millis(vitis_timeout_ms),
            },
            tensorrt,
            power,
            overrun,
            realtime,
        })
    }
}

/// `[models]`: the watch folder is on when `watch_dir` is set. The warm-up count defaults to
/// `run.warmup`; the load timeout to 60 s (an ONNX Runtime load; a TensorRT engine build wants
/// more, e.g. 1800).
/// `models.load_timeout_s` when unset: a minute, or half an hour when every model is a TensorRT
/// engine that may be built on the board (minutes on a Xavier).
pub const DEFAULT_LOAD_TIMEOUT_S: f64 = 60.0;
pub const DEFAULT_TENSORRT_LOAD_TIMEOUT_S: f64 = 1800.0;

fn models_config(
    raw: RawModels,
    path: &Path,
    warmup: u32,
    backend: BackendChoice,
) -> Result<Option<ModelsConfig>, ConfigError> {
    let invalid = |key: &'static str, message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        key,
        message,
    };
    let Some(watch_dir) = raw.watch_dir else {
        if raw.active.is_some() {
            return Err(invalid("models.active", "needs models.watch_dir".into()));
        }
        return Ok(None);
    };
    let timeout = raw.load_timeout_s.unwrap_or(match backend {
        BackendChoice::Only(crate::backend::BackendKind::TensorRt) => {
            DEFAULT_TENSORRT_LOAD_TIMEOUT_S
        }
        _ => DEFAULT_LOAD_TIMEOUT_S,
    });
    if !(timeout.is_finite() && timeout > 0.0 && timeout <= 86_400.0) {
        return Err(invalid(
            "models.load_timeout_s",
            format!("{timeout} is not a timeout in (0, 86400] s"),
        ));
    }
    if let Some(a) = &raw.active
        && (a.contains('/') || a.is_empty())
    {
        return Err(invalid(
            "models.active",
            format!("'{a}' must be a file name in the watch folder"),
        ));
    }
    Ok(Some(ModelsConfig {
        watch_dir,
        active: raw.active,
        load_timeout: Duration::from_secs_f64(timeout),
        warmup: raw.warmup.unwrap_or(warmup),
    }))
}

/// The `section.key` names whose values differ between two raw configurations (what a reload
/// changes).
pub fn changed_keys(old: &RawConfig, new: &RawConfig) -> Vec<String> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return vec!["<config>".into()];
    };
    let mut out = Vec::new();
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        for (section, av) in a {
            let bv = b.get(section).cloned().unwrap_or_default();
            let (Some(ao), Some(bo)) = (av.as_object(), bv.as_object()) else {
                continue;
            };
            for (key, x) in ao {
                if bo.get(key) != Some(x) {
                    out.push(format!("{section}.{key}"));
                }
            }
        }
    }
    out.sort();
    out
}

/// Parses a file into its raw form; syntax errors and unknown keys carry line and column.
pub fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_raw(&text, path)
}

/// Parses TOML text into its raw form.
pub fn parse_raw(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("line {line}, column {col}: {}", e.message()),
        }
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_budget_from_fps() {
        let c = Config::from_raw(RawConfig::default(), None).expect("defaults are valid");
        assert!((c.budget.as_secs_f64() * 1000.0 - 16.6667).abs() < 1e-3);
        let mut raw = RawConfig::default();
        raw.run.fps = Some(30.0);
        let c = Config::from_raw(raw, None).expect("valid");
        assert!((c.budget.as_secs_f64() * 1000.0 - 33.333).abs() < 1e-2);
        assert!(!c.ort.spinning, "spinning must be off by default");
    }

    #[test]
    fn changed_keys_names_each_changed_leaf() {
        let a = parse_raw(
            "[run]\nfps = 60\n[status]\nsocket = \"/a\"\n",
            Path::new("a"),
        )
        .expect("a");
        let b = parse_raw(
            "[run]\nfps = 30\nbudget_ms = 5\n[status]\nsocket = \"/a\"\n",
            Path::new("b"),
        )
        .expect("b");
        assert_eq!(
            changed_keys(&a, &b),
            vec!["run.budget_ms".to_string(), "run.fps".to_string()]
        );
        assert!(changed_keys(&a, &a).is_empty());
    }

    #[test]
    fn unknown_key_reports_line_and_column() {
        let e = parse_raw("[run]\nfps = 60\nbugdet_ms = 5\n", Path::new("x.toml")).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("line 3, column 1"), "{s}");
        assert!(s.contains("bugdet_ms"), "{s}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let raw = parse_raw("[run]\nbudget_ms = -1\n", Path::new("x.toml")).expect("parses");
        let e = Config::from_raw(raw, Some(Path::new("x.toml"))).unwrap_err();
        assert!(e.to_string().contains("run.budget_ms"), "{e}");
        let raw =
            parse_raw("[run]\nsource = \"bogus://x\"\n", Path::new("x.toml")).expect("parses");
        assert!(
            Config::from_raw(raw, None)
                .unwrap_err()
                .to_string()
                .contains("run.source")
        );
    }

    #[test]
    fn the_load_timeout_defaults_to_half_an_hour_for_tensorrt_builds() {
        let timeout = |text: &str| {
            let raw = parse_raw(text, Path::new("x")).unwrap();
            Config::from_raw(raw, None)
                .expect("valid")
                .models
                .expect("watch folder")
                .load_timeout
        };
        let dir = "[models]\nwatch_dir = \"/tmp/m\"\n";
        assert_eq!(timeout(dir), Duration::from_secs(60));
        let trt = format!("[run]\nbackend = \"tensorrt\"\n{dir}");
        assert_eq!(timeout(&trt), Duration::from_secs(1800));
        let set = format!("[run]\nbackend = \"tensorrt\"\n{dir}load_timeout_s = 90\n");
        assert_eq!(timeout(&set), Duration::from_secs(90));
    }

    #[test]
    fn channel_order_is_read_and_checked() {
        let raw = parse_raw("[preprocess]\nchannel_order = \"bgr\"\n", Path::new("x")).unwrap();
        let c = Config::from_raw(raw, None).expect("valid");
        assert_eq!(
            c.preprocess.channel_order,
            crate::preprocess::ChannelOrder::Bgr
        );
        let raw = parse_raw("[preprocess]\nchannel_order = \"brg\"\n", Path::new("x")).unwrap();
        let e = Config::from_raw(raw, None).unwrap_err().to_string();
        assert!(
            e.contains("preprocess.channel_order") && e.contains("'brg'"),
            "{e}"
        );
    }
}
