//! `rtinfer run`: wires the threads of DESIGN.md's data flow around one engine and one source.
//!
//! Build, then spawn (as linkerd2-proxy's app does): [`Daemon::build`] measures idle power, opens
//! the source, loads the start-up model and binds the socket, starting no thread of its own, so
//! every start-up failure ([`StartError`], exit 3) happens before anything runs;
//! [`Daemon::spawn`] starts the threads; [`Running::wait`] serves signals and reloads until the
//! run ends and stops every thread. A source that fails mid-stream ends the run with
//! [`RunError`] (exit 1); a clean end (duration, signal, EOF on a frame boundary) exits 0.
//!
//! capture thread → `FrameSlot` → pipeline thread → bounded channel → stats thread; a sampler
//! thread reads process figures; the status server answers from [`Shared`]. The threads outside
//! this module get small contexts, never `Shared` (see [`shared`]).

pub mod metrics;
mod page;
mod power;
mod record;
mod reload;
pub mod report;
pub mod results;
pub mod shared;
pub mod stats;
pub mod subscribers;

use crate::mqtt::Publisher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{Config, RawConfig};
use crate::models::loader::{Loader, LoaderMsg};
use crate::models::watch::WatchEvent;
use crate::pipeline::{self, FrameRecord, Pipeline};
use crate::signals::SignalFlags;
use crate::slot::End;
use crate::source::{self, Source, SourceError};
use crate::status::server::StatusServer;
use crate::systemd::Notifier;
use crate::time::MonoTime;
pub use reload::LiveKey;
use report::StatusHandler;
pub use shared::{Live, Shared};
pub use stats::{LastMiss, StatsState};

pub use crate::state::State;

/// How long after `--duration` a run whose source is blocked in a read is stopped anyway.
const DURATION_GRACE: Duration = Duration::from_secs(1);

/// Why the daemon could not start (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no model given (use --model FILE or run.model in the config)")]
    NoModel,
    #[error(transparent)]
    Model(#[from] crate::models::PrepareError),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Its own message names the socket.
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    #[error("cannot start thread {name}: {source}")]
    Thread {
        name: &'static str,
        source: std::io::Error,
    },
}

/// Why a run ended other than cleanly (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The source failed mid-stream; the capture thread's error, with its chain.
    #[error(transparent)]
    Source(Arc<SourceError>),
    #[error("the pipeline thread panicked")]
    PipelinePanicked,
    #[error(
        "the pipeline thread is stuck in the model's run ({:.0} s after the stop request, {}); \
         exiting without it",
        waited.as_secs_f64(),
        if *cancelled { "a cancel did not end it" } else { "the model cannot be cancelled" }
    )]
    PipelineStuck { waited: Duration, cancelled: bool },
}

/// How long a stop waits for the frame in the pipeline before cancelling its run, and then for
/// the cancel to take; both well inside systemd's `TimeoutStopSec=20`.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
pub const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// How a run ended, for the exit code and the summary.
#[derive(Debug)]
pub struct Finished {
    pub result: Result<(), RunError>,
}

/// A daemon built and ready to start: model loaded, source open, socket bound.
pub struct Daemon {
    shared: Arc<Shared>,
    source: Box<dyn Source>,
    /// The start-up model's pipeline; `None` while waiting for the watch folder.
    pipeline: Option<Pipeline>,
    server: StatusServer,
}

impl Daemon {
    /// Measures idle power (before any model runs), opens the source, loads the start-up model
    /// (or prepares to wait for the watch folder) and binds the status socket.
    pub fn build(
        config: Config,
        raw: RawConfig,
        notifier: Arc<Notifier>,
    ) -> Result<Daemon, StartError> {
        let started = MonoTime::now();
        if config.model.is_none() && config.models.is_none() {
            return Err(StartError::NoModel);
        }
        let power =
            crate::power::monitor::start_with_idle(config.power.as_ref()).map_err(|source| {
                StartError::Thread {
                    name: "rtinfer-power",
                    source,
                }
            })?;
        let (source, mut pipeline) = open_source_and_model(&config)?;
        let info = source.info();
        log::info!(
            "source {}: {}x{} at {}",
            info.uri,
            info.width,
            info.height,
            info.fps.map_or_else(
                || "its own rate (unpaced)".to_string(),
                |f| format!("{f} FPS")
            )
        );
        let server = StatusServer::bind_unix(&config.socket)?;
        log::info!("status socket {}", config.socket.display());
        let shared = Arc::new(Shared::new(config, raw, notifier, info, power, started));
        if let Some(p) = pipeline.as_mut() {
            install_start_model(&shared, p);
        }
        Ok(Daemon {
            shared,
            source,
            pipeline,
            server,
        })
    }

