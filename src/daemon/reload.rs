//! SIGHUP: re-read and validate the configuration; on error keep everything; apply the keys a
//! running daemon can change at once, and list the others as needing a restart (one log line and
//! `/status` `config.restart_required`).
//!
//! Which keys are live is an enum, [`LiveKey`], and what applying them does is a match on it, so a
//! new live key cannot be listed without saying what it changes. A source's rate is the one key
//! decided by value ([`SourceSpec::rate_change`](crate::source::SourceSpec::rate_change)): a
//! paced source is re-paced between two frames by the capture thread, any other change of
//! `run.source` waits for a restart.

use std::sync::atomic::Ordering;

use super::Running;
use crate::config::{Config, RawConfig};
use crate::time::{MonoTime, ms, rfc3339_now};

/// A key a reload applies while running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveKey {
    RunBudgetMs,
    RunFps,
    /// Only when the source stays the same paced source at another rate.
    RunSource,
    LogLevel,
    StatusTcp,
    PowerMeter,
    PowerCommand,
    PowerIdleSeconds,
    PowerIdleWatts,
    PowerSysfsRoot,
    PowerIntervalMs,
    ModelsWatchDir,
    ModelsActive,
    ModelsLoadTimeoutS,
    ModelsWarmup,
}

/// What applying a set of live keys has to do, each at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Budget, target rate, log level: values read where they are used.
    Settings,
    /// Re-pace the source (the capture thread applies it between frames).
    Repace,
    /// Restart the read-only TCP listener.
    Tcp,
    /// Replace the power meter.
    Power,
    /// Stop the watcher and loader and follow the (new) watch folder.
    WatchFolder,
}

impl LiveKey {
    /// Every live key, for lookups by name.
    pub const ALL: [LiveKey; 15] = [
        LiveKey::RunBudgetMs,
        LiveKey::RunFps,
        LiveKey::RunSource,
        LiveKey::LogLevel,
        LiveKey::StatusTcp,
        LiveKey::PowerMeter,
        LiveKey::PowerCommand,
        LiveKey::PowerIdleSeconds,
        LiveKey::PowerIdleWatts,
        LiveKey::PowerSysfsRoot,
        LiveKey::PowerIntervalMs,
        LiveKey::ModelsWatchDir,
        LiveKey::ModelsActive,
        LiveKey::ModelsLoadTimeoutS,
        LiveKey::ModelsWarmup,
    ];

    /// The key as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            LiveKey::RunBudgetMs => "run.budget_ms",
            LiveKey::RunFps => "run.fps",
            LiveKey::RunSource => "run.source",
            LiveKey::LogLevel => "log.level",
            LiveKey::StatusTcp => "status.tcp",
            LiveKey::PowerMeter => "power.meter",
            LiveKey::PowerCommand => "power.command",
            LiveKey::PowerIdleSeconds => "power.idle_seconds",
            LiveKey::PowerIdleWatts => "power.idle_watts",
            LiveKey::PowerSysfsRoot => "power.sysfs_root",
            LiveKey::PowerIntervalMs => "power.interval_ms",
            LiveKey::ModelsWatchDir => "models.watch_dir",
            LiveKey::ModelsActive => "models.active",
            LiveKey::ModelsLoadTimeoutS => "models.load_timeout_s",
            LiveKey::ModelsWarmup => "models.warmup",
        }
    }

    /// The live key named `name`, except `run.source`, which is live only by value.
    fn by_name(name: &str) -> Option<LiveKey> {
        LiveKey::ALL
            .into_iter()
            .find(|k| *k != LiveKey::RunSource && k.name() == name)
    }

    fn action(self) -> Action {
        match self {
            LiveKey::RunBudgetMs | LiveKey::RunFps | LiveKey::LogLevel => Action::Settings,
            LiveKey::RunSource => Action::Repace,
            LiveKey::StatusTcp => Action::Tcp,
            LiveKey::PowerMeter
            | LiveKey::PowerCommand
            | LiveKey::PowerIdleSeconds
            | LiveKey::PowerIdleWatts
            | LiveKey::PowerSysfsRoot
            | LiveKey::PowerIntervalMs => Action::Power,
            LiveKey::ModelsWatchDir
            | LiveKey::ModelsActive
            | LiveKey::ModelsLoadTimeoutS
            | LiveKey::ModelsWarmup => Action::WatchFolder,
        }
    }
}

/// The changed keys of a reload, sorted into live ones and ones that need a restart.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub live: Vec<LiveKey>,
    pub restart: Vec<String>,
    /// The new rate of the paced source in force, when only that changed in `run.source`.
    pub repace: Option<f64>,
}

impl Changes {
    /// Compares the raw configuration in force with a reloaded one (already checked as `new`).
    pub fn between(old: &RawConfig, new_raw: &RawConfig, new: &Config) -> Changes {
        let mut c = Changes::default();
        for key in crate::config::changed_keys(old, new_raw) {
            match LiveKey::by_name(&key) {
                Some(k) => c.live.push(k),
                None if key == LiveKey::RunSource.name() => match source_rate_change(old, new) {
                    Some(fps) => {
                        c.live.push(LiveKey::RunSource);
                        c.repace = Some(fps);
                    }
                    None => c.restart.push(key),
                },
                None => c.restart.push(key),
            }
        }
        c
    }

