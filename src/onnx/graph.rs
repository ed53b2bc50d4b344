//! Questions the runtime and the tooling both ask of a decoded graph: how many learned parameters
//! it has, what its metadata says, whether it is QDQ-quantised.

use super::pb::{ModelProto, TensorProto};

/// Whether a graph is QDQ-quantized (has QuantizeLinear/DequantizeLinear nodes).
pub fn is_qdq(model: &ModelProto) -> bool {
    model.graph.as_ref().is_some_and(|g| {
        g.node
            .iter()
            .any(|n| n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear")
    })
}

/// Value of the metadata entry `key`, if present.
pub fn metadata<'m>(model: &'m ModelProto, key: &str) -> Option<&'m str> {
    model
        .metadata_props
        .iter()
        .find(|e| e.key == key)
        .map(|e| e.value.as_str())
}

/// Which inputs of a node are learned weights and biases, by operator.
fn weight_inputs(op_type: &str) -> &'static [usize] {
    match op_type {
        "Conv" | "ConvTranspose" | "Gemm" => &[1, 2],
        "MatMul" => &[0, 1],
        "BatchNormalization" => &[1, 2],
        "QLinearConv" => &[3, 8],
        "QGemm" => &[3, 6],
        "ConvInteger" => &[1],
        "MatMulInteger" => &[0, 1],
        "QLinearMatMul" => &[0, 3],
        _ => &[],
    }
}

/// Learned parameters of a model: elements of the weight and bias initializers of Conv,
/// ConvTranspose, Gemm, MatMul, BatchNormalization and the quantized forms (QLinearConv, QGemm,
/// ConvInteger, MatMulInteger, QLinearMatMul). A weight reached
/// through a `DequantizeLinear` (QDQ-quantised models) counts its quantised initializer. Each
/// initializer counts once even when shared.
pub fn model_params(model: &ModelProto) -> u64 {
    let Some(graph) = model.graph.as_ref() else {
        return 0;
    };
    let init: std::collections::HashMap<&str, &TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let dequant: std::collections::HashMap<&str, &str> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "DequantizeLinear")
        .filter_map(|n| Some((n.output.first()?.as_str(), n.input.first()?.as_str())))
        .collect();
    let mut counted: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut total = 0u64;
    for node in &graph.node {
        for &slot in weight_inputs(&node.op_type) {
            let Some(name) = node.input.get(slot).map(String::as_str) else {
                continue;
            };
            let name = dequant.get(name).copied().unwrap_or(name);
            if let Some(t) = init.get(name)
                && counted.insert(name)
            {
                total = total.saturating_add(t.element_count().unwrap_or(0));
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::pb::tests::tiny_model;
    use crate::onnx::pb::{GraphProto, NodeProto};

    #[test]
    fn params_count_conv_weight_and_bias_once() {
        assert_eq!(model_params(&tiny_model()), 4 * 27 + 4);
    }

    #[test]
    fn params_count_the_integer_forms_weights() {
        let init = |name: &str, dims: Vec<i64>| TensorProto {
            dims,
            data_type: 3, // int8
            name: name.into(),
            ..Default::default()
        };
        let node = |op: &str, inputs: &[&str]| NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            op_type: op.into(),
            ..Default::default()
        };
        let m = ModelProto {
            graph: Some(GraphProto {
                node: vec![
                    node("ConvInteger", &["x", "cw", "xz", "wz"]),
                    node("MatMulInteger", &["a", "mw", "az", "bz"]),
                    node(
                        "QLinearMatMul",
                        &["a", "as", "az", "qw", "bs", "bz", "ys", "yz"],
                    ),
                ],
                // Scales and zero points are not parameters; only the three weights count.
                initializer: vec![
                    init("cw", vec![8, 3, 3, 3]),
                    init("mw", vec![16, 10]),
                    init("qw", vec![10, 5]),
                    init("wz", vec![8]),
                    init("as", vec![]),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(model_params(&m), 8 * 27 + 160 + 50);
    }

    #[test]
    fn metadata_lookup() {
        let m = tiny_model();
        assert_eq!(metadata(&m, "k"), Some("v"));
        assert_eq!(metadata(&m, "missing"), None);
    }

    #[test]
    fn qdq_is_told_by_its_quantize_nodes() {
        let mut m = tiny_model();
        assert!(!is_qdq(&m));
        if let Some(g) = m.graph.as_mut() {
            g.node.push(NodeProto {
                op_type: "DequantizeLinear".into(),
                ..Default::default()
            });
        }
        assert!(is_qdq(&m));
        assert!(!is_qdq(&ModelProto::default()), "no graph");
    }
}
