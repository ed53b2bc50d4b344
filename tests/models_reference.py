"""The reference of tests/models.rs: ONNX Runtime's own Python API on the tensor rtinfer
preprocessed, and the model's weight count from its initializers and Constant nodes (onnx).

    models_reference.py MODEL INPUT.f32 N C H W OUTPUT_NAME OUT.f32

writes the output's float32 values to OUT.f32 and prints {"params": N, "macs": N, "shape": [...]}
(macs from onnx's own shape inference on the model pinned to N C H W).
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

# Which inputs of a node are learned weights and biases (as rtinfer's inspect counts them).
WEIGHTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "MatMul": (0, 1),
           "BatchNormalization": (1, 2)}


def params(model):
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t).size for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t).size
    seen, total = set(), 0
    for n in g.node:
        for i in WEIGHTS.get(n.op_type, ()):
            if i < len(n.input) and n.input[i] in consts and n.input[i] not in seen:
                seen.add(n.input[i])
                total += consts[n.input[i]]
    return total


def macs(model, shape):
    """MACs of Conv, ConvTranspose, Gemm and MatMul as inspect counts them (output elements x
    weight fan-in), with the shapes ONNX Runtime actually produces on an input of `shape`: every
    operand of those nodes is made a graph output and the model is run unoptimised."""
    g = model.graph
    weights = {t.name: list(t.dims) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    weights[n.output[0]] = list(a.t.dims)
    nodes = [n for n in g.node if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul")]
    names = []
    for n in nodes:
        for v in (n.input[0], n.input[1], n.output[0]):
            if v not in weights and v not in names:
                names.append(v)
    known = {o.name for o in g.output}
    for v in names:
        if v not in known and v != g.input[0].name:
            g.output.append(onnx.helper.make_empty_tensor_value_info(v))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.zeros(shape, dtype=np.float32)
    outs = [o.name for o in s.get_outputs()]
    got = dict(zip(outs, s.run(outs, {s.get_inputs()[0].name: x})))
    shapes = dict(weights)
    shapes.update({k: list(v.shape) for k, v in got.items()})
    shapes[g.input[0].name] = list(shape)
    total = 0
    for n in nodes:
        x, w, out = shapes[n.input[0]], shapes[n.input[1]], shapes[n.output[0]]
        if n.op_type == "Conv":
            total += int(np.prod(out)) * int(np.prod(w[1:]))
        elif n.op_type == "ConvTranspose":
            total += int(np.prod(x)) * int(np.prod(w[1:]))
        elif n.op_type == "Gemm":
            trans_a = any(a.name == "transA" and a.i for a in n.attribute)
            total += int(np.prod(out)) * (x[0] if trans_a else x[1])
        else:
            total += int(np.prod(out)) * x[-1]
    return total


def main():
    model, inp, n, c, h, w, out_name, out = sys.argv[1:9]
    x = np.fromfile(inp, dtype=np.float32).reshape(int(n), int(c), int(h), int(w))
    s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (y,) = s.run([out_name], {s.get_inputs()[0].name: x})
    y.astype(np.float32).tofile(out)
    pinned = [int(n), int(c), int(h), int(w)]
    print(json.dumps({"params": params(onnx.load(model)), "macs": macs(onnx.load(model), pinned),
                      "shape": list(y.shape)}))


main()
