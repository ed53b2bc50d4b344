//! Rewrites a float graph into the QDQ form of a [`Plan`]: int8 weights and int32 biases as
//! constants behind DequantizeLinear, and a QuantizeLinear/DequantizeLinear pair on every planned
//! activation. ONNX Runtime then fuses each `DQ -> op -> Q` group into an integer kernel.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::plan::{Kind, Plan};
use super::qparams::{
    self, ActivationType, DATA_TYPE_INT8, DATA_TYPE_INT32, QParams, quantize_bias, quantize_weights,
};
use crate::onnx::pb::{AttributeProto, DATA_TYPE_FLOAT, ModelProto, NodeProto, TensorProto};

/// Lowest default-domain opset quantized: QuantizeLinear/DequantizeLinear exist from 10.
pub const MIN_OPSET: i64 = 10;
/// Lowest opset of a per-channel DequantizeLinear (its `axis`); older models get per-tensor.
pub const PER_CHANNEL_OPSET: i64 = 13;

/// The rewrite could not be done; each variant names the tensor or model part concerned.
#[derive(Debug, thiserror::Error)]
pub enum QdqError {
    #[error("tensor '{tensor}' was never observed during calibration (no range)")]
    NoRange { tensor: String },
    #[error("initializer '{tensor}': {reason}")]
    BadInitializer { tensor: String, reason: String },
    #[error(
        "the model imports default-domain opset {found}; QuantizeLinear/DequantizeLinear need >= {MIN_OPSET} (convert the model first)"
    )]
    OldOpset { found: i64 },
}

/// What the rewrite did.
#[derive(Debug, Clone, Default)]
pub struct QdqSummary {
    /// Quantized nodes per operator type.
    pub quantized: BTreeMap<String, usize>,
    /// Activation tensors given a Q/DQ pair.
    pub activations: usize,
    /// Parameters of every quantized activation.
    pub params: HashMap<String, QParams>,
}

/// Options of the rewrite.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QdqOptions {
    pub activation: ActivationType,
    /// TensorRT's explicit-quantization form: activations with zero point 0 (`activation` must
    /// be `S8`), biases left in float (TensorRT takes int8 Q/DQ only, not an int32 bias).
    pub symmetric: bool,
}

/// Float data of an initializer (raw little-endian or `float_data`).
pub fn float_data(t: &TensorProto) -> Result<Vec<f32>, QdqError> {
    let bad = |reason: &str| QdqError::BadInitializer {
        tensor: t.name.clone(),
        reason: reason.to_owned(),
    };
    if t.data_type != DATA_TYPE_FLOAT {
        return Err(bad("not float32"));
    }
    if !t.external_data.is_empty() || t.data_location == 1 {
        return Err(bad("external data is not supported"));
    }
    let n = t.element_count().ok_or_else(|| bad("bad dims"))? as usize;
    let v: Vec<f32> = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    if v.len() != n {
        return Err(bad(&format!("{} values for {n} elements", v.len())));
    }
    Ok(v)
}

fn tensor(name: String, dims: Vec<i64>, data_type: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name,
        dims,
        data_type,
        raw_data: raw,
        ..Default::default()
    }
}

fn node(op: &str, name: String, input: Vec<String>, output: String) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name,
        input,
        output: vec![output],
        ..Default::default()
    }
}

/// Default-domain opset of `model` (1 when absent, as ONNX says).
pub fn default_opset(model: &ModelProto) -> i64 {
    model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version)
}

/// Builder state of the rewritten graph.
struct Rewrite<'a> {
    opts: QdqOptions,
    inits: HashMap<String, TensorProto>,
    new_inits: Vec<TensorProto>,
    nodes: Vec<NodeProto>,
    params: HashMap<String, QParams>,
    /// Activation name -> what the producer writes (renamed graph outputs) and what readers read.
    src: HashMap<String, String>,
    dq: HashMap<String, String>,
    weights_done: HashMap<String, (String, Vec<f32>)>,
    plan: &'a Plan,
}

