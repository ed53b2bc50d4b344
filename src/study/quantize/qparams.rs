//! The integer arithmetic of ONNX's QuantizeLinear, in one place, so the tensors written into the
//! graph (weights, biases) round and saturate exactly as ONNX Runtime will when it quantizes the
//! activations at run time: `q = saturate(round_half_even(x / scale) + zero_point)`.

/// Element type of the quantized activations (`--activation-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ActivationType {
    /// uint8 asymmetric: every x86 and Arm integer kernel of ONNX Runtime takes it.
    #[default]
    U8,
    /// int8 asymmetric ("s8s8"); on x86 ORT leaves many convolutions in float with it.
    S8,
}

impl ActivationType {
    /// The integer range `[qmin, qmax]`.
    pub fn range(self) -> (i32, i32) {
        match self {
            ActivationType::U8 => (0, 255),
            ActivationType::S8 => (-128, 127),
        }
    }

    /// The ONNX `TensorProto.DataType`.
    pub fn data_type(self) -> i32 {
        match self {
            ActivationType::U8 => DATA_TYPE_UINT8,
            ActivationType::S8 => DATA_TYPE_INT8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ActivationType::U8 => "u8",
            ActivationType::S8 => "s8",
        }
    }
}

impl std::str::FromStr for ActivationType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "u8" | "uint8" => Ok(ActivationType::U8),
            "s8" | "int8" => Ok(ActivationType::S8),
            o => Err(format!("unknown activation type '{o}' (expected u8 or s8)")),
        }
    }
}

/// `TensorProto.DataType.UINT8`.
pub const DATA_TYPE_UINT8: i32 = 2;
/// `TensorProto.DataType.INT8`.
pub const DATA_TYPE_INT8: i32 = 3;
/// `TensorProto.DataType.INT32`.
pub const DATA_TYPE_INT32: i32 = 6;

/// Symmetric int8 weights use `[-127, 127]` (as ONNX Runtime's own quantizer), so negating a
/// weight never saturates.
pub const WEIGHT_QMAX: i32 = 127;

/// A scale and zero point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
}

/// Asymmetric parameters for an activation observed in `[min, max]`. The range is widened to
/// contain 0 (so zero padding is exact); a degenerate range gets scale 1.
pub fn activation_params(min: f32, max: f32, ty: ActivationType) -> QParams {
    let (qmin, qmax) = ty.range();
    let rmin = min.min(0.0);
    let rmax = max.max(0.0);
    let mut scale = (rmax - rmin) / (qmax - qmin) as f32;
    if !(scale.is_finite() && scale > 0.0) {
        scale = 1.0;
    }
    let zp = (qmin as f32 - rmin / scale).round_ties_even() as i32;
    QParams {
        scale,
        zero_point: zp.clamp(qmin, qmax),
    }
}

/// Symmetric int8 parameters for an activation observed in `[min, max]` (TensorRT's explicit
/// quantization): zero point 0, `scale = max(|min|, |max|) / 127`, so `-absmax .. absmax` maps
/// onto `-127 .. 127`; a degenerate range gets scale 1.
pub fn symmetric_activation_params(min: f32, max: f32) -> QParams {
    let absmax = min.abs().max(max.abs());
    let mut scale = absmax / WEIGHT_QMAX as f32;
    if !(scale.is_finite() && scale > 0.0) {
        scale = 1.0;
    }
    QParams {
        scale,
        zero_point: 0,
    }
}

/// Symmetric int8 scale for weights whose largest magnitude is `absmax` (zero point 0).
pub fn weight_scale(absmax: f32) -> f32 {
    let s = absmax / WEIGHT_QMAX as f32;
    if s.is_finite() && s > 0.0 { s } else { 1.0 }
}

/// `saturate(round_half_even(x / scale) + zero_point)` into `[qmin, qmax]` (NaN as 0).
pub fn quantize(x: f32, p: QParams, qmin: i32, qmax: i32) -> i32 {
    if x.is_nan() {
        return p.zero_point.clamp(qmin, qmax);
    }
    let q = (x / p.scale).round_ties_even() + p.zero_point as f32;
    // `as` saturates at the i32 bounds.
    (q as i32).clamp(qmin, qmax)
}

/// `(q - zero_point) * scale`.
pub fn dequantize(q: i32, p: QParams) -> f32 {
    (q - p.zero_point) as f32 * p.scale
}

/// Weights quantized symmetrically to int8, per tensor (one scale) or per output channel
/// (`channels` scales, the channel being the slowest-varying block of `per` elements along
/// `axis` as laid out by [`channel_of`]).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantWeights {
    pub data: Vec<i8>,
    pub scales: Vec<f32>,
}

