//! `rtinfer run`: wires the threads of DESIGN.md's data flow around one engine and one source.
//!
//! capture thread → [`FrameSlot`] → pipeline thread → bounded channel → stats thread; a sampler
//! thread reads process figures; the status server answers from snapshots. Start-up failures
//! (model, backend, library, source, socket) are [`StartError`]s and exit 3; a source that fails
//! mid-stream ends the run with exit 1; a clean end (duration, signal, EOF on a frame boundary)
//! exits 0.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::backend::onnx::OnnxBackend;
use crate::backend::{
    Backend, BackendChoice, BackendError, BackendKind, Engine, LoadOptions, ModelInfo,
};
use crate::config::{Config, RawConfig};
use crate::misslog::{MissLine, MissLog};
use crate::models::Registry;
use crate::models::loader::{Loader, LoaderMsg};
use crate::models::watch::WatchEvent;
use crate::pipeline::{self, FrameRecord, LoopControl, Pipeline, SwapSlot};
use crate::preprocess::Preprocessor;
use crate::signals::SignalFlags;
use crate::slot::{End, FrameSlot, Outcome};
use crate::source::{self, PixelFormat, SourceInfo};
use crate::stats::LatencyStats;
use crate::status::server::StatusServer;
use crate::system::{SystemFigures, SystemSampler};
use crate::systemd::Notifier;
use crate::time::{MonoTime, ms, rfc3339_now};

/// Records queued between the pipeline and the stats thread before one is lost.
const RECORD_QUEUE: usize = 4096;
/// How long after `--duration` a run whose source is blocked in a read is stopped anyway.
const DURATION_GRACE: Duration = Duration::from_secs(1);

/// Why the daemon could not start (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no model given (use --model FILE or run.model in the config)")]
    NoModel,
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("preprocessing for model {model}: {source}")]
    Preprocess {
        model: String,
        source: crate::preprocess::PreprocessError,
    },
    #[error("status socket: {0}")]
    Status(#[from] crate::status::StatusError),
    #[error("cannot start thread {name}: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
}

/// Daemon state of the contract (`state` in `/status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Starting = 0,
    Waiting = 1,
    Running = 2,
    Degraded = 3,
    Stopping = 4,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Waiting => "waiting",
            State::Running => "running",
            State::Degraded => "degraded",
            State::Stopping => "stopping",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Waiting,
            2 => State::Running,
            3 => State::Degraded,
            4 => State::Stopping,
            _ => State::Starting,
        }
    }
}

/// The most recent deadline miss (`last_miss`).
#[derive(Debug, Clone)]
pub struct LastMiss {
    pub seq: u64,
    pub latency: Duration,
    pub overshoot: Duration,
    /// Wall-clock time of the miss, formatted (RFC 3339) only when `/status` is read: the stats
    /// thread allocates nothing per frame, late frames included.
    pub at: SystemTime,
}

/// Everything the stats thread owns and the status handler reads.
pub struct StatsState {
    pub latency: LatencyStats,
    pub last_miss: Option<LastMiss>,
    pub last_result: Option<FrameRecord>,
    pub last_done: Option<MonoTime>,
    misslog: MissLog,
}

