//! The loader thread: open a candidate, validate it, warm it up, hand it to the pipeline.
//!
//! Everything slow happens here, never on the pipeline thread: the runtime's load (an engine build
//! can take minutes), the preprocessing buffers for the new input size, the warm-up runs, and
//! dropping the old engine (freeing a session takes milliseconds). The pipeline only swaps a
//! pointer between two frames. A load runs on its own worker thread so it can be abandoned when it
//! exceeds `models.load_timeout_s` (a runtime's load cannot be interrupted): its result is
//! discarded when it finally arrives, and no second load starts while one is abandoned.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::serving::{Serving, SwapError};
use super::watch::WatchEvent;
use super::{
    FileState, Kind, ModelsConfig, PrepareError, Prepared, Registry, SwapRecord, Version, classify,
    newest_model,
};
use crate::time::{MonoTime, rfc3339_now};

/// What the loader is asked to do.
#[derive(Debug)]
pub enum LoaderMsg {
    Watch(WatchEvent),
    /// `POST /models/NAME/activate`: load NAME from the folder again, even if it was tried.
    Activate(String),
}

/// Opens a model file into a pipeline ready to go live, warmed up the given number of times (in
/// the daemon: [`super::prepare`] with the backend settings and the source's frame size). Called
/// on a worker thread; may take minutes.
pub type Preparer = Arc<dyn Fn(&Path, u32) -> Result<Prepared, PrepareError> + Send + Sync>;

/// What the loader works with: exactly this, not the daemon.
#[derive(Clone)]
pub struct LoaderContext {
    /// How a candidate becomes a pipeline.
    pub prepare: Preparer,
    /// The model serving now, and the hand-over to the pipeline thread.
    pub serving: Arc<Serving>,
    /// Per-file states and the swap history (`GET /models`, `/status` `swaps`).
    pub registry: Arc<Mutex<Registry>>,
    /// Called after a model went live and the old one was freed (the daemon locks memory then,
    /// `realtime.lock_memory`, once the first model is in the process).
    pub after_swap: Arc<dyn Fn() + Send + Sync>,
}

/// Why a candidate was not swapped in: the reason the history and the log show.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Swap(#[from] SwapError),
    #[error("{} is not in the watch folder", path.display())]
    NotInFolder { path: PathBuf },
    #[error("cannot start a load thread: {0}")]
    Thread(std::io::Error),
    #[error("the load thread panicked")]
    Panicked,
    #[error("stopping")]
    Stopping,
    #[error(
        "load exceeded models.load_timeout_s = {} s; abandoned (its result will be discarded)",
        timeout.as_secs_f64()
    )]
    TimedOut { timeout: Duration },
}

/// The loader thread's state.
pub struct Loader {
    ctx: LoaderContext,
    cfg: ModelsConfig,
    /// A timed-out load still running; its result is thrown away when it arrives.
    abandoned: Option<Receiver<Result<Prepared, PrepareError>>>,
    /// Set on shutdown (or when a reload replaces the watch folder): a load in progress is left
    /// to finish on its own, so SIGTERM during a minutes-long engine build stops at once.
    stop: Arc<AtomicBool>,
}

/// How often a wait for a load looks at `stop`.
const STOP_POLL: Duration = Duration::from_millis(100);

