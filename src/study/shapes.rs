//! Static shape inference over the operators CNN exporters emit, so `inspect` can count MACs of
//! any ONNX file without running it. An operator it cannot size is *named* (and everything
//! downstream of it counted as unsized) rather than guessed: a wrong MAC count would silently
//! skew every latency-vs-FLOPs fit built on it.

use std::collections::HashMap;

use crate::onnx::pb::{GraphProto, NodeProto, TensorProto};

/// Element type codes of `TensorProto.DataType` that hold integers we may need as values.
const INT64: i32 = 7;
const INT32: i32 = 6;

/// Shapes (and small integer constants) known so far, by value name.
#[derive(Debug, Default)]
pub struct ShapeMap {
    pub shapes: HashMap<String, Vec<i64>>,
    /// Integer tensors whose values are known statically (Reshape targets, Pad amounts, axes).
    pub ints: HashMap<String, Vec<i64>>,
}

/// Why one node could not be sized.
#[derive(Debug, Clone, PartialEq)]
pub enum Unsized {
    /// The operator is not one shape inference knows.
    UnknownOp,
    /// Known operator, but its inputs or attributes did not give a shape (`reason`).
    Failed(String),
    /// An input's shape is unknown because something upstream was not sized.
    Upstream,
}

/// Result of sizing one node: MACs it performs (0 for non-arithmetic ops).
pub type Sized = Result<u64, Unsized>;

impl ShapeMap {
    /// Seeds the map with the graph's inputs (fixed dims only; a symbolic batch becomes 1) and
    /// its initializers.
    pub fn new(graph: &GraphProto) -> Self {
        let mut m = ShapeMap::default();
        for vi in graph.input.iter().chain(&graph.value_info) {
            if let Some(dims) = dims_batch1(vi) {
                m.shapes.insert(vi.name.clone(), dims);
            }
        }
        for t in &graph.initializer {
            m.shapes.insert(t.name.clone(), t.dims.clone());
            if let Some(v) = int_values(t) {
                m.ints.insert(t.name.clone(), v);
            }
        }
        m
    }

    fn shape(&self, name: &str) -> Option<&[i64]> {
        self.shapes.get(name).map(Vec::as_slice)
    }

    fn input_shape(&self, node: &NodeProto, i: usize) -> Result<Vec<i64>, Unsized> {
        let name = node
            .input
            .get(i)
            .ok_or_else(|| fail(format!("no input {i}")))?;
        self.shape(name)
            .map(<[i64]>::to_vec)
            .ok_or(Unsized::Upstream)
    }

    fn set(&mut self, node: &NodeProto, i: usize, shape: Vec<i64>) {
        if let Some(out) = node.output.get(i) {
            self.shapes.insert(out.clone(), shape);
        }
    }

