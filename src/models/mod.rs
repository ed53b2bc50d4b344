//! The watch folder: which files are models, what became of each, and the history of swaps.
//!
//! Users swap models on a running board by dropping files into a folder. Two rules keep that safe:
//! a file is considered only once it is complete (a close after writing, or a rename into the
//! folder — the atomic way), and a candidate that fails to load, validate or warm up changes
//! nothing but the history: the current model keeps serving. The watcher ([`watch`]) turns kernel
//! events into candidates; the loader ([`loader`]) loads, warms up and hands engines to the
//! pipeline between two frames; this module holds the shared bookkeeping both report through
//! `/status` (`swaps`) and `GET /models`.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::backend::{BackendChoice, BackendKind};
use crate::invalid_key::InvalidKey;

pub mod loader;
pub mod prepare;
pub mod serving;
pub mod watch;

pub use prepare::{PrepareError, Prepared, prepare};

/// Swaps kept in the history (newest last).
pub const HISTORY: usize = 100;

/// Watch-folder settings (config section `[models]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelsConfig {
    pub watch_dir: PathBuf,
    /// A file name pinned as the active model at start (instead of the newest by mtime).
    pub active: Option<String>,
    /// How long a load (open, validate, warm up) may take before it is abandoned.
    pub load_timeout: Duration,
    /// Warm-up runs before a model goes live.
    pub warmup: u32,
}

/// `models.load_timeout_s` when unset: a minute (an ONNX Runtime load), or half an hour when
/// every model is a TensorRT engine that may be built on the board (minutes on a Xavier).
pub const DEFAULT_LOAD_TIMEOUT_S: f64 = 60.0;
pub const DEFAULT_TENSORRT_LOAD_TIMEOUT_S: f64 = 1800.0;

/// `[models]` as written.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawModels {
    pub watch_dir: Option<PathBuf>,
    pub active: Option<String>,
    pub load_timeout_s: Option<f64>,
    pub warmup: Option<u32>,
}

impl RawModels {
    /// Checks the section: the watch folder is on when `watch_dir` is set. The warm-up count
    /// defaults to `run_warmup` (`run.warmup`); the load timeout to
    /// [`DEFAULT_TENSORRT_LOAD_TIMEOUT_S`] under `--backend tensorrt`, else
    /// [`DEFAULT_LOAD_TIMEOUT_S`].
    pub fn check(
        self,
        run_warmup: u32,
        backend: BackendChoice,
    ) -> Result<Option<ModelsConfig>, InvalidKey> {
        let Some(watch_dir) = self.watch_dir else {
            if self.active.is_some() {
                return Err(InvalidKey::new("models.active", "needs models.watch_dir"));
            }
            return Ok(None);
        };
        let timeout = self.load_timeout_s.unwrap_or(match backend {
            BackendChoice::Only(BackendKind::TensorRt) => DEFAULT_TENSORRT_LOAD_TIMEOUT_S,
            _ => DEFAULT_LOAD_TIMEOUT_S,
        });
        if !(timeout.is_finite() && timeout > 0.0 && timeout <= 86_400.0) {
            return Err(InvalidKey::new(
                "models.load_timeout_s",
                format!("{timeout} is not a timeout in (0, 86400] s"),
            ));
        }
        if let Some(a) = &self.active
            && (a.contains('/') || a.is_empty())
        {
            return Err(InvalidKey::new(
                "models.active",
                format!("'{a}' must be a file name in the watch folder"),
            ));
        }
        Ok(Some(ModelsConfig {
            watch_dir,
            active: self.active,
            load_timeout: Duration::from_secs_f64(timeout),
            warmup: self.warmup.unwrap_or(run_warmup),
        }))
    }
}

/// What a file in the folder is to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Serving frames now.
    Active,
    /// Served before, replaced since.
    LoadedBefore,
    /// Being loaded and warmed up.
    Loading,
    /// Tried and refused; the reason says why.
    Rejected(String),
    /// Loaded and measured, a rung of the governor's ladder, not serving now.
    Ladder,
    /// Not a model file (dotfile, temporary, unknown extension).
    Ignored(String),
    /// A model file not tried yet.
    Candidate,
}

