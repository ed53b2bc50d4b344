//! The loader thread: open a candidate, validate it, warm it up, hand it to the pipeline.
//!
//! Everything slow happens here, never on the pipeline thread: the runtime's load (an engine build
//! can take minutes), the preprocessing buffers for the new input size, the warm-up runs, and
//! dropping the old engine (freeing a session takes milliseconds). The pipeline only swaps a
//! pointer between two frames. A load runs on its own worker thread so it can be abandoned when it
//! exceeds `models.load_timeout_s` (a runtime's load cannot be interrupted): its result is
//! discarded when it finally arrives, and no second load starts while one is abandoned.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant, SystemTime};

use super::watch::WatchEvent;
use super::{FileState, Kind, ModelsConfig, SwapRecord, Version, classify, newest_model};
use crate::backend::{Engine, LoadOptions, ModelInfo};
use crate::config::Config;
use crate::daemon::Shared;
use crate::pipeline::Pipeline;
use crate::preprocess::Preprocessor;
use crate::source::PixelFormat;
use crate::time::{MonoTime, ms, rfc3339_now};

/// What the loader is asked to do.
#[derive(Debug)]
pub enum LoaderMsg {
    Watch(WatchEvent),
    /// `POST /models/NAME/activate`: load NAME from the folder again, even if it was tried.
    Activate(String),
}

/// A model ready to go live.
pub struct Prepared {
    pub pipeline: Pipeline,
    pub info: ModelInfo,
    pub load_ms: f64,
    pub warmup_p50_ms: Option<f64>,
}

/// Opens `path` with the backend its extension (or `run.backend`) selects, builds its
/// preprocessing for frames of `frame_size` (so the pipeline's first frame on it allocates
/// nothing), and warms it up `warmup` times. Errors are the reason shown in the history.
pub fn prepare(
    path: &Path,
    cfg: &Config,
    warmup: u32,
    frame_size: (u32, u32, PixelFormat),
) -> Result<Prepared, String> {
    let t0 = Instant::now();
    let backend = crate::daemon::backend_for(cfg.backend, path, cfg).map_err(|e| e.to_string())?;
    let mut engine = backend
        .load(
            path,
            &LoadOptions {
                threads: cfg.threads,
            },
        )
        .map_err(|e| e.to_string())?;
    let info = engine.info().clone();
    if info.classes == 0 {
        return Err(format!(
            "model {}: its output has no scores",
            path.display()
        ));
    }
    let mut pre =
        Preprocessor::new(info.input, cfg.preprocess).map_err(|e| format!("preprocessing: {e}"))?;
    if frame_size.0 > 0 && frame_size.1 > 0 {
        pre.prepare(frame_size.0, frame_size.1, frame_size.2)
            .map_err(|e| format!("preprocessing: {e}"))?;
    }
    let warmup_p50_ms = warm_up(&mut engine, warmup)?;
    let load_ms = ms(t0.elapsed());
    Ok(Prepared {
        pipeline: Pipeline::new(engine, pre),
        info,
        load_ms,
        warmup_p50_ms,
    })
}

/// Runs the engine `n` times and returns the median run time.
fn warm_up(engine: &mut Box<dyn Engine>, n: u32) -> Result<Option<f64>, String> {
    let mut times = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let t = MonoTime::now();
        engine.run().map_err(|e| format!("warm-up: {e}"))?;
        times.push(ms(MonoTime::now().saturating_since(t)));
    }
    times.sort_by(f64::total_cmp);
    Ok(times.get(times.len() / 2).copied())
}

/// The loader thread's state.
pub struct Loader {
    shared: Arc<Shared>,
    cfg: ModelsConfig,
    /// A timed-out load still running; its result is thrown away when it arrives.
    abandoned: Option<Receiver<Result<Prepared, String>>>,
    /// Set on shutdown (or when a reload replaces the watch folder): a load in progress is left
    /// to finish on its own, so SIGTERM during a minutes-long engine build stops at once.
    stop: Arc<AtomicBool>,
}