    /// Starts every thread.
    pub fn spawn(self) -> Result<Running, StartError> {
        let Daemon {
            shared,
            source,
            pipeline,
            server,
        } = self;
        let aux_stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = sync_channel::<FrameRecord>(stats::RECORD_QUEUE);
        let models = ModelThreads::start(&shared)?;
        let stats = spawn("rtinfer-stats", {
            let shared = Arc::clone(&shared);
            move || stats::run(&shared, &rx)
        })?;
        let sampler = spawn("rtinfer-sampler", {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&aux_stop);
            move || stats::sample(&shared, &stop)
        })?;
        let status = server
            .spawn(
                Arc::new(StatusHandler::new(Arc::clone(&shared))),
                Arc::clone(&aux_stop),
            )
            .map_err(|source| StartError::Thread {
                name: "rtinfer-status",
                source,
            })?;
        let tcp = match shared.config.tcp {
            Some(addr) => Some(start_tcp(&shared, addr)?),
            None => None,
        };
        if let Some(o) = shared.config.mqtt.clone() {
            let p = Publisher::start(o).map_err(|source| StartError::Thread {
                name: "rtinfer-mqtt",
                source,
            })?;
            shared.set_mqtt(Some(p));
        }
        let notify = spawn_notifier(&shared, &aux_stop)?;
        if let Some(w) = shared.ctl.watchdog.clone() {
            let opts = shared.config.realtime.clone();
            spawn("rtinfer-deadline", move || {
                crate::rt::apply_priority_quietly(&opts);
                w.run()
            })?;
        }
        let pipeline = spawn_pipeline(&shared, pipeline, tx)?;
        let capture = spawn_capture(&shared, source, &aux_stop)?;
        Ok(Running {
            shared,
            pipeline,
            stats,
            capture,
            sampler,
            status,
            models,
            notify,
            tcp,
            aux_stop,
        })
    }
}

/// Opens the source and loads the `--model` file synchronously (a broken one is a start-up
/// failure). An int8 TensorRT build calibrating on the live source itself must be able to open
/// it (a camera streams to one reader): the source is then closed for the build and reopened.
fn open_source_and_model(
    config: &Config,
) -> Result<(Box<dyn Source>, Option<Pipeline>), StartError> {
    let src = source::open(&config.source)?;
    let info = src.info();
    let build = || -> Result<Option<Pipeline>, StartError> {
        let Some(path) = &config.model else {
            return Ok(None);
        };
        let frame_size = info.frame_size();
        let prepared = crate::models::prepare(
            &config.backend,
            path,
            config.warmup,
            frame_size,
            &crate::models::LoadHandle::default(),
        )?;
        crate::rt::trim_heap();
        Ok(Some(prepared.pipeline))
    };
    let calibrates_on_live = config
        .backend
        .tensorrt
        .calibration_source
        .as_ref()
        .is_some_and(|s| s.uri == config.source.uri);
    if calibrates_on_live && config.model.is_some() {
        drop(src);
        let pipe = build()?;
        Ok((source::open(&config.source)?, pipe))
    } else {
        let pipe = build()?;
        Ok((src, pipe))
    }
}

/// Records the start-up model as serving (generation 1), and as the active file when it lies in
/// the watch folder.
fn install_start_model(shared: &Shared, p: &mut Pipeline) {
    shared.serving.install(p);
    let path = &p.engine.info().path;
    let Some(dir) = shared.models_config() else {
        return;
    };
    if path.parent() != Some(dir.watch_dir.as_path()) {
        return;
    }
    if let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) {
        let v = crate::models::Version::of(path);
        shared
            .registry()
            .set(&name, crate::models::FileState::Active, v);
    }
}

