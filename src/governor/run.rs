//! The governor at work: it admits loaded models to the ladder, starts on the largest that fits,
//! and carries out the law's steps, all on the loader thread.
//!
//! Running on the loader thread is what makes every step a swap through the existing zero-miss
//! path without a second writer: the loader's loads (with their timeout) and the governor's swaps
//! take turns, and `Serving::swap_in` hands each new pipeline over between two frames. A step to
//! a rung kept loaded is that hand-over alone; to any other rung it is a load and warm-up first.
//! The governor ticks every [`TICK`] between the loader's messages; the law itself is pure
//! ([`super::law`]).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ladder::{self, Rung, Signature};
use super::law::{self, Direction};
use super::shared::{GovernorShared, Request, StepView};
use super::window::Scratch;
use super::{GovernorConfig, LadderSpec};
use crate::models::loader::{LoadError, Loads, Measure};
use crate::models::{FileState, SwapRecord, Version};
use crate::pipeline::{LoopControl, Pipeline};
use crate::source::PixelFormat;
use crate::time::{MonoTime, ms, rfc3339_now};

/// How often the law is consulted.
pub const TICK: Duration = Duration::from_millis(100);

/// What the governor gets from the daemon.
#[derive(Clone)]
pub struct GovernorContext {
    pub shared: Arc<GovernorShared>,
    /// The budget in force (a reload may change it).
    pub ctl: Arc<LoopControl>,
    /// The source's frame size and layout: what each rung is measured on.
    pub frame_size: (u32, u32, PixelFormat),
    /// Frames per second expected, to size the evidence the law needs.
    pub frame_rate: f64,
}

/// The governor of one watch folder.
pub struct Governor {
    ctx: GovernorContext,
    cfg: GovernorConfig,
    /// Fastest first.
    rungs: Vec<Rung>,
    /// The file of the rung serving now.
    serving: Option<String>,
    /// The file of the pinned rung.
    pinned: Option<String>,
    law: law::State,
    /// What rungs share; set by the first scan (the majority), or by the first rung after an
    /// empty one.
    signature: Option<Signature>,
    scanned: bool,
    scratch: Scratch,
    next_tick: MonoTime,
    /// `governor.ladder` names missing from the folder were reported.
    missing_reported: bool,
}

impl Governor {
    pub fn new(ctx: GovernorContext) -> Governor {
        let cfg = ctx.shared.config.clone();
        {
            let mut v = ctx.shared.view();
            v.ladder.clear();
            v.rung = None;
            v.pinned = None;
            v.figures = None;
            v.slowdown = None;
        }
        Governor {
            ctx,
            cfg,
            rungs: Vec::new(),
            serving: None,
            pinned: None,
            law: law::State::new(0, 0),
            signature: None,
            scanned: false,
            scratch: Scratch::new(),
            next_tick: MonoTime::now(),
            missing_reported: false,
        }
    }

    fn wants(&self, file: &str) -> bool {
        match &self.cfg.ladder {
            LadderSpec::Auto => true,
            LadderSpec::Files(f) => f.iter().any(|n| n == file),
        }
    }

    fn index(&self, file: &str) -> Option<usize> {
        self.rungs.iter().position(|r| r.file == file)
    }

    /// The law's settings now (the budget may have been reloaded).
    fn settings(&self) -> law::Settings {
        let c = &self.cfg;
        let per_window = self.ctx.frame_rate * c.window.as_secs_f64();
        law::Settings {
            budget_ms: ms(self.ctx.ctl.budget()),
            headroom: c.headroom,
            max_miss_rate: c.max_miss_rate,
            down_after: c.down_after,
            up_after: c.up_after,
            cool_down: c.cool_down,
            max_steps_per_minute: c.max_steps_per_minute,
            min_frames: ((per_window / 4.0).ceil() as u32).max(8),
            frame_period_ms: 1000.0 / self.ctx.frame_rate,
            probation: (c.window + c.down_after) * 4,
        }
    }