/// Which channel element `i` of a row-major tensor of `dims` belongs to along `axis`.
pub fn channel_of(i: usize, dims: &[usize], axis: usize) -> usize {
    let inner: usize = dims[axis + 1..].iter().product();
    (i / inner.max(1)) % dims[axis].max(1)
}

/// Quantizes `w` (row-major `dims`) to int8: per channel along `axis`, or per tensor when `None`.
pub fn quantize_weights(w: &[f32], dims: &[usize], axis: Option<usize>) -> QuantWeights {
    let channels = axis.map_or(1, |a| dims[a]);
    let chan = |i: usize| axis.map_or(0, |a| channel_of(i, dims, a));
    let mut absmax = vec![0f32; channels];
    for (i, &x) in w.iter().enumerate() {
        let c = chan(i);
        absmax[c] = absmax[c].max(x.abs());
    }
    let scales: Vec<f32> = absmax.iter().map(|&m| weight_scale(m)).collect();
    let data = w
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let p = QParams {
                scale: scales[chan(i)],
                zero_point: 0,
            };
            quantize(x, p, -WEIGHT_QMAX, WEIGHT_QMAX) as i8
        })
        .collect();
    QuantWeights { data, scales }
}

/// Bias to int32 with `scale[c] = input_scale * weight_scale[c]` (zero point 0), the scale ORT's
/// integer kernels accumulate in. `weight_scales` has one entry (per tensor) or one per channel.
pub fn quantize_bias(b: &[f32], input_scale: f32, weight_scales: &[f32]) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = weight_scales.iter().map(|&s| input_scale * s).collect();
    let q = b
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let scale = scales[if scales.len() == 1 { 0 } else { i }];
            let p = QParams {
                scale,
                zero_point: 0,
            };
            quantize(x, p, i32::MIN, i32::MAX)
        })
        .collect();
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_round_to_even() {
        let p = QParams {
            scale: 1.0,
            zero_point: 0,
        };
        assert_eq!(quantize(2.5, p, -128, 127), 2);
        assert_eq!(quantize(3.5, p, -128, 127), 4);
        assert_eq!(quantize(-2.5, p, -128, 127), -2);
    }

    #[test]
    fn saturates_and_handles_nan() {
        let p = QParams {
            scale: 0.5,
            zero_point: 10,
        };
        assert_eq!(quantize(1000.0, p, 0, 255), 255);
        assert_eq!(quantize(-1000.0, p, 0, 255), 0);
        assert_eq!(quantize(f32::NAN, p, 0, 255), 10);
    }

    #[test]
    fn relu_range_has_zero_point_at_qmin() {
        // [0, 2.55] over 255 steps: scale 0.01, zero point 0 (u8) or -128 (s8).
        let u = activation_params(0.0, 2.55, ActivationType::U8);
        assert!((u.scale - 0.01).abs() < 1e-7);
        assert_eq!(u.zero_point, 0);
        let s = activation_params(0.0, 2.55, ActivationType::S8);
        assert_eq!(s.zero_point, -128);
    }

    #[test]
    fn symmetric_activations_have_zero_point_0_and_cover_the_larger_side() {
        // [-0.5, 2.54]: absmax 2.54 over 127 steps, scale 0.02; -0.5 is -25 steps.
        let p = symmetric_activation_params(-0.5, 2.54);
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 0.02).abs() < 1e-7, "{}", p.scale);
        assert_eq!(quantize(-0.5, p, -128, 127), -25);
        assert_eq!(quantize(2.54, p, -128, 127), 127);
        // A Relu range uses the positive half only.
        let r = symmetric_activation_params(0.0, 1.27);
        assert!((r.scale - 0.01).abs() < 1e-7);
        assert_eq!(symmetric_activation_params(0.0, 0.0).scale, 1.0);
    }

    #[test]
    fn degenerate_range_gets_unit_scale() {
        let p = activation_params(0.0, 0.0, ActivationType::U8);
        assert_eq!(p.scale, 1.0);
        assert_eq!(p.zero_point, 0);
    }

    #[test]
    fn per_channel_scales_follow_axis_zero() {
        // Two output channels of 2 elements, absmax 31.75 and 63.5: scales 0.25 and 0.5 (exact
        // in binary); -0.625 / 0.25 = -2.5 rounds to even -2.
        let q = quantize_weights(&[31.75, -0.625, 0.5, -63.5], &[2, 2], Some(0));
        assert_eq!(q.scales, vec![0.25, 0.5]);
        assert_eq!(q.data, vec![127, -2, 1, -127]);
    }
}
