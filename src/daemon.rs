//! `rtinfer run`: wires the threads of DESIGN.md's data flow around one engine and one source.
//!
//! capture thread → [`FrameSlot`] → pipeline thread → bounded channel → stats thread; a sampler
//! thread reads process figures; the status server answers from snapshots. Start-up failures
//! (model, backend, library, source, socket) are [`StartError`]s and exit 3; a source that fails
//! mid-stream ends the run with exit 1; a clean end (duration, signal, EOF on a frame boundary)
//! exits 0.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::backend::onnx::OnnxBackend;
use crate::backend::{
    Backend, BackendChoice, BackendError, BackendKind, Engine, LoadOptions, ModelInfo,
};
use crate::config::Config;
use crate::misslog::MissLog;
use crate::pipeline::{self, FrameRecord, LoopControl, Pipeline};
use crate::preprocess::Preprocessor;
use crate::signals::SignalFlags;
use crate::slot::{End, FrameSlot, Outcome};
use crate::source::{self, Capture, SourceInfo};
use crate::stats::LatencyStats;
use crate::status::server::StatusServer;
use crate::system::{SystemFigures, SystemSampler};
use crate::time::{MonoTime, ms, rfc3339, rfc3339_now};

/// Records queued between the pipeline and the stats thread before one is lost.
const RECORD_QUEUE: usize = 4096;

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
    pub at: String,
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
    pub config_loaded_at: String,
    pub ctl: Arc<LoopControl>,
    pub slot: Arc<FrameSlot>,
    pub stats: Mutex<StatsState>,
    pub system: Mutex<SystemFigures>,
    pub model: ModelInfo,
    pub source: SourceInfo,
    pub source_connected: AtomicBool,
    /// The power meter's thread and figures (`[power]`), if configured.
    pub power: Option<crate::power::PowerMonitor>,
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
}

