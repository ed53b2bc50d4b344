//! Configuration: a TOML file and CLI overrides become one validated [`Config`].
//!
//! Two levels, as in the style guide: `Raw*` structs mirror the file (serde, unknown keys are
//! errors with line and column), and [`Config`] holds only checked values. Each section is checked
//! beside its own option type (`RawPower::check` → `PowerOptions` in `power/`, `RawTensorRt::check`
//! in `backend/tensorrt/config.rs`, ...), returning an [`InvalidKey`]; [`Config::from_raw`] only
//! assembles them and names the file. `check-config`, start-up and SIGHUP reload all go through
//! [`Config::from_file`] / [`Config::from_raw`], so a file that `check-config` accepts is a file the
//! daemon accepts. This module imports option types only: nothing below it sees a `Config`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::onnx::RawOrt;
use crate::backend::tensorrt::config::RawTensorRt;
use crate::backend::vitis::RawVitis;
use crate::backend::{BackendChoice, RawModel, Settings};
use crate::governor::{GovernorConfig, RawGovernor};
use crate::invalid_key::InvalidKey;
use crate::models::{ModelsConfig, RawModels};
use crate::mqtt::{MqttOptions, RawMqtt};
use crate::pipeline::{Overrun, RawPipeline};
use crate::postprocess::RawPostprocess;
use crate::power::{PowerOptions, RawPower};
use crate::preprocess::RawPreprocess;
use crate::rt::{RawRealtime, RealtimeOptions};
use crate::source::SourceSpec;
use crate::units;

/// Default socket path when run by systemd (`RuntimeDirectory=rtinfer`).
pub const DEFAULT_SOCKET: &str = "/run/rtinfer/status.sock";
/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/rtinfer/rtinfer.toml";
/// `run.source` when neither the file nor the command line sets one.
pub const DEFAULT_SOURCE: &str = "synthetic://320x240@60";

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
    pub tensorrt: RawTensorRt,
    #[serde(default)]
    pub power: RawPower,
    #[serde(default)]
    pub realtime: RawRealtime,
    #[serde(default)]
    pub pipeline: RawPipeline,
    #[serde(default)]
    pub model: RawModel,
    #[serde(default)]
    pub postprocess: RawPostprocess,
    #[serde(default)]
    pub governor: RawGovernor,
    #[serde(default)]
    pub mqtt: RawMqtt,
}

/// `[run]` as written.
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

/// `[status]` as written.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    pub socket: Option<PathBuf>,
    /// Optional read-only TCP listener (`GET /status`, `/metrics`, `/healthz` only).
    pub tcp: Option<String>,
}

/// `[log]` as written.
#[derive(Debug, Default, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// error | warn | info | debug | trace (`RUST_LOG`, when set, wins).
    pub level: Option<String>,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, if any.
    pub path: Option<PathBuf>,
    pub source: SourceSpec,
    pub model: Option<PathBuf>,
    pub target_fps: f64,
    pub budget: Duration,
    pub duration: Option<Duration>,
    pub warmup: u32,
    /// JSON-lines file of every result, when set.
    pub results: Option<PathBuf>,
    /// How models are opened: `run.backend`, `run.threads` and the runtimes' own sections.
    pub backend: Settings,
    pub socket: PathBuf,
    /// The read-only TCP status listener, off by default.
    pub tcp: Option<std::net::SocketAddr>,
    /// Log level from the config (`RUST_LOG` overrides it).
    pub log_level: log::LevelFilter,
    /// The watch folder, when models are swapped by dropping files.
    pub models: Option<ModelsConfig>,
    /// `[power]`: the meter, or `None` without one.
    pub power: Option<PowerOptions>,
    /// `[realtime]`: scheduling, affinity, memory locking, the hard deadline.
    pub realtime: RealtimeOptions,
    /// `pipeline.overrun`.
    pub overrun: Overrun,
    /// `[governor]`, when enabled.
    pub governor: Option<GovernorConfig>,
    /// `[mqtt]`: the broker results are published to, if any.
    pub mqtt: Option<MqttOptions>,
}

/// `[run]`, checked: what [`Config`] takes from it.
struct Run {
    source: SourceSpec,
    model: Option<PathBuf>,
    backend: BackendChoice,
    target_fps: f64,
    budget: Duration,
    duration: Option<Duration>,
    threads: usize,
    warmup: u32,
    results: Option<PathBuf>,
}

