//! The loader thread: open a candidate, validate it, warm it up, hand it to the pipeline.
//!
//! Everything slow happens here, never on the pipeline thread: the runtime's load (an engine build
//! can take minutes), the preprocessing buffers for the new input size, the warm-up runs, and
//! dropping the old engine (freeing a session takes milliseconds). The pipeline only swaps a
//! pointer between two frames. A load runs on its own worker thread so it can be abandoned when it
//! exceeds `models.load_timeout_s` (a runtime's load cannot be interrupted): its result is
//! discarded when it finally arrives, and no second load starts while one is abandoned.
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
    FileState, Kind, ModelsConfig, PrepareError, Prepared, Registry, SwapRecord, Version, classify,
    newest_model,
};
use crate::governor::{Governor, Request};
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
    pub frame_size: (u32, u32),
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

/// The loader thread's state.
pub struct Loader {
    ctx: LoaderContext,
    cfg: ModelsConfig,
    /// A timed-out load still running; its result is thrown away when it arrives.
    abandoned: Option<Receiver<Result<Prepared, LoadError>>>,
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
            abandoned: None,
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
    pub fn run(mut self, rx: &Receiver<LoaderMsg>) {
        let mut started = false;
        while !self.stopping() {
            self.with_governor_do(|g, l| g.tick(l));
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
                LoaderMsg::Governor(req) => {
                    if self.governor.is_none() {
                        log::warn!("governor request {req:?} without a governor: ignored");
                    }
                    self.with_governor_do(|g, l| g.request(l, req));
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
            return;
        }
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
        let path = path.to_path_buf();
        if self.with_governor_do(|g, l| g.consider(l, &name, &path, version)) {
            return;
        }
        self.registry().set(&name, FileState::Loading, version);
        log::info!("loading candidate {}", path.display());
        match self.load(path.clone(), self.cfg.warmup, None) {
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
        path: PathBuf,
        warmup: u32,
        measure: Option<Measure>,
    ) -> Result<Prepared, LoadError> {
        if !self.wait_for_abandoned() {
            return Err(LoadError::Stopping);
        }
        let (tx, rx) = channel();
        let prepare = Arc::clone(&self.ctx.prepare);
        std::thread::Builder::new()
            .name("rtinfer-load".into())
            .spawn(move || {
                crate::rt::run_in_background();
                let r = prepare(&path, warmup).map_err(LoadError::from);
                let r = match (r, measure) {
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
        Loader::load(self, path.to_path_buf(), warmup, measure)
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
    use crate::backend::{BackendError, BackendKind, Engine, ModelInfo, Precision};
    use crate::pipeline::{FrameRecord, LoopControl, Pipeline};
    use crate::preprocess::{PreprocessOptions, Preprocessor};
    use crate::slot::FrameSlot;
    use crate::tensor::{InputBufMut, InputElement, InputSpec, Layout};

    const SPEC: InputSpec = InputSpec {
        width: 4,
        height: 4,
        channels: 3,
        layout: Layout::Nchw,
        element: InputElement::F32,
    };

    /// An engine that runs instantly; only its name matters here.
    struct Fake {
        info: ModelInfo,
        input: Vec<f32>,
        scores: Vec<f32>,
    }

    impl Engine for Fake {
        fn info(&self) -> &ModelInfo {
            &self.info
        }
        fn input(&mut self) -> InputBufMut<'_> {
            InputBufMut::F32(&mut self.input)
        }
        fn run(&mut self) -> Result<(), BackendError> {
            Ok(())
        }
        fn output(&self) -> &[f32] {
            &self.scores
        }
    }

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
            params: None,
            can_cancel: false,
        };
        let engine = Fake {
            info: info.clone(),
            input: vec![0.0; SPEC.len()],
            scores: vec![0.0; 2],
        };
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
                    move |path: &Path, _warmup| {
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
}
