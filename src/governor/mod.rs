//! The real-time governor: serve the largest model of a ladder that meets the budget on this
//! board, now.
//!
//! The study's lesson is that a model is chosen for a board by scaling it until its latency meets
//! the budget; a board that gets hotter, busier or throttled breaks that choice while the daemon
//! runs. The governor keeps making it: the models of one task in the watch folder form a ladder,
//! ordered by the latency each one measured on this board when it was loaded ([`ladder`]); a pure
//! control law ([`law`]) reads the recent window of the serving model's frames ([`window`]) and
//! steps down when the budget is missed for a sustained period, up when the next larger model
//! would fit with headroom; the governor ([`run`]) carries the steps out through the loader's
//! zero-miss swap path, on the loader thread, so a step and a model dropped into the folder never
//! race. Off by default: without `[governor] enabled = true` nothing here runs and the watch folder
//! behaves as before.

use std::time::Duration;

use crate::invalid_key::InvalidKey;

pub mod ladder;
pub mod law;
pub mod run;
pub mod shared;
pub mod window;

pub use run::{Governor, GovernorContext};
pub use shared::{GovernorShared, Request};

/// Which models of the watch folder are rungs (`governor.ladder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LadderSpec {
    /// Every model in the folder that loads and has the same input kind and output shape as the
    /// ladder (the largest such group at the first scan).
    Auto,
    /// These file names, and only these.
    Files(Vec<String>),
}

/// Which rungs stay loaded beside the serving one, so a step to them is a pointer swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepLoaded {
    /// None: a step loads and warms up its model first (slower steps, least memory).
    None,
    /// The rungs just above and below the serving one.
    Neighbours,
    /// Every rung.
    All,
}

impl KeepLoaded {
    pub fn name(self) -> &'static str {
        match self {
            KeepLoaded::None => "none",
            KeepLoaded::Neighbours => "neighbours",
            KeepLoaded::All => "all",
        }
    }

    /// Whether rung `r` stays loaded while rung `serving` serves.
    pub fn keeps(self, r: usize, serving: usize) -> bool {
        match self {
            KeepLoaded::None => false,
            KeepLoaded::Neighbours => r.abs_diff(serving) == 1,
            KeepLoaded::All => true,
        }
    }
}

/// `[governor]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct GovernorConfig {
    pub ladder: LadderSpec,
    /// A step up needs the next rung's predicted p99 within `budget * (1 - headroom)`.
    pub headroom: f64,
    /// The recent window the law reads (frames of the serving model only).
    pub window: Duration,
    /// Over budget this long: step down.
    pub down_after: Duration,
    /// The next rung predicted to fit this long: step up.
    pub up_after: Duration,
    /// No step up sooner than this after any step.
    pub cool_down: Duration,
    /// After this many steps in the last minute, no step up until the minute has passed.
    pub max_steps_per_minute: u32,
    /// A window with more late frames than this fraction (and at least two) is over budget.
    pub max_miss_rate: f64,
    pub keep_loaded: KeepLoaded,
    /// Frames run through the pipeline to measure each rung at load (after its warm-up).
    pub measure_runs: u32,
}

impl Default for GovernorConfig {
    fn default() -> Self {
        GovernorConfig {
            ladder: LadderSpec::Auto,
            headroom: 0.25,
            window: Duration::from_secs(2),
            down_after: Duration::from_millis(500),
            up_after: Duration::from_secs(2),
            cool_down: Duration::from_secs(3),
            max_steps_per_minute: 10,
            max_miss_rate: 0.01,
            keep_loaded: KeepLoaded::Neighbours,
            measure_runs: 60,
        }
    }
}

/// `governor.ladder` as written: `"auto"` or a list of file names.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(untagged)]
pub enum RawLadder {
    Word(String),
    Files(Vec<String>),
}

/// `[governor]` as written.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawGovernor {
    pub enabled: Option<bool>,
    pub ladder: Option<RawLadder>,
    pub headroom: Option<f64>,
    pub window_s: Option<f64>,
    pub down_after_s: Option<f64>,
    pub up_after_s: Option<f64>,
    pub cool_down_s: Option<f64>,
    pub max_steps_per_minute: Option<u32>,
    pub max_miss_rate: Option<f64>,
    /// `none`, `neighbours` or `all`.
    pub keep_loaded: Option<String>,
    pub measure_runs: Option<u32>,
}

