//! The loader thread: open a candidate, validate it, warm it up, hand it to the pipeline.
//!
//! Everything slow happens here, never on the pipeline thread: the runtime's load (an engine build
//! can take minutes), the preprocessing buffers for the new input size, the warm-up runs, and
//! dropping the old engine (freeing a session takes milliseconds). The pipeline only swaps a
//! pointer between two frames. A load runs on its own worker thread so it can be abandoned when it
//! exceeds `models.load_timeout_s`: its runs (ONNX Runtime's proving run, the warm-up) are
//! terminated through its [`LoadHandle`]; a load that still does not end (a runtime's own load
//! cannot be interrupted) is kept as stuck, shown in `/models` and `/status`, its result
//! discarded when it arrives, and no second load starts while it runs.
//!
//! With the governor on (`[governor] enabled`), the loader still watches, loads and times out,
//! but what becomes of a loaded candidate is the governor's call (it joins the ladder; the
//! governor decides which rung serves), and the governor runs on this thread between messages,
//! so its steps and the folder's swaps never race for the pipeline.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::serving::{Serving, SwapError};
use super::watch::WatchEvent;
use super::{
    FileState, Kind, LoadHandle, ModelsConfig, PrepareError, Prepared, Registry, SwapRecord,
    Version, classify, newest_model,
};
use crate::governor::{Governor, Request};
use crate::pipeline::LoopControl;
use crate::time::{MonoTime, rfc3339_now};

/// What the loader is asked to do.
#[derive(Debug)]
pub enum LoaderMsg {
    Watch(WatchEvent),
    /// `POST /models/NAME/activate`: load NAME from the folder again, even if it was tried.
    Activate(String),
    /// `POST /governor/pin` and `/unpin`.
    Governor(Request),
}

/// Opens a model file into a pipeline ready to go live, warmed up the given number of times (in
/// the daemon: [`super::prepare`] with the backend settings and the source's frame size). Called
/// on a worker thread; may take minutes.
pub type Preparer =
    Arc<dyn Fn(&Path, u32, &LoadHandle) -> Result<Prepared, PrepareError> + Send + Sync>;

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
    /// The pipeline loop's control, when there is one: a swap that finds the serving model's run
    /// stuck cancels it (or says exactly why the swap cannot happen).
    pub pipeline: Option<Arc<LoopControl>>,
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
    #[error("{}: {reason}", path.display())]
    Outside { path: PathBuf, reason: String },
    #[error("cannot start a load thread: {0}")]
    Thread(std::io::Error),
    #[error("the load thread panicked")]
    Panicked,
    #[error("stopping")]
    Stopping,
    #[error(
        "load exceeded models.load_timeout_s = {} s; abandoned ({})",
        timeout.as_secs_f64(),
        match ended {
            true => "it was terminated",
            false => "it cannot be cancelled and still runs; its result will be discarded",
        }
    )]
    TimedOut { timeout: Duration, ended: bool },
    #[error(
        "the pipeline thread did not take the model: it has been inside model {serving}'s run for \
         {:.1} s and {}",
        busy.as_secs_f64(),
        if *cancelled { "a cancel did not end it" } else { "that model cannot be cancelled; restart the daemon" }
    )]
    PipelineStuck {
        serving: String,
        busy: Duration,
        cancelled: bool,
    },
    #[error("measuring {}: {source}", path.display())]
    Measure {
        path: PathBuf,
        source: crate::backend::BackendError,
    },
    /// The governor refused the model for its ladder (another output, input kind, ...).
    #[error("not on the governor's ladder: {reason}")]
    NotOnLadder { reason: String },
}

/// What a load measures after the warm-up: frames of the source's size through the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    pub runs: u32,
    pub frame_size: (u32, u32, crate::source::PixelFormat),
}

/// What the governor, running on the loader thread, may ask of the loader.
pub trait Loads {
    /// Loads `path` on a worker thread under the load timeout, warmed up `warmup` times and
    /// measured when `measure` says so.
    fn load(
        &mut self,
        path: &Path,
        warmup: u32,
        measure: Option<Measure>,
    ) -> Result<Prepared, LoadError>;
    /// Records a refused candidate (history, file state, one log line).
    fn reject(&mut self, name: &str, reason: LoadError, version: Option<Version>);
    fn context(&self) -> &LoaderContext;
    /// `models.warmup`.
    fn warmup(&self) -> u32;
    fn stopping(&self) -> bool;
}

