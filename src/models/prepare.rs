//! One way from a model file to a pipeline ready to serve, for start-up and the loader alike.
//!
//! Open the runtime the backend settings choose, load, check the output has scores, build the
//! preprocessing for the source's frame size (so the first frame on the new model allocates
//! nothing), and warm up. A start-up model and a model dropped into the watch folder go through
//! exactly these steps, so a file that serves at start serves when swapped in, and the reverse.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{BackendError, Canceller, Engine, ModelInfo, Settings};
use crate::pipeline::Pipeline;
use crate::postprocess::Plan;
use crate::preprocess::{PreprocessError, Preprocessor};
use crate::slot::Outcome;
use crate::source::{Frame, PixelFormat};
use crate::stats::percentile_lower;
use crate::time::{MonoTime, ms};

/// A model ready to go live.
pub struct Prepared {
    pub pipeline: Pipeline,
    pub info: ModelInfo,
    /// Open, load, preprocessing and warm-up, in ms.
    pub load_ms: f64,
    /// Median warm-up run, when there was one.
    pub warmup_p50_ms: Option<f64>,
    /// Its latency through the pipeline, when it was measured ([`measure`]).
    pub measured: Option<Measurement>,
}

/// A model's latency through the pipeline's own per-frame function (preprocessing a source-sized
/// frame, inference, postprocessing), measured after its warm-up, before it serves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    pub runs: u32,
    /// Preprocess + inference + postprocess, ms ("lower" percentiles, as the governor's window).
    /// The 10th percentile is the model's cost with little interference: on a busy board (and
    /// the measurement runs at the loader's lower priority) the median is inflated by
    /// preemptions, the fast runs much less.
    pub p10_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Inference alone, ms.
    pub inference_p50_ms: f64,
}

/// A load's link to the loader: the loader abandons a load that outlived `models.load_timeout_s`,
/// and the load ends as soon as it can: a warm-up stops before its next run and the run in
/// progress is terminated through the engine's canceller (ONNX Runtime's run-options terminate
/// flag), so a model whose warm-up never ends does not keep a core and the watch folder forever.
/// A runtime's own load (session creation, an engine build) cannot be interrupted.
#[derive(Default)]
pub struct LoadHandle {
    abandoned: AtomicBool,
    canceller: Mutex<Option<Arc<dyn Canceller>>>,
}

impl LoadHandle {
    /// Whether the loader gave up on this load.
    pub fn abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// The engine is loaded: its runs can be cancelled from now on.
    pub fn set_canceller(&self, c: Option<Arc<dyn Canceller>>) {
        let mut g = self.canceller.lock().unwrap_or_else(|p| p.into_inner());
        *g = c;
        if self.abandoned()
            && let Some(c) = g.as_ref()
        {
            c.cancel();
        }
    }

    /// Gives up on the load; whether the engine's run in progress could be cancelled (false while
    /// the runtime is still loading, or for a backend without cancel).
    pub fn abandon(&self) -> bool {
        self.abandoned.store(true, Ordering::SeqCst);
        let g = self.canceller.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(|c| c.cancel()).is_some()
    }
}

/// Why a model could not be prepared. Every variant names the model.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("model {model}: {source}")]
    Postprocess {
        model: String,
        source: crate::postprocess::DetectError,
    },
    #[error("model {}: its output has no scores", path.display())]
    NoScores { path: PathBuf },
    #[error("preprocessing for model {model}: {source}")]
    Preprocess {
        model: String,
        source: PreprocessError,
    },
    #[error("warm-up: {0}")]
    WarmUp(BackendError),
    #[error("the load was abandoned")]
    Abandoned,
}