/// State shared between the threads and the status handler.
pub struct Shared {
    pub started: MonoTime,
    pub config: Config,
    /// What a reload may change while running.
    live: Mutex<Live>,
    /// The service manager, when run by systemd.
    pub notifier: Arc<Notifier>,
    pub ctl: Arc<LoopControl>,
    pub slot: Arc<FrameSlot>,
    pub stats: Mutex<StatsState>,
    pub system: Mutex<SystemFigures>,
    /// The model serving now (`None` while waiting for the watch folder).
    model: Mutex<Option<ModelInfo>>,
    /// Names of the engines that went live, by generation (index = generation - 1).
    generations: Mutex<Vec<String>>,
    /// Watch-folder bookkeeping and swap history.
    registry: Mutex<Registry>,
    /// The engine hand-over between the loader and the pipeline thread.
    pub swap: SwapSlot,
    /// The watch folder in force (a reload may change it).
    models_cfg: Mutex<Option<crate::models::ModelsConfig>>,
    /// Requests to the loader (`POST /models/NAME/activate`), when a watch folder is configured.
    loader_tx: Mutex<Option<Sender<LoaderMsg>>>,
    /// The serving engine's memory (serialized + persistent + activation), when its backend
    /// reports it (TensorRT).
    engine_memory: Mutex<Option<crate::backend::EngineMemory>>,
    /// The source as opened: its frame size. The URI and rate in force (a reload can re-pace the
    /// source) are `source_health.uri()` and `.fps()`.
    pub source: SourceInfo,
    pub source_connected: AtomicBool,
    /// The power meter's thread and figures (`[power]`), if configured; replaced by a reload.
    power: Mutex<Option<Arc<crate::power::PowerMonitor>>>,
    /// Stalls, pacing jitter, URI and rate in force of the source (`/status` `source`).
    pub source_health: crate::capture::SourceHealth,
    /// What `[realtime]` achieved (`/status` `realtime`).
    pub realtime: crate::rt::RealtimeState,
    state: AtomicU8,
}