/// The systemd notifier: `STATUS=` every 5 s, `WATCHDOG=1` while the pipeline's heart beats.
fn spawn_notifier(
    shared: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
) -> Result<JoinHandle<()>, StartError> {
    let shared = Arc::clone(shared);
    let stop = Arc::clone(stop);
    spawn("rtinfer-notify", move || {
        let status = || shared.status_line();
        crate::systemd::watchdog_loop(
            &shared.notifier,
            &shared.ctl.heartbeat,
            crate::systemd::watchdog_interval(),
            Duration::from_secs(5),
            &status,
            &stop,
        )
    })
}

/// The pipeline thread, on the start-up model (or none yet).
fn spawn_pipeline(
    shared: &Arc<Shared>,
    mut pipe: Option<Pipeline>,
    records: std::sync::mpsc::SyncSender<FrameRecord>,
) -> Result<JoinHandle<End>, StartError> {
    if pipe.is_some() {
        // With a watch folder and no model yet, the loader locks once the first one is live.
        crate::rt::lock_memory(&shared.config.realtime, &shared.realtime);
    }
    let shared = Arc::clone(shared);
    spawn("rtinfer-pipeline", move || {
        crate::rt::apply_to_current_thread(&shared.config.realtime, &shared.realtime);
        pipeline::run(
            &mut pipe,
            shared.serving.swap_slot(),
            &shared.slot,
            &shared.ctl,
            &records,
        )
    })
}

/// The capture thread and its stall watcher.
fn spawn_capture(
    shared: &Shared,
    mut src: Box<dyn Source>,
    stop: &Arc<AtomicBool>,
) -> Result<JoinHandle<()>, StartError> {
    let ctx = Arc::new(shared.capture_context());
    spawn("rtinfer-stall", {
        let ctx = Arc::clone(&ctx);
        let stop = Arc::clone(stop);
        move || crate::capture::watch_stalls(&ctx, &stop)
    })?;
    spawn("rtinfer-capture", move || {
        crate::capture::run(&mut *src, &ctx)
    })
}

