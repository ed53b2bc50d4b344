//! ONNX Runtime as a tool of the quantizer: it writes its own optimised graph (so the graph we
//! quantize is the one it will run, folded and fused, with every tensor's type inferred), runs
//! the calibration model with activations exposed as outputs, and re-optimises the QDQ model to
//! show which nodes it really fused into integer kernels.

use std::path::Path;

use ort::memory::Allocator;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;

use super::QuantizeError;
use crate::backend::ort_library;
use crate::study::onnx_pb::{self, ModelProto};

fn ort_err(what: &str, e: impl std::fmt::Display) -> QuantizeError {
    QuantizeError::Ort {
        what: what.to_owned(),
        reason: e.to_string(),
    }
}

/// A session over in-memory model bytes; when `save` is given ONNX Runtime writes the graph it
/// optimised at `level` there.
pub fn session(
    what: &str,
    bytes: &[u8],
    level: GraphOptimizationLevel,
    threads: usize,
    save: Option<&Path>,
) -> Result<Session, QuantizeError> {
    let env = ort_library::environment()
        .ok_or_else(|| ort_err(what, "the ONNX Runtime library is not loaded"))?;
    let mut b = Session::builder(env)
        .and_then(|b| b.with_optimization_level(level).map_err(Into::into))
        .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
        .map_err(|e: ort::Error| ort_err(what, e))?;
    if let Some(p) = save {
        b = b
            .with_optimized_model_path(p)
            .map_err(|e| ort_err(what, e.to_string()))?;
    }
    b.commit_from_memory(bytes).map_err(|e| ort_err(what, e))
}

/// Lets ONNX Runtime optimise `bytes` at `level` and reads back the graph it wrote to `path`.
pub fn optimised(
    what: &str,
    bytes: &[u8],
    level: GraphOptimizationLevel,
    path: &Path,
) -> Result<(Session, ModelProto), QuantizeError> {
    let s = session(what, bytes, level, 1, Some(path))?;
    Ok((s, onnx_pb::read_model(path)?))
}

/// A session with a reusable input tensor, for many runs over one model.
pub struct Runner {
    session: Session,
    input: Tensor<f32>,
    /// Names of the outputs, in session order.
    pub outputs: Vec<String>,
    what: String,
}

impl Runner {
    /// Wraps `session`, whose first input takes `shape`.
    pub fn new(what: &str, session: Session, shape: &[i64]) -> Result<Runner, QuantizeError> {
        let input = Tensor::<f32>::new(&Allocator::default(), shape.to_vec())
            .map_err(|e| ort_err(what, e))?;
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_owned())
            .collect();
        Ok(Runner {
            session,
            input,
            outputs,
            what: what.to_owned(),
        })
    }

    /// Runs on `x` and hands every output (index, values) to `f`.
    pub fn run(
        &mut self,
        x: &[f32],
        mut f: impl FnMut(usize, &[f32]),
    ) -> Result<(), QuantizeError> {
        let buf = self.input.extract_tensor_mut().1;
        if buf.len() != x.len() {
            return Err(ort_err(
                &self.what,
                format!("input has {} elements, sample has {}", buf.len(), x.len()),
            ));
        }
        buf.copy_from_slice(x);
        let out = self
            .session
            .run(ort::inputs![&self.input])
            .map_err(|e| ort_err(&self.what, e))?;
        for (i, (_, v)) in out.iter().enumerate() {
            let (_, data) = v
                .try_extract_tensor::<f32>()
                .map_err(|e| ort_err(&self.what, e))?;
            f(i, data);
        }
        Ok(())
    }
}

/// The first input's shape (batch fixed to 1) of a session.
pub fn input_shape(what: &str, s: &Session) -> Result<Vec<i64>, QuantizeError> {
    let first = s
        .inputs()
        .first()
        .ok_or_else(|| ort_err(what, "the model has no input"))?;
    let mut shape: Vec<i64> = first
        .dtype()
        .tensor_shape()
        .map(|s| s.iter().copied().collect())
        .unwrap_or_default();
    if let Some(b) = shape.first_mut().filter(|b| **b < 0) {
        *b = 1;
    }
    Ok(shape)
}