impl Shared {
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, s: State) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    pub fn stats(&self) -> MutexGuard<'_, StatsState> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn system(&self) -> SystemFigures {
        *self.system.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The model serving now.
    pub fn model(&self) -> Option<ModelInfo> {
        self.model.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records the model that went live, with its engine memory when the backend reports it.
    pub fn set_model(&self, info: Option<ModelInfo>, memory: Option<crate::backend::EngineMemory>) {
        *self.model.lock().unwrap_or_else(|p| p.into_inner()) = info;
        *self.engine_memory.lock().unwrap_or_else(|p| p.into_inner()) = memory;
    }

    /// The serving engine's memory figures.
    pub fn engine_memory(&self) -> Option<crate::backend::EngineMemory> {
        self.engine_memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The watch folder in force.
    pub fn models_config(&self) -> Option<crate::models::ModelsConfig> {
        self.models_cfg
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The power meter, if one is configured.
    pub fn power(&self) -> Option<Arc<crate::power::PowerMonitor>> {
        self.power.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the meter (SIGHUP reload of `[power]`): the old thread stops, the new one starts
    /// connecting in the background. Idle is kept only when given (`power.idle_watts`): the
    /// models are running, so it cannot be measured now.
    fn replace_power(&self, opts: Option<&crate::power::PowerOptions>) -> std::io::Result<()> {
        let new = match opts {
            Some(o) => {
                let m = crate::power::PowerMonitor::start(o.clone())?;
                if matches!(o.idle, crate::power::IdleSetting::Given(_)) {
                    m.measure_idle();
                }
                Some(Arc::new(m))
            }
            None => None,
        };
        let old = std::mem::replace(
            &mut *self.power.lock().unwrap_or_else(|p| p.into_inner()),
            new,
        );
        if let Some(o) = old {
            o.stop();
        }
        Ok(())
    }

    pub fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One line for systemd's `STATUS=`: state, rate, p99 and misses.
    pub fn status_line(&self) -> String {
        let c = self.slot.counters();
        let sum = self.stats().latency.summary(MonoTime::now());
        format!(
            "{} {} fps, p99 {} ms, {} missed of {} processed",
            self.state().name(),
            sum.fps.map_or("-".into(), |f| format!("{f:.1}")),
            sum.window
                .end_to_end
                .p99
                .map_or("-".into(), |p| format!("{p:.2}")),
            c.missed_deadline,
            c.processed
        )
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The model name of an engine generation.
    pub fn generation_name(&self, generation: u32) -> Option<String> {
        let g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        g.get((generation as usize).checked_sub(1)?).cloned()
    }

    /// Numbers a pipeline with the next generation.
    fn number(&self, p: &mut Pipeline) {
        let mut g = self.generations.lock().unwrap_or_else(|p| p.into_inner());
        g.push(p.engine.info().name.clone());
        p.generation = g.len() as u32;
    }

    /// Hands `p` to the pipeline thread and returns the pipeline it replaced, once the pipeline
    /// thread has taken it (between two frames; it looks at least every 100 ms).
    pub fn swap_in(&self, mut p: Pipeline) -> Result<Option<Pipeline>, String> {
        self.number(&mut p);
        self.swap.stage(p);
        match self.swap.wait_retired(Duration::from_secs(5)) {
            Some(old) => Ok(old),
            None => {
                drop(self.swap.unstage());
                Err("the pipeline thread did not take the model within 5 s".into())
            }
        }
    }

    /// Asks the loader to (re)load a file of the watch folder.
    pub fn request_activate(&self, name: &str) -> Result<(), String> {
        let g = self.loader_tx.lock().unwrap_or_else(|p| p.into_inner());
        let tx = g
            .as_ref()
            .ok_or("no watch folder is configured (--models DIR)")?;
        tx.send(LoaderMsg::Activate(name.to_string()))
            .map_err(|_| "the loader has stopped".to_string())
    }
}

/// The reloadable part of the configuration.
#[derive(Debug, Clone)]
pub struct Live {
    pub loaded_at: String,
    /// Keys changed by a reload that only a restart applies.
    pub restart_required: Vec<String>,
    /// The raw configuration (file + CLI) now in force.
    pub raw: RawConfig,
    pub target_fps: f64,
}

/// The new rate when a reload changes only the rate of the paced source in force (see
/// [`SourceSpec::rate_change`](crate::source::SourceSpec::rate_change)).
fn source_rate_change(old: &RawConfig, new: &Config) -> Option<f64> {
    let uri = old
        .run
        .source
        .as_deref()
        .unwrap_or(crate::config::DEFAULT_SOURCE);
    crate::source::SourceSpec::parse(uri)
        .ok()?
        .rate_change(&new.source)
}

/// Keys a reload applies while running (and `run.source` when only a paced source's rate changes).
pub const LIVE_KEYS: &[&str] = &[
    "run.budget_ms",
    "run.fps",
    "log.level",
    "status.tcp",
    "power.meter",
    "power.command",
    "power.idle_seconds",
    "power.idle_watts",
    "power.sysfs_root",
    "power.interval_ms",
    "models.watch_dir",
    "models.active",
    "models.load_timeout_s",
    "models.warmup",
];

/// A running daemon.
pub struct Daemon {
    pub shared: Arc<Shared>,
    pipeline: JoinHandle<End>,
    stats: JoinHandle<()>,
    capture: JoinHandle<()>,
    sampler: JoinHandle<()>,
    status: Option<JoinHandle<()>>,
    models: Vec<JoinHandle<()>>,
    /// Stops the watcher and the loader (on shutdown, or to follow a new watch folder).
    models_stop: Arc<AtomicBool>,
    notify: Option<JoinHandle<()>>,
    tcp: Option<(JoinHandle<()>, Arc<AtomicBool>)>,
    aux_stop: Arc<AtomicBool>,
}

/// How a run ended, for the exit code and the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub end: End,
}

/// Picks the backend a model needs under `--backend`.
pub fn backend_for(
    choice: BackendChoice,
    model: &std::path::Path,
    cfg: &Config,
) -> Result<Box<dyn Backend>, BackendError> {
    let by_ext = BackendKind::for_path(model);
    let kind = match choice {
        BackendChoice::Only(k) => k,
        BackendChoice::Auto => {
            let k = by_ext.unwrap_or(BackendKind::OnnxRuntime);
            log::info!(
                "backend auto: {} selected by the extension of {}",
                k,
                model.display()
            );
            k
        }
    };
    match kind {
        BackendKind::OnnxRuntime => Ok(Box::new(OnnxBackend::new(cfg.ort.clone())?)),
        BackendKind::TensorRt => crate::backend::tensorrt::backend(cfg),
        BackendKind::Vitis => crate::backend::vitis::backend(cfg),
    }
}

/// Loads the `--model` file synchronously (a broken one is a start-up failure).
fn initial_pipeline(
    config: &Config,
    model_path: &std::path::Path,
    frame_size: (u32, u32, PixelFormat),
) -> Result<Pipeline, StartError> {
    let backend = backend_for(config.backend, model_path, config)?;
    let engine = backend.load(
        model_path,
        &LoadOptions {
            threads: config.threads,
        },
    )?;
    let info = engine.info().clone();
    log::info!(
        "model {} ({}, {}): input {}x{}x{}, {} classes",
        info.name,
        info.backend,
        info.precision.name(),
        info.input.channels,
        info.input.height,
        info.input.width,
        info.classes
    );
    let mut pre = Preprocessor::new(info.input, config.preprocess).map_err(|source| {
        StartError::Preprocess {
            model: info.name.clone(),
            source,
        }
    })?;
    if frame_size.0 > 0 && frame_size.1 > 0 {
        pre.prepare(frame_size.0, frame_size.1, frame_size.2)
            .map_err(|source| StartError::Preprocess {
                model: info.name.clone(),
                source,
            })?;
    }
    let mut pipe = Pipeline::new(engine, pre);
    warm_up(&mut pipe.engine, config.warmup)?;
    crate::rt::trim_heap();
    Ok(pipe)
}

/// Loads the model (or prepares to wait for the watch folder), opens the source, binds the socket
/// and starts every thread.
pub fn start(
    config: Config,
    raw: RawConfig,
    notifier: Arc<Notifier>,
    signals: Arc<SignalFlags>,
) -> Result<Daemon, StartError> {
    let started = MonoTime::now();
    if config.model.is_none() && config.models.is_none() {
        return Err(StartError::NoModel);
    }
    // Idle power is measured before any model is loaded or run.
    let power =
        crate::power::monitor::start_with_idle(config.power.as_ref()).map_err(|source| {
            StartError::Thread {
                name: "rtinfer-power",
                source,
            }
        })?;
    let src = source::open(&config.source)?;
    let src_info = src.info();
    let build = || match &config.model {
        Some(path) => initial_pipeline(&config, path, src_info.frame_size()).map(Some),
        None => Ok(None),
    };
    // An int8 TensorRT build calibrating on the live source itself must be able to open it (a
    // camera streams to one reader): the source is closed for the start-up build and reopened.
    let calibrates_on_live = config
        .tensorrt
        .calibration_source
        .as_ref()
        .is_some_and(|s| s.uri == config.source.uri);
    let (src, mut pipe) = if calibrates_on_live && config.model.is_some() {
        drop(src);
        let pipe = build()?;
        (source::open(&config.source)?, pipe)
    } else {
        let pipe = build()?;
        (src, pipe)
    };
    log::info!(
        "source {}: {}x{} at {}",
        src_info.uri,
        src_info.width,
        src_info.height,
        src_info.fps.map_or_else(
            || "its own rate (unpaced)".to_string(),
            |f| format!("{f} FPS")
        )
    );
    let server = StatusServer::bind_unix(&config.socket)?;
    log::info!("status socket {}", config.socket.display());

    let mut ctl = LoopControl::new(config.budget);
    ctl.watchdog = config
        .realtime
        .cancel_after
        .map(|d| Arc::new(crate::watchdog::Watchdog::new(d)));
    ctl.overrun = config.overrun;
    let ctl = Arc::new(ctl);
    let slot = Arc::new(FrameSlot::new(src_info.width, src_info.height));
    let source_health = crate::capture::SourceHealth::new(
        &src_info.uri,
        src_info.fps,
        Duration::from_secs_f64(1.0 / src_info.fps.unwrap_or(config.target_fps)),
    );
    let models_cfg = config.models.clone();
    let shared = Arc::new(Shared {
        started,
        live: Mutex::new(Live {
            loaded_at: rfc3339_now(),
            restart_required: Vec::new(),
            raw,
            target_fps: config.target_fps,
        }),
        notifier: Arc::clone(&notifier),
        config,
        ctl: Arc::clone(&ctl),
        slot: Arc::clone(&slot),
        stats: Mutex::new(StatsState {
            latency: LatencyStats::new(Duration::from_secs(10)),
            last_miss: None,
            last_result: None,
            last_done: None,
            misslog: MissLog::new(),
        }),
        system: Mutex::new(SystemFigures::default()),
        model: Mutex::new(None),
        generations: Mutex::new(Vec::new()),
        registry: Mutex::new(Registry::default()),
        swap: SwapSlot::default(),
        loader_tx: Mutex::new(None),
        models_cfg: Mutex::new(models_cfg),
        engine_memory: Mutex::new(None),
        source: src_info,
        source_connected: AtomicBool::new(true),
        power: Mutex::new(power.map(Arc::new)),
        source_health,
        realtime: crate::rt::RealtimeState::default(),
        state: AtomicU8::new(State::Waiting as u8),
    });
    if let Some(p) = pipe.as_mut() {
        shared.number(p);
        shared.set_model(Some(p.engine.info().clone()), p.engine.memory());
        if let Some(dir) = &shared.models_config() {
            let name = p
                .engine
                .info()
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            if let Some(name) =
                name.filter(|_| p.engine.info().path.parent() == Some(dir.watch_dir.as_path()))
            {
                let v = crate::models::Version::of(&p.engine.info().path);
                shared
                    .registry()
                    .set(&name, crate::models::FileState::Active, v);
            }
        }
    }
    let aux_stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = sync_channel::<FrameRecord>(RECORD_QUEUE);
    let models_stop = Arc::new(AtomicBool::new(false));
    let models = start_models(&shared, &models_stop)?;

    let stats = spawn("rtinfer-stats", {
        let shared = Arc::clone(&shared);
        move || stats_thread(&shared, &rx)
    })?;
    let sampler = spawn("rtinfer-sampler", {
        let shared = Arc::clone(&shared);
        let stop = Arc::clone(&aux_stop);
        move || sampler_thread(&shared, &stop)
    })?;
    let handler = Arc::new(crate::report::StatusHandler::new(Arc::clone(&shared)));
    let status = Some(
        server
            .spawn(handler, Arc::clone(&aux_stop))
            .map_err(|source| StartError::Thread {
                name: "rtinfer-status",
                source,
            })?,
    );
    let tcp = match shared.config.tcp {
        Some(addr) => Some(start_tcp(&shared, addr)?),
        None => None,
    };
    let notify = spawn("rtinfer-notify", {
        let shared = Arc::clone(&shared);
        let stop = Arc::clone(&aux_stop);
        move || {
            let status = || shared.status_line();
            crate::systemd::watchdog_loop(
                &shared.notifier,
                &shared.ctl.heartbeat,
                crate::systemd::watchdog_interval(),
                Duration::from_secs(5),
                &status,
                &stop,
            )
        }
    })?;
    let notify = Some(notify);
    if let Some(w) = shared.ctl.watchdog.clone() {
        let opts = shared.config.realtime.clone();
        spawn("rtinfer-deadline", move || {
            crate::rt::apply_priority_quietly(&opts);
            w.run()
        })?;
    }
    if pipe.is_some() {
        // With a watch folder and no model yet, the loader locks once the first one is live.
        crate::rt::lock_memory(&shared.config.realtime, &shared.realtime);
    }
    let pipeline = spawn("rtinfer-pipeline", {
        let shared = Arc::clone(&shared);
        move || {
            crate::rt::apply_to_current_thread(&shared.config.realtime, &shared.realtime);
            pipeline::run(&mut pipe, &shared.swap, &shared.slot, &shared.ctl, &tx)
        }
    })?;
    spawn("rtinfer-stall", {
        let shared = Arc::clone(&shared);
        let stop = Arc::clone(&aux_stop);
        move || crate::capture::watch_stalls(&shared, &stop)
    })?;
    let capture = spawn("rtinfer-capture", {
        let shared = Arc::clone(&shared);
        let mut src = src;
        move || crate::capture::run(&mut *src, &shared)
    })?;
    drop(signals);
    Ok(Daemon {
        shared,
        pipeline,
        stats,
        capture,
        sampler,
        status,
        models,
        models_stop,
        notify,
        tcp,
        aux_stop,
    })
}

/// Binds and starts the read-only TCP status listener.
fn start_tcp(
    shared: &Arc<Shared>,
    addr: std::net::SocketAddr,
) -> Result<(JoinHandle<()>, Arc<AtomicBool>), StartError> {
    let server = StatusServer::bind_tcp(addr)?;
    log::info!("status over TCP on {addr} (GET /status, /metrics, /healthz only)");
    let stop = Arc::new(AtomicBool::new(false));
    let handler = Arc::new(crate::report::StatusHandler::new(Arc::clone(shared)));
    let h = server
        .spawn(handler, Arc::clone(&stop))
        .map_err(|source| StartError::Thread {
            name: "rtinfer-status-tcp",
            source,
        })?;
    Ok((h, stop))
}

/// Starts the watcher and the loader when a watch folder is configured.
fn start_models(
    shared: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let Some(cfg) = shared.models_config() else {
        return Ok(Vec::new());
    };
    let (tx, rx) = std::sync::mpsc::channel::<LoaderMsg>();
    let (wtx, wrx) = std::sync::mpsc::channel::<WatchEvent>();
    *shared.loader_tx.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
    let dir = cfg.watch_dir.clone();
    let watcher = spawn("rtinfer-watch", {
        let stop = Arc::clone(stop);
        move || crate::models::watch::run(&dir, &wtx, &stop)
    })?;
    // Forwards watcher events into the loader's queue (one queue serves the socket too).
    let forward = spawn("rtinfer-watch-fwd", move || {
        for ev in wrx {
            if tx.send(LoaderMsg::Watch(ev)).is_err() {
                return;
            }
        }
    })?;
    let loader = spawn("rtinfer-loader", {
        let shared = Arc::clone(shared);
        let stop = Arc::clone(stop);
        move || Loader::new(Arc::clone(&shared), cfg, stop).run(&rx)
    })?;
    Ok(vec![watcher, forward, loader])
}

impl Daemon {
    /// Reload of `[models]`: stops the watcher and loader, then follows the new folder (or none).
    /// The model serving now keeps serving; the new folder's newest model becomes the candidate.
    fn follow_watch_folder(&mut self, cfg: Option<crate::models::ModelsConfig>) {
        self.models_stop.store(true, Ordering::SeqCst);
        *self
            .shared
            .loader_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        for h in self.models.drain(..) {
            let _ = h.join();
        }
        // Another folder has other files; the same folder keeps what was tried (the serving
        // model's file is not loaded a second time).
        let same_folder = self
            .shared
            .models_config()
            .zip(cfg.as_ref())
            .is_some_and(|(old, new)| old.watch_dir == new.watch_dir);
        if !same_folder {
            self.shared.registry().forget_files();
        }
        *self
            .shared
            .models_cfg
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = cfg;
        self.models_stop = Arc::new(AtomicBool::new(false));
        match start_models(&self.shared, &self.models_stop) {
            Ok(h) => self.models = h,
            Err(e) => log::error!("reload: watch folder: {e}"),
        }
    }

    /// SIGHUP: re-read and validate; on error keep everything; apply the live keys at once and
    /// list the others as needing a restart (log line and `/status` `config.restart_required`).
    fn reload(&mut self, reload: &dyn Fn() -> Result<(RawConfig, Config), String>) {
        let n = Arc::clone(&self.shared.notifier);
        n.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            MonoTime::now().as_nanos() / 1000
        ));
        match reload() {
            Err(e) => log::error!("reload failed, keeping the running configuration: {e}"),
            Ok((raw, cfg)) => {
                let old_raw = self.shared.live().raw.clone();
                let changed = crate::config::changed_keys(&old_raw, &raw);
                let (mut live, mut restart): (Vec<String>, Vec<String>) = changed
                    .into_iter()
                    .partition(|k| LIVE_KEYS.contains(&k.as_str()));
                if let Some(i) = restart.iter().position(|k| k == "run.source")
                    && let Some(fps) = source_rate_change(&old_raw, &cfg)
                {
                    restart.remove(i);
                    live.push("run.source".into());
                    self.shared.source_health.request_rate(&cfg.source.uri, fps);
                }
                self.shared
                    .ctl
                    .budget_ns
                    .store(cfg.budget.as_nanos() as u64, Ordering::SeqCst);
                if std::env::var_os("RUST_LOG").is_none() {
                    log::set_max_level(cfg.log_level);
                }
                if live.iter().any(|k| k.starts_with("models.")) {
                    self.follow_watch_folder(cfg.models.clone());
                }
                if live.iter().any(|k| k.starts_with("power."))
                    && let Err(e) = self.shared.replace_power(cfg.power.as_ref())
                {
                    log::error!("reload: power meter: {e}");
                }
                if live.iter().any(|k| k == "status.tcp") {
                    if let Some((h, stop)) = self.tcp.take() {
                        stop.store(true, Ordering::SeqCst);
                        let _ = h.join();
                    }
                    if let Some(addr) = cfg.tcp {
                        match start_tcp(&self.shared, addr) {
                            Ok(t) => self.tcp = Some(t),
                            Err(e) => log::error!("reload: status.tcp: {e}"),
                        }
                    }
                }
                let mut l = self.shared.live();
                l.loaded_at = rfc3339_now();
                l.raw = raw;
                l.target_fps = cfg.target_fps;
                for k in &restart {
                    if !l.restart_required.contains(k) {
                        l.restart_required.push(k.clone());
                    }
                }
                drop(l);
                log::info!(
                    "reloaded: budget {:.2} ms; applied {}; restart required for {}",
                    ms(cfg.budget),
                    if live.is_empty() {
                        "nothing".into()
                    } else {
                        live.join(", ")
                    },
                    if restart.is_empty() {
                        "nothing".into()
                    } else {
                        restart.join(", ")
                    }
                );
            }
        }
        n.send(&format!("READY=1\nSTATUS={}", self.shared.status_line()));
    }

    /// Waits until the stream ends, `duration` elapses or a signal asks to stop; then stops every
    /// thread and returns how the run ended.
    pub fn wait(
        mut self,
        signals: &SignalFlags,
        duration: Option<Duration>,
        reload: &dyn Fn() -> Result<(RawConfig, Config), String>,
    ) -> Finished {
        // The capture thread closes the run at the end of its window (see `capture::run`); this
        // deadline only ends a run whose source is blocked in a read when the window closes.
        let deadline = duration.map(|d| MonoTime::now().plus(d + DURATION_GRACE));
        // From zero: a SIGHUP that arrived during start-up is still honoured.
        let mut reloads_seen = 0;
        loop {
            let reloads = signals.reloads.load(Ordering::SeqCst);
            if reloads != reloads_seen {
                reloads_seen = reloads;
                self.reload(reload);
            }
            if signals.stop.load(Ordering::SeqCst) {
                let sig = crate::signals::stop_signal_name(signals).unwrap_or("signal");
                log::info!("{sig}: stopping");
                break;
            }
            if deadline.is_some_and(|d| MonoTime::now() >= d) {
                log::info!("duration reached (source silent): stopping");
                break;
            }
            if self.pipeline.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shared.set_state(State::Stopping);
        self.shared.notifier.send("STOPPING=1");
        self.shared.ctl.stop.store(true, Ordering::SeqCst);
        let end = self
            .pipeline
            .join()
            .unwrap_or_else(|_| End::Error("the pipeline thread panicked".into()));
        if let Some(w) = &self.shared.ctl.watchdog {
            w.stop();
        }
        // The pipeline dropped its sender: the stats thread drains what is queued and returns.
        let _ = self.stats.join();
        self.aux_stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.status {
            let _ = s.join();
        }
        let _ = self.sampler.join();
        if let Some(h) = self.notify {
            let _ = h.join();
        }
        if let Some((h, stop)) = self.tcp {
            stop.store(true, Ordering::SeqCst);
            let _ = h.join();
        }
        *self
            .shared
            .loader_tx
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.models_stop.store(true, Ordering::SeqCst);
        for h in self.models {
            let _ = h.join();
        }
        if let Some(p) = self.shared.power() {
            p.stop();
        }
        // A capture thread blocked in a read of a silent pipe cannot be interrupted; it is left
        // behind (the process exits) rather than hanging the shutdown.
        for _ in 0..50 {
            if self.capture.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Finished { end }
    }
}

fn spawn<F: FnOnce() -> T + Send + 'static, T: Send + 'static>(
    name: &'static str,
    f: F,
) -> Result<JoinHandle<T>, StartError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|source| StartError::Thread { name, source })
}

/// Runs the engine `n` times on its (zeroed) input so first-run costs stay out of the figures.
fn warm_up(engine: &mut Box<dyn Engine>, n: u32) -> Result<(), BackendError> {
    let t = MonoTime::now();
    for _ in 0..n {
        engine.run()?;
    }
    if n > 0 {
        log::info!(
            "warm-up: {n} runs in {:.1} ms",
            ms(MonoTime::now().saturating_since(t))
        );
    }
    Ok(())
}

fn stats_thread(shared: &Shared, rx: &Receiver<FrameRecord>) {
    let mut results =
        shared
            .config
            .results
            .as_ref()
            .and_then(|p| match crate::results::ResultsLog::create(p) {
                Ok(r) => Some(r),
                Err(e) => {
                    log::error!("results file {}: {e}; results are not written", p.display());
                    None
                }
            });
    // Records are drained into a reused batch, absorbed under the stats lock, and written to the
    // results file after the lock is released, so a status request never waits on file I/O.
    let mut batch: Vec<FrameRecord> = Vec::with_capacity(RECORD_QUEUE);
    let mut lines: Vec<MissLine> = Vec::with_capacity(4);
    loop {
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(r) => batch.push(r),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        batch.extend(rx.try_iter());
        {
            let mut st = shared.stats();
            for rec in &batch {
                // A period that ended before this frame gets its summary first, so it is logged
                // before the next period's detailed line, not after it.
                lines.extend(st.misslog.tick(rec.done_at));
                lines.extend(absorb(&mut st, shared, rec));
            }
            lines.extend(st.misslog.tick(MonoTime::now()));
        }
        for line in lines.drain(..) {
            log::warn!(target: "rtinfer::pipeline", "{line}");
        }
        if let Some(r) = results.as_mut() {
            for rec in &batch {
                r.write(shared, rec);
            }
            r.flush();
        }
        batch.clear();
    }
    // The last, partial period's count is not logged at WARN: that could be a third line in a
    // second. The final summary carries the total (`missed_deadline`).
    let mut st = shared.stats();
    while let Some(line) = st.misslog.flush() {
        log::debug!(target: "rtinfer::pipeline", "at shutdown: {line}");
    }
}

/// Folds one record into the statistics; returns the miss line to log, if this miss gets one.
fn absorb(st: &mut StatsState, shared: &Shared, rec: &FrameRecord) -> Option<MissLine> {
    match rec.outcome {
        Outcome::OnTime | Outcome::Late => {
            st.latency.record(rec.done_at, &rec.times);
            st.last_result = Some(*rec);
            st.last_done = Some(rec.done_at);
            if shared.state() == State::Waiting {
                shared.set_state(State::Running);
            }
        }
        Outcome::Cancelled | Outcome::Failed | Outcome::NoModel | Outcome::Skipped => {}
    }
    if matches!(rec.outcome, Outcome::Late | Outcome::Cancelled) {
        let latency = rec.times.end_to_end;
        let overshoot = latency.saturating_sub(rec.budget);
        st.last_miss = Some(LastMiss {
            seq: rec.seq,
            latency,
            overshoot,
            at: SystemTime::now(),
        });
        return st.misslog.on_miss(rec.done_at, rec.seq, latency, overshoot);
    }
    None
}

fn sampler_thread(shared: &Shared, stop: &AtomicBool) {
    let mut sampler = SystemSampler::new();
    while !stop.load(Ordering::Relaxed) {
        let fig = sampler.sample();
        *shared.system.lock().unwrap_or_else(|p| p.into_inner()) = fig;
        for _ in 0..10 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Where the status socket of a config lives (for `rtinfer status`).
pub fn socket_path(cfg: Option<&Config>) -> PathBuf {
    cfg.map(|c| c.socket.clone())
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_SOCKET))
}