impl RawRun {
    fn check(self) -> Result<Run, InvalidKey> {
        let source_uri = self.source.unwrap_or_else(|| DEFAULT_SOURCE.into());
        let source = SourceSpec::parse(&source_uri)
            .map_err(|e| InvalidKey::new("run.source", e.to_string()))?;
        let backend = self
            .backend
            .as_deref()
            .unwrap_or("auto")
            .parse()
            .map_err(|e| InvalidKey::new("run.backend", e))?;
        let target_fps = units::rate(self.fps.unwrap_or(60.0), 10_000.0)
            .map_err(|e| InvalidKey::new("run.fps", e))?;
        // The default budget of a slow rate is capped at the key's own limit.
        let budget_ms = self
            .budget_ms
            .unwrap_or((1000.0 / target_fps).min(60_000.0));
        let budget = units::millis(budget_ms, 0.0, 60_000.0)
            .map_err(|e| InvalidKey::new("run.budget_ms", format!("budget {e}")))?;
        let duration = match self.duration_s {
            None | Some(0.0) => None,
            Some(d) => Some(
                units::seconds(d, 0.0, units::MAX_SECONDS)
                    .map_err(|e| InvalidKey::new("run.duration_s", format!("duration {e}")))?,
            ),
        };
        let threads = self.threads.unwrap_or(1);
        if threads > 256 {
            return Err(InvalidKey::new(
                "run.threads",
                format!("{threads} threads is more than 256"),
            ));
        }
        Ok(Run {
            source,
            model: self.model,
            backend,
            target_fps,
            budget,
            duration,
            threads,
            warmup: self.warmup.unwrap_or(20),
            results: self.results,
        })
    }
}

impl RawStatus {
    /// The socket path and the TCP listener, if any.
    fn check(self) -> Result<(PathBuf, Option<std::net::SocketAddr>), InvalidKey> {
        let tcp = match self.tcp.as_deref() {
            None | Some("") => None,
            Some(a) => Some(a.parse().map_err(|e| {
                InvalidKey::new("status.tcp", format!("'{a}' is not an address:port ({e})"))
            })?),
        };
        let socket = self.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
        if socket.as_os_str().is_empty() || socket.file_name().is_none() {
            return Err(InvalidKey::new(
                "status.socket",
                format!("'{}' is not a socket file path", socket.display()),
            ));
        }
        Ok((socket, tcp))
    }
}

impl RawLog {
    fn check(self) -> Result<log::LevelFilter, InvalidKey> {
        match self.level.as_deref() {
            None => Ok(log::LevelFilter::Info),
            Some(l) => l.parse().map_err(|_| {
                InvalidKey::new(
                    "log.level",
                    format!("'{l}' is not one of off, error, warn, info, debug, trace"),
                )
            }),
        }
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let raw = read_raw(path)?;
        Config::from_raw(raw, Some(path))
    }

