//! What the governor shares with the rest of the daemon: the frame window the stats thread fills,
//! and the view `/status`, `/metrics` and `rtinfer status` show.
//!
//! The governor itself lives on the loader thread and is replaced when a reload follows another
//! watch folder; this part outlives it, so the step counters `/metrics` exports only ever grow.

use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};

use super::GovernorConfig;
use super::law::{Direction, Figures};
use super::window::FrameWindow;

/// A request from the status socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Hold this rung (a file or model name), or the serving one.
    Pin(Option<String>),
    /// Let the law decide again.
    Unpin,
}

/// One rung as `/status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RungView {
    /// The model's name (`model.name` when it serves).
    pub name: String,
    pub file: String,
    pub precision: &'static str,
    pub backend: &'static str,
    /// Measured at load: preprocess + inference + postprocess.
    pub p10_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub runs: u32,
    /// RSS the process grew by when it was loaded (and its preprocessing built).
    pub memory_bytes: Option<u64>,
    /// Loaded now (serving, or kept beside the serving rung).
    pub loaded: bool,
}

/// The last step (or start, or pin) as `/status` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepView {
    pub at: String,
    pub from: Option<String>,
    pub to: String,
    /// `up`, `down`, or `start` for the first model.
    pub direction: &'static str,
    pub reason: String,
    /// From decision to the new model serving (a load included when it was not kept loaded).
    pub took_ms: f64,
}

/// Everything `/status` `governor` holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// Fastest first.
    pub ladder: Vec<RungView>,
    /// Index of the serving rung; `None` before the ladder is measured.
    pub rung: Option<usize>,
    pub pinned: Option<String>,
    pub figures: Option<Figures>,
    pub slowdown: Option<f64>,
    pub last_step: Option<StepView>,
    pub steps_up: u64,
    pub steps_down: u64,
    /// Models refused from the ladder since start.
    pub refused: u64,
}

impl View {
    /// Memory of the rungs loaded beside the serving one.
    pub fn kept_loaded_bytes(&self) -> u64 {
        self.ladder
            .iter()
            .enumerate()
            .filter(|(i, r)| r.loaded && Some(*i) != self.rung)
            .filter_map(|(_, r)| r.memory_bytes)
            .sum()
    }

    /// The rung named `name` (model or file name).
    pub fn find(&self, name: &str) -> Option<usize> {
        self.ladder
            .iter()
            .position(|r| r.name == name || r.file == name)
    }
}

/// The governor's shared part.
#[derive(Debug)]
pub struct GovernorShared {
    pub config: GovernorConfig,
    window: Mutex<FrameWindow>,
    view: Mutex<View>,
}

impl GovernorShared {
    pub fn new(config: GovernorConfig) -> GovernorShared {
        GovernorShared {
            config,
            window: Mutex::new(FrameWindow::new()),
            view: Mutex::new(View::default()),
        }
    }

    /// The frame window (the stats thread pushes, the governor reads).
    pub fn window(&self) -> MutexGuard<'_, FrameWindow> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a step.
    pub fn count(&self, d: Direction) {
        let mut v = self.view();
        match d {
            Direction::Up => v.steps_up += 1,
            Direction::Down => v.steps_down += 1,
        }
    }

    /// `/status` `governor`.
    pub fn to_json(&self) -> Value {
        let v = self.view().clone();
        let c = &self.config;
        let ladder: Vec<Value> = v
            .ladder
            .iter()
            .enumerate()
            .map(|(i, r)| {
                json!({
                    "rung": i, "name": r.name, "file": r.file, "backend": r.backend,
                    "precision": r.precision, "p10_ms": r.p10_ms, "p50_ms": r.p50_ms, "p99_ms": r.p99_ms,
                    "runs": r.runs, "memory_bytes": r.memory_bytes, "loaded": r.loaded,
                    "serving": v.rung == Some(i),
                })
            })
            .collect();
        json!({
            "enabled": true,
            "rung": v.rung,
            "rungs": v.ladder.len(),
            "model": v.rung.and_then(|r| v.ladder.get(r)).map(|r| r.name.clone()),
            "pinned": v.pinned,
            "ladder": ladder,
            "window": v.figures.map(|f| json!({
                "frames": f.frames, "misses": f.misses, "recent_misses": f.recent_misses,
                "p99_ms": f.p99_ms,
                "processing_p99_ms": f.proc_p99_ms, "slowdown": v.slowdown,
            })),
            "last_step": v.last_step.as_ref().map(|s| json!({
                "at": s.at, "from": s.from, "to": s.to, "direction": s.direction,
                "reason": s.reason, "took_ms": s.took_ms,
            })),
            "steps": {"up": v.steps_up, "down": v.steps_down},
            "steps_total": v.steps_up + v.steps_down,
            "refused": v.refused,
            "kept_loaded_bytes": v.kept_loaded_bytes(),
            "settings": {
                "ladder": match &c.ladder {
                    super::LadderSpec::Auto => json!("auto"),
                    super::LadderSpec::Files(f) => json!(f),
                },
                "headroom": c.headroom,
                "window_s": c.window.as_secs_f64(),
                "down_after_s": c.down_after.as_secs_f64(),
                "up_after_s": c.up_after.as_secs_f64(),
                "cool_down_s": c.cool_down.as_secs_f64(),
                "max_steps_per_minute": c.max_steps_per_minute,
                "max_miss_rate": c.max_miss_rate,
                "keep_loaded": c.keep_loaded.name(),
                "measure_runs": c.measure_runs,
            },
        })
    }
}

/// `/status` `governor` of a daemon without one: the same keys, null or empty.
pub fn disabled_json() -> Value {
    json!({
        "enabled": false, "rung": null, "rungs": 0, "model": null, "pinned": null,
        "ladder": [], "window": null, "last_step": null, "steps": {"up": 0, "down": 0},
        "steps_total": 0, "refused": 0, "kept_loaded_bytes": 0, "settings": null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rung(name: &str, loaded: bool, memory: u64) -> RungView {
        RungView {
            name: name.into(),
            file: format!("{name}.onnx"),
            precision: "fp32",
            backend: "onnxruntime",
            p10_ms: 0.9,
            p50_ms: 1.0,
            p99_ms: 2.0,
            runs: 60,
            memory_bytes: Some(memory),
            loaded,
        }
    }

    #[test]
    fn the_enabled_and_disabled_documents_have_the_same_keys() {
        let g = GovernorShared::new(GovernorConfig::default());
        {
            let mut v = g.view();
            v.ladder = vec![
                rung("a", true, 10),
                rung("b", true, 20),
                rung("c", false, 40),
            ];
            v.rung = Some(1);
        }
        g.count(Direction::Down);
        let on = g.to_json();
        let off = disabled_json();
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&on), keys(&off));
        assert_eq!(on["model"], "b");
        assert_eq!(
            on["kept_loaded_bytes"], 10,
            "the serving rung is not 'kept'"
        );
        assert_eq!(on["steps"]["down"], 1);
        assert_eq!(on["ladder"][1]["serving"], true);
        assert_eq!(g.view().find("c.onnx"), Some(2));
    }
}
