//! The ONNX file format as plain Rust structs, so the daemon can read a model's metadata and
//! parameter count, and `zoo` can write models, without protoc, a build script or a C++ library.
//!
//! Only the messages a CNN graph needs are declared; prost skips any other field on decode, so
//! files written by exporters with training info, functions or sparse tensors still read. Field
//! numbers are the public wire format of `onnx/onnx.proto` and must never change.
//!
//! Scalars of `AttributeProto` are `Option`s: ONNX is proto2 and its checker asks which field is
//! *present*, so an `INT` attribute whose value is 0 must still be written.

use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;

/// `TensorProto.DataType.FLOAT`.
pub const DATA_TYPE_FLOAT: i32 = 1;
/// `TensorProto.DataType.INT64`.
pub const DATA_TYPE_INT64: i32 = 7;

/// A whole `.onnx` file: IR version, operator sets, the graph and free-form metadata.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

/// An operator set a model binds its nodes against (`domain` empty = the default `ai.onnx`).
#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

/// One `key = value` metadata entry.
#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Nodes in topological order plus the constants (initializers) they read.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
}

/// One operator application.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `AttributeProto.AttributeType` values (the `type` discriminator).
pub mod attribute_type {
    pub const FLOAT: i32 = 1;
    pub const INT: i32 = 2;
    pub const STRING: i32 = 3;
    pub const TENSOR: i32 = 4;
    pub const GRAPH: i32 = 5;
    pub const FLOATS: i32 = 6;
    pub const INTS: i32 = 7;
    pub const STRINGS: i32 = 8;
}

/// A named operator attribute; exactly one value field is present, as `type` says.
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    #[prost(string, tag = "13")]
    pub doc_string: String,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

impl AttributeProto {
    /// An `INT` attribute.
    pub fn int(name: &str, value: i64) -> Self {
        AttributeProto {
            name: name.to_owned(),
            i: Some(value),
            r#type: attribute_type::INT,
            ..Default::default()
        }
    }

    /// An `INTS` attribute.
    pub fn ints(name: &str, values: &[i64]) -> Self {
        AttributeProto {
            name: name.to_owned(),
            ints: values.to_vec(),
            r#type: attribute_type::INTS,
            ..Default::default()
        }
    }

    /// A `FLOAT` attribute.
    pub fn float(name: &str, value: f32) -> Self {
        AttributeProto {
            name: name.to_owned(),
            f: Some(value),
            r#type: attribute_type::FLOAT,
            ..Default::default()
        }
    }
}

/// A constant tensor. Float data is written as little-endian `raw_data` (compact and fast);
/// readers must also accept the typed `*_data` fields other exporters use.
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    #[prost(string, tag = "12")]
    pub doc_string: String,
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

impl TensorProto {
    /// Number of elements the dims describe (1 for a scalar); `None` on a negative dim or overflow.
    pub fn element_count(&self) -> Option<u64> {
        self.dims.iter().try_fold(1u64, |acc, &d| {
            let d = u64::try_from(d).ok()?;
            acc.checked_mul(d)
        })
    }
}

/// Name and type of a graph input, output or intermediate value.
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    #[prost(string, tag = "3")]
    pub doc_string: String,
}

/// A value's type; only tensors are declared (sequences and maps are skipped on decode).
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(oneof = "type_proto::Value", tags = "1")]
    pub value: Option<type_proto::Value>,
    #[prost(string, tag = "6")]
    pub denotation: String,
}

/// The `TypeProto.value` oneof and its tensor case.
pub mod type_proto {
    /// Which kind of value a `TypeProto` describes.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        TensorType(Tensor),
    }

    /// A tensor's element type and (possibly symbolic) shape.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<super::TensorShapeProto>,
    }
}

/// A tensor shape: each dimension a number or a symbolic name.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

/// `TensorShapeProto.Dimension`.
pub mod tensor_shape_proto {
    /// One dimension of a shape.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        #[prost(string, tag = "3")]
        pub denotation: String,
    }

    /// The `Dimension.value` oneof.
    pub mod dimension {
        /// A fixed size or a symbolic name (`"batch"`).
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(int64, tag = "1")]
            DimValue(i64),
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

