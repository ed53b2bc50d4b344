//! `precision = "int8"` and `"fp16"` mean the same to the user on every TensorRT, but each version
//! wants them built its own way: TensorRT 8.x calibrates (kINT8 + the entropy calibrator) and
//! takes kFP16; 10.x deprecates the calibrator ("superseded by explicit quantization") and 10.12
//! the precision flags ("superseded by strong typing"). The layer picks the path from the headers
//! it was compiled against (`ffi::build_path`); this module names the path for the log and the
//! cache key, and checks before a build that the model can be built that way: a strongly typed
//! network takes its types from the model, so an fp32 model would silently build in fp32.

use std::path::Path;

use super::bridge::ffi::{BuildPath, Precision};
use super::load_err;
use crate::backend::BackendError;
use crate::onnx::pb::{self as onnx_pb, ModelProto};

/// `TensorProto.DataType.FLOAT16`.
const DATA_TYPE_FLOAT16: i32 = 10;
/// `TensorProto.DataType.INT8`.
const DATA_TYPE_INT8: i32 = 3;

/// The path for `precision` with the TensorRT the layer was compiled against.
pub fn path_for(precision: Precision) -> BuildPath {
    super::bridge::ffi::build_path(precision)
}

/// How a path builds, for the log and the engine-cache key text.
pub fn describe(path: BuildPath) -> &'static str {
    match path {
        BuildPath::Fp32 => "fp32: weakly typed network, no precision flag",
        BuildPath::Fp16Flag => "fp16: BuilderFlag::kFP16",
        BuildPath::Fp16StronglyTyped => "fp16: strongly typed network from a float16 model",
        BuildPath::Int8Calibrated => "int8: implicit quantization, kINT8 + entropy calibrator",
        BuildPath::Int8Explicit => {
            "int8: explicit quantization, strongly typed network from a Q/DQ model"
        }
        _ => "unknown",
    }
}

/// Whether the path calibrates (and so needs calibration images, a source or a cache).
pub fn calibrates(path: BuildPath) -> bool {
    path == BuildPath::Int8Calibrated
}

/// Whether `tensorrt.fp16_fallback` changes anything on this path.
pub fn takes_fp16_fallback(path: BuildPath) -> bool {
    path == BuildPath::Int8Calibrated
}

/// Checks that `model` (the ONNX file at `onnx`) can be built on `path`.
pub fn check_model(onnx: &Path, model: &ModelProto, path: BuildPath) -> Result<(), BackendError> {
    match path {
        BuildPath::Int8Explicit => check_qdq(onnx, model),
        BuildPath::Fp16StronglyTyped if !has_float16(model) => Err(load_err(
            onnx,
            "precision = \"fp16\" on TensorRT 10.12+ builds a strongly typed network (BuilderFlag::kFP16 \
             is deprecated there), whose types come from the model, and this model has no float16 \
             tensor: it would build in fp32. Convert it to float16 with float32 inputs and outputs \
             (e.g. onnxconverter-common's convert_float_to_float16 with keep_io_types=True), or set \
             precision = \"fp32\"",
        )),
        _ => Ok(()),
    }
}

/// Reads the ONNX file and checks it for `path`; a no-op for paths that take any model.
pub fn check_file(onnx: &Path, path: BuildPath) -> Result<(), BackendError> {
    if !matches!(path, BuildPath::Int8Explicit | BuildPath::Fp16StronglyTyped) {
        return Ok(());
    }
    let model = onnx_pb::read_model(onnx).map_err(|e| load_err(onnx, e))?;
    check_model(onnx, &model, path)
}

/// Whether any initializer is float16 or any node casts to float16.
fn has_float16(model: &ModelProto) -> bool {
    model.graph.as_ref().is_some_and(|g| {
        g.initializer
            .iter()
            .any(|t| t.data_type == DATA_TYPE_FLOAT16)
            || g.node.iter().any(|n| {
                n.op_type == "Cast"
                    && n.attribute
                        .iter()
                        .any(|a| a.name == "to" && a.i == Some(i64::from(DATA_TYPE_FLOAT16)))
            })
    })
}

