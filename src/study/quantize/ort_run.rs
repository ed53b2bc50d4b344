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
use crate::onnx::pb::{self as onnx_pb, ModelProto};

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
    len: usize,
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
            len: shape.iter().map(|&d| d.max(0) as usize).product(),
        })
    }

    /// Elements of the first input.
    pub fn input_len(&self) -> usize {
        self.len
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

/// ONNX `TensorProto.DataType` of an ORT element type (0 for types the quantizer never meets).
fn onnx_type(t: ort::value::TensorElementType) -> i32 {
    use ort::value::TensorElementType as T;
    match t {
        T::Float32 => 1,
        T::Uint8 => 2,
        T::Int8 => 3,
        T::Uint16 => 4,
        T::Int16 => 5,
        T::Int32 => 6,
        T::Int64 => 7,
        T::Bool => 9,
        T::Float16 => 10,
        T::Float64 => 11,
        _ => 0,
    }
}

/// Fills `value_info` with the type and shape of every node output, as ONNX Runtime infers them
/// (its optimised-model files carry none): every output is declared a graph output of a probe
/// model, and the loaded session reports what it inferred for each.
pub fn shape_infer(what: &str, model: &ModelProto) -> Result<ModelProto, QuantizeError> {
    use crate::onnx::pb::{TypeProto, ValueInfoProto, type_proto};
    use prost::Message;
    let mut probe = model.clone();
    let Some(g) = probe.graph.as_mut() else {
        return Ok(model.clone());
    };
    let declared: std::collections::HashSet<String> = g
        .output
        .iter()
        .chain(&g.input)
        .map(|v| v.name.clone())
        .collect();
    let inner: Vec<String> = g
        .node
        .iter()
        .flat_map(|n| n.output.iter())
        .filter(|o| !o.is_empty() && !declared.contains(*o))
        .cloned()
        .collect();
    g.output.extend(inner.iter().map(|name| ValueInfoProto {
        name: name.clone(),
        ..Default::default()
    }));
    let s = session(
        what,
        &probe.encode_to_vec(),
        GraphOptimizationLevel::Disable,
        1,
        None,
    )?;
    let mut out = model.clone();
    let g = out.graph.get_or_insert_with(Default::default);
    g.value_info.clear();
    for o in s.outputs().iter().filter(|o| !declared.contains(o.name())) {
        let (Some(ty), Some(shape)) = (o.dtype().tensor_type(), o.dtype().tensor_shape()) else {
            continue;
        };
        let dims: Vec<i64> = shape.iter().copied().collect();
        let mut v = ValueInfoProto::float_tensor(o.name(), &dims);
        if let Some(TypeProto {
            value: Some(type_proto::Value::TensorType(t)),
            ..
        }) = v.r#type.as_mut()
        {
            t.elem_type = onnx_type(ty);
        }
        g.value_info.push(v);
    }
    Ok(out)
}