    /// A candidate of the folder, not tried in this version (or asked for again): load it,
    /// measure it and put it on the ladder, or refuse it.
    pub fn consider(
        &mut self,
        l: &mut dyn Loads,
        file: &str,
        path: &Path,
        version: Option<Version>,
    ) {
        let registry = Arc::clone(&l.context().registry);
        if !self.wants(file) {
            lock(&registry).set(
                file,
                FileState::Ignored("not on the governor's ladder (governor.ladder)".into()),
                version,
            );
            return;
        }
        lock(&registry).set(file, FileState::Loading, version);
        log::info!("governor: loading and measuring {}", path.display());
        crate::rt::trim_heap();
        let before = crate::system::rss_bytes_now();
        let warmup = l.warmup();
        let prepared = match l.load(path, warmup, Some(self.measure())) {
            Ok(p) => p,
            Err(e) => {
                self.forget(file);
                l.reject(file, e, version);
                self.publish();
                return;
            }
        };
        crate::rt::trim_heap();
        let after = crate::system::rss_bytes_now();
        let Some(measured) = prepared.measured else {
            self.forget(file);
            l.reject(
                file,
                LoadError::NotOnLadder {
                    reason: "it was not measured".into(),
                },
                version,
            );
            return;
        };
        let signature = Signature::of(&prepared.info);
        if self.scanned && self.signature.is_none() {
            self.signature = Some(signature.clone());
        }
        if let Some(s) = &self.signature
            && *s != signature
        {
            let reason = format!("{signature} differs from the ladder's {s}");
            self.forget(file);
            self.ctx.shared.view().refused += 1;
            l.reject(file, LoadError::NotOnLadder { reason }, version);
            self.publish();
            return;
        }
        let memory_bytes = prepared
            .pipeline
            .engine
            .memory()
            .map(|m| m.total_bytes())
            .or_else(|| before.zip(after).map(|(b, a)| a.saturating_sub(b)));
        log::info!(
            "governor: {} measured over {} frames of {}x{}: p10 {:.3} ms, p50 {:.3} ms, p99 {:.3} ms \
             (inference p50 {:.3} ms), memory {}",
            file,
            measured.runs,
            self.ctx.frame_size.0,
            self.ctx.frame_size.1,
            measured.p10_ms,
            measured.p50_ms,
            measured.p99_ms,
            measured.inference_p50_ms,
            memory_bytes.map_or("-".into(), |m| format!("{:.1} MiB", m as f64 / 1048576.0)),
        );
        let new_version_of_serving = self.serving.as_deref() == Some(file);
        if let Some(i) = self.index(file) {
            // A new version of a rung replaces it (and is measured again).
            self.rungs.remove(i);
        }
        let at = ladder::position(&self.rungs, &measured, file);
        self.rungs.insert(
            at,
            Rung {
                file: file.to_string(),
                path: path.to_path_buf(),
                version,
                signature,
                info: prepared.info,
                measured,
                memory_bytes,
                pipeline: Some(prepared.pipeline),
            },
        );
        self.relabel();
        if new_version_of_serving {
            self.switch(l, at, "a new version of the serving model", None);
        } else {
            lock(&registry).set(file, FileState::Ladder, version);
            let serving = self.serving.as_deref().and_then(|s| self.index(s));
            let keep = serving.is_some_and(|s| self.cfg.keep_loaded.keeps(at, s));
            if !keep {
                self.rungs[at].pipeline = None;
                crate::rt::trim_heap();
            }
        }
        self.publish();
    }

    /// The first scan of the folder is done: every rung is measured. Settles the ladder's
    /// signature (the majority's; the others are refused) and starts serving.
    pub fn scanned(&mut self, l: &mut dyn Loads) {
        self.scanned = true;
        if let LadderSpec::Files(files) = &self.cfg.ladder {
            let missing: Vec<&str> = files
                .iter()
                .filter(|f| self.index(f).is_none())
                .map(String::as_str)
                .collect();
            if !missing.is_empty() && !self.missing_reported {
                self.missing_reported = true;
                log::warn!(
                    "governor.ladder names {} not on the ladder (missing from the watch folder or \
                     refused); they join when they load",
                    missing.join(", ")
                );
            }
        }
        if self.signature.is_none() {
            self.signature = ladder::majority(&self.rungs);
        }
        if let Some(sig) = self.signature.clone() {
            let others: Vec<usize> = (0..self.rungs.len())
                .filter(|&i| self.rungs[i].signature != sig)
                .rev()
                .collect();
            for i in others {
                let r = self.rungs.remove(i);
                self.ctx.shared.view().refused += 1;
                let reason = format!(
                    "{} differs from the ladder's {sig} (the most common in the folder)",
                    r.signature
                );
                l.reject(&r.file, LoadError::NotOnLadder { reason }, r.version);
            }
            self.relabel();
        }
        self.publish();
        self.settle(l);
    }