/// TensorRT's ONNX parser takes Q/DQ nodes with int8 and a zero point of 0 (symmetric) only:
/// uint8 and non-zero zero points need `kENABLE_UINT8_AND_ASYMMETRIC_QUANTIZATION_DLA`, for DLA
/// (NvOnnxParser.h, 10.16.1). Saying so here is clearer than the parser's assertion.
fn check_qdq(onnx: &Path, model: &ModelProto) -> Result<(), BackendError> {
    let Some(g) = model.graph.as_ref() else {
        return Err(load_err(onnx, "the model has no graph"));
    };
    let qdq: Vec<&onnx_pb::NodeProto> = g
        .node
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear")
        .collect();
    if qdq.is_empty() {
        return Err(load_err(
            onnx,
            "precision = \"int8\" on TensorRT 10.x is built by explicit quantization (the \
             calibrator is deprecated there): the model must carry QuantizeLinear/DequantizeLinear \
             nodes, and this one has none. Give a Q/DQ model with symmetric int8 quantization \
             (zero points 0), e.g. from NVIDIA's Model Optimizer or ONNX Runtime's quantize_static \
             with QInt8 activations and ActivationSymmetric",
        ));
    }
    for n in qdq {
        let Some(zp) = n.input.get(2).filter(|z| !z.is_empty()) else {
            continue; // no zero point: int8, 0
        };
        let what = |why: &str| {
            load_err(
                onnx,
                format!(
                    "{} node '{}': zero point '{zp}' {why}; TensorRT's ONNX parser takes symmetric \
                     int8 Q/DQ only (int8, zero point 0; uint8 or asymmetric only for DLA). \
                     `rtinfer quantize` writes asymmetric activations for ONNX Runtime's CPU \
                     kernels unless given --symmetric",
                    n.op_type, n.name
                ),
            )
        };
        let Some(t) = g.initializer.iter().find(|t| &t.name == zp) else {
            return Err(what("is not an initializer"));
        };
        if t.data_type != DATA_TYPE_INT8 {
            return Err(what(&format!(
                "has element type {} (not int8)",
                t.data_type
            )));
        }
        let nonzero = t.raw_data.iter().any(|b| *b != 0) || t.int32_data.iter().any(|v| *v != 0);
        if nonzero {
            return Err(what("is not all zeros"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use onnx_pb::{AttributeProto, GraphProto, NodeProto, TensorProto};

    fn node(op: &str, inputs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: format!("{op}_0"),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                initializer: inits,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn zero_point(name: &str, data_type: i32, raw: Vec<u8>) -> TensorProto {
        TensorProto {
            name: name.into(),
            data_type,
            raw_data: raw,
            ..Default::default()
        }
    }

    #[test]
    fn explicit_int8_takes_symmetric_int8_qdq_only() {
        let p = Path::new("m.onnx");
        let plain = model(vec![node("Conv", &["x", "w"])], vec![]);
        let err = check_model(p, &plain, BuildPath::Int8Explicit)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has none"), "{err}");
        // The calibrated path takes any model.
        check_model(p, &plain, BuildPath::Int8Calibrated).expect("8.x calibrates");

        let q = |zp_type, zp_raw| {
            model(
                vec![
                    node("QuantizeLinear", &["x", "s", "zp"]),
                    node("DequantizeLinear", &["q", "s"]),
                ],
                vec![zero_point("zp", zp_type, zp_raw)],
            )
        };
        check_model(p, &q(DATA_TYPE_INT8, vec![0]), BuildPath::Int8Explicit).expect("symmetric");
        let err = check_model(p, &q(DATA_TYPE_INT8, vec![3]), BuildPath::Int8Explicit)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not all zeros") && err.contains("QuantizeLinear_0"),
            "{err}"
        );
        let err = check_model(p, &q(2, vec![128]), BuildPath::Int8Explicit)
            .unwrap_err()
            .to_string();
        assert!(err.contains("element type 2"), "{err}");
    }

    #[test]
    fn strongly_typed_fp16_needs_a_float16_model() {
        let p = Path::new("m.onnx");
        let fp32 = model(vec![node("Conv", &["x", "w"])], vec![]);
        let err = check_model(p, &fp32, BuildPath::Fp16StronglyTyped)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no float16 tensor"), "{err}");
        check_model(p, &fp32, BuildPath::Fp16Flag).expect("the flag path takes fp32 models");
        let mut cast = node("Cast", &["x"]);
        cast.attribute.push(AttributeProto {
            name: "to".into(),
            i: Some(10),
            ..Default::default()
        });
        check_model(p, &model(vec![cast], vec![]), BuildPath::Fp16StronglyTyped)
            .expect("casts to float16");
        let w = TensorProto {
            name: "w".into(),
            data_type: DATA_TYPE_FLOAT16,
            ..Default::default()
        };
        check_model(p, &model(vec![], vec![w]), BuildPath::Fp16StronglyTyped)
            .expect("float16 weights");
    }
}
