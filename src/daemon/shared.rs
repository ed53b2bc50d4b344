//! The state the daemon's threads and its status views share.
//!
//! Each group that is read together sits behind one lock (or is its own type with its own
//! lock): the serving model with its memory and generations ([`Serving`]), the statistics, the
//! process figures, the reloadable settings, the watch folder with its loader queue, the power
//! meter. The threads outside this module never see `Shared`: the capture thread gets a
//! [`CaptureContext`] and the loader a [`LoaderContext`], each built here from these parts.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::stats::StatsState;
use super::subscribers::Subscribers;
use crate::capture::{CaptureContext, SourceHealth};
use crate::config::{Config, RawConfig};
use crate::governor::{Governor, GovernorContext, GovernorShared};
use crate::models::loader::{LoaderContext, LoaderMsg};
use crate::models::serving::Serving;
use crate::models::{ModelsConfig, Registry};
use crate::mqtt::Publisher;
use crate::pipeline::LoopControl;
use crate::power::{IdleSetting, PowerMonitor, PowerOptions};
use crate::rt::RealtimeState;
use crate::slot::FrameSlot;
use crate::source::SourceInfo;
use crate::state::{State, StateCell};
use crate::system::SystemFigures;
use crate::systemd::Notifier;
use crate::time::{MonoTime, rfc3339_now};

/// Locks `m`, taking over a lock a panicked thread left behind (the data is plain figures).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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

/// The watch folder in force (a reload may change it) and the loader's queue, when one runs.
#[derive(Default)]
struct Watch {
    config: Option<ModelsConfig>,
    requests: Option<Sender<LoaderMsg>>,
}

/// Why `POST /models/NAME/activate` (or a governor request) could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("no watch folder is configured (--models DIR)")]
    NoWatchFolder,
    #[error("the loader has stopped")]
    LoaderStopped,
    #[error(transparent)]
    Queued(#[from] crate::models::QueueError),
}

/// State shared between the threads and the status handler.
pub struct Shared {
    pub started: MonoTime,
    pub config: Config,
    /// The service manager, when run by systemd.
    pub notifier: Arc<Notifier>,
    pub ctl: Arc<LoopControl>,
    pub slot: Arc<FrameSlot>,
    state: Arc<StateCell>,
    /// The model serving now, its memory and generations, and the hand-over to the pipeline.
    pub serving: Arc<Serving>,
    /// Watch-folder bookkeeping and swap history.
    registry: Arc<Mutex<Registry>>,
    /// The source as opened: its frame size. The URI and rate in force (a reload can re-pace the
    /// source) are `source_health.uri()` and `.fps()`.
    pub source: SourceInfo,
    /// Stalls, pacing jitter, connection, URI and rate in force (`/status` `source`).
    pub source_health: Arc<SourceHealth>,
    /// What `[realtime]` achieved (`/status` `realtime`).
    pub realtime: Arc<RealtimeState>,
    stats: Mutex<StatsState>,
    system: Mutex<SystemFigures>,
    live: Mutex<Live>,
    watch: Mutex<Watch>,
    /// The power meter's thread and figures (`[power]`), if configured; replaced by a reload.
    power: Mutex<Option<Arc<PowerMonitor>>>,
    /// The governor's window and view (`[governor] enabled`); the governor itself runs on the
    /// loader thread.
    pub governor: Option<Arc<GovernorShared>>,
    /// `GET /results` subscribers, fed by the stats thread.
    pub subscribers: Subscribers,
    /// `[mqtt]`'s publisher, once started.
    mqtt: Mutex<Option<Arc<Publisher>>>,
    /// `--results`: lines written and lost, the write error in force (`/status` `results`).
    pub results: super::results::ResultsHealth,
}

impl Shared {
    /// The shared state of a daemon about to start on a source of `source` geometry and rate.
    pub fn new(
        config: Config,
        raw: RawConfig,
        notifier: Arc<Notifier>,
        source: SourceInfo,
        power: Option<PowerMonitor>,
        started: MonoTime,
    ) -> Shared {
        let mut ctl = LoopControl::new(config.budget);
        ctl.watchdog = config
            .realtime
            .cancel_after
            .map(|d| Arc::new(crate::watchdog::Watchdog::new(d)));
        ctl.overrun = config.overrun;
        let source_health = SourceHealth::new(
            &source.uri,
            source.fps,
            crate::units::period(source.fps.unwrap_or(config.target_fps)),
        );
        Shared {
            started,
            live: Mutex::new(Live {
                loaded_at: rfc3339_now(),
                restart_required: Vec::new(),
                raw,
                target_fps: config.target_fps,
            }),
            watch: Mutex::new(Watch {
                config: config.models.clone(),
                requests: None,
            }),
            notifier,
            ctl: Arc::new(ctl),
            slot: Arc::new(FrameSlot::new(source.width, source.height)),
            state: Arc::new(StateCell::new(State::Waiting)),
            serving: Arc::default(),
            registry: Arc::default(),
            stats: Mutex::new(StatsState::new()),
            system: Mutex::new(SystemFigures::default()),
            source,
            source_health: Arc::new(source_health),
            realtime: Arc::default(),
            power: Mutex::new(power.map(Arc::new)),
            governor: config
                .governor
                .clone()
                .map(|g| Arc::new(GovernorShared::new(g))),
            subscribers: Subscribers::default(),
            mqtt: Mutex::new(None),
            results: Default::default(),
            config,
        }
    }