    /// Starts serving: the largest rung whose measured p99 fits the budget with headroom.
    fn settle(&mut self, l: &mut dyn Loads) {
        if self.serving.is_some() || self.rungs.is_empty() {
            return;
        }
        let s = self.settings();
        let laws: Vec<law::Measured> = self.rungs.iter().map(Rung::law).collect();
        let start = law::start_rung(&s, &laws);
        let summary: Vec<String> = self
            .rungs
            .iter()
            .map(|r| {
                format!(
                    "{} {:.2}/{:.2}/{:.2} ms",
                    r.info.name, r.measured.p10_ms, r.measured.p50_ms, r.measured.p99_ms
                )
            })
            .collect();
        log::info!(
            "governor: ladder of {} (p10/p50/p99, fastest first): {}",
            self.rungs.len(),
            summary.join(", ")
        );
        let reason = format!(
            "start: the largest rung whose measured p50 {:.2} ms fits {:.2} ms (budget less headroom)",
            laws[start].p50_ms,
            s.up_threshold_ms()
        );
        if self.switch(l, start, &reason, None) {
            self.law = law::State::new(self.rungs.len(), start);
            self.relabel();
        }
        self.publish();
    }

    /// The watcher saw `path` go. A rung that is not serving leaves the ladder; the serving one
    /// keeps serving (it is loaded) until the governor steps away from it.
    pub fn removed(&mut self, path: &Path) {
        let Some(file) = path.file_name().map(|f| f.to_string_lossy().into_owned()) else {
            return;
        };
        if self.serving.as_deref() == Some(file.as_str()) {
            return;
        }
        if self.index(&file).is_some() {
            log::info!("governor: {file} was removed; it leaves the ladder");
            self.forget(&file);
            self.publish();
        }
    }

    /// `POST /governor/pin` and `/unpin`.
    pub fn request(&mut self, _l: &mut dyn Loads, req: Request) {
        match req {
            Request::Pin(name) => {
                let file = match name {
                    None => self.serving.clone(),
                    Some(n) => self
                        .rungs
                        .iter()
                        .find(|r| r.file == n || r.info.name == n)
                        .map(|r| r.file.clone()),
                };
                match file {
                    Some(f) => {
                        log::info!("governor: pinned to {f}");
                        self.pinned = Some(f);
                    }
                    None => {
                        log::warn!("governor: pin ignored: no such rung (or nothing serves yet)")
                    }
                }
            }
            Request::Unpin => {
                if let Some(f) = self.pinned.take() {
                    log::info!("governor: unpinned from {f}");
                }
            }
        }
        self.relabel();
        self.publish();
        self.next_tick = MonoTime::now();
    }

    /// Consults the law (every [`TICK`]) and carries out its step, then keeps the neighbours
    /// `governor.keep_loaded` asks for loaded.
    pub fn tick(&mut self, l: &mut dyn Loads) {
        let now = MonoTime::now();
        if now < self.next_tick || !self.scanned || l.stopping() {
            return;
        }
        self.next_tick = now.plus(TICK);
        if self.serving.is_none() {
            self.settle(l);
            return;
        }
        let generation = l.context().serving.generation();
        let ago =
            |d: Duration| MonoTime::from_nanos(now.as_nanos().saturating_sub(d.as_nanos() as u64));
        let fig = self.ctx.shared.window().figures(
            generation,
            ago(self.cfg.window),
            ago(self.cfg.down_after / 2),
            &mut self.scratch,
        );
        let s = self.settings();
        let laws: Vec<law::Measured> = self.rungs.iter().map(Rung::law).collect();
        let (next, step) = law::decide(&s, &fig, &laws, &self.law, now);
        self.law = next;
        {
            let mut v = self.ctx.shared.view();
            v.figures = (fig.frames > 0).then_some(fig);
            v.slowdown = laws
                .get(self.law.current)
                .filter(|_| fig.frames > 0)
                .map(|m| law::slowdown(&fig, m));
        }
        if let Some(step) = step {
            let reason = step.reason.to_string();
            if self.switch(l, step.to, &reason, Some(step.direction)) {
                let to = self
                    .serving
                    .as_deref()
                    .and_then(|f| self.index(f))
                    .unwrap_or(step.to);
                self.law.stepped(to, now);
                self.ctx.shared.count(step.direction);
            }
        }
        self.keep_neighbours(l);
        self.publish();
    }

