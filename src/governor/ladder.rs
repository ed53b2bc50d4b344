//! The ladder: the models of one task, ordered by the latency each measured on this board.
//!
//! File names say nothing reliable about speed (`mnv2-0.5.int8.onnx` may be faster or slower
//! than `mnv2-0.75.onnx` depending on the board's int8 kernels), so rungs are ordered by their
//! measurement at load: a source-sized frame through the pipeline, preprocessing and
//! postprocessing included. Models belong together when they take the same kind of input and
//! give the same output: the same channels and the same output shape.

use std::fmt;
use std::path::PathBuf;

use crate::backend::ModelInfo;
use crate::models::Version;
use crate::models::prepare::Measurement;
use crate::pipeline::Pipeline;

use super::law::Measured;
use super::shared::RungView;

/// What models of one ladder have in common.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Signature {
    /// Input channels (3 RGB, 1 grey); sizes and layouts may differ (preprocessing adapts).
    pub channels: u32,
    /// The shape of the output the scores come from.
    pub output: Vec<i64>,
}

impl Signature {
    pub fn of(info: &ModelInfo) -> Signature {
        Signature {
            channels: info.input.channels,
            output: info
                .outputs
                .first()
                .map_or_else(|| vec![info.classes as i64], |o| o.shape.clone()),
        }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} input channels, output shape {:?}",
            self.channels, self.output
        )
    }
}

/// One model of the ladder.
pub struct Rung {
    /// The file's name in the watch folder.
    pub file: String,
    pub path: PathBuf,
    pub version: Option<Version>,
    pub info: ModelInfo,
    pub signature: Signature,
    pub measured: Measurement,
    pub memory_bytes: Option<u64>,
    /// Loaded and ready to go live, when kept beside the serving rung.
    pub pipeline: Option<Pipeline>,
}

impl Rung {
    pub fn law(&self) -> Measured {
        Measured {
            p10_ms: self.measured.p10_ms,
            p50_ms: self.measured.p50_ms,
            p99_ms: self.measured.p99_ms,
        }
    }

    /// The memory its latest load added: the engine's own figure where the backend reports one
    /// (TensorRT: serialized + persistent + activation, mostly device memory), else the RSS
    /// growth since `before` (the figure of the first load of all also holds the runtime's own
    /// start-up; a later load replaces it).
    pub fn remember_memory(&mut self, before: Option<u64>, loaded: &Pipeline) {
        let engine = loaded.engine.memory().map(|m| m.total_bytes());
        let rss = before
            .zip(crate::system::rss_bytes_now())
            .map(|(b, a)| a.saturating_sub(b));
        if let Some(m) = engine.or(rss) {
            self.memory_bytes = Some(m);
        }
    }

    pub fn view(&self, serving: bool) -> RungView {
        RungView {
            name: self.info.name.clone(),
            file: self.file.clone(),
            precision: self.info.precision.name(),
            backend: self.info.backend.name(),
            p10_ms: self.measured.p10_ms,
            p50_ms: self.measured.p50_ms,
            p99_ms: self.measured.p99_ms,
            runs: self.measured.runs,
            memory_bytes: self.memory_bytes,
            loaded: serving || self.pipeline.is_some(),
        }
    }
}

/// Where a rung measured `m` goes in a ladder ordered by measured cost, the fast runs' p10
/// (fastest first; ties by file name, so the order does not depend on the order of arrival).
pub fn position(rungs: &[Rung], m: &Measurement, file: &str) -> usize {
    rungs.partition_point(|r| (r.measured.p10_ms, r.file.as_str()) < (m.p10_ms, file))
}

/// The signature most rungs share (ties: the one of the slowest rung, the largest model), the
/// ladder's at the first scan under `ladder = "auto"`.
pub fn majority(rungs: &[Rung]) -> Option<Signature> {
    let mut best: Option<(usize, usize, &Signature)> = None;
    for (i, r) in rungs.iter().enumerate() {
        let n = rungs.iter().filter(|o| o.signature == r.signature).count();
        if best.is_none_or(|(bn, bi, _)| (n, i) > (bn, bi)) {
            best = Some((n, i, &r.signature));
        }
    }
    best.map(|(_, _, s)| s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendKind, ElementType, Precision, TensorInfo};
    use crate::tensor::{InputElement, InputSpec, Layout};

    fn info(name: &str, channels: u32, classes: i64) -> ModelInfo {
        ModelInfo {
            name: name.into(),
            path: PathBuf::from(format!("/m/{name}.onnx")),
            backend: BackendKind::OnnxRuntime,
            precision: Precision::Fp32,
            inputs: Vec::new(),
            outputs: vec![TensorInfo {
                name: "scores".into(),
                shape: vec![1, classes],
                element: ElementType::Float32,
            }],
            input: InputSpec {
                width: 32,
                height: 32,
                channels,
                layout: Layout::Nchw,
                element: InputElement::F32,
            },
            classes: classes as usize,
            output: 0,
            output_shape: vec![1, classes],
            output_op: None,
            params: None,
            labels: None,
            can_cancel: true,
        }
    }

    fn rung(name: &str, p50: f64, classes: i64) -> Rung {
        let info = info(name, 3, classes);
        Rung {
            file: format!("{name}.onnx"),
            path: info.path.clone(),
            version: None,
            signature: Signature::of(&info),
            info,
            measured: Measurement {
                runs: 60,
                p10_ms: p50 * 0.9,
                p50_ms: p50,
                p99_ms: p50 * 1.2,
                inference_p50_ms: p50 * 0.8,
            },
            memory_bytes: None,
            pipeline: None,
        }
    }

    #[test]
    fn rungs_are_ordered_by_measured_latency_not_by_name() {
        let mut rungs: Vec<Rung> = Vec::new();
        for (name, p50) in [
            ("a-1.0", 8.0),
            ("b-0.25", 1.0),
            ("c-0.5", 2.5),
            ("d-0.5.int8", 1.5),
        ] {
            let r = rung(name, p50, 10);
            let at = position(&rungs, &r.measured, &r.file);
            rungs.insert(at, r);
        }
        let order: Vec<&str> = rungs.iter().map(|r| r.info.name.as_str()).collect();
        assert_eq!(order, ["b-0.25", "d-0.5.int8", "c-0.5", "a-1.0"]);
    }

    #[test]
    fn the_majority_signature_wins_and_ties_go_to_the_slowest() {
        let rungs = vec![rung("a", 1.0, 10), rung("b", 2.0, 200), rung("c", 3.0, 10)];
        assert_eq!(majority(&rungs).map(|s| s.output), Some(vec![1, 10]));
        let rungs = vec![rung("a", 1.0, 10), rung("b", 2.0, 200)];
        assert_eq!(majority(&rungs).map(|s| s.output), Some(vec![1, 200]));
        assert_eq!(majority(&[]), None);
        assert_ne!(
            Signature::of(&info("g", 1, 10)),
            Signature::of(&info("c", 3, 10))
        );
    }
}
