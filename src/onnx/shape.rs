//! Symbolic input dimensions, as exporters write them (`[-1, 3, ?, ?]`, `[N, 3, H, W]`), and
//! pinning them to the numbers a user gives (`[model] input_shape`).
//!
//! Pinning edits the file's bytes, not a decoded copy: only the declared type of the one input
//! changes and every other byte is kept as it was (our protobuf structs declare only the messages
//! a CNN needs, so a decode-and-encode would drop what an exporter wrote beyond them). The dims
//! are set by position, so two dims that share one symbolic name (Paddle's `?` for both H and W,
//! where ONNX Runtime's `make_dynamic_shape_fixed` gives up) take their own values.

use prost::Message;
use prost::encoding::{decode_varint, encode_varint};

use super::pb::{
    ModelProto, TensorShapeProto, ValueInfoProto, tensor_shape_proto::Dimension,
    tensor_shape_proto::dimension::Value as Dim, type_proto,
};

/// One declared dimension: a number, a symbolic name, or nothing at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeclaredDim {
    Fixed(i64),
    Named(String),
    Unknown,
}

impl DeclaredDim {
    pub fn fixed(&self) -> Option<i64> {
        match self {
            DeclaredDim::Fixed(v) if *v > 0 => Some(*v),
            _ => None,
        }
    }
}

impl std::fmt::Display for DeclaredDim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeclaredDim::Fixed(v) if *v > 0 => write!(f, "{v}"),
            DeclaredDim::Named(n) if !n.is_empty() => write!(f, "{n}"),
            _ => f.write_str("?"),
        }
    }
}

/// The dims a value declares (empty for a non-tensor or shapeless value).
pub fn declared_dims(v: &ValueInfoProto) -> Vec<DeclaredDim> {
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Vec::new();
    };
    t.shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match &d.value {
                    Some(Dim::DimValue(v)) if *v > 0 => DeclaredDim::Fixed(*v),
                    Some(Dim::DimParam(p)) if !p.is_empty() => DeclaredDim::Named(p.clone()),
                    _ => DeclaredDim::Unknown,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `[N, 3, ?, ?]`: the declared dims as a user reads them.
pub fn format_dims(dims: &[DeclaredDim]) -> String {
    let d: Vec<String> = dims.iter().map(ToString::to_string).collect();
    format!("[{}]", d.join(", "))
}

/// `1x3x48x192`.
pub fn format_shape(shape: &[i64]) -> String {
    let d: Vec<String> = shape.iter().map(ToString::to_string).collect();
    d.join("x")
}

/// The graph inputs that are not initializers (old exporters list weights as inputs too).
pub fn real_inputs(model: &ModelProto) -> Vec<&ValueInfoProto> {
    let Some(g) = model.graph.as_ref() else {
        return Vec::new();
    };
    let init: std::collections::HashSet<&str> =
        g.initializer.iter().map(|t| t.name.as_str()).collect();
    g.input
        .iter()
        .filter(|i| !init.contains(i.name.as_str()))
        .collect()
}

/// Checks `pinned` against what `declared` allows: same rank, fixed dims equal, every dim > 0.
/// The error says which dim and why.
pub fn check_pin(declared: &[DeclaredDim], pinned: &[i64]) -> Result<(), String> {
    if declared.len() != pinned.len() {
        return Err(format!(
            "{} has {} dims, the model declares {} ({})",
            format_shape(pinned),
            pinned.len(),
            declared.len(),
            format_dims(declared)
        ));
    }
    for (i, (d, p)) in declared.iter().zip(pinned).enumerate() {
        if *p <= 0 {
            return Err(format!(
                "dim {i} of {} is not positive",
                format_shape(pinned)
            ));
        }
        if let Some(f) = d.fixed()
            && f != *p
        {
            return Err(format!(
                "dim {i} is {p}, the model fixes it at {f} (declared {})",
                format_dims(declared)
            ));
        }
    }
    Ok(())
}

/// Why a model with these declared input dims cannot run unpinned, as a user reads it: the key
/// to set, an example value, and the dims; `None` when height, width and channels are fixed (a
/// symbolic batch alone runs as 1).
pub fn needs_pin(input: &str, declared: &[DeclaredDim]) -> Option<String> {
    if declared.iter().skip(1).all(|d| d.fixed().is_some()) {
        return None;
    }
    let example: Vec<String> = declared
        .iter()
        .enumerate()
        .map(|(i, d)| match (d.fixed(), i, declared.len()) {
            (Some(v), _, _) => v.to_string(),
            (None, 0, _) => "1".into(),
            (None, 2, 4) => "H".into(),
            (None, 3, 4) => "W".into(),
            _ => "?".into(),
        })
        .collect();
    Some(format!(
        "input '{input}' declares symbolic dims {}: pin them with model.input_shape \
         (config: [model] input_shape = [{}]; command line: --input-shape {})",
        format_dims(declared),
        example.join(", "),
        example.join("x")
    ))
}

/// The file's bytes with its one image input pinned to `shape` (checked against what it
/// declares); `Ok(None)` when nothing needs rewriting (every dim already fixed and equal).
pub fn pin_file(bytes: &[u8], shape: &[i64]) -> Result<Option<Vec<u8>>, String> {
    let model = super::pb::decode(bytes).map_err(|e| e.to_string())?;
    let inputs = real_inputs(&model);
    let [input] = inputs.as_slice() else {
        return Err(format!(
            "model.input_shape pins one image input; the model has {}",
            inputs.len()
        ));
    };
    let declared = declared_dims(input);
    check_pin(&declared, shape)
        .map_err(|e| format!("model.input_shape {}: {e}", format_shape(shape)))?;
    if declared.iter().all(|d| d.fixed().is_some()) {
        return Ok(None);
    }
    pin_input(bytes, &input.name, shape).map(Some)
}

/// The refusal of an unpinned symbolic input of the file, if it has one (see [`needs_pin`]).
pub fn unpinned(model: &ModelProto) -> Option<String> {
    let inputs = real_inputs(model);
    let [input] = inputs.as_slice() else {
        return None;
    };
    needs_pin(&input.name, &declared_dims(input))
}

/// Returns `bytes` (a whole `.onnx` file) with graph input `input` declared as exactly `dims`;
/// everything else is copied byte for byte.
pub fn pin_input(bytes: &[u8], input: &str, dims: &[i64]) -> Result<Vec<u8>, String> {
    let mut found = false;
    let out = rewrite_field(bytes, 7, &mut |graph| {
        rewrite_field(graph, 11, &mut |vi| {
            let mut v = ValueInfoProto::decode(vi).map_err(|e| format!("graph input: {e}"))?;
            if v.name != input {
                return Ok(None);
            }
            let Some(type_proto::Value::TensorType(t)) =
                v.r#type.as_mut().and_then(|t| t.value.as_mut())
            else {
                return Err(format!("input '{input}' is not a tensor"));
            };
            t.shape = Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&d| Dimension {
                        value: Some(Dim::DimValue(d)),
                        denotation: String::new(),
                    })
                    .collect(),
            });
            found = true;
            Ok(Some(v.encode_to_vec()))
        })
        .map(Some)
    })?;
    if !found {
        return Err(format!("the graph has no input '{input}'"));
    }
    Ok(out)
}