    /// Infers the node's output shapes, records them, and returns its MACs.
    pub fn infer(&mut self, node: &NodeProto) -> Sized {
        let op = node.op_type.as_str();
        match op {
            "Conv" => self.conv(node, 0, 1),
            "QLinearConv" => self.conv(node, 0, 3),
            "ConvInteger" => self.conv(node, 0, 1),
            "ConvTranspose" => self.conv_transpose(node),
            "Gemm" => self.gemm(node, 0, 1),
            "QGemm" => self.gemm(node, 0, 3),
            "MatMul" | "MatMulInteger" => self.matmul(node, 0, 1),
            "QLinearMatMul" => self.matmul(node, 0, 3),
            "MaxPool" | "AveragePool" | "LpPool" => self.pool(node),
            "GlobalAveragePool" | "GlobalMaxPool" | "QLinearGlobalAveragePool" => {
                let mut s = self.input_shape(node, 0)?;
                s.iter_mut().skip(2).for_each(|d| *d = 1);
                self.set(node, 0, s);
                Ok(0)
            }
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "PRelu"
            | "Equal" | "Greater" | "Less" | "Where" => self.broadcast(node, &all(node)),
            "QLinearAdd" | "QLinearMul" => self.broadcast(node, &[0, 3]),
            "Concat" => self.concat(node),
            "QLinearConcat" => self.qconcat(node),
            "Reshape" => self.reshape(node),
            "Flatten" => self.flatten(node),
            "Transpose" => self.transpose(node),
            "Pad" => self.pad(node),
            "Squeeze" | "Unsqueeze" => {
                self.carry_ints(node);
                self.squeeze(node, op == "Unsqueeze")
            }
            "Cast" | "Identity" => {
                self.carry_ints(node);
                let s = self.input_shape(node, 0)?;
                self.set(node, 0, s);
                Ok(0)
            }
            "Constant" => self.constant(node),
            "Gather" => self.gather(node),
            "Shape" => {
                let s = self.input_shape(node, 0)?;
                self.set(node, 0, vec![s.len() as i64]);
                if let Some(out) = node.output.first() {
                    self.ints.insert(out.clone(), s);
                }
                Ok(0)
            }
            "Softmax"
            | "LogSoftmax"
            | "Relu"
            | "LeakyRelu"
            | "Clip"
            | "Sigmoid"
            | "Tanh"
            | "HardSigmoid"
            | "HardSwish"
            | "Elu"
            | "Selu"
            | "Gelu"
            | "Erf"
            | "Exp"
            | "Log"
            | "Sqrt"
            | "Neg"
            | "Abs"
            | "Reciprocal"
            | "Dropout"
            | "BatchNormalization"
            | "InstanceNormalization"
            | "LRN"
            | "QuantizeLinear"
            | "DequantizeLinear"
            | "QLinearLeakyRelu"
            | "QLinearSigmoid"
            | "Softplus"
            | "Floor"
            | "Ceil"
            | "Round"
            | "Not" => {
                let s = self.input_shape(node, 0)?;
                self.set(node, 0, s);
                Ok(0)
            }
            _ => Err(Unsized::UnknownOp),
        }
    }

    /// Integer values pass unchanged through ops that only reshape or retype them.
    fn carry_ints(&mut self, node: &NodeProto) {
        let v = node.input.first().and_then(|i| self.ints.get(i)).cloned();
        if let (Some(v), Some(o)) = (v, node.output.first()) {
            self.ints.insert(o.clone(), v);
        }
    }

    fn conv(&mut self, node: &NodeProto, x: usize, w: usize) -> Sized {
        let xs = self.input_shape(node, x)?;
        let ws = self.input_shape(node, w)?;
        if xs.len() < 3 || ws.len() != xs.len() {
            return Err(fail(format!("input {xs:?} / weight {ws:?} ranks")));
        }
        let spatial = xs.len() - 2;
        let kernel = &ws[2..];
        let strides = ints_or(node, "strides", vec![1; spatial]);
        let dil = ints_or(node, "dilations", vec![1; spatial]);
        let pads = resolve_pads(node, &xs[2..], kernel, &strides, &dil)?;
        let mut out = vec![xs[0], ws[0]];
        for i in 0..spatial {
            let eff = (wide(kernel[i]) - 1) * wide(dil[i]) + 1;
            let o = (wide(xs[2 + i]) + wide(pads[i]) + wide(pads[i + spatial]) - eff)
                / wide(strides[i])
                + 1;
            if o <= 0 {
                return Err(fail(format!("output dim {o} on axis {}", 2 + i)));
            }
            out.push(narrow(o, "output dim")?);
        }
        // Weight is (M, C/group, k...): each output element costs C/group x prod(k) MACs.
        let macs = mac_count(out.iter().chain(&ws[1..]));
        self.set(node, 0, out);
        Ok(macs)
    }

