//! Power beside every latency figure: the study measured idle, peak, dynamic power and throughput
//! per watt by hand with a plug-in meter; here a meter is read continuously on its own thread.
//!
//! Meters differ wildly (an encrypted USB frame, a Bluetooth serial link, text lines, a child
//! process, sysfs files) but all yield "watts now", so one small [`Meter`] trait hides them and
//! one [`monitor`] thread owns whichever is configured: it reconnects with backoff, counts bad
//! frames and feeds a fixed-size ring of samples. The pipeline thread never touches any of it;
//! the status handler (and `/metrics`, `rtinfer bench`) read a [`PowerSnapshot`] or
//! [`PowerFigures`] computed from the ring under a short lock.

pub mod exec;
pub mod hwmon;
pub mod line;
pub mod monitor;
pub mod rapl;
mod serial;
pub mod stats;
pub mod tc66;
pub mod um;
pub mod uri;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::invalid_key::InvalidKey;

pub use monitor::PowerMonitor;
pub use stats::{PowerFigures, PowerSnapshot, PowerStats, Sample};
pub use uri::MeterSpec;

/// One reading of a meter.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    pub watts: f64,
    pub volts: Option<f64>,
    pub amps: Option<f64>,
}

impl Reading {
    pub fn watts(watts: f64) -> Reading {
        Reading {
            watts,
            volts: None,
            amps: None,
        }
    }
}

/// A connected meter. `read` blocks for at most about a second.
pub trait Meter: Send {
    /// The next reading; `Ok(None)` when there is none yet (a counter meter's first read, a quiet
    /// line). [`MeterError::BadFrame`] is counted and reading goes on; any other error means the
    /// meter is gone and the monitor reconnects with backoff.
    fn read(&mut self) -> Result<Option<Reading>, MeterError>;
}

/// Why a meter could not be opened or read. Every variant names its device.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    #[error("{device}: cannot open: {source}")]
    Open {
        device: String,
        source: std::io::Error,
    },
    #[error("{device}: disconnected: {source}")]
    Lost {
        device: String,
        source: std::io::Error,
    },
    #[error("{device}: bad frame: {reason}")]
    BadFrame { device: String, reason: String },
    #[error("{device}: permission denied ({hint})")]
    Permission { device: String, hint: String },
    #[error("{root}: no {what} found")]
    NoSensors { root: PathBuf, what: String },
    #[error("cannot start meter command {command:?}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("meter command {command:?} ended ({status})")]
    Exited { command: String, status: String },
}

impl MeterError {
    pub fn is_bad_frame(&self) -> bool {
        matches!(self, MeterError::BadFrame { .. })
    }
}

/// The `[power]` section as written (see `systemd/rtinfer.toml`).
#[derive(Debug, Default, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPower {
    /// Meter URI; absent: no meter.
    pub meter: Option<String>,
    /// `exec` meters: argv of the command (no shell).
    pub command: Option<Vec<String>>,
    pub idle_seconds: Option<f64>,
    pub idle_watts: Option<f64>,
    pub sysfs_root: Option<PathBuf>,
    pub interval_ms: Option<f64>,
}

/// Where the idle figure comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IdleSetting {
    /// Mean over this long before the first model runs (0: not measured).
    Measure(Duration),
    /// Given in the config (`power.idle_watts`).
    Given(f64),
}

/// A checked `[power]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerOptions {
    /// The URI as written (reported as `power.meter`).
    pub uri: String,
    pub spec: MeterSpec,
    pub idle: IdleSetting,
    /// Root of `/sys` (tests point it at a fake tree).
    pub sysfs_root: PathBuf,
    /// Poll interval; `None`: the meter's own default.
    pub interval: Option<Duration>,
}

/// Default `power.idle_seconds`.
pub const DEFAULT_IDLE_SECONDS: f64 = 5.0;