impl Loader {
    pub fn new(ctx: LoaderContext, cfg: ModelsConfig, stop: Arc<AtomicBool>) -> Loader {
        Loader {
            ctx,
            cfg,
            abandoned: None,
            stop,
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.ctx.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Serves `rx` until `stop` is set or every sender is gone.
    pub fn run(mut self, rx: &Receiver<LoaderMsg>) {
        let mut started = false;
        while !self.stopping() {
            let msg = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match msg {
                LoaderMsg::Watch(WatchEvent::Changed(p)) => self.consider(&p, false),
                LoaderMsg::Watch(WatchEvent::Removed(p)) => self.removed(&p),
                LoaderMsg::Watch(WatchEvent::Lost) => self.registry().watching = false,
                LoaderMsg::Watch(WatchEvent::Rescan { since }) => {
                    self.registry().watching = true;
                    self.rescan(!started, since);
                    started = true;
                }
                LoaderMsg::Activate(name) => {
                    let p = self.cfg.watch_dir.join(&name);
                    self.consider(&p, true);
                }
            }
        }
    }

    /// At start (of the daemon, or after a reload changed `[models]`): the pinned model, unless
    /// it already serves or the serving model came from `run.model` outside the folder; else the
    /// newest file not tried in this version. Later (after an overflow or the folder coming
    /// back): the newest file not tried.
    fn rescan(&mut self, first: bool, since: SystemTime) {
        let dir = self.cfg.watch_dir.clone();
        if first && let Some(name) = self.cfg.active.clone() {
            let pinned = dir.join(&name);
            let serving = self.ctx.serving.model().map(|m| m.path.clone());
            match serving {
                Some(p) if p == pinned => {}
                Some(p) if p.parent() != Some(dir.as_path()) => {}
                _ => self.consider(&pinned, true),
            }
            return;
        }
        // Files written after the watch was set up announce themselves with their own close or
        // rename event; only older ones are taken from the scan, so a file still being written
        // is never read half-way.
        if let Some(p) = newest_model(&dir).filter(|p| written_before(p, since)) {
            self.consider(&p, false);
        }
    }

    fn removed(&mut self, path: &Path) {
        if let Some(info) = self.ctx.serving.model()
            && info.path == path
        {
            log::warn!(
                "the active model's file {} was removed; it keeps serving",
                path.display()
            );
        }
    }

    fn consider(&mut self, path: &Path, force: bool) {
        let name = file_name(path);
        if let Kind::Ignored(why) = classify(path) {
            self.registry()
                .set(&name, FileState::Ignored(why.to_string()), None);
            return;
        }
        let version = Version::of(path);
        if version.is_none() {
            if force {
                self.reject(
                    &name,
                    LoadError::NotInFolder {
                        path: path.to_path_buf(),
                    },
                    None,
                );
            }
            return;
        }
        if !force && self.registry().tried(&name, version) {
            return;
        }
        if !self.wait_for_abandoned() {
            return;
        }
        self.registry().set(&name, FileState::Loading, version);
        log::info!("loading candidate {}", path.display());
        match self.load(path.to_path_buf()) {
            Ok(prepared) => self.go_live(&name, version, prepared),
            Err(_) if self.stopping() => {
                log::info!("stopping: the load of {name} is left unfinished");
                // Not tried: a loader that follows a reload in the same folder takes it again.
                self.registry().set(&name, FileState::Candidate, version);
            }
            Err(reason) => self.reject(&name, reason, version),
        }
    }

    /// Loads on a worker thread, waiting at most the load timeout.
    fn load(&mut self, path: PathBuf) -> Result<Prepared, LoadError> {
        let (tx, rx) = channel();
        let prepare = Arc::clone(&self.ctx.prepare);
        let warmup = self.cfg.warmup;
        std::thread::Builder::new()
            .name("rtinfer-load".into())
            .spawn(move || {
                crate::rt::run_in_background();
                let _ = tx.send(prepare(&path, warmup));
            })
            .map_err(LoadError::Thread)?;
        let deadline = MonoTime::now().plus(self.cfg.load_timeout);
        loop {
            let left = deadline.saturating_since(MonoTime::now());
            match rx.recv_timeout(left.min(STOP_POLL)) {
                Ok(r) => return Ok(r?),
                Err(RecvTimeoutError::Disconnected) => return Err(LoadError::Panicked),
                Err(RecvTimeoutError::Timeout) if self.stopping() => {
                    return Err(LoadError::Stopping);
                }
                Err(RecvTimeoutError::Timeout) if left > STOP_POLL => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.abandoned = Some(rx);
                    return Err(LoadError::TimedOut {
                        timeout: self.cfg.load_timeout,
                    });
                }
            }
        }
    }

    /// Waits for an abandoned load to end before starting another (never two at once); false
    /// when stopping meanwhile.
    fn wait_for_abandoned(&mut self) -> bool {
        let Some(rx) = self.abandoned.take() else {
            return true;
        };
        log::info!("waiting for the abandoned load to finish before the next one");
        loop {
            match rx.recv_timeout(STOP_POLL) {
                Ok(_) | Err(RecvTimeoutError::Disconnected) => return true,
                Err(RecvTimeoutError::Timeout) if self.stopping() => {
                    self.abandoned = Some(rx);
                    return false;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn go_live(&mut self, name: &str, version: Option<Version>, p: Prepared) {
        let from = self.ctx.serving.model().map(|m| m.name.clone());
        let info = p.info.clone();
        let retired = match self.ctx.serving.swap_in(p.pipeline) {
            Ok(old) => old,
            Err(e) => return self.reject(name, e.into(), version),
        };
        self.registry().set(name, FileState::Active, version);
        self.registry().record(SwapRecord {
            at: rfc3339_now(),
            from: from.clone(),
            to: info.name.clone(),
            ok: true,
            reason: None,
            load_ms: Some(p.load_ms),
            warmup_p50_ms: p.warmup_p50_ms,
        });
        log::info!(
            "model {} is live (was {}): loaded and warmed up in {:.0} ms, warm-up p50 {}",
            info.name,
            from.as_deref().unwrap_or("none"),
            p.load_ms,
            p.warmup_p50_ms.map_or("-".into(), |v| format!("{v:.3} ms"))
        );
        // The old engine is freed here, on the loader thread, never on the pipeline thread, and
        // the heap it and the load left behind goes back to the kernel.
        drop(retired);
        crate::rt::trim_heap();
        (self.ctx.after_swap)();
    }

    fn reject(&mut self, name: &str, reason: LoadError, version: Option<Version>) {
        let reason = reason.to_string();
        log::warn!("model {name} rejected: {reason}; the current model keeps serving");
        self.registry()
            .set(name, FileState::Rejected(reason.clone()), version);
        self.registry().record(SwapRecord {
            at: rfc3339_now(),
            from: self.ctx.serving.model().map(|m| m.name.clone()),
            to: name.to_string(),
            ok: false,
            reason: Some(reason),
            load_ms: None,
            warmup_p50_ms: None,
        });
    }
}

/// Whether `path` was last modified before `since`.
fn written_before(path: &Path, since: SystemTime) -> bool {
    Version::of(path)
        .and_then(|v| v.mtime)
        .is_some_and(|m| m < since)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