    /// What the capture thread and its stall watcher get.
    pub fn capture_context(&self) -> CaptureContext {
        CaptureContext {
            slot: Arc::clone(&self.slot),
            health: Arc::clone(&self.source_health),
            state: Arc::clone(&self.state),
            ctl: Arc::clone(&self.ctl),
            realtime: self.config.realtime.clone(),
            duration: self.config.duration,
        }
    }

    /// What a loader gets: models open with the configured backend, preprocessing is built for
    /// the source's frame size, and memory is locked once the first model is live.
    pub fn loader_context(&self) -> LoaderContext {
        let settings = self.config.backend.clone();
        let frame_size = self.source.frame_size();
        let realtime = self.config.realtime.clone();
        let achieved = Arc::clone(&self.realtime);
        LoaderContext {
            prepare: Arc::new(move |path, warmup, handle| {
                crate::models::prepare(&settings, path, warmup, frame_size, handle)
            }),
            serving: Arc::clone(&self.serving),
            pipeline: Some(Arc::clone(&self.ctl)),
            registry: Arc::clone(&self.registry),
            after_swap: Arc::new(move || crate::rt::lock_memory(&realtime, &achieved)),
        }
    }

    /// A governor for a new loader, when `[governor]` is enabled: it measures on frames of the
    /// source's size and reads the budget in force.
    pub fn governor(&self) -> Option<Governor> {
        let shared = Arc::clone(self.governor.as_ref()?);
        Some(Governor::new(GovernorContext {
            shared,
            ctl: Arc::clone(&self.ctl),
            frame_size: self.source.frame_size(),
            frame_rate: self.source.fps.unwrap_or(self.config.target_fps),
        }))
    }

    /// The state word, or `stalled` while the model's run has not returned for far longer than
    /// a frame (the pipeline thread then cannot say so itself).
    pub fn state(&self) -> State {
        match self.state.get() {
            State::Waiting | State::Running | State::Degraded
                if self.ctl.stalled(MonoTime::now()).is_some() =>
            {
                State::Stalled
            }
            s => s,
        }
    }

    pub fn set_state(&self, s: State) {
        self.state.set(s);
    }

    /// Moves the state to `to` only from `from`.
    pub fn change_state(&self, from: State, to: State) -> bool {
        self.state.change(from, to)
    }

    pub fn stats(&self) -> MutexGuard<'_, StatsState> {
        lock(&self.stats)
    }

    pub fn system(&self) -> SystemFigures {
        *lock(&self.system)
    }

    pub fn set_system(&self, figures: SystemFigures) {
        *lock(&self.system) = figures;
    }

    pub fn live(&self) -> MutexGuard<'_, Live> {
        lock(&self.live)
    }

    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// The watch folder in force.
    pub fn models_config(&self) -> Option<ModelsConfig> {
        lock(&self.watch).config.clone()
    }

    /// Follows another watch folder (or none); the loader's queue is closed until
    /// [`Shared::set_loader`] gives a new one.
    pub fn set_models_config(&self, config: Option<ModelsConfig>) {
        let mut w = lock(&self.watch);
        w.config = config;
        w.requests = None;
    }

    /// The queue of the loader now running, or `None` when it stops.
    pub fn set_loader(&self, requests: Option<Sender<LoaderMsg>>) {
        lock(&self.watch).requests = requests;
    }

    /// Asks the loader to (re)load a file of the watch folder.
    /// Returns the activation this one replaced in the queue, if any (the newest wins).
    pub fn request_activate(&self, name: &str) -> Result<Option<String>, ActivateError> {
        let w = lock(&self.watch);
        let tx = w.requests.as_ref().ok_or(ActivateError::NoWatchFolder)?;
        let replaced = self.registry().queue_activation(name)?;
        tx.send(LoaderMsg::Activate(name.to_string()))
            .map_err(|_| ActivateError::LoaderStopped)?;
        Ok(replaced)
    }

    /// Queues a request for the loader thread (and the governor on it).
    pub fn request_loader(&self, msg: LoaderMsg) -> Result<(), ActivateError> {
        let w = lock(&self.watch);
        let tx = w.requests.as_ref().ok_or(ActivateError::NoWatchFolder)?;
        tx.send(msg).map_err(|_| ActivateError::LoaderStopped)
    }

    /// The power meter, if one is configured.
    pub fn power(&self) -> Option<Arc<PowerMonitor>> {
        lock(&self.power).clone()
    }

    /// The MQTT publisher, when `[mqtt]` names a broker.
    pub fn mqtt(&self) -> Option<Arc<Publisher>> {
        lock(&self.mqtt).clone()
    }

    pub fn set_mqtt(&self, p: Option<Publisher>) {
        *lock(&self.mqtt) = p.map(Arc::new);
    }

    /// Replaces the meter (SIGHUP reload of `[power]`): the old thread stops, the new one starts
    /// connecting in the background. Idle is kept only when given (`power.idle_watts`): the
    /// models are running, so it cannot be measured now.
    pub fn replace_power(&self, opts: Option<&PowerOptions>) -> std::io::Result<()> {
        let new = match opts {
            Some(o) => {
                let m = PowerMonitor::start(o.clone())?;
                if matches!(o.idle, IdleSetting::Given(_)) {
                    m.measure_idle();
                }
                Some(Arc::new(m))
            }
            None => None,
        };
        let old = std::mem::replace(&mut *lock(&self.power), new);
        if let Some(o) = old {
            o.stop();
        }
        Ok(())
    }

    /// Sets the per-frame budget the pipeline checks (live: a reload may change it).
    pub fn set_budget(&self, budget: Duration) {
        self.ctl
            .budget_ns
            .store(budget.as_nanos() as u64, Ordering::SeqCst);
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
}