impl RawPower {
    /// Checks the section: `Ok(None)` without a meter; an error names its key.
    pub fn check(self) -> Result<Option<PowerOptions>, InvalidKey> {
        let raw = self;
        let Some(uri) = raw.meter else {
            if raw.command.is_some() {
                return Err(InvalidKey::new(
                    "power.command",
                    "given without power.meter",
                ));
            }
            return Ok(None);
        };
        let mut spec = MeterSpec::parse(&uri).map_err(|e| InvalidKey::new("power.meter", e))?;
        match (&mut spec, raw.command) {
            (MeterSpec::Exec { command, .. }, Some(c)) if !c.is_empty() => *command = c,
            (MeterSpec::Exec { .. }, _) => {
                return Err(InvalidKey::new(
                    "power.command",
                    "an exec meter needs a non-empty command array",
                ));
            }
            (_, Some(_)) => {
                return Err(InvalidKey::new(
                    "power.command",
                    "only exec meters run a command",
                ));
            }
            (_, None) => {}
        }
        let idle = match (raw.idle_watts, raw.idle_seconds) {
            (Some(w), _) if w.is_finite() && w >= 0.0 => IdleSetting::Given(w),
            (Some(w), _) => {
                return Err(InvalidKey::new(
                    "power.idle_watts",
                    format!("{w} is not >= 0 W"),
                ));
            }
            (None, s) => {
                let s = s.unwrap_or(DEFAULT_IDLE_SECONDS);
                IdleSetting::Measure(
                    crate::units::seconds_or_zero(s, 600.0)
                        .map_err(|e| InvalidKey::new("power.idle_seconds", e))?,
                )
            }
        };
        let interval = match raw.interval_ms {
            None => None,
            Some(v) if v.is_finite() && (1.0..=60_000.0).contains(&v) => Some(
                crate::units::millis(v, 0.0, 60_000.0)
                    .map_err(|e| InvalidKey::new("power.interval_ms", e))?,
            ),
            Some(v) => {
                return Err(InvalidKey::new(
                    "power.interval_ms",
                    format!("{v} is not in [1, 60000] ms"),
                ));
            }
        };
        Ok(Some(PowerOptions {
            uri,
            spec,
            idle,
            sysfs_root: raw.sysfs_root.unwrap_or_else(|| PathBuf::from("/sys")),
            interval,
        }))
    }
}

impl PowerOptions {
    /// Opens the configured meter (the monitor calls this on every (re)connect).
    pub fn open(&self) -> Result<Box<dyn Meter>, MeterError> {
        match &self.spec {
            MeterSpec::Tc66 { path } => Ok(Box::new(tc66::Tc66::open(path)?)),
            MeterSpec::Um { model, path } => Ok(Box::new(um::Um::open(*model, path)?)),
            MeterSpec::Line {
                path,
                baud,
                parser,
                request,
            } => Ok(Box::new(line::SerialLine::open(
                path,
                *baud,
                parser.clone(),
                request.clone(),
            )?)),
            MeterSpec::Exec { command, parser } => {
                Ok(Box::new(exec::ExecMeter::spawn(command, parser.clone())?))
            }
            MeterSpec::Hwmon { chip, rails } => Ok(Box::new(hwmon::Hwmon::open(
                &self.sysfs_root,
                *chip,
                rails.as_deref(),
            )?)),
            MeterSpec::Rapl { zones } => Ok(Box::new(rapl::Rapl::open(
                &self.sysfs_root,
                zones.as_deref(),
            )?)),
        }
    }

    /// Time between reads: the config's, else the meter's own rate.
    pub fn interval(&self) -> Duration {
        self.interval
            .unwrap_or_else(|| self.spec.default_interval())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(meter: &str) -> RawPower {
        RawPower {
            meter: Some(meter.into()),
            ..RawPower::default()
        }
    }

    #[test]
    fn exec_needs_a_command_and_only_exec_takes_one() {
        assert_eq!(raw("exec://").check().unwrap_err().key, "power.command");
        let mut r = raw("tc66c:///dev/ttyACM0");
        r.command = Some(vec!["x".into()]);
        assert_eq!(r.check().unwrap_err().key, "power.command");
        let mut r = raw("exec://?regex=(?P<watts>[0-9.]+)");
        r.command = Some(vec!["tegrastats".into()]);
        let o = r.check().unwrap().unwrap();
        assert!(
            matches!(o.spec, MeterSpec::Exec { ref command, .. } if command == &["tegrastats"])
        );
        assert_eq!(o.idle, IdleSetting::Measure(Duration::from_secs(5)));
    }

    #[test]
    fn idle_watts_wins_and_bad_values_name_their_key() {
        let mut r = raw("rapl://");
        r.idle_watts = Some(3.5);
        assert_eq!(r.check().unwrap().unwrap().idle, IdleSetting::Given(3.5));
        let mut r = raw("rapl://");
        r.idle_seconds = Some(-1.0);
        assert_eq!(r.check().unwrap_err().key, "power.idle_seconds");
        assert_eq!(raw("bogus://").check().unwrap_err().key, "power.meter");
        assert_eq!(RawPower::default().check(), Ok(None));
    }
}