    fn conv_transpose(&mut self, node: &NodeProto) -> Sized {
        let xs = self.input_shape(node, 0)?;
        let ws = self.input_shape(node, 1)?;
        if xs.len() < 3 || ws.len() != xs.len() {
            return Err(fail(format!("input {xs:?} / weight {ws:?} ranks")));
        }
        let spatial = xs.len() - 2;
        let group = int_or(node, "group", 1);
        let kernel = &ws[2..];
        let strides = ints_or(node, "strides", vec![1; spatial]);
        let dil = ints_or(node, "dilations", vec![1; spatial]);
        let pads = ints_or(node, "pads", vec![0; 2 * spatial]);
        let opad = ints_or(node, "output_padding", vec![0; spatial]);
        if attr(node, "output_shape").is_some() || pads.len() != 2 * spatial {
            return Err(fail("output_shape / auto_pad forms are not sized".into()));
        }
        if strides.len() != spatial || dil.len() != spatial || opad.len() != spatial {
            return Err(fail(
                "strides/dilations/output_padding rank mismatch".into(),
            ));
        }
        let mut out = vec![xs[0], narrow(wide(ws[1]) * wide(group), "output channels")?];
        for i in 0..spatial {
            let eff = (wide(kernel[i]) - 1) * wide(dil[i]) + 1;
            let o = wide(strides[i]) * (wide(xs[2 + i]) - 1) + wide(opad[i]) + eff
                - wide(pads[i])
                - wide(pads[i + spatial]);
            out.push(narrow(o, "output dim")?);
        }
        // Every input element scatters into (M/group) x prod(k) outputs.
        let macs = mac_count(xs.iter().chain(&ws[1..]));
        self.set(node, 0, out);
        Ok(macs)
    }

    fn gemm(&mut self, node: &NodeProto, a: usize, b: usize) -> Sized {
        let sa = self.input_shape(node, a)?;
        let sb = self.input_shape(node, b)?;
        if sa.len() != 2 || sb.len() != 2 {
            return Err(fail(format!("Gemm operands {sa:?} x {sb:?} are not 2-D")));
        }
        let (m, k) = if int_or(node, "transA", 0) != 0 {
            (sa[1], sa[0])
        } else {
            (sa[0], sa[1])
        };
        let n = if int_or(node, "transB", 0) != 0 {
            sb[0]
        } else {
            sb[1]
        };
        self.set(node, 0, vec![m, n]);
        Ok(mac_count(&[m, n, k]))
    }

    fn matmul(&mut self, node: &NodeProto, a: usize, b: usize) -> Sized {
        let mut sa = self.input_shape(node, a)?;
        let mut sb = self.input_shape(node, b)?;
        let (va, vb) = (sa.len() == 1, sb.len() == 1);
        if va {
            sa.insert(0, 1);
        }
        if vb {
            sb.push(1);
        }
        if sa.len() < 2 || sb.len() < 2 || sa[sa.len() - 1] != sb[sb.len() - 2] {
            return Err(fail(format!("MatMul operands {sa:?} x {sb:?}")));
        }
        let (m, k, n) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
        let batch = broadcast_shapes(&sa[..sa.len() - 2], &sb[..sb.len() - 2])
            .ok_or_else(|| fail("batch dims do not broadcast".into()))?;
        let mut out = batch.clone();
        if !va {
            out.push(m);
        }
        if !vb {
            out.push(n);
        }
        self.set(node, 0, out);
        Ok(mac_count(batch.iter().chain(&[m, n, k])))
    }