/// A number of seconds in `(0, max]`, as a `Duration`.
fn seconds(
    key: &'static str,
    v: Option<f64>,
    default: Duration,
    max: f64,
) -> Result<Duration, InvalidKey> {
    match v {
        None => Ok(default),
        Some(s) => crate::units::seconds(s, 0.0, max).map_err(|e| InvalidKey::new(key, e)),
    }
}

/// A fraction in `[0, max)`.
fn fraction(key: &'static str, v: Option<f64>, default: f64, max: f64) -> Result<f64, InvalidKey> {
    match v {
        None => Ok(default),
        Some(f) if f.is_finite() && (0.0..max).contains(&f) => Ok(f),
        Some(f) => Err(InvalidKey::new(
            key,
            format!(
                "{} is not a fraction in [0, {})",
                crate::units::show(f),
                crate::units::show(max)
            ),
        )),
    }
}

impl RawGovernor {
    /// Checks the section: `None` unless `enabled = true`. The governor chooses the serving
    /// model from the watch folder, so it needs `watch_dir` (`has_watch_dir`) and excludes a fixed
    /// `run.model` and `models.active` (`pins_model`: the key that pins one, if any).
    pub fn check(
        self,
        has_watch_dir: bool,
        pins_model: Option<&'static str>,
    ) -> Result<Option<GovernorConfig>, InvalidKey> {
        let d = GovernorConfig::default();
        let ladder = match self.ladder {
            None => LadderSpec::Auto,
            Some(RawLadder::Word(w)) if w == "auto" => LadderSpec::Auto,
            Some(RawLadder::Word(w)) => {
                return Err(InvalidKey::new(
                    "governor.ladder",
                    format!("'{w}' is neither \"auto\" nor a list of file names"),
                ));
            }
            Some(RawLadder::Files(files)) => {
                if let Some(bad) = files
                    .iter()
                    .find(|f| f.is_empty() || f.contains('/') || *f == "." || *f == "..")
                {
                    return Err(InvalidKey::new(
                        "governor.ladder",
                        format!("'{bad}' is not a file name in the watch folder"),
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = files.iter().find(|f| !seen.insert(f.as_str())) {
                    return Err(InvalidKey::new(
                        "governor.ladder",
                        format!("'{dup}' is listed twice"),
                    ));
                }
                if files.is_empty() {
                    return Err(InvalidKey::new(
                        "governor.ladder",
                        "an empty list (use \"auto\", or name the rungs)",
                    ));
                }
                LadderSpec::Files(files)
            }
        };
        let keep_loaded = match self.keep_loaded.as_deref() {
            None => d.keep_loaded,
            Some("none") => KeepLoaded::None,
            Some("neighbours" | "neighbors") => KeepLoaded::Neighbours,
            Some("all") => KeepLoaded::All,
            Some(o) => {
                return Err(InvalidKey::new(
                    "governor.keep_loaded",
                    format!("'{o}' is not none, neighbours or all"),
                ));
            }
        };
        let max_steps_per_minute = self.max_steps_per_minute.unwrap_or(d.max_steps_per_minute);
        if max_steps_per_minute == 0 || max_steps_per_minute > 600 {
            return Err(InvalidKey::new(
                "governor.max_steps_per_minute",
                format!("{max_steps_per_minute} is not in [1, 600]"),
            ));
        }
        let measure_runs = self.measure_runs.unwrap_or(d.measure_runs);
        if !(5..=100_000).contains(&measure_runs) {
            return Err(InvalidKey::new(
                "governor.measure_runs",
                format!("{measure_runs} is not in [5, 100000] (a p99 needs runs)"),
            ));
        }
        let cfg = GovernorConfig {
            ladder,
            headroom: fraction("governor.headroom", self.headroom, d.headroom, 1.0)?,
            window: seconds("governor.window_s", self.window_s, d.window, 600.0)?,
            down_after: seconds(
                "governor.down_after_s",
                self.down_after_s,
                d.down_after,
                600.0,
            )?,
            up_after: seconds("governor.up_after_s", self.up_after_s, d.up_after, 3600.0)?,
            cool_down: seconds(
                "governor.cool_down_s",
                self.cool_down_s,
                d.cool_down,
                3600.0,
            )?,
            max_steps_per_minute,
            max_miss_rate: fraction(
                "governor.max_miss_rate",
                self.max_miss_rate,
                d.max_miss_rate,
                1.0,
            )?,
            keep_loaded,
            measure_runs,
        };
        if self.enabled != Some(true) {
            return Ok(None);
        }
        if !has_watch_dir {
            return Err(InvalidKey::new(
                "governor.enabled",
                "needs models.watch_dir (the ladder is the watch folder's models)",
            ));
        }
        if let Some(key) = pins_model {
            return Err(InvalidKey::new(
                "governor.enabled",
                format!(
                    "cannot be combined with {key}: the governor chooses the model (pin one with \
                     POST /governor/pin)"
                ),
            ));
        }
        Ok(Some(cfg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Option<GovernorConfig>, InvalidKey> {
        let raw: RawGovernor = toml::from_str(text).expect("parses");
        raw.check(true, None)
    }

    #[test]
    fn off_by_default_and_checked_even_when_off() {
        assert_eq!(check(""), Ok(None));
        assert_eq!(check("enabled = false\nheadroom = 0.3"), Ok(None));
        let e = check("enabled = false\nheadroom = 1.5").unwrap_err();
        assert_eq!(e.key, "governor.headroom");
        let on = check("enabled = true").expect("valid").expect("on");
        assert_eq!(on, GovernorConfig::default());
    }

    #[test]
    fn the_ladder_is_auto_or_file_names() {
        let c = check("enabled = true\nladder = \"auto\"").unwrap().unwrap();
        assert_eq!(c.ladder, LadderSpec::Auto);
        let c = check("enabled = true\nladder = [\"a.onnx\", \"b.int8.onnx\"]")
            .unwrap()
            .unwrap();
        assert_eq!(
            c.ladder,
            LadderSpec::Files(vec!["a.onnx".into(), "b.int8.onnx".into()])
        );
        for bad in [
            "ladder = \"all\"",
            "ladder = []",
            "ladder = [\"../x.onnx\"]",
            "ladder = [\"a.onnx\", \"a.onnx\"]",
        ] {
            let e = check(&format!("enabled = true\n{bad}")).unwrap_err();
            assert_eq!(e.key, "governor.ladder", "{bad}: {e}");
        }
    }

    #[test]
    fn every_number_is_range_checked_with_its_key() {
        for (text, key) in [
            ("window_s = 0", "governor.window_s"),
            ("down_after_s = -1", "governor.down_after_s"),
            ("up_after_s = nan", "governor.up_after_s"),
            ("cool_down_s = 1e9", "governor.cool_down_s"),
            ("window_s = 1e300", "governor.window_s"),
            ("headroom = inf", "governor.headroom"),
            ("max_steps_per_minute = 0", "governor.max_steps_per_minute"),
            ("max_miss_rate = 1", "governor.max_miss_rate"),
            ("measure_runs = 2", "governor.measure_runs"),
            ("keep_loaded = \"some\"", "governor.keep_loaded"),
        ] {
            let e = check(&format!("enabled = true\n{text}")).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
        // As a user reads the number, not three hundred digits.
        let e = check("enabled = true\nwindow_s = 1e300").unwrap_err();
        assert!(e.message.contains("1e300"), "{e}");
    }

    #[test]
    fn it_needs_the_watch_folder_and_no_fixed_model() {
        let raw: RawGovernor = toml::from_str("enabled = true").expect("parses");
        let e = raw.clone().check(false, None).unwrap_err();
        assert!(e.message.contains("models.watch_dir"), "{e}");
        let e = raw.check(true, Some("run.model")).unwrap_err();
        assert!(e.message.contains("run.model"), "{e}");
    }

    #[test]
    fn neighbours_are_one_rung_away() {
        assert!(KeepLoaded::Neighbours.keeps(2, 3) && KeepLoaded::Neighbours.keeps(4, 3));
        assert!(!KeepLoaded::Neighbours.keeps(3, 3) && !KeepLoaded::Neighbours.keeps(1, 3));
        assert!(KeepLoaded::All.keeps(0, 3) && !KeepLoaded::None.keeps(2, 3));
    }
}