impl Rewrite<'_> {
    fn activation_pair(&mut self, t: &str) {
        let p = self.params[t];
        let (scale, zp) = (format!("{t}_scale"), format!("{t}_zero_point"));
        self.new_inits.push(tensor(
            scale.clone(),
            vec![],
            DATA_TYPE_FLOAT,
            p.scale.to_le_bytes().to_vec(),
        ));
        let zp_byte = match self.opts.activation {
            ActivationType::U8 => p.zero_point as u8,
            ActivationType::S8 => p.zero_point as i8 as u8,
        };
        self.new_inits.push(tensor(
            zp.clone(),
            vec![],
            self.opts.activation.data_type(),
            vec![zp_byte],
        ));
        let q = format!("{t}_quantized");
        let ins = |x: &str| vec![x.to_owned(), scale.clone(), zp.clone()];
        self.nodes.push(node(
            "QuantizeLinear",
            format!("{t}_QuantizeLinear"),
            ins(&self.src[t]),
            q.clone(),
        ));
        self.nodes.push(node(
            "DequantizeLinear",
            format!("{t}_DequantizeLinear"),
            ins(&q),
            self.dq[t].clone(),
        ));
    }

    /// Emits the DequantizeLinear of a weight (once per weight and axis); returns its output and
    /// the weight scales.
    fn weight(&mut self, name: &str, axis: Option<usize>) -> Result<(String, Vec<f32>), QdqError> {
        let key = format!("{name}/{axis:?}");
        if let Some(done) = self.weights_done.get(&key) {
            return Ok(done.clone());
        }
        let t = &self.inits[name];
        let dims: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
        let q = quantize_weights(&float_data(t)?, &dims, axis);
        let base = match axis {
            Some(a) => format!("{name}_axis{a}"),
            None => name.to_owned(),
        };
        let (wq, ws, wz, out) = (
            format!("{base}_quantized"),
            format!("{base}_scale"),
            format!("{base}_zero_point"),
            format!("{base}_dequantized"),
        );
        let sdims = if axis.is_some() {
            vec![q.scales.len() as i64]
        } else {
            vec![]
        };
        let raw: Vec<u8> = q.data.iter().map(|&x| x as u8).collect();
        self.new_inits
            .push(tensor(wq.clone(), t.dims.clone(), DATA_TYPE_INT8, raw));
        let sraw = q.scales.iter().flat_map(|s| s.to_le_bytes()).collect();
        self.new_inits
            .push(tensor(ws.clone(), sdims.clone(), DATA_TYPE_FLOAT, sraw));
        let zraw = vec![0u8; q.scales.len()];
        self.new_inits
            .push(tensor(wz.clone(), sdims, DATA_TYPE_INT8, zraw));
        let mut dq = node(
            "DequantizeLinear",
            format!("{base}_DequantizeLinear"),
            vec![wq, ws, wz],
            out.clone(),
        );
        if let Some(a) = axis {
            dq.attribute.push(AttributeProto::int("axis", a as i64));
        }
        self.nodes.push(dq);
        let done = (out, q.scales);
        self.weights_done.insert(key, done.clone());
        Ok(done)
    }

    /// Emits the int32 bias of node `node_name` and its DequantizeLinear; returns its output.
    fn bias(
        &mut self,
        name: &str,
        node_name: &str,
        input_scale: f32,
        wscales: &[f32],
    ) -> Result<String, QdqError> {
        let t = &self.inits[name];
        let (q, scales) = quantize_bias(&float_data(t)?, input_scale, wscales);
        let base = format!("{name}_{node_name}");
        let (bq, bs, bz, out) = (
            format!("{base}_quantized"),
            format!("{base}_scale"),
            format!("{base}_zero_point"),
            format!("{base}_dequantized"),
        );
        let per_channel = scales.len() > 1;
        let sdims = if per_channel {
            vec![scales.len() as i64]
        } else {
            vec![]
        };
        let raw = q.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.new_inits
            .push(tensor(bq.clone(), t.dims.clone(), DATA_TYPE_INT32, raw));
        let sraw = scales.iter().flat_map(|s| s.to_le_bytes()).collect();
        self.new_inits
            .push(tensor(bs.clone(), sdims.clone(), DATA_TYPE_FLOAT, sraw));
        let zraw = vec![0u8; 4 * scales.len()];
        self.new_inits
            .push(tensor(bz.clone(), sdims, DATA_TYPE_INT32, zraw));
        let mut dq = node(
            "DequantizeLinear",
            format!("{base}_DequantizeLinear"),
            vec![bq, bs, bz],
            out.clone(),
        );
        if per_channel {
            dq.attribute.push(AttributeProto::int("axis", 0));
        }
        self.nodes.push(dq);
        Ok(out)
    }

    fn node(&mut self, idx: usize, mut n: NodeProto) -> Result<(), QdqError> {
        let kind = self.plan.kinds[idx];
        if let Some(Kind::Weighted { weight, bias, axis }) = kind {
            let x = n.input[0].clone();
            let in_scale = self.params.get(&x).map(|p| p.scale);
            let (w_out, wscales) = self.weight(&n.input[weight], axis)?;
            n.input[weight] = w_out;
            if let (Some(b), Some(s), false) = (bias, in_scale, self.opts.symmetric) {
                n.input[b] = self.bias(&n.input[b].clone(), &n.name.clone(), s, &wscales)?;
            }
        }
        for inp in n.input.iter_mut() {
            if let Some(d) = self.dq.get(inp.as_str()) {
                inp.clone_from(d);
            }
        }
        let outs: Vec<String> = n
            .output
            .iter()
            .filter(|o| self.params.contains_key(o.as_str()))
            .cloned()
            .collect();
        for o in n.output.iter_mut() {
            if let Some(s) = self.src.get(o.as_str()) {
                o.clone_from(s);
            }
        }
        self.nodes.push(n);
        for o in outs {
            self.activation_pair(&o);
        }
        Ok(())
    }
}