/// A running daemon.
pub struct Daemon {
    pub shared: Arc<Shared>,
    pipeline: JoinHandle<End>,
    stats: JoinHandle<()>,
    capture: JoinHandle<()>,
    sampler: JoinHandle<()>,
    status: Option<JoinHandle<()>>,
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

/// Loads the model, opens the source, binds the socket and starts every thread.
pub fn start(config: Config, signals: Arc<SignalFlags>) -> Result<Daemon, StartError> {
    let started = MonoTime::now();
    let model_path = config.model.clone().ok_or(StartError::NoModel)?;
    // Idle power is measured before any model is loaded or run.
    let power =
        crate::power::monitor::start_with_idle(config.power.as_ref()).map_err(|source| {
            StartError::Thread {
                name: "rtinfer-power",
                source,
            }
        })?;
    let backend = backend_for(config.backend, &model_path, &config)?;
    let engine = backend.load(
        &model_path,
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
    let pre = Preprocessor::new(info.input, config.preprocess).map_err(|source| {
        StartError::Preprocess {
            model: info.name.clone(),
            source,
        }
    })?;
    let mut pipe = Pipeline::new(engine, pre);
    warm_up(&mut pipe.engine, config.warmup)?;

    let src = source::open(&config.source)?;
    let src_info = src.info();
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

    let ctl = Arc::new(LoopControl::new(config.budget));
    let slot = Arc::new(FrameSlot::new(src_info.width, src_info.height));
    let shared = Arc::new(Shared {
        started,
        config_loaded_at: rfc3339_now(),
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
        model: info,
        source: src_info,
        source_connected: AtomicBool::new(true),
        power,
        state: AtomicU8::new(State::Waiting as u8),
    });
    let aux_stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = sync_channel::<FrameRecord>(RECORD_QUEUE);

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
    let pipeline = spawn("rtinfer-pipeline", {
        let slot = Arc::clone(&slot);
        let ctl = Arc::clone(&ctl);
        move || pipeline::run(&mut pipe, &slot, &ctl, &tx)
    })?;
    let capture = spawn("rtinfer-capture", {
        let shared = Arc::clone(&shared);
        let mut src = src;
        move || capture_thread(&mut *src, &shared)
    })?;
    drop(signals);
    Ok(Daemon {
        shared,
        pipeline,
        stats,
        capture,
        sampler,
        status,
        aux_stop,
    })
}

impl Daemon {
    /// Waits until the stream ends, `duration` elapses or a signal asks to stop; then stops every
    /// thread and returns how the run ended.
    pub fn wait(self, signals: &SignalFlags, duration: Option<Duration>) -> Finished {
        let deadline = duration.map(|d| MonoTime::now().plus(d));
        loop {
            if signals.stop.load(Ordering::SeqCst) {
                let sig = crate::signals::stop_signal_name(signals).unwrap_or("signal");
                log::info!("{sig}: stopping");
                break;
            }
            if deadline.is_some_and(|d| MonoTime::now() >= d) {
                log::info!("duration reached: stopping");
                break;
            }
            if self.pipeline.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.shared.set_state(State::Stopping);
        self.shared.ctl.stop.store(true, Ordering::SeqCst);
        let end = self
            .pipeline
            .join()
            .unwrap_or_else(|_| End::Error("the pipeline thread panicked".into()));
        // The pipeline dropped its sender: the stats thread drains what is queued and returns.
        let _ = self.stats.join();
        self.aux_stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.status {
            let _ = s.join();
        }
        let _ = self.sampler.join();
        if let Some(p) = &self.shared.power {
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

fn capture_thread(src: &mut dyn source::Source, shared: &Shared) {
    let slot = &shared.slot;
    let mut buf = slot.buffer();
    let mut seq = 0u64;
    loop {
        if shared.ctl.stop.load(Ordering::Relaxed) {
            slot.end(End::Clean);
            return;
        }
        match src.next(&mut buf, Duration::from_millis(100)) {
            Ok(Capture::Frame) => {
                seq += 1;
                buf.seq = seq;
                buf = slot.publish(buf);
            }
            Ok(Capture::Timeout) => {}
            Ok(Capture::EndOfStream) => {
                log::info!(
                    "source {}: end of stream after {seq} frames",
                    shared.source.uri
                );
                slot.end(End::Clean);
                return;
            }
            Err(e) => {
                log::error!("{e}");
                shared.source_connected.store(false, Ordering::Relaxed);
                slot.end(End::Error(e.to_string()));
                return;
            }
        }
    }
}

fn stats_thread(shared: &Shared, rx: &Receiver<FrameRecord>) {
    loop {
        let first = match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(r) => Some(r),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut st = shared.stats();
        let now = MonoTime::now();
        for rec in first.into_iter().chain(rx.try_iter()) {
            absorb(&mut st, shared, &rec);
        }
        if let Some(line) = st.misslog.tick(now) {
            log::warn!(target: "rtinfer::pipeline", "{line}");
        }
    }
    // The last, partial period's count is not logged at WARN: that could be a third line in a
    // second. The final summary carries the total (`missed_deadline`).
    let mut st = shared.stats();
    while let Some(line) = st.misslog.flush() {
        log::debug!(target: "rtinfer::pipeline", "at shutdown: {line}");
    }
}

fn absorb(st: &mut StatsState, shared: &Shared, rec: &FrameRecord) {
    match rec.outcome {
        Outcome::OnTime | Outcome::Late => {
            st.latency.record(rec.done_at, &rec.times);
            st.last_result = Some(*rec);
            st.last_done = Some(rec.done_at);
            if shared.state() == State::Waiting {
                shared.set_state(State::Running);
            }
        }
        Outcome::Cancelled | Outcome::Failed => {}
    }
    if matches!(rec.outcome, Outcome::Late | Outcome::Cancelled) {
        let latency = rec.times.end_to_end;
        let overshoot = latency.saturating_sub(rec.budget);
        st.last_miss = Some(LastMiss {
            seq: rec.seq,
            latency,
            overshoot,
            at: rfc3339(SystemTime::now()),
        });
        if let Some(line) = st.misslog.on_miss(rec.done_at, rec.seq, latency, overshoot) {
            log::warn!(target: "rtinfer::pipeline", "{line}");
        }
    }
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
