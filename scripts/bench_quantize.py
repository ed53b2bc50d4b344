"""Helper of scripts/bench_quantize.sh: calibration images, ONNX Runtime's Python quantize_static
on the same images, and single-thread latency of fp32 / rtinfer int8 / Python int8 models in one
ONNX Runtime (the version rtinfer loads), so the only difference is the model file."""
import sys
import time
from pathlib import Path

import numpy as np

MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32).reshape(3, 1, 1)
STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32).reshape(3, 1, 1)


def gen_calib(out_dir, n, size, seed):
    """n smooth random RGB images (gradients plus blobs), size x size, as PNG."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(n):
        img = np.zeros((size, size, 3), np.float32)
        for c in range(3):
            a, b, d = rng.uniform(-1, 1, 3)
            img[..., c] = 0.5 + 0.4 * (a * xx + b * yy + d) / 2
        for _ in range(3):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            col = rng.uniform(0, 1, 3)
            m = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
            img[m] = col
        img += rng.normal(0, 0.03, img.shape)
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(out / f"{i:05d}.png")


def load_calib(calib_dir):
    """Preprocessed like the daemon for a model input of the images' own size: v/255, CIFAR-10
    mean/std, NCHW float32 (no resize needed)."""
    from PIL import Image

    for p in sorted(Path(calib_dir).glob("*.png")):
        v = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0
        yield ((v.transpose(2, 0, 1) - MEAN) / STD)[None].astype(np.float32)


def quantize_python(model, out, calib_dir):
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = ({"input": x} for x in load_calib(calib_dir))

        def get_next(self):
            return next(self.it, None)

    t0 = time.perf_counter()
    pre = str(out) + ".pre.onnx"
    quant_pre_process(model, pre)
    quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, per_channel=False)
    print(f"python quantize_static wall time: {time.perf_counter() - t0:.2f} s")


def latency(model, runs):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    x = next(load_calib(sys.argv[3]))
    name = s.get_inputs()[0].name
    for _ in range(50):
        s.run(None, {name: x})
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        s.run(None, {name: x})
        t.append(time.perf_counter() - t0)
    return float(np.median(t) * 1000), float(np.mean(t) * 1000)


def agreement(fp32, int8, calib_dir, n=64):
    """Pearson correlation (pooled logits) and top-1 agreement of an int8 model with fp32."""
    import onnxruntime as ort

    a, b = ort.InferenceSession(fp32), ort.InferenceSession(int8)
    name = a.get_inputs()[0].name
    f, q = [], []
    for i, x in enumerate(load_calib(calib_dir)):
        if i == n:
            break
        f.append(a.run(None, {name: x})[0].ravel())
        q.append(b.run(None, {name: x})[0].ravel())
    f, q = np.array(f), np.array(q)
    top1 = float(np.mean(f.argmax(1) == q.argmax(1)))
    return float(np.corrcoef(f.ravel(), q.ravel())[0, 1]), top1


def main():
    cmd = sys.argv[1]
    if cmd == "calib":
        gen_calib(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), 7)
    elif cmd == "quantize":
        quantize_python(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "latency":
        # latency NAME CALIB_DIR FP32 RTINFER_INT8 PYTHON_INT8 RUNS
        name, fp32, ours, theirs, runs = sys.argv[2], sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7])
        # Interleaved rounds so drift on a shared machine hits all three alike.
        res = {k: [] for k in ("fp32", "rtinfer", "python")}
        for _ in range(3):
            for k, m in (("fp32", fp32), ("rtinfer", ours), ("python", theirs)):
                res[k].append(latency(m, runs)[0])
        med = {k: float(np.median(v)) for k, v in res.items()}
        print(f"{name}: median latency (1 thread, ORT {__import__('onnxruntime').__version__}): "
              f"fp32 {med['fp32']:.3f} ms, rtinfer int8 {med['rtinfer']:.3f} ms, "
              f"python int8 {med['python']:.3f} ms")
        for k, m in (("rtinfer", ours), ("python", theirs)):
            r, t1 = agreement(fp32, m, sys.argv[3])
            print(f"{name}: {k} int8 vs fp32 on 64 calibration images: pearson {r:.5f}, top-1 {t1 * 100:.1f} %")
        print(f"{name}: int8 latency rtinfer/python = {med['rtinfer'] / med['python']:.3f}; "
              f"int8 speed-up over fp32: rtinfer {med['fp32'] / med['rtinfer']:.2f}x, "
              f"python {med['fp32'] / med['python']:.2f}x")


if __name__ == "__main__":
    main()
