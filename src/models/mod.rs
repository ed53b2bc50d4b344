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
#[cfg(test)]
pub(crate) mod test_engine;
pub mod watch;

pub use prepare::{LoadHandle, PrepareError, Prepared, prepare};

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
        // A folder that does not exist yet is waited for; anything else that is not a folder is
        // refused here, so check-config says what run would find.
        if watch_dir.as_os_str().is_empty() {
            return Err(InvalidKey::new("models.watch_dir", "an empty path"));
        }
        if watch_dir.exists() && !watch_dir.is_dir() {
            return Err(InvalidKey::new(
                "models.watch_dir",
                format!("{} is not a folder", watch_dir.display()),
            ));
        }
        let load_timeout = crate::units::seconds(timeout, 0.0, 86_400.0)
            .map_err(|e| InvalidKey::new("models.load_timeout_s", format!("timeout {e}")))?;
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
            load_timeout,
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
    if crate::backend::labels::is_label_file(path) {
        return Kind::Ignored("class names, read when their model loads");
    }
    match BackendKind::for_path(path) {
        Some(k) => Kind::Model(k),
        None => Kind::Ignored("not a model extension (.onnx, .engine, .plan, .xmodel)"),
    }
}

/// The symlink policy of the watch folder: a regular file, or a symlink that resolves to a file
/// inside the folder (a release tool's `current.onnx -> v42.onnx`), is a model; a symlink that
/// leads out of the folder is refused with this reason. The folder is the trust boundary (its
/// permissions are what the operator set up); a link out of it could put any file the daemon can
/// read into service. Listing (`GET /models`) and loading both ask this one function.
pub fn outside_folder(dir: &Path, path: &Path) -> Option<String> {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return None;
    }
    let (Ok(dir), Ok(target)) = (std::fs::canonicalize(dir), std::fs::canonicalize(path)) else {
        return Some("a symlink that does not resolve".into());
    };
    (!target.starts_with(&dir)).then(|| {
        format!(
            "a symlink to {}, outside the watch folder (only links within it are followed)",
            target.display()
        )
    })
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
    /// The `POST /models/NAME/activate` queued and not yet taken by the loader.
    queued_activation: Option<String>,
    /// Abandoned loads that could not be cancelled and still run (file names).
    pub stuck_loads: Vec<String>,
    /// Why the loader takes no new load now, when it waits for stuck loads to end.
    pub blocked: Option<String>,
}

/// At most this many per-file states are kept (a folder with more model files than this is
/// pathological); past it, states of files other than the active and loading ones are dropped,
/// which at worst tries such a file once more.
pub const MAX_FILE_STATES: usize = 4096;

/// Why an activation was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("{name} is already queued for activation")]
    AlreadyQueued { name: String },
    #[error("not queued: {why}")]
    Blocked { why: String },
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
        if self.states.len() > MAX_FILE_STATES {
            self.states.retain(|n, (s, _)| {
                n == name || matches!(s, FileState::Active | FileState::Loading)
            });
            log::debug!(
                "more than {MAX_FILE_STATES} per-file states: kept the active and loading ones"
            );
        }
    }

    /// Drops the state of a file that left the folder (the active one keeps it: it serves).
    pub fn forget(&mut self, name: &str) {
        if !matches!(
            self.state(name),
            Some(FileState::Active | FileState::Loading)
        ) {
            self.states.remove(name);
        }
    }

    /// How many per-file states are kept.
    pub fn file_states(&self) -> usize {
        self.states.len()
    }

    /// Queues `POST /models/NAME/activate`: the newest request wins (returns the one it
    /// replaced); the same name twice before the loader took it is refused.
    pub fn queue_activation(&mut self, name: &str) -> Result<Option<String>, QueueError> {
        if let Some(why) = &self.blocked {
            return Err(QueueError::Blocked { why: why.clone() });
        }
        if self.queued_activation.as_deref() == Some(name) {
            return Err(QueueError::AlreadyQueued { name: name.into() });
        }
        Ok(self.queued_activation.replace(name.to_string()))
    }

    /// The loader took the activation of `name` off the queue.
    pub fn activation_taken(&mut self, name: &str) {
        if self.queued_activation.as_deref() == Some(name) {
            self.queued_activation = None;
        }
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
                // Symlinks included (followed), as the loader sees them.
                rd.flatten()
                    .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.is_file()))
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
                (Kind::Model(_), None) => match outside_folder(dir, &path) {
                    Some(why) => FileState::Rejected(why),
                    None => FileState::Candidate,
                },
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
        json!({"watch_dir": dir, "exists": dir.is_dir(), "watching": self.watching, "files": files,
            "stuck_loads": self.stuck_loads, "blocked": self.blocked})
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
            "/m/a.labels.txt",
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

    #[test]
    fn per_file_states_are_capped() {
        let mut r = Registry::default();
        r.set("live.onnx", FileState::Active, None);
        for i in 0..(MAX_FILE_STATES + 10) {
            r.set(
                &format!("bad{i}.onnx"),
                FileState::Rejected("x".into()),
                None,
            );
        }
        assert!(r.file_states() <= MAX_FILE_STATES);
        assert_eq!(r.state("live.onnx"), Some(&FileState::Active));
    }

    #[test]
    fn the_newest_activation_wins_and_a_repeat_is_refused() {
        let mut r = Registry::default();
        assert_eq!(r.queue_activation("a.onnx"), Ok(None));
        assert!(matches!(
            r.queue_activation("a.onnx"),
            Err(QueueError::AlreadyQueued { .. })
        ));
        assert_eq!(r.queue_activation("b.onnx"), Ok(Some("a.onnx".into())));
        r.activation_taken("b.onnx");
        assert_eq!(r.queue_activation("b.onnx"), Ok(None));
    }
}