    fn pool(&mut self, node: &NodeProto) -> Sized {
        let xs = self.input_shape(node, 0)?;
        if xs.len() < 3 {
            return Err(fail(format!("input {xs:?} has no spatial dims")));
        }
        let spatial = xs.len() - 2;
        let kernel = ints(node, "kernel_shape").ok_or_else(|| fail("no kernel_shape".into()))?;
        let strides = ints_or(node, "strides", vec![1; spatial]);
        let dil = ints_or(node, "dilations", vec![1; spatial]);
        let pads = resolve_pads(node, &xs[2..], &kernel, &strides, &dil)?;
        let ceil = int_or(node, "ceil_mode", 0) != 0;
        let mut out = xs[..2].to_vec();
        for i in 0..spatial {
            let eff = (wide(kernel[i]) - 1) * wide(dil[i]) + 1;
            let span = wide(xs[2 + i]) + wide(pads[i]) + wide(pads[i + spatial]) - eff;
            let o = if ceil {
                span.div_euclid(wide(strides[i]))
                    + i128::from(span.rem_euclid(wide(strides[i])) != 0)
            } else {
                span / wide(strides[i])
            } + 1;
            out.push(narrow(o, "output dim")?);
        }
        self.set(node, 0, out);
        Ok(0)
    }

    fn broadcast(&mut self, node: &NodeProto, inputs: &[usize]) -> Sized {
        let mut out: Vec<i64> = Vec::new();
        for &i in inputs {
            let s = self.input_shape(node, i)?;
            out = broadcast_shapes(&out, &s)
                .ok_or_else(|| fail(format!("{out:?} and {s:?} do not broadcast")))?;
        }
        self.set(node, 0, out);
        Ok(0)
    }

    fn concat(&mut self, node: &NodeProto) -> Sized {
        let shapes = (0..node.input.len())
            .map(|i| self.input_shape(node, i))
            .collect::<Result<Vec<_>, _>>()?;
        self.concat_shapes(node, &shapes)
    }

    fn qconcat(&mut self, node: &NodeProto) -> Sized {
        // Inputs: y_scale, y_zero_point, then (x, scale, zero_point) triples.
        let shapes = (2..node.input.len())
            .step_by(3)
            .map(|i| self.input_shape(node, i))
            .collect::<Result<Vec<_>, _>>()?;
        self.concat_shapes(node, &shapes)
    }