/// How often a wait for a load looks at `stop`.
const STOP_POLL: Duration = Duration::from_millis(100);

impl Loader {
    pub fn new(shared: Arc<Shared>, cfg: ModelsConfig, stop: Arc<AtomicBool>) -> Loader {
        Loader {
            shared,
            cfg,
            abandoned: None,
            stop,
        }
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
                LoaderMsg::Watch(WatchEvent::Lost) => self.shared.registry().watching = false,
                LoaderMsg::Watch(WatchEvent::Rescan { since }) => {
                    self.shared.registry().watching = true;
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
            let serving = self.shared.model().map(|m| m.path.clone());
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
        if let Some(info) = self.shared.model()
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
            self.shared
                .registry()
                .set(&name, FileState::Ignored(why.to_string()), None);
            return;
        }
        let version = Version::of(path);
        if version.is_none() {
            if force {
                self.reject(
                    &name,
                    format!("{} is not in the watch folder", path.display()),
                    None,
                );
            }
            return;
        }
        if !force && self.shared.registry().tried(&name, version) {
            return;
        }
        if !self.wait_for_abandoned() {
            return;
        }
        self.shared
            .registry()
            .set(&name, FileState::Loading, version);
        log::info!("loading candidate {}", path.display());
        match self.load(path.to_path_buf()) {
            Ok(prepared) => self.go_live(&name, version, prepared),
            Err(_) if self.stopping() => {
                log::info!("stopping: the load of {name} is left unfinished");
                // Not tried: a loader that follows a reload in the same folder takes it again.
                self.shared
                    .registry()
                    .set(&name, FileState::Candidate, version);
            }
            Err(reason) => self.reject(&name, reason, version),
        }
    }

    /// Loads on a worker thread, waiting at most the load timeout.
    fn load(&mut self, path: PathBuf) -> Result<Prepared, String> {
        let (tx, rx) = channel();
        let cfg = self.shared.config.clone();
        let warmup = self.cfg.warmup;
        let frame_size = self.shared.source.frame_size();
        std::thread::Builder::new()
            .name("rtinfer-load".into())
            .spawn(move || {
                crate::rt::run_in_background();
                let _ = tx.send(prepare(&path, &cfg, warmup, frame_size));
            })
            .map_err(|e| format!("cannot start a load thread: {e}"))?;
        let deadline = MonoTime::now().plus(self.cfg.load_timeout);
        loop {
            let left = deadline.saturating_since(MonoTime::now());
            match rx.recv_timeout(left.min(STOP_POLL)) {
                Ok(r) => return r,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err("the load thread panicked".into());
                }
                Err(RecvTimeoutError::Timeout) if self.stopping() => {
                    return Err("stopping".into());
                }
                Err(RecvTimeoutError::Timeout) if left > STOP_POLL => {}
                Err(RecvTimeoutError::Timeout) => {
                    self.abandoned = Some(rx);
                    return Err(format!(
                        "load exceeded models.load_timeout_s = {} s; abandoned (its result will be discarded)",
                        self.cfg.load_timeout.as_secs_f64()
                    ));
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
        let from = self.shared.model().map(|m| m.name.clone());
        let info = p.info.clone();
        let memory = p.pipeline.engine.memory();
        let retired = match self.shared.swap_in(p.pipeline) {
            Ok(old) => old,
            Err(reason) => return self.reject(name, reason, version),
        };
        self.shared.set_model(Some(info.clone()), memory);
        self.shared.registry().set(name, FileState::Active, version);
        self.shared.registry().record(SwapRecord {
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
        // Memory is locked (realtime.lock_memory) once the first model is in the process.
        crate::rt::lock_memory(&self.shared.config.realtime, &self.shared.realtime);
    }

    fn reject(&mut self, name: &str, reason: String, version: Option<Version>) {
        log::warn!("model {name} rejected: {reason}; the current model keeps serving");
        self.shared
            .registry()
            .set(name, FileState::Rejected(reason.clone()), version);
        self.shared.registry().record(SwapRecord {
            at: rfc3339_now(),
            from: self.shared.model().map(|m| m.name.clone()),
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
