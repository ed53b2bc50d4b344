//! Which nodes become integer and which tensors get a QuantizeLinear/DequantizeLinear pair,
//! decided from the graph alone (before calibration, which only needs the tensor list).
//!
//! The layout follows what ONNX Runtime's QDQ fusion turns into integer kernels: every float
//! activation read or written by a quantizable node gets one Q/DQ pair right after its producer;
//! a Relu or Clip is not separated from its producer (ORT folds it into the following Q, so
//! `DQ -> Conv -> Relu -> Q` becomes one QLinearConv); ops that only move data (MaxPool,
//! Reshape, Flatten, ...) reuse their input's scale and zero point so ORT can drop their Q/DQ.

use std::collections::{HashMap, HashSet};

use crate::onnx::pb::{DATA_TYPE_FLOAT, GraphProto, NodeProto, TensorProto, type_proto};

/// How a node is quantized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Conv, Gemm, MatMul with a constant weight: int8 weight (per channel along `axis` when
    /// allowed) and, when present, an int32 bias.
    Weighted {
        weight: usize,
        bias: Option<usize>,
        axis: Option<usize>,
    },
    /// Every float activation input and output quantized.
    Plain,
    /// Data movement: output shares the input's parameters.
    Passthrough,
    /// Relu/Clip: fused into the Q that follows.
    Activation,
}

/// A node left in float, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct LeftFloat {
    pub node: String,
    pub op: String,
    pub reason: String,
}

/// The result of planning.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Per node (index in the graph), its kind when quantized.
    pub kinds: Vec<Option<Kind>>,
    /// Activation tensors that get a Q/DQ pair, in graph order.
    pub tensors: Vec<String>,
    /// Tensors among `tensors` whose parameters are their input's (passthrough outputs), with
    /// that input.
    pub shared: HashMap<String, String>,
    pub left_float: Vec<LeftFloat>,
}

/// Planning needs what the graph offers: constant float weights.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "graph '{graph}' has no Conv, Gemm or MatMul with constant float weights: nothing to quantize (already quantized?)"
    )]
    NoFloatWeights { graph: String },
}

/// Float tensor element types known from the graph's inputs, outputs and value_info.
pub fn elem_types(g: &GraphProto) -> HashMap<&str, i32> {
    g.input
        .iter()
        .chain(&g.output)
        .chain(&g.value_info)
        .filter_map(|v| match v.r#type.as_ref()?.value.as_ref()? {
            type_proto::Value::TensorType(t) => Some((v.name.as_str(), t.elem_type)),
        })
        .collect()
}

/// Shared lookups over a graph.
pub struct Index<'g> {
    pub inits: HashMap<&'g str, &'g TensorProto>,
    pub types: HashMap<&'g str, i32>,
    pub consumers: HashMap<&'g str, Vec<usize>>,
    pub outputs: HashSet<&'g str>,
}

impl<'g> Index<'g> {
    pub fn new(g: &'g GraphProto) -> Self {
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                consumers.entry(inp.as_str()).or_default().push(i);
            }
        }
        Index {
            inits: g.initializer.iter().map(|t| (t.name.as_str(), t)).collect(),
            types: elem_types(g),
            consumers,
            outputs: g.output.iter().map(|v| v.name.as_str()).collect(),
        }
    }

    /// A float tensor computed at run time (not a constant). Untyped values count as float.
    pub fn is_float_activation(&self, name: &str) -> bool {
        !name.is_empty()
            && !self.inits.contains_key(name)
            && self.types.get(name).is_none_or(|&t| t == DATA_TYPE_FLOAT)
    }

    fn float_weight(&self, name: Option<&String>) -> Option<&'g TensorProto> {
        let t = self.inits.get(name?.as_str())?;
        (t.data_type == DATA_TYPE_FLOAT).then_some(*t)
    }
}

fn attr_i(n: &NodeProto, name: &str) -> Option<i64> {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| a.i)
}

fn attr_f(n: &NodeProto, name: &str) -> Option<f32> {
    n.attribute
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| a.f)
}