impl ValueInfoProto {
    /// A float32 tensor value of a fixed shape.
    pub fn float_tensor(name: &str, shape: &[i64]) -> Self {
        use tensor_shape_proto::{Dimension, dimension};
        let dim = shape
            .iter()
            .map(|&d| Dimension {
                value: Some(dimension::Value::DimValue(d)),
                denotation: String::new(),
            })
            .collect();
        ValueInfoProto {
            name: name.to_owned(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: DATA_TYPE_FLOAT,
                    shape: Some(TensorShapeProto { dim }),
                })),
                denotation: String::new(),
            }),
            doc_string: String::new(),
        }
    }

    /// The fixed dims of a tensor value; `None` for a symbolic dim or a non-tensor type.
    pub fn fixed_dims(&self) -> Option<Vec<i64>> {
        use tensor_shape_proto::dimension::Value as Dim;
        let Some(type_proto::Value::TensorType(t)) = self.r#type.as_ref()?.value.as_ref() else {
            return None;
        };
        t.shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| match d.value {
                Some(Dim::DimValue(v)) => Some(v),
                _ => None,
            })
            .collect()
    }
}

/// Reading or writing an ONNX file failed.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot read ONNX model {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write ONNX model {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not an ONNX model: {reason}", path.display())]
    NotOnnx { path: PathBuf, reason: String },
    #[error("{len}-byte buffer is not an ONNX model: {reason}")]
    NotOnnxBytes { len: usize, reason: String },
}

/// Reads and decodes an `.onnx` file.
pub fn read_model(path: impl AsRef<Path>) -> Result<ModelProto, OnnxError> {
    let path = path.as_ref();
    let bytes = fs::read(path).map_err(|source| OnnxError::Read {
        path: path.to_owned(),
        source,
    })?;
    decode_checked(&bytes).map_err(|reason| OnnxError::NotOnnx {
        path: path.to_owned(),
        reason,
    })
}

/// Encodes `model` and writes it to `path` (replacing any file there).
pub fn write_model(path: impl AsRef<Path>, model: &ModelProto) -> Result<(), OnnxError> {
    let path = path.as_ref();
    fs::write(path, model.encode_to_vec()).map_err(|source| OnnxError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Decodes an in-memory `.onnx` file.
pub fn decode(bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    decode_checked(bytes).map_err(|reason| OnnxError::NotOnnxBytes {
        len: bytes.len(),
        reason,
    })
}

/// Protobuf accepts many byte strings (unknown fields are skipped), so a successful decode
/// alone does not make a file ONNX: also require what every ONNX model must carry.
fn decode_checked(bytes: &[u8]) -> Result<ModelProto, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let model = ModelProto::decode(bytes).map_err(|e| format!("protobuf decode failed ({e})"))?;
    if model.ir_version <= 0 {
        return Err("no IR version (field 1)".into());
    }
    if model.opset_import.is_empty() {
        return Err("no operator set import (field 8)".into());
    }
    if model.graph.is_none() {
        return Err("no graph (field 7)".into());
    }
    Ok(model)
}

pub use super::graph::{metadata, model_params};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A Conv whose weight is read twice, and one metadata entry.
    pub(crate) fn tiny_model() -> ModelProto {
        let w = TensorProto {
            dims: vec![4, 3, 3, 3],
            data_type: DATA_TYPE_FLOAT,
            name: "w".into(),
            raw_data: vec![0; 4 * 27 * 4],
            ..Default::default()
        };
        let b = TensorProto {
            dims: vec![4],
            data_type: DATA_TYPE_FLOAT,
            name: "b".into(),
            raw_data: vec![0; 16],
            ..Default::default()
        };
        let conv = NodeProto {
            input: vec!["x".into(), "w".into(), "b".into()],
            output: vec!["y".into()],
            op_type: "Conv".into(),
            attribute: vec![AttributeProto::int("group", 1)],
            ..Default::default()
        };
        // The same weight read twice must count once.
        let conv2 = NodeProto {
            input: vec!["y2".into(), "w".into()],
            output: vec!["z".into()],
            op_type: "Conv".into(),
            ..Default::default()
        };
        ModelProto {
            ir_version: 7,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(GraphProto {
                node: vec![conv, conv2],
                initializer: vec![w, b],
                ..Default::default()
            }),
            metadata_props: vec![StringStringEntryProto {
                key: "k".into(),
                value: "v".into(),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_keeps_model() {
        let m = tiny_model();
        let back = decode(&m.encode_to_vec()).expect("decode");
        assert_eq!(back, m);
    }

    #[test]
    fn zero_int_attribute_is_still_present_on_the_wire() {
        let a = AttributeProto::int("axis", 0);
        let back = AttributeProto::decode(a.encode_to_vec().as_slice()).expect("decode");
        assert_eq!(back.i, Some(0));
    }

    #[test]
    fn garbage_is_not_onnx() {
        assert!(matches!(
            decode(b""),
            Err(OnnxError::NotOnnxBytes { len: 0, .. })
        ));
        assert!(decode(b"hello world, not a model").is_err());
    }
}