    fn concat_shapes(&mut self, node: &NodeProto, shapes: &[Vec<i64>]) -> Sized {
        let first = shapes.first().ok_or_else(|| fail("no inputs".into()))?;
        let axis = norm_axis(int_or(node, "axis", 0), first.len())?;
        let mut out = first.clone();
        out[axis] = narrow(
            shapes
                .iter()
                .map(|s| wide(s.get(axis).copied().unwrap_or(0)))
                .sum(),
            "concatenated dim",
        )?;
        // Integer constants concatenated (exporters build Reshape targets this way).
        let vals: Option<Vec<i64>> = node
            .input
            .iter()
            .map(|n| self.ints.get(n).cloned())
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat());
        if let (Some(v), Some(o)) = (vals, node.output.first()) {
            self.ints.insert(o.clone(), v);
        }
        self.set(node, 0, out);
        Ok(0)
    }

    fn reshape(&mut self, node: &NodeProto) -> Sized {
        let xs = self.input_shape(node, 0)?;
        let target = node
            .input
            .get(1)
            .and_then(|n| self.ints.get(n))
            .cloned()
            .ok_or_else(|| fail("target shape is not a constant".into()))?;
        let total = product(&xs)?;
        let mut out: Vec<i64> = target
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if d == 0 {
                    xs.get(i).copied().unwrap_or(0)
                } else {
                    d
                }
            })
            .collect();
        if let Some(p) = out.iter().position(|&d| d == -1) {
            let known = product(&out.iter().copied().filter(|&d| d != -1).collect::<Vec<_>>())?;
            if known == 0 {
                return Err(fail("cannot infer -1 next to a 0 dim".into()));
            }
            out[p] = total.checked_div(known).unwrap_or(0);
        }
        if product(&out)? != total {
            return Err(fail(format!("{xs:?} cannot become {target:?}")));
        }
        self.set(node, 0, out);
        Ok(0)
    }

    fn flatten(&mut self, node: &NodeProto) -> Sized {
        let xs = self.input_shape(node, 0)?;
        let axis = int_or(node, "axis", 1);
        let axis = if axis < 0 {
            axis + xs.len() as i64
        } else {
            axis
        } as usize;
        if axis > xs.len() {
            return Err(fail(format!("axis {axis} beyond rank {}", xs.len())));
        }
        let out = vec![product(&xs[..axis])?, product(&xs[axis..])?];
        self.set(node, 0, out);
        Ok(0)
    }

    fn transpose(&mut self, node: &NodeProto) -> Sized {
        let xs = self.input_shape(node, 0)?;
        let perm = ints_or(node, "perm", (0..xs.len() as i64).rev().collect());
        let out = perm
            .iter()
            .map(|&p| xs.get(p as usize).copied())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| fail(format!("perm {perm:?} for rank {}", xs.len())))?;
        self.set(node, 0, out);
        Ok(0)
    }

    fn pad(&mut self, node: &NodeProto) -> Sized {
        let xs = self.input_shape(node, 0)?;
        let pads = ints(node, "pads")
            .or_else(|| node.input.get(1).and_then(|n| self.ints.get(n)).cloned())
            .ok_or_else(|| fail("pads are not a constant".into()))?;
        if pads.len() != 2 * xs.len() || node.input.get(3).is_some_and(|a| !a.is_empty()) {
            return Err(fail(format!("pads {pads:?} for rank {}", xs.len())));
        }
        let n = xs.len();
        let out = (0..n)
            .map(|i| {
                narrow(
                    wide(xs[i]) + wide(pads[i]) + wide(pads[i + n]),
                    "padded dim",
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.set(node, 0, out);
        Ok(0)
    }

    fn squeeze(&mut self, node: &NodeProto, unsqueeze: bool) -> Sized {
        let xs = self.input_shape(node, 0)?;
        let axes = ints(node, "axes")
            .or_else(|| node.input.get(1).and_then(|n| self.ints.get(n)).cloned());
        let out = if unsqueeze {
            let axes = axes.ok_or_else(|| fail("no axes".into()))?;
            let rank = xs.len() + axes.len();
            let mut axes = axes
                .iter()
                .map(|&a| norm_axis(a, rank))
                .collect::<Result<Vec<_>, _>>()?;
            axes.sort_unstable();
            let mut out = xs.clone();
            for a in axes {
                out.insert(a.min(out.len()), 1);
            }
            out
        } else {
            let axes = match axes {
                Some(a) => a
                    .iter()
                    .map(|&a| norm_axis(a, xs.len()))
                    .collect::<Result<Vec<_>, _>>()?,
                None => (0..xs.len()).filter(|&i| xs[i] == 1).collect(),
            };
            xs.iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect()
        };
        self.set(node, 0, out);
        Ok(0)
    }

    /// Gather: shapes always; values too for integer constants on axis 0 (exporters compute
    /// Reshape targets as `Shape -> Gather -> Unsqueeze -> Concat`).
    fn gather(&mut self, node: &NodeProto) -> Sized {
        let data = self.input_shape(node, 0)?;
        let idx = self.input_shape(node, 1)?;
        let axis = norm_axis(int_or(node, "axis", 0), data.len())?;
        let mut out = data[..axis].to_vec();
        out.extend_from_slice(&idx);
        out.extend_from_slice(&data[axis + 1..]);
        let values = (|| {
            let d = self.ints.get(node.input.first()?)?;
            let i = self.ints.get(node.input.get(1)?)?;
            if axis != 0 || data.len() != 1 {
                return None;
            }
            i.iter()
                .map(|&k| {
                    d.get(usize::try_from(if k < 0 { k + d.len() as i64 } else { k }).ok()?)
                        .copied()
                })
                .collect::<Option<Vec<i64>>>()
        })();
        if let (Some(v), Some(o)) = (values, node.output.first()) {
            self.ints.insert(o.clone(), v);
        }
        self.set(node, 0, out);
        Ok(0)
    }

    fn constant(&mut self, node: &NodeProto) -> Sized {
        let a = attr(node, "value").and_then(|a| a.t.as_ref());
        if let Some(t) = a {
            self.set(node, 0, t.dims.clone());
            if let (Some(v), Some(o)) = (int_values(t), node.output.first()) {
                self.ints.insert(o.clone(), v);
            }
            return Ok(0);
        }
        if let Some(a) = attr(node, "value_ints") {
            self.set(node, 0, vec![a.ints.len() as i64]);
            if let Some(o) = node.output.first() {
                self.ints.insert(o.clone(), a.ints.clone());
            }
            return Ok(0);
        }
        if let Some(a) = attr(node, "value_int") {
            self.set(node, 0, Vec::new());
            if let (Some(o), Some(i)) = (node.output.first(), a.i) {
                self.ints.insert(o.clone(), vec![i]);
            }
            return Ok(0);
        }
        Err(fail(
            "only value / value_ints / value_int constants are sized".into(),
        ))
    }
}

/// Ceiling division for a positive divisor (`i64::div_ceil` is not stable).
fn ceil_div(a: i64, b: i64) -> i64 {
    let q = wide(a).div_euclid(wide(b)) + i128::from(wide(a).rem_euclid(wide(b)) != 0);
    i64::try_from(q).unwrap_or(i64::MAX)
}

// Shapes come from the file, so every formula over them is computed where it cannot overflow
// (fuzzing found `Reshape` panicking on a product of huge dims): i128 for sums and products of
// two, checked products of many, saturating MAC counts. A result that does not fit is a
// "cannot size this node" failure, never a panic.

fn wide(v: i64) -> i128 {
    i128::from(v)
}

fn narrow(v: i128, what: &str) -> Result<i64, Unsized> {
    i64::try_from(v).map_err(|_| fail(format!("{what} {v} overflows")))
}

/// The product of `dims`, or a failure when it overflows.
fn product(dims: &[i64]) -> Result<i64, Unsized> {
    dims.iter()
        .try_fold(1i64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| fail(format!("the product of {dims:?} overflows")))
}

/// A MAC count from its factors: 0 when one is negative, `u64::MAX` when it overflows.
fn mac_count<'a>(factors: impl IntoIterator<Item = &'a i64>) -> u64 {
    let mut acc = 1u64;
    let mut saturated = false;
    for &f in factors {
        let Ok(f) = u64::try_from(f) else {
            return 0;
        };
        match acc.checked_mul(f) {
            Some(v) => acc = v,
            None => saturated = true,
        }
    }
    if saturated { u64::MAX } else { acc }
}

fn fail(reason: String) -> Unsized {
    Unsized::Failed(reason)
}

fn all(node: &NodeProto) -> Vec<usize> {
    (0..node.input.len())
        .filter(|&i| !node.input[i].is_empty())
        .collect()
}

fn norm_axis(axis: i64, rank: usize) -> Result<usize, Unsized> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank.max(1) {
        return Err(fail(format!("axis {axis} for rank {rank}")));
    }
    Ok(a as usize)
}