    /// Validates a raw configuration (file values already overlaid with CLI flags): each section
    /// checks itself; an error names the file (or `<command line>`) and the key.
    pub fn from_raw(raw: RawConfig, path: Option<&Path>) -> Result<Config, ConfigError> {
        let invalid = |e: InvalidKey| ConfigError::Invalid {
            path: path.map_or_else(|| PathBuf::from("<command line>"), Path::to_path_buf),
            key: e.key,
            message: e.message,
        };
        let run = raw.run.check().map_err(invalid)?;
        let mut ort = raw.onnxruntime.check().map_err(invalid)?;
        let tensorrt = raw.tensorrt.check().map_err(invalid)?;
        let preprocess = raw.preprocess.check().map_err(invalid)?;
        let models = raw.models.check(run.warmup, run.backend).map_err(invalid)?;
        let (socket, tcp) = raw.status.check().map_err(invalid)?;
        let log_level = raw.log.check().map_err(invalid)?;
        let vitis = raw.vitis.check().map_err(invalid)?;
        let power = raw.power.check().map_err(invalid)?;
        let realtime = raw.realtime.check().map_err(invalid)?;
        let overrun = raw.pipeline.check().map_err(invalid)?;
        let input_shape = raw.model.check().map_err(invalid)?;
        let postprocess = raw.postprocess.check().map_err(invalid)?;
        let pins_model = if run.model.is_some() {
            Some("run.model")
        } else if models.as_ref().is_some_and(|m| m.active.is_some()) {
            Some("models.active")
        } else {
            None
        };
        let governor = raw
            .governor
            .check(models.is_some(), pins_model)
            .map_err(invalid)?;
        let mqtt = raw.mqtt.check().map_err(invalid)?;
        ort.cpus = realtime.cpus.clone().unwrap_or_default();
        Ok(Config {
            path: path.map(Path::to_path_buf),
            source: run.source,
            model: run.model,
            target_fps: run.target_fps,
            budget: run.budget,
            duration: run.duration,
            warmup: run.warmup,
            results: run.results,
            backend: Settings {
                choice: run.backend,
                threads: run.threads,
                ort,
                tensorrt,
                vitis,
                preprocess,
                input_shape,
                postprocess,
            },
            socket,
            tcp,
            log_level,
            models,
            power,
            realtime,
            overrun,
            governor,
            mqtt,
        })
    }
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

/// Every `section.key` of the file format (what [`changed_keys`] can name).
pub fn all_keys() -> Vec<String> {
    let Ok(v) = serde_json::to_value(RawConfig::default()) else {
        return Vec::new();
    };
    let mut out: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(section, keys)| {
            keys.as_object()
                .into_iter()
                .flatten()
                .map(move |(key, _)| format!("{section}.{key}"))
        })
        .collect();
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
    let error = |e: &toml::de::Error, key: Option<String>| {
        // The key path is said when it adds something: a syntax error has none, and a position
        // alone can point at the start of a table that holds the bad key deep inside.
        let key = key.filter(|k| !k.is_empty() && k != "?");
        let message = match (e.span().map(|s| line_col(text, s.start)), key) {
            (Some((line, col)), Some(k)) => {
                format!("line {line}, column {col}: {k}: {}", e.message())
            }
            (Some((line, col)), None) => format!("line {line}, column {col}: {}", e.message()),
            (None, Some(k)) => format!("{k}: {}", e.message()),
            (None, None) => e.message().to_string(),
        };
        ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        }
    };
    let de = toml::de::Deserializer::parse(text).map_err(|e| error(&e, None))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        error(e.inner(), Some(key))
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
        assert!(!c.backend.ort.spinning, "spinning must be off by default");
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
    fn filter_fill_and_align_are_read_and_checked() {
        use crate::preprocess::{Align, Edge, Fill, Filter};
        let ok = |text: &str| {
            let raw = parse_raw(&format!("[preprocess]\n{text}"), Path::new("x")).unwrap();
            Config::from_raw(raw, None)
                .expect("valid")
                .backend
                .preprocess
        };
        let p = ok("resize = \"letterbox\"\nfilter = \"bilinear-opencv\"\n\
                    fill = [114, 114, 114]\nalign = \"top-left\"\n");
        assert_eq!(p.filter, Filter::BilinearOpenCv);
        assert_eq!(p.fill, Fill::Rgb([114, 114, 114]));
        assert_eq!(p.align, Align::TOP_LEFT);
        let p = ok("resize = \"letterbox\"\nfill = \"mean\"\nalign = \"right\"\n");
        assert_eq!(
            (p.fill, p.align.x, p.align.y),
            (Fill::Mean, Edge::End, Edge::Center)
        );
        // Explicit defaults are fine with any resize mode.
        let p = ok("filter = \"nearest-opencv\"\nfill = \"mean\"\nalign = \"center\"\n");
        assert_eq!(p.filter, Filter::NearestOpenCv);

        let err = |text: &str| {
            let raw = match parse_raw(&format!("[preprocess]\n{text}"), Path::new("x")) {
                Ok(raw) => raw,
                Err(e) => return e.to_string(),
            };
            Config::from_raw(raw, None).unwrap_err().to_string()
        };
        for (text, key, names) in [
            ("filter = \"cubic-ish\"", "preprocess.filter", "'cubic-ish'"),
            (
                "resize = \"letterbox\"\nalign = \"middle\"",
                "preprocess.align",
                "'middle'",
            ),
            (
                "resize = \"letterbox\"\nfill = \"grey\"",
                "preprocess.fill",
                "'grey'",
            ),
            (
                "resize = \"letterbox\"\nfill = [0, 300, 0]",
                "preprocess.fill",
                "300",
            ),
            (
                "resize = \"letterbox\"\nfill = [0.5, 0, 0]",
                "preprocess.fill",
                "0.5",
            ),
            (
                "resize = \"letterbox\"\nfill = [1, 2]",
                "preprocess.fill",
                "[1.0, 2.0]",
            ),
            ("align = \"top-left\"", "preprocess.align", "letterbox"),
            (
                "resize = \"center-crop\"\nfill = [0, 0, 0]",
                "preprocess.fill",
                "center-crop",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(key) && e.contains(names), "{text}: {e}");
        }
        // A fill of the wrong type is a parse error that says what is expected.
        let e = err("resize = \"letterbox\"\nfill = true");
        assert!(
            e.contains("fill") && e.contains("\"mean\" or three integers"),
            "{e}"
        );
    }

    #[test]
    fn channel_order_is_read_and_checked() {
        let raw = parse_raw("[preprocess]\nchannel_order = \"bgr\"\n", Path::new("x")).unwrap();
        let c = Config::from_raw(raw, None).expect("valid");
        assert_eq!(
            c.backend.preprocess.channel_order,
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