/// Binds and starts the read-only TCP status listener.
fn start_tcp(
    shared: &Arc<Shared>,
    addr: std::net::SocketAddr,
) -> Result<(JoinHandle<()>, Arc<AtomicBool>), StartError> {
    let server = StatusServer::bind_tcp(addr)?;
    log::info!(
        "status over TCP on {addr} (read-only: GET /, /status, /metrics, /healthz, /results)"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let handler = Arc::new(StatusHandler::new(Arc::clone(shared)));
    let h = server
        .spawn(handler, Arc::clone(&stop))
        .map_err(|source| StartError::Thread {
            name: "rtinfer-status-tcp",
            source,
        })?;
    Ok((h, stop))
}

/// The watcher and the loader of the watch folder in force, and their stop flag.
struct ModelThreads {
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Set on SIGHUP: the watcher resolves the folder's path again at once.
    recheck: Arc<AtomicBool>,
}

impl ModelThreads {
    /// Starts the watcher and the loader when a watch folder is configured.
    fn start(shared: &Arc<Shared>) -> Result<ModelThreads, StartError> {
        let stop = Arc::new(AtomicBool::new(false));
        let Some(cfg) = shared.models_config() else {
            return Ok(ModelThreads {
                handles: Vec::new(),
                stop,
                recheck: Arc::default(),
            });
        };
        let (tx, rx) = std::sync::mpsc::channel::<LoaderMsg>();
        let (wtx, wrx) = std::sync::mpsc::channel::<WatchEvent>();
        shared.set_loader(Some(tx.clone()));
        let dir = cfg.watch_dir.clone();
        let recheck = Arc::new(AtomicBool::new(false));
        let watcher = spawn("rtinfer-watch", {
            let (stop, recheck) = (Arc::clone(&stop), Arc::clone(&recheck));
            move || crate::models::watch::run_following(&dir, &wtx, &stop, &recheck)
        })?;
        let forward = spawn("rtinfer-watch-fwd", move || forward(&wrx, &tx))?;
        let loader = spawn("rtinfer-loader", {
            let ctx = shared.loader_context();
            let stop = Arc::clone(&stop);
            let governor = shared.governor();
            move || {
                let loader = Loader::new(ctx, cfg, stop);
                match governor {
                    Some(g) => loader.with_governor(g).run(&rx),
                    None => loader.run(&rx),
                }
            }
        })?;
        Ok(ModelThreads {
            handles: vec![watcher, forward, loader],
            stop,
            recheck,
        })
    }

    /// Asks the watcher to resolve the folder's path again now (SIGHUP).
    fn recheck(&self) {
        self.recheck.store(true, Ordering::Relaxed);
    }

    /// Stops and joins them (a load in progress is left to finish on its own).
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Forwards watcher events into the loader's queue (one queue serves the socket too).
fn forward(events: &std::sync::mpsc::Receiver<WatchEvent>, loader: &Sender<LoaderMsg>) {
    for ev in events {
        if loader.send(LoaderMsg::Watch(ev)).is_err() {
            return;
        }
    }
}

/// A running daemon.
pub struct Running {
    pub shared: Arc<Shared>,
    pipeline: JoinHandle<End>,
    stats: JoinHandle<()>,
    capture: JoinHandle<()>,
    sampler: JoinHandle<()>,
    status: JoinHandle<()>,
    /// The watcher and loader (replaced when a reload follows a new watch folder).
    models: ModelThreads,
    notify: JoinHandle<()>,
    tcp: Option<(JoinHandle<()>, Arc<AtomicBool>)>,
    /// Stops the status server, the sampler, the notifier and the stall watcher.
    aux_stop: Arc<AtomicBool>,
}

impl Running {
    /// Waits until the stream ends, `duration` elapses or a signal asks to stop, reloading on
    /// SIGHUP; then stops every thread and returns how the run ended.
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
        self.stop()
    }

    /// Stops every thread: the pipeline first (its end says how the run ended), then the stats
    /// thread once it drained the queue, then the rest.
    fn stop(mut self) -> Finished {
        self.shared.set_state(State::Stopping);
        self.shared.notifier.send("STOPPING=1");
        self.shared.ctl.stop.store(true, Ordering::SeqCst);
        let result = match join_pipeline(self.pipeline, &self.shared.ctl) {
            Ok(Ok(End::Clean)) => Ok(()),
            Ok(Ok(End::Error(e))) => Err(RunError::Source(e)),
            Ok(Err(_)) => Err(RunError::PipelinePanicked),
            Err(stuck) => Err(stuck),
        };
        if let Some(w) = &self.shared.ctl.watchdog {
            w.stop();
        }
        // The pipeline dropped its sender: the stats thread drains what is queued and returns
        // (a stuck pipeline still holds it: then the stats thread is left behind too).
        if !matches!(result, Err(RunError::PipelineStuck { .. })) {
            let _ = self.stats.join();
        }
        self.aux_stop.store(true, Ordering::SeqCst);
        let _ = self.status.join();
        let _ = self.sampler.join();
        let _ = self.notify.join();
        if let Some((h, stop)) = self.tcp.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = h.join();
        }
        self.shared.set_loader(None);
        self.models.stop();
        if let Some(m) = self.shared.mqtt() {
            m.stop();
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
        Finished { result }
    }
}

/// Joins the pipeline thread; a frame whose run does not return within [`STOP_GRACE`] is
/// cancelled (when the model can be), and a thread still stuck after [`CANCEL_GRACE`] is left
/// behind (the process exits without it) so SIGTERM always ends the daemon.
fn join_pipeline(
    pipeline: JoinHandle<End>,
    ctl: &crate::pipeline::LoopControl,
) -> Result<std::thread::Result<End>, RunError> {
    let t0 = MonoTime::now();
    let finished_within = |d: Duration| {
        let end = MonoTime::now().plus(d);
        while !pipeline.is_finished() && MonoTime::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        pipeline.is_finished()
    };
    if !finished_within(STOP_GRACE) {
        let cancelled = ctl.cancel_current();
        log::warn!(
            "stopping: the model's run has not returned for {:.1} s; {}",
            STOP_GRACE.as_secs_f64(),
            if cancelled {
                "cancelling it"
            } else {
                "it cannot be cancelled"
            }
        );
        if !finished_within(CANCEL_GRACE) {
            return Err(RunError::PipelineStuck {
                waited: MonoTime::now().saturating_since(t0),
                cancelled,
            });
        }
    }
    Ok(pipeline.join())
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