impl FileState {
    fn name(&self) -> &'static str {
        match self {
            FileState::Active => "active",
            FileState::LoadedBefore => "loaded-before",
            FileState::Loading => "loading",
            FileState::Rejected(_) => "rejected",
            FileState::Ladder => "ladder",
            FileState::Ignored(_) => "ignored",
            FileState::Candidate => "candidate",
        }
    }
}

/// Whether a file name can be a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Model(BackendKind),
    Ignored(&'static str),
}

/// Dotfiles, `*.tmp`, `*.part` (files still being written) and unknown extensions are not models.
pub fn classify(path: &Path) -> Kind {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Kind::Ignored("file name is not UTF-8");
    };
    if name.starts_with('.') {
        return Kind::Ignored("hidden file (write to a dotfile, then rename into place)");
    }
    if name.ends_with(".tmp") || name.ends_with(".part") {
        return Kind::Ignored("temporary file");
    }
    match BackendKind::for_path(path) {
        Some(k) => Kind::Model(k),
        None => Kind::Ignored("not a model extension (.onnx, .engine, .plan, .xmodel)"),
    }
}

/// One entry of the `swaps` history.
#[derive(Debug, Clone, PartialEq)]
pub struct SwapRecord {
    pub at: String,
    pub from: Option<String>,
    pub to: String,
    pub ok: bool,
    pub reason: Option<String>,
    pub load_ms: Option<f64>,
    pub warmup_p50_ms: Option<f64>,
}

impl SwapRecord {
    pub fn to_json(&self) -> Value {
        json!({
            "at": self.at,
            "from": self.from,
            "to": self.to,
            "result": if self.ok { "ok" } else { "rejected" },
            "reason": self.reason,
            "load_ms": self.load_ms,
            "warmup_p50_ms": self.warmup_p50_ms,
        })
    }
}

/// The identity of a file version: a candidate is tried again only when this changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub mtime: Option<SystemTime>,
    pub len: u64,
}

impl Version {
    pub fn of(path: &Path) -> Option<Version> {
        let m = std::fs::metadata(path).ok()?;
        m.is_file().then(|| Version {
            mtime: m.modified().ok(),
            len: m.len(),
        })
    }
}

/// Per-file states and the swap history.
#[derive(Debug, Default)]
pub struct Registry {
    /// Whether the folder is being watched now (it exists and inotify follows it).
    pub watching: bool,
    states: HashMap<String, (FileState, Option<Version>)>,
    swaps: VecDeque<SwapRecord>,
    swaps_ok: u64,
    swaps_rejected: u64,
}

impl Registry {
    pub fn set(&mut self, name: &str, state: FileState, version: Option<Version>) {
        if state == FileState::Active {
            for (s, _) in self.states.values_mut() {
                if *s == FileState::Active {
                    *s = FileState::LoadedBefore;
                }
            }
        }
        self.states.insert(name.to_string(), (state, version));
    }

    pub fn state(&self, name: &str) -> Option<&FileState> {
        self.states.get(name).map(|(s, _)| s)
    }

    /// Whether this version of `name` was already tried (loaded or rejected).
    pub fn tried(&self, name: &str, version: Option<Version>) -> bool {
        matches!(self.states.get(name), Some((s, v)) if *v == version
            && !matches!(s, FileState::Candidate | FileState::Ignored(_)))
    }

    /// Forgets the per-file states (the watch folder changed); the swap history stays.
    pub fn forget_files(&mut self) {
        self.states.clear();
        self.watching = false;
    }

    pub fn record(&mut self, swap: SwapRecord) {
        if swap.ok {
            self.swaps_ok += 1;
        } else {
            self.swaps_rejected += 1;
        }
        if self.swaps.len() == HISTORY {
            self.swaps.pop_front();
        }
        self.swaps.push_back(swap);
    }

    pub fn swaps(&self) -> impl Iterator<Item = &SwapRecord> {
        self.swaps.iter()
    }