/// Opens `path` with the runtime `settings` choose, checks it, builds its preprocessing for
/// frames of `frame_size` (width, height, layout; nothing when a dimension is 0) and runs it `warmup` times.
pub fn prepare(
    settings: &Settings,
    path: &Path,
    warmup: u32,
    frame_size: (u32, u32, PixelFormat),
    handle: &LoadHandle,
) -> Result<Prepared, PrepareError> {
    let t0 = Instant::now();
    let mut engine = crate::backend::load_cancellable(settings, path, &|c| {
        handle.set_canceller(Some(c));
    })
    .map_err(|e| match handle.abandoned() {
        true => PrepareError::Abandoned,
        false => e.into(),
    })?;
    handle.set_canceller(engine.canceller());
    if handle.abandoned() {
        return Err(PrepareError::Abandoned);
    }
    let info = engine.info().clone();
    let post = Plan::decide(
        &settings.postprocess,
        &info.output_shape,
        info.output_op.as_deref(),
    )
    .map_err(|source| PrepareError::Postprocess {
        model: info.name.clone(),
        source,
    })?;
    log::info!(
        "model {} ({}, {}): input {}x{}x{}; outputs {}; reading '{}' {:?} as {}",
        info.name,
        info.backend,
        info.precision.name(),
        info.input.channels,
        info.input.height,
        info.input.width,
        outputs_line(&info),
        info.outputs
            .get(info.output)
            .map_or("?", |o| o.name.as_str()),
        info.output_shape,
        post.describe()
    );
    if let Some(l) = &info.labels {
        log::info!(
            "model {}: {} class names from {}",
            info.name,
            l.names.len(),
            l.source
        );
        if matches!(post, Plan::Classify(_)) && l.names.len() != info.classes {
            log::warn!(
                "model {}: {} class names for {} classes; a class without a name is reported by id",
                info.name,
                l.names.len(),
                info.classes
            );
        }
    }
    if info.classes == 0 {
        return Err(PrepareError::NoScores {
            path: path.to_path_buf(),
        });
    }
    let preprocess = |source| PrepareError::Preprocess {
        model: info.name.clone(),
        source,
    };
    let mut pre = Preprocessor::new(info.input, settings.preprocess).map_err(preprocess)?;
    if frame_size.0 > 0 && frame_size.1 > 0 {
        pre.prepare(frame_size.0, frame_size.1, frame_size.2)
            .map_err(preprocess)?;
    }
    let warmup_p50_ms = warm_up(&mut engine, warmup, handle)?;
    handle.set_canceller(None);
    Ok(Prepared {
        pipeline: Pipeline::with_plan(engine, pre, post),
        info,
        load_ms: ms(t0.elapsed()),
        warmup_p50_ms,
        measured: None,
    })
}

/// Runs `runs` frames of `frame_size` (width, height and the source's layout; the model's own
/// input size in RGB when a dimension is 0) through [`crate::pipeline::process`], exactly as the
/// pipeline thread does per frame, and returns the percentiles. The frame is a still: the
/// synthetic test pattern in RGB, a fixed byte pattern in the other layouts (the frame path's
/// cost depends on the geometry and layout, not on the pixel values). On the calling thread.
pub fn measure(
    p: &mut Pipeline,
    frame_size: (u32, u32, PixelFormat),
    runs: u32,
) -> Result<Measurement, BackendError> {
    let (w, h, format) = if frame_size.0 > 0 && frame_size.1 > 0 {
        frame_size
    } else {
        let spec = p.pre.spec();
        (spec.width, spec.height, PixelFormat::Rgb24)
    };
    let mut frame = Frame::default();
    frame.set_format(format, w, h);
    if format == PixelFormat::Rgb24 {
        crate::source::synthetic::draw(0, w, h, &mut frame.data);
    } else {
        for (i, b) in frame.data.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
    }
    let mut total = Vec::with_capacity(runs as usize);
    let mut inference = Vec::with_capacity(runs as usize);
    for seq in 1..=u64::from(runs) {
        frame.seq = seq;
        frame.captured_at = MonoTime::now();
        let rec = crate::pipeline::process(p, &frame, Duration::MAX);
        if !matches!(rec.outcome, Outcome::OnTime | Outcome::Late) {
            // Run again outside `process` for the error's text.
            p.engine.run()?;
            return Err(BackendError::Run {
                name: p.engine.info().name.clone(),
                reason: format!("frame {seq} of the measurement ended {:?}", rec.outcome),
            });
        }
        let t = rec.times;
        total.push(ms(t.preprocess + t.inference + t.postprocess));
        inference.push(ms(t.inference));
    }
    Ok(Measurement {
        runs,
        p10_ms: percentile_lower(&mut total, 0.1).unwrap_or(0.0),
        p50_ms: percentile_lower(&mut total, 0.5).unwrap_or(0.0),
        p99_ms: percentile_lower(&mut total, 0.99).unwrap_or(0.0),
        inference_p50_ms: percentile_lower(&mut inference, 0.5).unwrap_or(0.0),
    })
}

/// `name [1, 2] float32, ...`: every output as the runtime declares it.
pub fn outputs_line(info: &ModelInfo) -> String {
    info.outputs
        .iter()
        .map(|o| format!("{} {:?} {}", o.name, o.shape, o.element))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the engine `n` times on its input so first-run costs stay out of the figures; returns
/// the median run time.
fn warm_up(
    engine: &mut Box<dyn Engine>,
    n: u32,
    handle: &LoadHandle,
) -> Result<Option<f64>, PrepareError> {
    let t = MonoTime::now();
    let mut times = Vec::with_capacity(n as usize);
    for _ in 0..n {
        if handle.abandoned() {
            return Err(PrepareError::Abandoned);
        }
        let r = MonoTime::now();
        engine.run().map_err(|e| match handle.abandoned() {
            true => PrepareError::Abandoned,
            false => PrepareError::WarmUp(e),
        })?;
        times.push(ms(MonoTime::now().saturating_since(r)));
    }
    times.sort_by(f64::total_cmp);
    let p50 = times.get(times.len() / 2).copied();
    if let Some(p50) = p50 {
        log::info!(
            "warm-up: {n} runs in {:.1} ms (median {p50:.3} ms)",
            ms(MonoTime::now().saturating_since(t))
        );
    }
    Ok(p50)
}