/// A field's new bytes, or `None` to keep it.
type Rewrite<'a> = dyn FnMut(&[u8]) -> Result<Option<Vec<u8>>, String> + 'a;

/// Copies the protobuf message `msg`, passing each length-delimited field number `field` through
/// `f` (`None` keeps it as it is). Other fields are copied verbatim.
fn rewrite_field(msg: &[u8], field: u64, f: &mut Rewrite<'_>) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    let mut buf = msg;
    let bad = |what: &str| format!("malformed protobuf ({what})");
    while !buf.is_empty() {
        let start = msg.len() - buf.len();
        let key = decode_varint(&mut buf).map_err(|_| bad("key"))?;
        let (number, wire) = (key >> 3, key & 7);
        let len = match wire {
            0 => {
                decode_varint(&mut buf).map_err(|_| bad("varint"))?;
                0
            }
            1 => 8,
            5 => 4,
            2 => decode_varint(&mut buf).map_err(|_| bad("length"))? as usize,
            _ => return Err(bad("wire type")),
        };
        if len > buf.len() {
            return Err(bad("truncated field"));
        }
        let (body, rest) = buf.split_at(len);
        let header_end = msg.len() - buf.len();
        buf = rest;
        match (wire == 2 && number == field)
            .then(|| f(body))
            .transpose()?
        {
            Some(Some(new)) => {
                encode_varint(key, &mut out);
                encode_varint(new.len() as u64, &mut out);
                out.extend_from_slice(&new);
            }
            _ => out.extend_from_slice(&msg[start..header_end + len]),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::pb::{self, GraphProto};

    fn symbolic(name: &str, dims: &[&str]) -> ValueInfoProto {
        let mut v = ValueInfoProto::float_tensor(name, &[]);
        if let Some(type_proto::Value::TensorType(t)) =
            v.r#type.as_mut().and_then(|t| t.value.as_mut())
        {
            t.shape = Some(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|d| Dimension {
                        value: Some(match d.parse::<i64>() {
                            Ok(v) => Dim::DimValue(v),
                            Err(_) => Dim::DimParam(d.to_string()),
                        }),
                        denotation: String::new(),
                    })
                    .collect(),
            });
        }
        v
    }

    #[test]
    fn pinning_sets_shared_names_by_position_and_keeps_the_rest() {
        let mut m = pb::tests::tiny_model();
        let g = m.graph.get_or_insert_with(GraphProto::default);
        g.input = vec![symbolic("x", &["N", "3", "?", "?"])];
        g.output = vec![symbolic("y", &["N", "?"])];
        let bytes = m.encode_to_vec();
        let declared = declared_dims(real_inputs(&m)[0]);
        assert_eq!(format_dims(&declared), "[N, 3, ?, ?]");
        check_pin(&declared, &[1, 3, 48, 192]).expect("fits");
        assert!(check_pin(&declared, &[1, 1, 48, 192]).is_err());
        assert!(check_pin(&declared, &[3, 48, 192]).is_err());
        let pinned = pin_input(&bytes, "x", &[1, 3, 48, 192]).expect("pins");
        let p = pb::decode(&pinned).expect("still ONNX");
        let g = p.graph.as_ref().expect("graph");
        assert_eq!(g.input[0].fixed_dims(), Some(vec![1, 3, 48, 192]));
        // Nothing else changed.
        let mut back = p.clone();
        back.graph.as_mut().expect("graph").input = m.graph.as_ref().expect("g").input.clone();
        assert_eq!(back, m);
        assert!(pin_input(&bytes, "nope", &[1]).is_err());
    }

    #[test]
    fn unknown_fields_survive_pinning() {
        let mut m = pb::tests::tiny_model();
        m.graph.get_or_insert_with(GraphProto::default).input = vec![symbolic("x", &["?"; 4])];
        let mut bytes = m.encode_to_vec();
        // Field 20 (a string), unknown to our structs, at the end of the ModelProto.
        bytes.extend_from_slice(&[0xa2, 0x01, 3, b'a', b'b', b'c']);
        let pinned = pin_input(&bytes, "x", &[1, 3, 8, 8]).expect("pins");
        assert!(pinned.ends_with(&[0xa2, 0x01, 3, b'a', b'b', b'c']));
    }
}