    /// Swaps since start: (ok, rejected), beyond the kept history.
    pub fn swap_totals(&self) -> (u64, u64) {
        (self.swaps_ok, self.swaps_rejected)
    }

    /// `GET /models`: every file in the folder now, with its state.
    pub fn listing(&self, dir: &Path) -> Value {
        let mut files: Vec<Value> = Vec::new();
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let state = match (classify(&path), self.states.get(&name)) {
                (Kind::Ignored(why), _) => FileState::Ignored(why.to_string()),
                (_, Some((s, _))) => s.clone(),
                (Kind::Model(_), None) => FileState::Candidate,
            };
            let reason = match &state {
                FileState::Rejected(r) | FileState::Ignored(r) => Some(r.clone()),
                _ => None,
            };
            let backend = match classify(&path) {
                Kind::Model(k) => Some(k.name()),
                Kind::Ignored(_) => None,
            };
            let size = std::fs::metadata(&path).map(|m| m.len()).ok();
            files.push(
                json!({"name": name, "state": state.name(), "reason": reason,
                "backend": backend, "bytes": size}),
            );
        }
        json!({"watch_dir": dir, "exists": dir.is_dir(), "watching": self.watching, "files": files})
    }
}

/// Every model file in `dir`, sorted by name.
pub fn model_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| matches!(classify(p), Kind::Model(_)) && Version::of(p).is_some())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The newest model file in `dir` by modification time (the model to start with).
pub fn newest_model(dir: &Path) -> Option<PathBuf> {
    let rd = std::fs::read_dir(dir).ok()?;
    rd.flatten()
        .map(|e| e.path())
        .filter(|p| matches!(classify(p), Kind::Model(_)))
        .filter_map(|p| Version::of(&p).map(|v| (v.mtime, p)))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_ignores_temporary_hidden_and_unknown_files() {
        assert_eq!(
            classify(Path::new("/m/a.onnx")),
            Kind::Model(BackendKind::OnnxRuntime)
        );
        assert_eq!(
            classify(Path::new("/m/a.int8.onnx")),
            Kind::Model(BackendKind::OnnxRuntime)
        );
        assert_eq!(
            classify(Path::new("/m/a.plan")),
            Kind::Model(BackendKind::TensorRt)
        );
        assert_eq!(
            classify(Path::new("/m/a.xmodel")),
            Kind::Model(BackendKind::Vitis)
        );
        for p in [
            "/m/.a.onnx",
            "/m/a.onnx.tmp",
            "/m/a.onnx.part",
            "/m/readme.txt",
        ] {
            assert!(matches!(classify(Path::new(p)), Kind::Ignored(_)), "{p}");
        }
    }

    #[test]
    fn one_active_at_a_time_and_history_is_bounded() {
        let mut r = Registry::default();
        r.set("a.onnx", FileState::Active, None);
        r.set("b.onnx", FileState::Active, None);
        assert_eq!(r.state("a.onnx"), Some(&FileState::LoadedBefore));
        assert_eq!(r.state("b.onnx"), Some(&FileState::Active));
        for i in 0..(HISTORY + 5) {
            r.record(SwapRecord {
                at: String::new(),
                from: None,
                to: format!("{i}"),
                ok: i % 2 == 0,
                reason: None,
                load_ms: None,
                warmup_p50_ms: None,
            });
        }
        assert_eq!(r.swaps().count(), HISTORY);
        assert_eq!(
            r.swaps().last().map(|s| s.to.clone()),
            Some(format!("{}", HISTORY + 4))
        );
        let (ok, rej) = r.swap_totals();
        assert_eq!(ok + rej, HISTORY as u64 + 5);
    }

    #[test]
    fn tried_depends_on_the_file_version() {
        let mut r = Registry::default();
        let v1 = Some(Version {
            mtime: None,
            len: 1,
        });
        let v2 = Some(Version {
            mtime: None,
            len: 2,
        });
        r.set("a.onnx", FileState::Rejected("bad".into()), v1);
        assert!(r.tried("a.onnx", v1));
        assert!(!r.tried("a.onnx", v2));
        assert!(!r.tried("b.onnx", v1));
    }
}