/// The kind of `n`, or why it stays float.
fn kind_of(n: &NodeProto, ix: &Index, per_channel: bool) -> Result<Kind, String> {
    if !n.domain.is_empty() && n.domain != "ai.onnx" {
        return Err(format!("operator domain '{}' is not quantized", n.domain));
    }
    let axis = |a: usize| per_channel.then_some(a);
    match n.op_type.as_str() {
        "Conv" => {
            let w = ix
                .float_weight(n.input.get(1))
                .ok_or("weight is not a constant float tensor")?;
            if w.dims.len() < 3 {
                return Err(format!("weight has {} dims", w.dims.len()));
            }
            let bias = n.input.get(2).filter(|b| !b.is_empty());
            if bias.is_some() && ix.float_weight(bias).is_none() {
                return Err("bias is not a constant float tensor".into());
            }
            Ok(Kind::Weighted {
                weight: 1,
                bias: bias.map(|_| 2),
                axis: axis(0),
            })
        }
        "Gemm" => {
            if attr_i(n, "transA").unwrap_or(0) != 0
                || attr_f(n, "alpha").unwrap_or(1.0) != 1.0
                || attr_f(n, "beta").unwrap_or(1.0) != 1.0
            {
                return Err("transA, alpha or beta is not the default".into());
            }
            let w = ix
                .float_weight(n.input.get(1))
                .ok_or("weight B is not a constant float tensor")?;
            if w.dims.len() != 2 {
                return Err("weight B is not 2-D".into());
            }
            let trans_b = attr_i(n, "transB").unwrap_or(0) != 0;
            let n_out = if trans_b { w.dims[0] } else { w.dims[1] };
            let bias = n.input.get(2).filter(|b| !b.is_empty());
            if let Some(b) = bias {
                let c = ix
                    .float_weight(Some(b))
                    .ok_or("bias C is not a constant float tensor")?;
                if c.dims != [n_out] {
                    return Err(format!("bias C has shape {:?}, not [{n_out}]", c.dims));
                }
            }
            Ok(Kind::Weighted {
                weight: 1,
                bias: bias.map(|_| 2),
                axis: axis(if trans_b { 0 } else { 1 }),
            })
        }
        "MatMul" => match ix.float_weight(n.input.get(1)) {
            Some(w) if w.dims.len() == 2 => Ok(Kind::Weighted {
                weight: 1,
                bias: None,
                axis: None,
            }),
            _ => Ok(Kind::Plain),
        },
        "Add" | "Mul" | "Concat" | "AveragePool" | "GlobalAveragePool" | "Sigmoid"
        | "LeakyRelu" => Ok(Kind::Plain),
        "MaxPool" | "Reshape" | "Flatten" | "Transpose" | "Squeeze" | "Unsqueeze" => {
            Ok(Kind::Passthrough)
        }
        "Relu" | "Clip" => Ok(Kind::Activation),
        op => Err(format!("{op} has no integer kernel in the QDQ format")),
    }
}

/// Float activation inputs of `n` that carry data (passthrough/activation ops: input 0 only).
fn data_inputs<'n>(n: &'n NodeProto, kind: Kind, ix: &Index) -> Vec<&'n str> {
    let take = match kind {
        Kind::Passthrough | Kind::Activation => 1,
        _ => n.input.len(),
    };
    n.input
        .iter()
        .take(take)
        .map(String::as_str)
        .filter(|s| ix.is_float_activation(s))
        .collect()
}

/// Plans the quantization of `g`.
pub fn plan(g: &GraphProto, per_channel: bool) -> Result<Plan, PlanError> {
    let ix = Index::new(g);
    let mut p = Plan::default();
    for n in &g.node {
        match kind_of(n, &ix, per_channel) {
            Ok(k) => p.kinds.push(Some(k)),
            Err(reason) => {
                if n.input.iter().any(|i| ix.is_float_activation(i)) {
                    p.left_float.push(LeftFloat {
                        node: n.name.clone(),
                        op: n.op_type.clone(),
                        reason,
                    });
                }
                p.kinds.push(None);
            }
        }
    }
    if !p
        .kinds
        .iter()
        .any(|k| matches!(k, Some(Kind::Weighted { .. })))
    {
        return Err(PlanError::NoFloatWeights {
            graph: g.name.clone(),
        });
    }
    let mut chosen: HashSet<&str> = HashSet::new();
    let mut order: Vec<&str> = Vec::new();
    let fused_activation = |t: &str| {
        let c = ix.consumers.get(t).map_or(&[][..], Vec::as_slice);
        !c.is_empty()
            && !ix.outputs.contains(t)
            && c.iter().all(|&i| p.kinds[i] == Some(Kind::Activation))
    };
    for (i, n) in g.node.iter().enumerate() {
        let Some(kind) = p.kinds[i] else { continue };
        for t in data_inputs(n, kind, &ix) {
            // The input of a fused Relu/Clip is not quantized (see the module docs).
            if kind == Kind::Activation && fused_activation(t) && producer_quantized(g, &p, t) {
                continue;
            }
            if chosen.insert(t) {
                order.push(t);
            }
        }
        for t in n.output.iter().filter(|t| ix.is_float_activation(t)) {
            if fused_activation(t) {
                continue;
            }
            // Gemm/MatMul may end the graph in float (the logits keep full precision).
            if ix.outputs.contains(t.as_str())
                && matches!(kind, Kind::Weighted { .. })
                && n.op_type != "Conv"
            {
                continue;
            }
            if kind == Kind::Passthrough
                && let Some(src) = n.input.first().filter(|s| chosen.contains(s.as_str()))
            {
                p.shared.insert(t.clone(), src.clone());
            }
            if chosen.insert(t) {
                order.push(t);
            }
        }
    }
    p.tensors = order.into_iter().map(str::to_owned).collect();
    Ok(p)
}

fn producer_quantized(g: &GraphProto, p: &Plan, t: &str) -> bool {
    g.node
        .iter()
        .position(|n| n.output.iter().any(|o| o == t))
        .is_some_and(|i| p.kinds[i].is_some())
}