    fn wants(&self, action: Action) -> bool {
        self.live.iter().any(|k| k.action() == action)
    }
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

/// A list for the log line: the names, or "nothing".
fn listed<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "nothing".into()
    } else {
        v.join(", ")
    }
}

impl Running {
    /// SIGHUP: `reload` re-reads the configuration the way start-up read it.
    pub(super) fn reload(&mut self, reload: &dyn Fn() -> Result<(RawConfig, Config), String>) {
        let n = std::sync::Arc::clone(&self.shared.notifier);
        n.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            MonoTime::now().as_nanos() / 1000
        ));
        // The same path may name another folder now (a symlink switched): looked at on every
        // SIGHUP, whatever the file says.
        self.models.recheck();
        match reload() {
            Err(e) => log::error!("reload failed, keeping the running configuration: {e}"),
            Ok((raw, cfg)) => self.apply(raw, &cfg),
        }
        n.send(&format!("READY=1\nSTATUS={}", self.shared.status_line()));
    }

    fn apply(&mut self, raw: RawConfig, cfg: &Config) {
        let changes = Changes::between(&self.shared.live().raw, &raw, cfg);
        if let Some(fps) = changes.repace {
            self.shared.source_health.request_rate(&cfg.source.uri, fps);
        }
        self.shared.set_budget(cfg.budget);
        if std::env::var_os("RUST_LOG").is_none() {
            log::set_max_level(cfg.log_level);
        }
        if changes.wants(Action::WatchFolder) {
            self.follow_watch_folder(cfg.models.clone());
        }
        if changes.wants(Action::Power)
            && let Err(e) = self.shared.replace_power(cfg.power.as_ref())
        {
            log::error!("reload: power meter: {e}");
        }
        if changes.wants(Action::Tcp) {
            self.restart_tcp(cfg.tcp);
        }
        let mut l = self.shared.live();
        l.loaded_at = rfc3339_now();
        l.raw = raw;
        l.target_fps = cfg.target_fps;
        for k in &changes.restart {
            if !l.restart_required.contains(k) {
                l.restart_required.push(k.clone());
            }
        }
        drop(l);
        log::info!(
            "reloaded: budget {:.2} ms; applied {}; restart required for {}",
            ms(cfg.budget),
            listed(changes.live.iter().map(|k| k.name())),
            listed(changes.restart.iter().map(String::as_str))
        );
    }

    /// Reload of `[models]`: stops the watcher and loader, then follows the new folder (or none).
    /// The model serving now keeps serving; the new folder's newest model becomes the candidate.
    fn follow_watch_folder(&mut self, cfg: Option<crate::models::ModelsConfig>) {
        self.shared.set_loader(None);
        self.models.stop();
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
        self.shared.set_models_config(cfg);
        match super::ModelThreads::start(&self.shared) {
            Ok(m) => self.models = m,
            Err(e) => log::error!("reload: watch folder: {e}"),
        }
    }

    /// Reload of `status.tcp`: the old listener stops, the new one (if any) starts.
    fn restart_tcp(&mut self, addr: Option<std::net::SocketAddr>) {
        if let Some((h, stop)) = self.tcp.take() {
            stop.store(true, Ordering::SeqCst);
            let _ = h.join();
        }
        if let Some(addr) = addr {
            match super::start_tcp(&self.shared, addr) {
                Ok(t) => self.tcp = Some(t),
                Err(e) => log::error!("reload: status.tcp: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::parse_raw;

    fn changes(old: &str, new: &str) -> Changes {
        let old = parse_raw(old, Path::new("old")).expect("old parses");
        let new_raw = parse_raw(new, Path::new("new")).expect("new parses");
        let new = Config::from_raw(new_raw.clone(), None).expect("new is valid");
        Changes::between(&old, &new_raw, &new)
    }

    #[test]
    fn every_live_key_is_a_key_of_the_file() {
        let all = crate::config::changed_keys(
            &RawConfig::default(),
            &parse_raw("", Path::new("x")).expect("empty parses"),
        );
        assert!(all.is_empty());
        let keys = crate::config::all_keys();
        for k in LiveKey::ALL {
            assert!(
                keys.iter().any(|n| n == k.name()),
                "{} is not a key",
                k.name()
            );
        }
    }

    #[test]
    fn live_keys_apply_and_the_rest_wait_for_a_restart() {
        let c = changes(
            "[run]\nfps = 60\nthreads = 1\n",
            "[run]\nfps = 30\nthreads = 2\n[power]\nmeter = \"rapl://\"\n",
        );
        assert_eq!(c.live, vec![LiveKey::PowerMeter, LiveKey::RunFps]);
        assert_eq!(c.restart, vec!["run.threads".to_string()]);
        assert!(c.wants(Action::Power) && c.wants(Action::Settings));
        assert!(!c.wants(Action::WatchFolder) && !c.wants(Action::Tcp));
    }

    #[test]
    fn a_paced_source_rate_is_live_any_other_source_change_is_not() {
        let c = changes(
            "[run]\nsource = \"synthetic://64x48@20\"\n",
            "[run]\nsource = \"synthetic://64x48@100\"\n",
        );
        assert_eq!(c.live, vec![LiveKey::RunSource]);
        assert_eq!(c.repace, Some(100.0));
        let c = changes(
            "[run]\nsource = \"synthetic://64x48@20\"\n",
            "[run]\nsource = \"synthetic://32x24@20\"\n",
        );
        assert!(c.live.is_empty());
        assert_eq!(c.restart, vec!["run.source".to_string()]);
    }
}