/// How long an abandoned load is given to end once cancelled.
pub const ABANDON_GRACE: Duration = Duration::from_secs(2);
/// At this many abandoned loads that could not be cancelled and still run, the loader waits for
/// one of them to end before it starts another. One: never two runtime loads at once (two engine
/// builds or two sessions being created can exhaust a board's memory), so a load that can be
/// neither finished nor cancelled holds the folder, visibly (`/models` and `/status` `loader`
/// `blocked`; `activate` answers 503 with the reason instead of queueing).
pub const MAX_STUCK_LOADS: usize = 1;

/// An abandoned load that did not end.
struct Stuck {
    name: String,
    rx: Receiver<Result<Prepared, LoadError>>,
}

/// The loader thread's state.
pub struct Loader {
    ctx: LoaderContext,
    cfg: ModelsConfig,
    /// Timed-out loads that could not be cancelled and still run; their results are thrown away.
    stuck: Vec<Stuck>,
    /// Set on shutdown (or when a reload replaces the watch folder): a load in progress is left
    /// to finish on its own, so SIGTERM during a minutes-long engine build stops at once.
    stop: Arc<AtomicBool>,
    /// The governor, when `[governor] enabled`: it decides what a loaded candidate becomes.
    governor: Option<Governor>,
}

/// How often a wait for a load looks at `stop`.
const STOP_POLL: Duration = Duration::from_millis(100);

impl Loader {
    pub fn new(ctx: LoaderContext, cfg: ModelsConfig, stop: Arc<AtomicBool>) -> Loader {
        Loader {
            ctx,
            cfg,
            stuck: Vec::new(),
            stop,
            governor: None,
        }
    }

    /// Hands what becomes of loaded candidates to `governor`, which also runs on this thread.
    pub fn with_governor(mut self, governor: Governor) -> Loader {
        self.governor = Some(governor);
        self
    }