/// Numpy-style broadcast of two shapes.
pub fn broadcast_shapes(a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let n = a.len().max(b.len());
    let get = |s: &[i64], i: usize| {
        let off = n - s.len();
        if i < off { 1 } else { s[i - off] }
    };
    (0..n)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Explicit pads, or those `auto_pad` implies (`SAME_UPPER`/`SAME_LOWER`/`VALID`).
fn resolve_pads(
    node: &NodeProto,
    input: &[i64],
    kernel: &[i64],
    strides: &[i64],
    dil: &[i64],
) -> Result<Vec<i64>, Unsized> {
    let n = input.len();
    if kernel.len() != n || strides.len() != n || dil.len() != n {
        return Err(fail("kernel/strides/dilations rank mismatch".into()));
    }
    if strides.contains(&0) {
        return Err(fail("stride 0".into()));
    }
    let auto = attr(node, "auto_pad")
        .and_then(|a| a.s.as_ref())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default();
    match auto.as_str() {
        "" | "NOTSET" => {
            let p = ints_or(node, "pads", vec![0; 2 * n]);
            if p.len() == 2 * n {
                Ok(p)
            } else {
                Err(fail(format!("pads {p:?} for {n} spatial dims")))
            }
        }
        "VALID" => Ok(vec![0; 2 * n]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut p = vec![0; 2 * n];
            for i in 0..n {
                let out = ceil_div(input[i], strides[i]);
                let eff = (wide(kernel[i]) - 1) * wide(dil[i]) + 1;
                let total = narrow(
                    ((wide(out) - 1) * wide(strides[i]) + eff - wide(input[i])).max(0),
                    "padding",
                )?;
                let small = total / 2;
                let (b, e) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                p[i] = b;
                p[i + n] = e;
            }
            Ok(p)
        }
        other => Err(fail(format!("auto_pad {other}"))),
    }
}

/// Fixed dims of a value; a symbolic (or missing) batch dim is taken as 1, other symbolic
/// dims make the shape unknown.
fn dims_batch1(vi: &crate::onnx::pb::ValueInfoProto) -> Option<Vec<i64>> {
    use crate::onnx::pb::tensor_shape_proto::dimension::Value as Dim;
    use crate::onnx::pb::type_proto::Value;
    let Some(Value::TensorType(t)) = vi.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    t.shape
        .as_ref()?
        .dim
        .iter()
        .enumerate()
        .map(|(i, d)| match (&d.value, i) {
            (Some(Dim::DimValue(v)), _) if *v > 0 => Some(*v),
            (_, 0) => Some(1),
            _ => None,
        })
        .collect()
}

/// Values of a small integer initializer (shape targets, axes, pads).
fn int_values(t: &TensorProto) -> Option<Vec<i64>> {
    let n = t.element_count()? as usize;
    if n > 64 {
        return None;
    }
    match t.data_type {
        INT64 if !t.int64_data.is_empty() => Some(t.int64_data.clone()),
        INT64 if t.raw_data.len() == 8 * n => Some(
            t.raw_data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        INT32 if !t.int32_data.is_empty() => {
            Some(t.int32_data.iter().map(|&v| i64::from(v)).collect())
        }
        INT32 if t.raw_data.len() == 4 * n => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect(),
        ),
        _ => None,
    }
}

/// The attribute `name` of a node.
pub fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n crate::onnx::pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

fn ints_or(node: &NodeProto, name: &str, default: Vec<i64>) -> Vec<i64> {
    ints(node, name).unwrap_or(default)
}

/// An `INT` attribute, or `default`.
pub fn int_or(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).and_then(|a| a.i).unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::pb::AttributeProto;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[1, 3, 4], &[4]), Some(vec![1, 3, 4]));
        assert_eq!(broadcast_shapes(&[2, 1], &[1, 5]), Some(vec![2, 5]));
        assert_eq!(broadcast_shapes(&[2, 3], &[4]), None);
    }

    fn node(op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec!["y".into()],
            attribute: attrs,
            ..Default::default()
        }
    }

    fn map(shapes: &[(&str, &[i64])]) -> ShapeMap {
        let mut m = ShapeMap::default();
        for (n, s) in shapes {
            m.shapes.insert(n.to_string(), s.to_vec());
        }
        m
    }

    /// SAME_UPPER on 7x7 with stride 2: ceil(7/2) = 4 outputs per axis; 16 outputs x 3 x 3 x 3.
    #[test]
    fn conv_same_upper() {
        let mut m = map(&[("x", &[1, 3, 7, 7]), ("w", &[16, 3, 3, 3])]);
        let mut pad = AttributeProto::int("x", 0);
        pad.name = "auto_pad".into();
        pad.i = None;
        pad.s = Some(b"SAME_UPPER".to_vec());
        let n = node(
            "Conv",
            &["x", "w"],
            vec![pad, AttributeProto::ints("strides", &[2, 2])],
        );
        assert_eq!(m.infer(&n), Ok(16 * 16 * 27));
        assert_eq!(m.shapes["y"], vec![1, 16, 4, 4]);
    }

    /// 3x3/2 max pool on 8x8: floor((8 - 3) / 2) + 1 = 3, with ceil_mode ceil(5 / 2) + 1 = 4.
    #[test]
    fn pool_ceil_mode() {
        for (ceil, side) in [(0, 3), (1, 4)] {
            let mut m = map(&[("x", &[1, 2, 8, 8])]);
            let attrs = vec![
                AttributeProto::ints("kernel_shape", &[3, 3]),
                AttributeProto::ints("strides", &[2, 2]),
                AttributeProto::int("ceil_mode", ceil),
            ];
            assert_eq!(m.infer(&node("MaxPool", &["x"], attrs)), Ok(0));
            assert_eq!(m.shapes["y"], vec![1, 2, side, side]);
        }
    }

    /// Reshape (0, -1) keeps the batch and infers the rest; an unknown op is reported as such.
    #[test]
    fn huge_shapes_fail_to_size_instead_of_panicking() {
        // fuzz/regressions/onnx/reshape_product_overflow: a Reshape of an input whose dims
        // multiply past i64.
        let big = i64::MAX / 2;
        let mut m = map(&[("x", &[big, big, 4])]);
        m.ints.insert("s".into(), vec![0, -1]);
        assert!(matches!(
            m.infer(&node("Reshape", &["x", "s"], Vec::new())),
            Err(Unsized::Failed(_))
        ));
        let mut m = map(&[("x", &[1, big, big, big]), ("w", &[big, big, 3, 3])]);
        let conv = m.infer(&node("Conv", &["x", "w"], Vec::new()));
        assert!(
            conv.is_ok() || matches!(conv, Err(Unsized::Failed(_))),
            "{conv:?}"
        );
        let mut m = map(&[("a", &[big, big]), ("b", &[big, big])]);
        assert_eq!(
            m.infer(&node("MatMul", &["a", "b"], Vec::new())),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn reshape_and_unknown() {
        let mut m = map(&[("x", &[1, 4, 2, 2])]);
        m.ints.insert("s".into(), vec![0, -1]);
        assert_eq!(m.infer(&node("Reshape", &["x", "s"], Vec::new())), Ok(0));
        assert_eq!(m.shapes["y"], vec![1, 16]);
        assert_eq!(
            m.infer(&node("Frobnicate", &["x"], Vec::new())),
            Err(Unsized::UnknownOp)
        );
        assert_eq!(
            m.infer(&node("Relu", &["nope"], Vec::new())),
            Err(Unsized::Upstream)
        );
    }

    /// The exporter's flatten: Shape -> Gather(0) -> Unsqueeze -> Concat(-1) -> Reshape.
    #[test]
    fn exporter_flatten_chain() {
        let mut m = map(&[
            ("x", &[1, 8, 2, 2]),
            ("zero", &[]),
            ("axes", &[1]),
            ("minus1", &[1]),
        ]);
        m.ints.insert("zero".into(), vec![0]);
        m.ints.insert("minus1".into(), vec![-1]);
        m.ints.insert("axes".into(), vec![0]);
        let mut step = |op: &str, inputs: &[&str], out: &str| {
            let mut n = node(op, inputs, Vec::new());
            n.output = vec![out.into()];
            m.infer(&n).expect(op);
        };
        step("Shape", &["x"], "s");
        step("Gather", &["s", "zero"], "b");
        step("Unsqueeze", &["b", "axes"], "bu");
        step("Concat", &["bu", "minus1"], "target");
        step("Reshape", &["x", "target"], "flat");
        assert_eq!(m.shapes["flat"], vec![1, 32]);
    }
}