/// Rewrites `model` as `plan` says with the calibrated `ranges` (min, max per tensor).
pub fn insert_qdq(
    model: &ModelProto,
    plan: &Plan,
    ranges: &HashMap<String, (f32, f32)>,
    opts: QdqOptions,
) -> Result<(ModelProto, QdqSummary), QdqError> {
    let opset = default_opset(model);
    if opset < MIN_OPSET {
        return Err(QdqError::OldOpset { found: opset });
    }
    // Symmetric means int8: a uint8 zero point of 0 would clip every negative value.
    let opts = QdqOptions {
        activation: if opts.symmetric {
            ActivationType::S8
        } else {
            opts.activation
        },
        ..opts
    };
    let g = model.graph.clone().unwrap_or_default();
    let outputs: HashSet<&str> = g.output.iter().map(|v| v.name.as_str()).collect();
    let mut params = HashMap::new();
    for t in &plan.tensors {
        let p = match plan.shared.get(t).and_then(|s| params.get(s)) {
            Some(&p) => p,
            None => {
                let &(lo, hi) = ranges
                    .get(t)
                    .ok_or_else(|| QdqError::NoRange { tensor: t.clone() })?;
                if opts.symmetric {
                    qparams::symmetric_activation_params(lo, hi)
                } else {
                    qparams::activation_params(lo, hi, opts.activation)
                }
            }
        };
        params.insert(t.clone(), p);
    }
    let mut src = HashMap::new();
    let mut dq = HashMap::new();
    for t in &plan.tensors {
        if outputs.contains(t.as_str()) {
            src.insert(t.clone(), format!("{t}_prequant"));
            dq.insert(t.clone(), t.clone());
        } else {
            src.insert(t.clone(), t.clone());
            dq.insert(t.clone(), format!("{t}_dequantized"));
        }
    }
    let mut rw = Rewrite {
        opts,
        inits: g
            .initializer
            .iter()
            .map(|t| (t.name.clone(), t.clone()))
            .collect(),
        new_inits: Vec::new(),
        nodes: Vec::new(),
        params,
        src,
        dq,
        weights_done: HashMap::new(),
        plan,
    };
    for i in &g.input {
        if rw.params.contains_key(&i.name) {
            rw.activation_pair(&i.name);
        }
    }
    let mut summary = QdqSummary::default();
    for (idx, n) in g.node.iter().enumerate() {
        if plan.kinds[idx].is_some() {
            *summary.quantized.entry(n.op_type.clone()).or_default() += 1;
        }
        rw.node(idx, n.clone())?;
    }
    summary.activations = rw.params.len();
    summary.params = rw.params.clone();
    let mut graph = g.clone();
    graph.node = rw.nodes;
    let used: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    let mut inits: Vec<TensorProto> = g
        .initializer
        .iter()
        .filter(|t| used.contains(t.name.as_str()))
        .cloned()
        .collect();
    inits.extend(rw.new_inits);
    graph.initializer = inits;
    let mut out = model.clone();
    out.graph = Some(graph);
    Ok((out, summary))
}