    /// Drops the pipelines `keep_loaded` no longer keeps and loads one it wants (one per tick,
    /// so the law is consulted between loads).
    fn keep_neighbours(&mut self, l: &mut dyn Loads) {
        let Some(cur) = self.serving.as_deref().and_then(|f| self.index(f)) else {
            return;
        };
        let keep = self.cfg.keep_loaded;
        let mut dropped = false;
        for (i, r) in self.rungs.iter_mut().enumerate() {
            if i != cur && !keep.keeps(i, cur) && r.pipeline.take().is_some() {
                dropped = true;
            }
        }
        if dropped {
            crate::rt::trim_heap();
        }
        let Some(i) = (0..self.rungs.len())
            .find(|&i| i != cur && keep.keeps(i, cur) && self.rungs[i].pipeline.is_none())
        else {
            return;
        };
        let (path, file, version) = {
            let r = &self.rungs[i];
            (r.path.clone(), r.file.clone(), r.version)
        };
        let warmup = l.warmup();
        crate::rt::trim_heap();
        let before = crate::system::rss_bytes_now();
        match l.load(&path, warmup, Some(self.measure())) {
            Ok(p) => {
                crate::rt::trim_heap();
                if let Some(i) = self.index(&file) {
                    self.rungs[i].remember_memory(before, &p.pipeline);
                    self.rungs[i].pipeline = Some(p.pipeline);
                }
                if let Some(m) = p.measured {
                    self.refine(&file, m);
                }
            }
            Err(e) => {
                self.forget(&file);
                l.reject(&file, e, version);
            }
        }
    }

    /// Makes rung `to` serve: its kept pipeline, or a fresh load. `direction` is `None` for the
    /// start and for a new version of the serving model (not steps). Whether it serves now.
    fn switch(
        &mut self,
        l: &mut dyn Loads,
        to: usize,
        reason: &str,
        direction: Option<Direction>,
    ) -> bool {
        let t0 = Instant::now();
        let (file, version) = (self.rungs[to].file.clone(), self.rungs[to].version);
        let warmup = l.warmup();
        let path = self.rungs[to].path.clone();
        let measure = self.measure();
        let mut measured = None;
        let (pipeline, load_ms) = match self.rungs[to].pipeline.take() {
            Some(p) => (p, None),
            None => match (
                crate::system::rss_bytes_now(),
                l.load(&path, warmup, Some(measure)),
            ) {
                (before, Ok(p)) => {
                    crate::rt::trim_heap();
                    self.rungs[to].remember_memory(before, &p.pipeline);
                    measured = p.measured;
                    (p.pipeline, Some(p.load_ms))
                }
                (_, Err(e)) => {
                    log::warn!("governor: cannot step to {file}: {e}");
                    self.forget(&file);
                    l.reject(&file, e, version);
                    self.publish();
                    return false;
                }
            },
        };
        let from_file = self.serving.clone();
        let from_name = from_file
            .as_deref()
            .and_then(|f| self.index(f))
            .map(|i| self.rungs[i].info.name.clone())
            .or_else(|| l.context().serving.model().map(|m| m.name));
        let from_rung = from_file.as_deref().and_then(|f| self.index(f));
        let retired = match l.context().serving.swap_in(pipeline) {
            Ok(old) => old,
            Err(e) => {
                log::warn!("governor: step to {file} failed: {e}; it is loaded again on demand");
                return false;
            }
        };
        self.serving = Some(file.clone());
        let took_ms = ms(t0.elapsed());
        // The engine it replaced stays loaded when it is a neighbour to keep, unless it was the
        // old version of the file that just replaced it.
        if let Some(old) = retired {
            self.retire(
                old,
                to,
                direction.is_none() && from_file.as_deref() == Some(file.as_str()),
            );
        }
        let to_name = self.rungs[to].info.name.clone();
        {
            let registry = &l.context().registry;
            let mut reg = lock(registry);
            reg.set(&file, FileState::Active, version);
            if let Some(f) = from_file.as_deref().filter(|f| *f != file)
                && let Some(i) = self.index(f)
            {
                reg.set(f, FileState::Ladder, self.rungs[i].version);
            }
            reg.record(SwapRecord {
                at: rfc3339_now(),
                from: from_name.clone(),
                to: to_name.clone(),
                ok: true,
                reason: Some(format!(
                    "governor {}: {reason}",
                    direction.map_or("start", Direction::name)
                )),
                load_ms,
                warmup_p50_ms: None,
            });
        }
        let n = self.rungs.len();
        match direction {
            Some(d) => log::info!(
                "governor: step {}: {} -> {} (rung {} -> {} of {n}) in {took_ms:.1} ms: {reason}",
                d.name(),
                from_name.as_deref().unwrap_or("none"),
                to_name,
                from_rung.map_or("-".into(), |r| r.to_string()),
                to,
            ),
            None => log::info!(
                "governor: {to_name} serves (rung {to} of {n}) in {took_ms:.1} ms: {reason}"
            ),
        }
        self.ctx.shared.view().last_step = Some(StepView {
            at: rfc3339_now(),
            from: from_name,
            to: to_name,
            direction: direction.map_or("start", Direction::name),
            reason: reason.to_string(),
            took_ms,
        });
        crate::rt::trim_heap();
        (l.context().after_swap)();
        if let Some(m) = measured {
            self.refine(&file, m);
        }
        true
    }

