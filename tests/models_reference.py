"""The reference of tests/models.rs: ONNX Runtime's own Python API on the tensor rtinfer
preprocessed, and the model's weight count from its initializers and Constant nodes (onnx).

    models_reference.py MODEL INPUT.f32 N C H W OUTPUT_NAME OUT.f32

writes the output's float32 values to OUT.f32 and prints {"params": N, "shape": [...]}.
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


def main():
    model, inp, n, c, h, w, out_name, out = sys.argv[1:9]
    x = np.fromfile(inp, dtype=np.float32).reshape(int(n), int(c), int(h), int(w))
    s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (y,) = s.run([out_name], {s.get_inputs()[0].name: x})
    y.astype(np.float32).tofile(out)
    print(json.dumps({"params": params(onnx.load(model)), "shape": list(y.shape)}))


main()