    /// Runs `f` with the governor and the loader it may use, when there is a governor.
    fn with_governor_do(&mut self, f: impl FnOnce(&mut Governor, &mut Loader)) -> bool {
        let Some(mut g) = self.governor.take() else {
            return false;
        };
        f(&mut g, self);
        self.governor = Some(g);
        true
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.ctx.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Serves `rx` until `stop` is set or every sender is gone.
    ///
    /// Whatever queued up meanwhile (while a load ran, a burst of renames, a client posting
    /// `activate` in a loop) is taken at once: the bookkeeping in order, then the files asked
    /// for, each once, newest first, until one goes live; the older ones are superseded (left
    /// candidates). So 200 renames in 4 ms load one model, not 200 in turn, and a bad newest file
    /// neither hides an older good one nor keeps the older bad ones from being tried and rejected.
    pub fn run(mut self, rx: &Receiver<LoaderMsg>) {
        let mut started = false;
        while !self.stopping() {
            self.with_governor_do(|g, l| g.tick(l));
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut wanted: Vec<(PathBuf, bool)> = Vec::new();
            for msg in std::iter::once(first).chain(rx.try_iter()) {
                let request = match msg {
                    LoaderMsg::Watch(WatchEvent::Changed(p)) => Some((p, false)),
                    LoaderMsg::Watch(WatchEvent::Removed(p)) => {
                        self.removed(&p);
                        None
                    }
                    LoaderMsg::Watch(WatchEvent::Lost) => {
                        self.registry().watching = false;
                        None
                    }
                    LoaderMsg::Watch(WatchEvent::Switched) => {
                        // Another folder under the same path: its files are new to us.
                        self.registry().forget_files();
                        wanted.clear();
                        None
                    }
                    LoaderMsg::Watch(WatchEvent::Rescan { since }) => {
                        self.registry().watching = true;
                        let r = self.rescan(!started, since);
                        started = true;
                        r
                    }
                    LoaderMsg::Activate(name) => {
                        self.registry().activation_taken(&name);
                        Some((self.cfg.watch_dir.join(&name), true))
                    }
                    LoaderMsg::Governor(req) => {
                        if self.governor.is_none() {
                            log::warn!("governor request {req:?} without a governor: ignored");
                        }
                        self.with_governor_do(|g, l| g.request(l, req));
                        None
                    }
                };
                // A request that would be skipped (not a model, or this version already tried)
                // never hides an earlier one that would load.
                if let Some((p, force)) = request
                    && self.worth_loading(&p, force)
                {
                    // Once per file, at its newest position; an activation stays forced.
                    let force = force || wanted.iter().any(|(q, f)| *q == p && *f);
                    wanted.retain(|(q, _)| *q != p);
                    wanted.push((p, force));
                }
            }
            while let Some((p, force)) = wanted.pop() {
                self.consider(&p, force);
                // Under the governor every file asked for joins the ladder: none supersedes another.
                let live = self.governor.is_none()
                    && self.registry().state(&file_name(&p)) == Some(&FileState::Active);
                if live || self.stopping() {
                    if !wanted.is_empty() {
                        log::info!(
                            "{} older queued load request(s) superseded by {}",
                            wanted.len(),
                            p.display()
                        );
                    }
                    break;
                }
            }
        }
    }

    /// Whether [`Loader::consider`] would load `path` (an activation always does something: it
    /// loads or says why not).
    fn worth_loading(&self, path: &Path, force: bool) -> bool {
        if force {
            return true;
        }
        if let Kind::Ignored(why) = classify(path) {
            // Recorded (the listing shows why), never opened.
            self.registry()
                .set(&file_name(path), FileState::Ignored(why.to_string()), None);
            return false;
        }
        let version = Version::of(path);
        version.is_some() && !self.registry().tried(&file_name(path), version)
    }

    /// At start (of the daemon, or after a reload changed `[models]`): the pinned model, unless
    /// it already serves or the serving model came from `run.model` outside the folder; else the
    /// newest file not tried in this version. Later (after an overflow or the folder coming
    /// back): the newest file not tried. Returns what to load (and whether it is forced).
    fn rescan(&mut self, first: bool, since: SystemTime) -> Option<(PathBuf, bool)> {
        let dir = self.cfg.watch_dir.clone();
        if self.governor.is_some() {
            // The ladder is every model of the folder, not the newest: each is loaded and measured.
            for p in super::model_files(&dir) {
                if written_before(&p, since) {
                    self.consider(&p, false);
                }
            }
            if first {
                self.with_governor_do(|g, l| g.scanned(l));
            }
            return None;
        }
        if first && let Some(name) = self.cfg.active.clone() {
            let pinned = dir.join(&name);
            let serving = self.ctx.serving.model().map(|m| m.path.clone());
            return match serving {
                Some(p) if p == pinned => None,
                Some(p) if p.parent() != Some(dir.as_path()) => None,
                _ => Some((pinned, true)),
            };
        }
        // Files written after the watch was set up announce themselves with their own close or
        // rename event; only older ones are taken from the scan, so a file still being written
        // is never read half-way.
        newest_model(&dir)
            .filter(|p| written_before(p, since))
            .map(|p| (p, false))
    }

    fn removed(&mut self, path: &Path) {
        if let Some(g) = self.governor.as_mut() {
            g.removed(path);
        }
        if let Some(info) = self.ctx.serving.model()
            && info.path == path
        {
            log::warn!(
                "the active model's file {} was removed; it keeps serving",
                path.display()
            );
        }
        // A file that is gone keeps no state (the listing reads the folder): per-file state is
        // bounded by what the folder holds, not by every name it ever held.
        self.registry().forget(&file_name(path));
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
        if let Some(reason) = super::outside_folder(&self.cfg.watch_dir, path) {
            let path = path.to_path_buf();
            return self.reject(&name, LoadError::Outside { path, reason }, version);
        }
        if !self.wait_for_stuck() {
            return;
        }
        let path = path.to_path_buf();
        if self.with_governor_do(|g, l| g.consider(l, &name, &path, version)) {
            return;
        }
        self.registry().set(&name, FileState::Loading, version);
        log::info!("loading candidate {}", path.display());
        match self.load(&name, path.clone(), self.cfg.warmup, None) {
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
    fn load(
        &mut self,
        name: &str,
        path: PathBuf,
        warmup: u32,
        measure: Option<Measure>,
    ) -> Result<Prepared, LoadError> {
        if !self.wait_for_stuck() {
            return Err(LoadError::Stopping);
        }
        let (tx, rx) = channel();
        let prepare = Arc::clone(&self.ctx.prepare);
        let handle = Arc::new(LoadHandle::default());
        std::thread::Builder::new()
            .name("rtinfer-load".into())
            .spawn({
                let handle = Arc::clone(&handle);
                move || {
                    crate::rt::run_in_background();
                    let r = prepare(&path, warmup, &handle).map_err(LoadError::from);
                    let r = match (r, measure) {
                        // An abandoned load measures nothing (its runs are cancelled anyway).
                        (Ok(_), Some(_)) if handle.abandoned() => Err(LoadError::Stopping),
                        (Ok(mut p), Some(m)) => {
                            match super::prepare::measure(&mut p.pipeline, m.frame_size, m.runs) {
                                Ok(figures) => {
                                    p.measured = Some(figures);
                                    Ok(p)
                                }
                                Err(source) => Err(LoadError::Measure { path, source }),
                            }
                        }
                        (r, _) => r,
                    };
                    let _ = tx.send(r);
                }
            })
            .map_err(LoadError::Thread)?;
        let deadline = MonoTime::now().plus(self.cfg.load_timeout);
        loop {
            let left = deadline.saturating_since(MonoTime::now());
            match rx.recv_timeout(left.min(STOP_POLL)) {
                Ok(r) => return r,
                Err(RecvTimeoutError::Disconnected) => return Err(LoadError::Panicked),
                Err(RecvTimeoutError::Timeout) if self.stopping() => {
                    return Err(LoadError::Stopping);
                }
                Err(RecvTimeoutError::Timeout) if left > STOP_POLL => {}
                Err(RecvTimeoutError::Timeout) => {
                    // Abandoned: terminate its run, and give it a moment to end.
                    handle.abandon();
                    let ended = !matches!(
                        rx.recv_timeout(ABANDON_GRACE),
                        Err(RecvTimeoutError::Timeout)
                    );
                    if !ended {
                        self.stuck.push(Stuck {
                            name: name.to_string(),
                            rx,
                        });
                        self.publish_stuck();
                    }
                    return Err(LoadError::TimedOut {
                        timeout: self.cfg.load_timeout,
                        ended,
                    });
                }
            }
        }
    }

    /// `/models` and `/status` show the loads that could not be cancelled and still run, and
    /// whether the loader waits for them.
    fn publish_stuck(&self) {
        let names: Vec<String> = self.stuck.iter().map(|s| s.name.clone()).collect();
        let blocked = (self.stuck.len() >= MAX_STUCK_LOADS).then(|| {
            format!(
                "the loader waits: {} abandoned loads ({}) cannot be cancelled and still run",
                names.len(),
                names.join(", ")
            )
        });
        let mut r = self.registry();
        r.stuck_loads = names;
        r.blocked = blocked;
    }

    /// Forgets the stuck loads that ended; with [`MAX_STUCK_LOADS`] of them still running, waits
    /// for one to end before another load starts. False when stopping meanwhile.
    fn wait_for_stuck(&mut self) -> bool {
        let mut said = false;
        loop {
            let before = self.stuck.len();
            self.stuck.retain(|s| {
                let ended = !matches!(s.rx.try_recv(), Err(std::sync::mpsc::TryRecvError::Empty));
                if ended {
                    log::info!("the abandoned load of {} has ended", s.name);
                }
                !ended
            });
            if self.stuck.len() != before || said {
                self.publish_stuck();
            }
            if self.stuck.len() < MAX_STUCK_LOADS {
                return true;
            }
            if !said {
                log::warn!(
                    "{} abandoned loads cannot be cancelled and still run; the next load waits \
                     for one of them to end",
                    self.stuck.len()
                );
                said = true;
                self.publish_stuck();
            }
            if self.stopping() {
                return false;
            }
            std::thread::sleep(STOP_POLL);
        }
    }

    fn go_live(&mut self, name: &str, version: Option<Version>, p: Prepared) {
        let from = self.ctx.serving.model().map(|m| m.name.clone());
        let info = p.info.clone();
        // A serving model stuck in its run never reaches the next frame, where swaps happen.
        let mut cancelled = false;
        if let Some(ctl) = &self.ctx.pipeline
            && let Some(busy) = ctl.stalled(MonoTime::now())
        {
            cancelled = ctl.cancel_current();
            log::warn!(
                "model {}'s run has not returned for {:.1} s; {}",
                from.as_deref().unwrap_or("-"),
                busy.as_secs_f64(),
                if cancelled {
                    "cancelling it so the new model can go live"
                } else {
                    "it cannot be cancelled"
                }
            );
        }
        let retired = match self.ctx.serving.swap_in(p.pipeline) {
            Ok(old) => old,
            Err(e) => {
                let stuck = self
                    .ctx
                    .pipeline
                    .as_ref()
                    .and_then(|c| c.stalled(MonoTime::now()));
                let reason = match stuck {
                    Some(busy) => LoadError::PipelineStuck {
                        serving: from.clone().unwrap_or_default(),
                        busy,
                        cancelled,
                    },
                    None => e.into(),
                };
                return self.reject(name, reason, version);
            }
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
        if matches!(reason, LoadError::Stopping) {
            log::info!("stopping: the load of {name} is left unfinished");
            // Not tried: a loader that follows a reload in the same folder takes it again.
            self.registry().set(name, FileState::Candidate, version);
            return;
        }
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

impl Loads for Loader {
    fn load(
        &mut self,
        path: &Path,
        warmup: u32,
        measure: Option<Measure>,
    ) -> Result<Prepared, LoadError> {
        Loader::load(self, &file_name(path), path.to_path_buf(), warmup, measure)
    }

    fn reject(&mut self, name: &str, reason: LoadError, version: Option<Version>) {
        Loader::reject(self, name, reason, version);
    }

    fn context(&self) -> &LoaderContext {
        &self.ctx
    }

    fn warmup(&self) -> u32 {
        self.cfg.warmup
    }

    fn stopping(&self) -> bool {
        Loader::stopping(self)
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;
    use std::sync::mpsc::Sender;
    use std::thread::JoinHandle;

    use super::*;
    use crate::backend::{BackendKind, ModelInfo, Precision};
    use crate::models::QueueError;
    use crate::models::test_engine::{Fake, SPEC};
    use crate::pipeline::{FrameRecord, LoopControl, Pipeline};
    use crate::preprocess::{PreprocessOptions, Preprocessor};
    use crate::slot::FrameSlot;

    fn prepared(path: &Path) -> Prepared {
        let info = ModelInfo {
            name: path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into(),
            path: path.to_path_buf(),
            backend: BackendKind::OnnxRuntime,
            precision: Precision::Fp32,
            inputs: Vec::new(),
            outputs: Vec::new(),
            input: SPEC,
            classes: 2,
            output: 0,
            output_shape: vec![1, 2],
            output_op: None,
            params: None,
            labels: None,
            can_cancel: false,
        };
        let engine = Fake::new(info.clone(), 2);
        let pre = Preprocessor::new(SPEC, PreprocessOptions::default()).expect("preprocessor");
        Prepared {
            pipeline: Pipeline::new(Box::new(engine), pre),
            info,
            load_ms: 1.0,
            warmup_p50_ms: None,
            measured: None,
        }
    }

    /// A loader on a temporary watch folder, a pipeline thread that takes what it stages, and a
    /// preparer that reads each file's text: `good`, `bad` (no scores), or `slow` (waits until
    /// the test sends on `release`). No daemon, no runtime.
    struct Harness {
        dir: tempfile::TempDir,
        ctx: LoaderContext,
        tx: Sender<LoaderMsg>,
        stop: Arc<AtomicBool>,
        loader: Option<JoinHandle<()>>,
        ctl: Arc<LoopControl>,
        pipeline: Option<JoinHandle<()>>,
        prepared: Arc<AtomicU32>,
        /// The most preparations that ran at once.
        most_at_once: Arc<AtomicU32>,
        swaps: Arc<AtomicU32>,
        release: Sender<()>,
    }

    impl Harness {
        fn new(load_timeout: Duration) -> Harness {
            let dir = tempfile::tempdir().expect("temp dir");
            let prepared_n = Arc::new(AtomicU32::new(0));
            let running = Arc::new(AtomicU32::new(0));
            let most_at_once = Arc::new(AtomicU32::new(0));
            let swaps = Arc::new(AtomicU32::new(0));
            let (release, released) = channel::<()>();
            let released = Mutex::new(released);
            let ctx = LoaderContext {
                prepare: Arc::new({
                    let n = Arc::clone(&prepared_n);
                    let (running, most) = (Arc::clone(&running), Arc::clone(&most_at_once));
                    move |path: &Path, _warmup, _handle: &LoadHandle| {
                        n.fetch_add(1, Ordering::SeqCst);
                        most.fetch_max(
                            running.fetch_add(1, Ordering::SeqCst) + 1,
                            Ordering::SeqCst,
                        );
                        let r = match std::fs::read_to_string(path).unwrap_or_default().as_str() {
                            "bad" => Err(PrepareError::NoScores {
                                path: path.to_path_buf(),
                            }),
                            "slow" => {
                                let rx = released.lock().unwrap_or_else(|p| p.into_inner());
                                let _ = rx.recv();
                                Ok(prepared(path))
                            }
                            _ => Ok(prepared(path)),
                        };
                        running.fetch_sub(1, Ordering::SeqCst);
                        r
                    }
                }),
                serving: Arc::default(),
                registry: Arc::default(),
                after_swap: Arc::new({
                    let swaps = Arc::clone(&swaps);
                    move || {
                        swaps.fetch_add(1, Ordering::SeqCst);
                    }
                }),
                pipeline: None,
            };
            let ctl = Arc::new(LoopControl::new(Duration::from_millis(10)));
            let pipeline = std::thread::spawn({
                let serving = Arc::clone(&ctx.serving);
                let ctl = Arc::clone(&ctl);
                move || {
                    let (records, _keep) = std::sync::mpsc::sync_channel::<FrameRecord>(4);
                    let slot = FrameSlot::new(1, 1);
                    crate::pipeline::run(&mut None, serving.swap_slot(), &slot, &ctl, &records);
                }
            });
            let cfg = ModelsConfig {
                watch_dir: dir.path().to_path_buf(),
                active: None,
                load_timeout,
                warmup: 0,
            };
            let stop = Arc::new(AtomicBool::new(false));
            let (tx, rx) = channel();
            let loader = std::thread::spawn({
                let (ctx, stop) = (ctx.clone(), Arc::clone(&stop));
                move || Loader::new(ctx, cfg, stop).run(&rx)
            });
            Harness {
                dir,
                ctx,
                tx,
                stop,
                loader: Some(loader),
                ctl,
                pipeline: Some(pipeline),
                prepared: prepared_n,
                most_at_once,
                swaps,
                release,
            }
        }

        /// Writes `name` with `text` and tells the loader it was completed.
        fn drop_in(&self, name: &str, text: &str) {
            let path = self.dir.path().join(name);
            std::fs::write(&path, text).expect("write the candidate");
            self.tx
                .send(LoaderMsg::Watch(WatchEvent::Changed(path)))
                .expect("the loader listens");
        }

        fn state(&self, name: &str) -> Option<FileState> {
            let r = self.ctx.registry.lock().unwrap_or_else(|p| p.into_inner());
            r.state(name).cloned()
        }

        /// Waits until `name` reaches a state `done` accepts (a load is asynchronous).
        fn wait_for(&self, name: &str, done: impl Fn(&FileState) -> bool) -> FileState {
            let end = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                match self.state(name) {
                    Some(s) if done(&s) => return s,
                    s if std::time::Instant::now() > end => panic!("{name} stayed {s:?}"),
                    _ => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        }

        fn serving(&self) -> Option<String> {
            self.ctx.serving.model().map(|m| m.name)
        }

        fn history(&self) -> Vec<(String, bool)> {
            let r = self.ctx.registry.lock().unwrap_or_else(|p| p.into_inner());
            r.swaps().map(|s| (s.to.clone(), s.ok)).collect()
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = self.release.send(());
            self.ctl.stop.store(true, Ordering::SeqCst);
            for h in [self.loader.take(), self.pipeline.take()]
                .into_iter()
                .flatten()
            {
                let _ = h.join();
            }
        }
    }

    fn settled(s: &FileState) -> bool {
        !matches!(s, FileState::Loading | FileState::Candidate)
    }

    #[test]
    fn a_good_candidate_goes_live_and_replaces_the_one_before() {
        let h = Harness::new(Duration::from_secs(60));
        h.drop_in("a.onnx", "good");
        assert_eq!(h.wait_for("a.onnx", settled), FileState::Active);
        assert_eq!(h.serving().as_deref(), Some("a"));
        h.drop_in("b.onnx", "good");
        assert_eq!(h.wait_for("b.onnx", settled), FileState::Active);
        assert_eq!(h.state("a.onnx"), Some(FileState::LoadedBefore));
        assert_eq!(h.serving().as_deref(), Some("b"));
        assert_eq!(h.ctx.serving.generation_name(2).as_deref(), Some("b"));
        assert_eq!(h.history(), vec![("a".into(), true), ("b".into(), true)]);
        // The file is Active before the loader calls after_swap (the old engine is freed
        // between the two): wait for the call, then check there was exactly one per swap.
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while h.swaps.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            h.swaps.load(Ordering::SeqCst),
            2,
            "after_swap once per swap"
        );
    }

    #[test]
    fn a_failing_candidate_is_rejected_and_the_model_keeps_serving() {
        let h = Harness::new(Duration::from_secs(60));
        h.drop_in("a.onnx", "good");
        h.wait_for("a.onnx", settled);
        h.drop_in("b.onnx", "bad");
        let FileState::Rejected(why) = h.wait_for("b.onnx", settled) else {
            panic!("b is rejected")
        };
        assert!(why.contains("has no scores"), "{why}");
        assert_eq!(h.serving().as_deref(), Some("a"));
        assert_eq!(
            h.history(),
            vec![("a".into(), true), ("b.onnx".into(), false)]
        );
        assert_eq!(h.swaps.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn files_that_are_not_models_are_never_opened() {
        let h = Harness::new(Duration::from_secs(60));
        for name in [".a.onnx", "a.onnx.tmp", "notes.txt"] {
            h.drop_in(name, "good");
            assert!(matches!(h.wait_for(name, settled), FileState::Ignored(_)));
        }
        assert_eq!(h.prepared.load(Ordering::SeqCst), 0);
        assert!(h.history().is_empty());
    }

    #[test]
    fn a_load_past_the_timeout_is_abandoned_and_the_next_one_waits_for_it() {
        let h = Harness::new(Duration::from_millis(300));
        h.drop_in("slow.onnx", "slow");
        let FileState::Rejected(why) = h.wait_for("slow.onnx", settled) else {
            panic!("the slow load is rejected")
        };
        assert!(why.contains("models.load_timeout_s"), "{why}");
        h.drop_in("c.onnx", "good");
        // A loader that did not wait for the abandoned load would start c now, beside it.
        std::thread::sleep(Duration::from_millis(200));
        h.release.send(()).expect("release the slow load");
        assert_eq!(h.wait_for("c.onnx", settled), FileState::Active);
        assert_eq!(h.prepared.load(Ordering::SeqCst), 2);
        assert_eq!(
            h.most_at_once.load(Ordering::SeqCst),
            1,
            "never two loads at once"
        );
        // The abandoned result was discarded, never swapped in.
        assert_eq!(h.serving().as_deref(), Some("c"));
        assert_eq!(
            h.history(),
            vec![("slow.onnx".into(), false), ("c".into(), true)]
        );
    }

    #[test]
    fn a_load_interrupted_by_a_stop_is_left_a_candidate() {
        let mut h = Harness::new(Duration::from_secs(60));
        h.drop_in("slow.onnx", "slow");
        h.wait_for("slow.onnx", |s| *s == FileState::Loading);
        h.stop.store(true, Ordering::SeqCst);
        if let Some(l) = h.loader.take() {
            l.join().expect("the loader returns on stop");
        }
        assert_eq!(h.state("slow.onnx"), Some(FileState::Candidate));
        assert!(h.history().is_empty(), "not tried, not rejected");
        assert_eq!(h.serving(), None);
    }

    #[test]
    fn a_burst_of_candidates_loads_only_the_newest() {
        // Issue 18 item 12: 200 renames in 4 ms loaded and swapped all 200 in turn.
        let h = Harness::new(Duration::from_secs(60));
        h.drop_in("slow.onnx", "slow");
        h.wait_for("slow.onnx", |s| *s == FileState::Loading);
        for i in 0..200 {
            h.drop_in(&format!("m{i:03}.onnx"), "good");
        }
        h.release.send(()).expect("release the slow load");
        assert_eq!(h.wait_for("m199.onnx", settled), FileState::Active);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            h.prepared.load(Ordering::SeqCst),
            2,
            "slow, then the newest"
        );
        assert_eq!(h.state("m000.onnx"), None, "superseded, never tried");
        assert_eq!(h.serving().as_deref(), Some("m199"));
    }

    #[test]
    fn activations_queued_during_a_load_coalesce() {
        let h = Harness::new(Duration::from_secs(60));
        h.drop_in("slow.onnx", "slow");
        h.wait_for("slow.onnx", |s| *s == FileState::Loading);
        std::fs::write(h.dir.path().join("a.onnx"), "good").expect("write");
        let mut refused = 0;
        for _ in 0..1000 {
            let queued = h
                .ctx
                .registry
                .lock()
                .expect("registry")
                .queue_activation("a.onnx");
            match queued {
                Ok(_) => {
                    h.tx.send(LoaderMsg::Activate("a.onnx".into()))
                        .expect("send")
                }
                Err(QueueError::AlreadyQueued { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(refused, 999, "one activation queued, the rest refused");
        h.release.send(()).expect("release");
        assert_eq!(h.wait_for("a.onnx", settled), FileState::Active);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(h.prepared.load(Ordering::SeqCst), 2);
        // Taken off the queue: the same name can be queued again.
        let again = h
            .ctx
            .registry
            .lock()
            .expect("registry")
            .queue_activation("a.onnx");
        assert_eq!(again, Ok(None));
    }

    #[test]
    fn deleted_files_leave_no_state_behind() {
        // Issue 18 item 9: 60,000 distinct names created and deleted grew the registry forever.
        let h = Harness::new(Duration::from_secs(60));
        h.drop_in("a.onnx", "good");
        h.wait_for("a.onnx", settled);
        for i in 0..500 {
            let name = format!("junk{i}.txt");
            h.drop_in(&name, "x");
            let path = h.dir.path().join(&name);
            std::fs::remove_file(&path).expect("rm");
            h.tx.send(LoaderMsg::Watch(WatchEvent::Removed(path)))
                .expect("send");
        }
        h.drop_in("b.onnx", "bad");
        h.wait_for("b.onnx", settled);
        let path = h.dir.path().join("b.onnx");
        std::fs::remove_file(&path).expect("rm");
        h.tx.send(LoaderMsg::Watch(WatchEvent::Removed(path)))
            .expect("send");
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while h.ctx.registry.lock().expect("registry").file_states() > 1
            && std::time::Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(h.ctx.registry.lock().expect("registry").file_states(), 1);
        assert_eq!(
            h.state("a.onnx"),
            Some(FileState::Active),
            "the active one stays"
        );
    }

    #[test]
    fn symlinks_inside_the_folder_load_and_links_out_of_it_are_refused() {
        // Issue 18 item 10: a symlink to a file outside the folder went live, and a symlinked
        // model could be active but missing from GET /models.
        let h = Harness::new(Duration::from_secs(60));
        let dir = h.dir.path();
        std::fs::write(dir.join("v1.onnx"), "good").expect("write");
        std::os::unix::fs::symlink("v1.onnx", dir.join("current.onnx")).expect("link in");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("x.onnx"), "good").expect("write");
        std::os::unix::fs::symlink(outside.path().join("x.onnx"), dir.join("out.onnx"))
            .expect("link out");
        let send = |name: &str| {
            h.tx.send(LoaderMsg::Watch(WatchEvent::Changed(dir.join(name))))
                .expect("send")
        };
        send("current.onnx");
        assert_eq!(h.wait_for("current.onnx", settled), FileState::Active);
        send("out.onnx");
        let FileState::Rejected(why) = h.wait_for("out.onnx", settled) else {
            panic!("a link out of the folder is refused")
        };
        assert!(why.contains("outside the watch folder"), "{why}");
        assert_eq!(h.serving().as_deref(), Some("current"));
        // The listing shows both, as the loader saw them.
        let listing = h.ctx.registry.lock().expect("registry").listing(dir);
        let state = |n: &str| {
            listing["files"]
                .as_array()
                .and_then(|f| f.iter().find(|f| f["name"] == n))
                .map(|f| f["state"].clone())
        };
        assert_eq!(state("current.onnx"), Some("active".into()), "{listing}");
        assert_eq!(state("out.onnx"), Some("rejected".into()), "{listing}");
        assert_eq!(
            h.prepared.load(Ordering::SeqCst),
            1,
            "the link out was never opened"
        );
    }

    #[test]
    fn a_load_that_cannot_be_cancelled_holds_the_folder_visibly() {
        // The policy for a backend without cancel (the fake preparer has none): the abandoned
        // load is listed as stuck, the loader says it waits, an activation is refused with the
        // reason instead of answered 202 and forgotten; when it ends, the folder moves again.
        let h = Harness::new(Duration::from_millis(200));
        h.drop_in("slow.onnx", "slow");
        h.wait_for("slow.onnx", settled);
        let (stuck, blocked) = {
            let r = h.ctx.registry.lock().expect("registry");
            (r.stuck_loads.clone(), r.blocked.clone())
        };
        assert_eq!(stuck, vec!["slow.onnx".to_string()]);
        assert!(blocked.is_some_and(|b| b.contains("cannot be cancelled")));
        let refused = h
            .ctx
            .registry
            .lock()
            .expect("registry")
            .queue_activation("a.onnx");
        assert!(
            matches!(refused, Err(QueueError::Blocked { .. })),
            "{refused:?}"
        );
        h.drop_in("c.onnx", "good");
        h.release.send(()).expect("release");
        assert_eq!(h.wait_for("c.onnx", settled), FileState::Active);
        let r = h.ctx.registry.lock().expect("registry");
        assert!(r.stuck_loads.is_empty() && r.blocked.is_none());
    }

    #[test]
    fn generation_names_are_bounded() {
        let serving = Serving::default();
        for i in 0..100 {
            let mut p = prepared(Path::new(&format!("/m/g{i}.onnx"))).pipeline;
            serving.install(&mut p);
            assert_eq!(p.generation, i + 1);
        }
        assert_eq!(serving.generation_name(100).as_deref(), Some("g99"));
        assert_eq!(
            serving.generation_name(1),
            None,
            "the oldest names are dropped"
        );
    }

    #[test]
    fn a_bad_newest_candidate_does_not_hide_an_older_good_one() {
        let h = Harness::new(Duration::from_secs(60));
        h.drop_in("slow.onnx", "slow");
        h.wait_for("slow.onnx", |s| *s == FileState::Loading);
        h.drop_in("a.onnx", "good");
        h.drop_in("b.onnx", "bad");
        h.release.send(()).expect("release");
        assert!(matches!(
            h.wait_for("b.onnx", settled),
            FileState::Rejected(_)
        ));
        assert_eq!(h.wait_for("a.onnx", settled), FileState::Active);
        assert_eq!(h.serving().as_deref(), Some("a"));
    }
}