    /// What every load of a rung measures.
    fn measure(&self) -> Measure {
        Measure {
            runs: self.cfg.measure_runs,
            frame_size: self.ctx.frame_size,
        }
    }

    /// A later measurement of `file`: kept when its fast runs are faster than the one the rung
    /// has (preemptions only ever add time, so the lowest p10 is the closest to the model's
    /// cost: an estimate a busy moment inflated comes down the next time the rung is loaded).
    /// The ladder is re-ordered when that changes the order.
    fn refine(&mut self, file: &str, m: crate::models::prepare::Measurement) {
        let Some(i) = self.index(file) else {
            return;
        };
        let old = self.rungs[i].measured;
        if m.p10_ms >= old.p10_ms {
            return;
        }
        log::info!(
            "governor: {file} measured again: p10 {:.3} ms (was {:.3}), p50 {:.3} ms, p99 {:.3} ms",
            m.p10_ms,
            old.p10_ms,
            m.p50_ms,
            m.p99_ms
        );
        self.rungs[i].measured = m;
        let before: Vec<String> = self.rungs.iter().map(|r| r.file.clone()).collect();
        self.rungs.sort_by(|a, b| {
            (a.measured.p10_ms, a.file.as_str())
                .partial_cmp(&(b.measured.p10_ms, b.file.as_str()))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        if self.rungs.iter().map(|r| &r.file).ne(before.iter()) {
            log::info!("governor: the ladder's order changed with that measurement");
            let current = self
                .serving
                .as_deref()
                .and_then(|f| self.index(f))
                .unwrap_or(0);
            let pinned = self.pinned.as_deref().and_then(|f| self.index(f));
            self.law.relabel(self.rungs.len(), current, pinned);
        }
        self.publish();
    }

    /// Puts a pipeline the pipeline thread handed back where it belongs: kept on its rung when
    /// `keep_loaded` keeps it beside the rung `serving`, else dropped (here, off the pipeline
    /// thread).
    fn retire(&mut self, old: Pipeline, serving: usize, outdated: bool) {
        let Some(file) = old
            .engine
            .info()
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
        else {
            return;
        };
        match self.index(&file) {
            Some(i)
                if !outdated
                    && self.cfg.keep_loaded.keeps(i, serving)
                    && self.rungs[i].pipeline.is_none() =>
            {
                self.rungs[i].pipeline = Some(old);
            }
            _ => drop(old),
        }
    }

    /// Takes `file` off the ladder (it failed to load, was refused or removed).
    fn forget(&mut self, file: &str) {
        if self.serving.as_deref() == Some(file) {
            return;
        }
        if let Some(i) = self.index(file) {
            self.rungs.remove(i);
            self.relabel();
        }
    }

    /// Renumbers the law's state after the ladder changed.
    fn relabel(&mut self) {
        if self
            .pinned
            .as_deref()
            .is_some_and(|p| self.index(p).is_none())
        {
            log::warn!("governor: the pinned rung left the ladder; unpinned");
            self.pinned = None;
        }
        let current = self
            .serving
            .as_deref()
            .and_then(|f| self.index(f))
            .unwrap_or(0);
        let pinned = self.pinned.as_deref().and_then(|f| self.index(f));
        if self.law.rungs() != self.rungs.len() || self.law.current != current {
            self.law.relabel(self.rungs.len(), current, pinned);
        } else {
            self.law.pinned = pinned;
        }
    }

    /// Updates `/status` `governor`.
    fn publish(&self) {
        let serving = self.serving.as_deref().and_then(|f| self.index(f));
        let mut v = self.ctx.shared.view();
        v.ladder = self
            .rungs
            .iter()
            .enumerate()
            .map(|(i, r)| r.view(Some(i) == serving))
            .collect();
        v.rung = serving;
        v.pinned = self
            .pinned
            .as_deref()
            .and_then(|f| self.index(f))
            .map(|i| self.rungs[i].info.name.clone());
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    use std::thread::JoinHandle;

    use super::*;
    use crate::backend::{BackendKind, ElementType, ModelInfo, Precision, TensorInfo};
    use crate::governor::KeepLoaded;
    use crate::models::loader::LoaderContext;
    use crate::models::prepare::Measurement;
    use crate::models::test_engine::{Fake, SPEC};
    use crate::models::{PrepareError, Prepared, Registry};
    use crate::pipeline::{FrameRecord, TOP_K};
    use crate::preprocess::{PreprocessOptions, Preprocessor};
    use crate::slot::{FrameSlot, Outcome};
    use crate::stats::FrameTimes;

    /// A loader whose "models" are text files: `P10 P50 P99 CLASSES` (the measurement they
    /// report and their output), or `bad`. No runtime, no worker thread.
    struct FakeLoader {
        ctx: LoaderContext,
        loads: Vec<String>,
    }

    impl Loads for FakeLoader {
        fn load(
            &mut self,
            path: &Path,
            _warmup: u32,
            measure: Option<Measure>,
        ) -> Result<Prepared, LoadError> {
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            self.loads.push(name.to_string());
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let v: Vec<f64> = text
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if v.len() != 4 {
                return Err(PrepareError::NoScores {
                    path: path.to_path_buf(),
                }
                .into());
            }
            let classes = v[3] as usize;
            let info = ModelInfo {
                name: name.to_string(),
                path: path.to_path_buf(),
                backend: BackendKind::OnnxRuntime,
                precision: Precision::Fp32,
                inputs: Vec::new(),
                outputs: vec![TensorInfo {
                    name: "scores".into(),
                    shape: vec![1, classes as i64],
                    element: ElementType::Float32,
                }],
                input: SPEC,
                classes,
                output: 0,
                output_shape: vec![1, classes as i64],
                output_op: None,
                params: None,
                labels: None,
                can_cancel: false,
            };
            let engine = Fake::new(info.clone(), classes);
            let pre = Preprocessor::new(SPEC, PreprocessOptions::default()).expect("preprocessor");
            Ok(Prepared {
                pipeline: Pipeline::new(Box::new(engine), pre),
                info,
                load_ms: 1.0,
                warmup_p50_ms: None,
                measured: measure.map(|m| Measurement {
                    runs: m.runs,
                    p10_ms: v[0],
                    p50_ms: v[1],
                    p99_ms: v[2],
                    inference_p50_ms: v[0],
                }),
            })
        }

        fn reject(&mut self, name: &str, reason: LoadError, version: Option<Version>) {
            lock(&self.ctx.registry).set(name, FileState::Rejected(reason.to_string()), version);
        }

        fn context(&self) -> &LoaderContext {
            &self.ctx
        }

        fn warmup(&self) -> u32 {
            0
        }

        fn stopping(&self) -> bool {
            false
        }
    }

    /// A governor on a temporary folder, with a pipeline thread that takes what it stages.
    struct Harness {
        dir: tempfile::TempDir,
        governor: Governor,
        loader: FakeLoader,
        shared: Arc<GovernorShared>,
        ctl: Arc<LoopControl>,
        pipeline: Option<JoinHandle<()>>,
    }

    impl Harness {
        fn new(keep: KeepLoaded) -> Harness {
            let cfg = GovernorConfig {
                window: Duration::from_millis(500),
                down_after: Duration::from_millis(20),
                up_after: Duration::from_millis(20),
                cool_down: Duration::from_millis(20),
                keep_loaded: keep,
                ..GovernorConfig::default()
            };
            let shared = Arc::new(GovernorShared::new(cfg));
            let ctl = Arc::new(LoopControl::new(Duration::from_secs_f64(0.01667)));
            let ctx = LoaderContext {
                prepare: Arc::new(|path: &Path, _, _| {
                    Err(PrepareError::NoScores {
                        path: path.to_path_buf(),
                    })
                }),
                serving: Arc::default(),
                registry: Arc::new(Mutex::new(Registry::default())),
                after_swap: Arc::new(|| {}),
                pipeline: Some(Arc::clone(&ctl)),
            };
            let pipeline = std::thread::spawn({
                let serving = Arc::clone(&ctx.serving);
                let ctl = Arc::clone(&ctl);
                move || {
                    let (records, _keep) = std::sync::mpsc::sync_channel::<FrameRecord>(4);
                    let slot = FrameSlot::new(1, 1);
                    crate::pipeline::run(&mut None, serving.swap_slot(), &slot, &ctl, &records);
                }
            });
            let governor = Governor::new(GovernorContext {
                shared: Arc::clone(&shared),
                ctl: Arc::clone(&ctl),
                frame_size: (8, 8, PixelFormat::Rgb24),
                frame_rate: 60.0,
            });
            Harness {
                dir: tempfile::tempdir().expect("temp dir"),
                governor,
                loader: FakeLoader {
                    ctx,
                    loads: Vec::new(),
                },
                shared,
                ctl,
                pipeline: Some(pipeline),
            }
        }

        fn add(&mut self, file: &str, text: &str) {
            let path = self.dir.path().join(file);
            std::fs::write(&path, text).expect("write");
            let v = Version::of(&path);
            self.governor.consider(&mut self.loader, file, &path, v);
        }

        /// Ticks until `done` (each tick after the governor's own period).
        fn tick_until(&mut self, done: impl Fn(&Harness) -> bool) {
            self.late_until(None, done);
        }

        /// Ticks until `done`, the serving engine finishing 100 frames of `ms` (if given) just
        /// before each tick.
        fn late_until(&mut self, ms: Option<f64>, done: impl Fn(&Harness) -> bool) {
            for _ in 0..200 {
                if done(self) {
                    return;
                }
                std::thread::sleep(TICK);
                if let Some(ms) = ms {
                    self.frames(ms);
                }
                self.governor.tick(&mut self.loader);
            }
            panic!("never reached: {}", self.shared.to_json());
        }

        fn serving(&self) -> Option<String> {
            self.loader.ctx.serving.model().map(|m| m.name)
        }

        fn state(&self, file: &str) -> Option<FileState> {
            lock(&self.loader.ctx.registry).state(file).cloned()
        }

        fn loaded(&self) -> Vec<bool> {
            self.shared.view().ladder.iter().map(|r| r.loaded).collect()
        }

        /// 100 frames of the serving engine, each `ms` end to end, just now.
        fn frames(&self, ms: f64) {
            let generation = self.loader.ctx.serving.generation();
            let now = crate::time::MonoTime::now();
            let d = Duration::from_secs_f64(ms / 1000.0);
            let mut w = self.shared.window();
            for i in 0..100 {
                w.push(&FrameRecord {
                    seq: i,
                    model_gen: generation,
                    captured_at: now,
                    done_at: now,
                    times: FrameTimes {
                        end_to_end: d,
                        capture: Duration::ZERO,
                        queue: Duration::ZERO,
                        inference: d,
                        preprocess: Duration::ZERO,
                        postprocess: Duration::ZERO,
                        device: None,
                    },
                    outcome: if ms > 16.67 {
                        Outcome::Late
                    } else {
                        Outcome::OnTime
                    },
                    budget: Duration::from_secs_f64(0.01667),
                    top: [(0, 0.0); TOP_K],
                    top_len: 0,
                    raw: None,
                    detections: None,
                });
            }
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            self.ctl.stop.store(true, Ordering::SeqCst);
            if let Some(h) = self.pipeline.take() {
                let _ = h.join();
            }
        }
    }

    fn ladder(h: &Harness) -> Vec<String> {
        h.shared
            .view()
            .ladder
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    #[test]
    fn admits_by_measurement_refuses_another_task_and_starts_on_the_largest_that_fits() {
        let mut h = Harness::new(KeepLoaded::Neighbours);
        h.add("a.onnx", "8 9 12 10");
        h.add("b.onnx", "1 1.2 2 10");
        h.add("c.onnx", "3 3.5 5 10");
        h.add("d.onnx", "1 1 1 200");
        h.add("e.onnx", "bad");
        h.add("f.onnx", "14 15 30 10");
        h.governor.scanned(&mut h.loader);
        assert_eq!(ladder(&h), ["b", "c", "a", "f"]);
        assert!(
            matches!(h.state("d.onnx"), Some(FileState::Rejected(r)) if r.contains("[1, 200]"))
        );
        assert!(matches!(h.state("e.onnx"), Some(FileState::Rejected(_))));
        // f's median (15 ms) is over 12.5: a (9 ms) starts.
        assert_eq!(h.serving().as_deref(), Some("a"));
        assert_eq!(h.state("a.onnx"), Some(FileState::Active));
        assert_eq!(h.state("b.onnx"), Some(FileState::Ladder));
        assert_eq!(h.shared.view().refused, 1);
        h.tick_until(|h| h.loaded() == [false, true, true, true]);
        let v = h.shared.to_json();
        assert_eq!(v["rung"], 2, "{v}");
        assert_eq!(v["last_step"]["direction"], "start", "{v}");
    }

    #[test]
    fn steps_down_to_a_kept_neighbour_keeps_the_old_rung_and_holds_a_pin() {
        let mut h = Harness::new(KeepLoaded::Neighbours);
        h.add("a.onnx", "8 9 12 10");
        h.add("b.onnx", "1 1.2 2 10");
        h.add("c.onnx", "3 3.5 5 10");
        h.governor.scanned(&mut h.loader);
        h.tick_until(|h| h.loaded() == [false, true, true]);
        let loads = h.loader.loads.len();
        // a at 30 ms: c is predicted at 30 x 3 / 8 = 11.25 ms, within 12.5.
        h.late_until(Some(30.0), |h| h.serving().as_deref() == Some("c"));
        h.tick_until(|h| h.loaded() == [true, true, true]);
        assert_eq!(
            h.loader.loads[loads..],
            ["b"],
            "c was kept loaded (no load for the step), a was kept, b loaded as c's new neighbour"
        );
        let v = h.shared.to_json();
        assert_eq!(
            (v["steps"]["down"].clone(), v["rung"].clone()),
            (1.into(), 1.into()),
            "{v}"
        );
        let history: Vec<String> = lock(&h.loader.ctx.registry)
            .swaps()
            .map(|s| s.reason.clone().unwrap_or_default())
            .collect();
        assert!(
            history[1].starts_with("governor down: over budget"),
            "{history:?}"
        );

        // Pinned to a, it goes back and stays however late the frames are.
        h.governor
            .request(&mut h.loader, Request::Pin(Some("a".into())));
        h.tick_until(|h| h.serving().as_deref() == Some("a"));
        for _ in 0..5 {
            std::thread::sleep(TICK);
            h.frames(30.0);
            h.governor.tick(&mut h.loader);
        }
        assert_eq!(h.serving().as_deref(), Some("a"));
        assert_eq!(h.shared.to_json()["pinned"], "a");
        h.governor.request(&mut h.loader, Request::Unpin);
        h.late_until(Some(30.0), |h| h.serving().as_deref() == Some("c"));
    }

    #[test]
    fn a_later_load_that_measures_faster_corrects_the_ladder() {
        let mut h = Harness::new(KeepLoaded::Neighbours);
        h.add("a.onnx", "8 9 12 10");
        h.add("c.onnx", "3 3.5 5 10");
        // Measured while the machine was busy: far slower than it is.
        h.add("f.onnx", "20 22 30 10");
        h.governor.scanned(&mut h.loader);
        assert_eq!(ladder(&h), ["c", "a", "f"]);
        assert_eq!(h.serving().as_deref(), Some("a"));
        // Loaded again as a's neighbour, it measures as it really is; a slower measurement
        // changes nothing (c's is the same as before).
        std::fs::write(h.dir.path().join("f.onnx"), "2 2.2 3 10").expect("write");
        std::fs::write(h.dir.path().join("c.onnx"), "4 5 6 10").expect("write");
        h.tick_until(|h| ladder(h) == ["f", "c", "a"]);
        let v = h.shared.to_json();
        assert_eq!(v["ladder"][0]["p10_ms"], 2.0, "{v}");
        assert_eq!(v["ladder"][1]["p10_ms"], 3.0, "{v}");
        assert_eq!(v["rung"], 2, "a still serves, now the top rung: {v}");
    }

    #[test]
    fn without_neighbours_a_step_loads_and_nothing_stays_loaded() {
        let mut h = Harness::new(KeepLoaded::None);
        h.add("a.onnx", "8 9 12 10");
        h.add("c.onnx", "3 3.5 5 10");
        h.governor.scanned(&mut h.loader);
        let loads = h.loader.loads.len();
        h.late_until(Some(30.0), |h| h.serving().as_deref() == Some("c"));
        assert_eq!(h.loader.loads.len(), loads + 1, "the step loaded c");
        assert_eq!(h.loaded(), [true, false], "a was dropped, not kept");
        assert_eq!(h.shared.to_json()["kept_loaded_bytes"], 0);
    }
}
