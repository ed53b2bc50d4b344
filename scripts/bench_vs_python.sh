#!/usr/bin/env bash
# rtinfer bench vs the study's harness (Python onnxruntime) on the same model, protocol
# (batch 1, seeded random input, 20 warm-up + 80 measured runs per trial) and thread count.
# Prints both means and medians and the ratios rtinfer/python (target: <= 0.95 on MobileNetV2 0.25x,
# <= 1.0 on ResNet-50 1.0x CIFAR-10). Each side runs ROUNDS times, alternating, so drift of a
# shared machine hits both; the mean of the rounds is compared. On a busy machine the mean is
# dominated by preemption outliers; the p50 ratio shows the per-run overhead itself.
#
# Usage: scripts/bench_vs_python.sh   (env: THREADS=1 TRIALS=5 ROUNDS=3)
# Needs: python3 with venv; creates .cache/venv-bench with onnxruntime==1.31.1 + numpy.
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-1}
TRIALS=${TRIALS:-5}
ROUNDS=${ROUNDS:-3}
VENV=.cache/venv-bench
ORT_LIB=${ORT_DYLIB_PATH:-$PWD/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1}
export ORT_DYLIB_PATH=$ORT_LIB RUST_LOG=${RUST_LOG:-warn}
# The Python side runs without ONNX Runtime telemetry too, as rtinfer does (see README).
export ORT_DISABLE_TELEMETRY="${ORT_DISABLE_TELEMETRY:-1}"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q onnxruntime==1.31.1 numpy
fi
cargo build --release -q
BIN=target/release/rtinfer
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat > "$WORK/harness.py" <<'PY'
import sys, time
import numpy as np
import onnxruntime as ort

model, threads, trials = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
x = np.random.default_rng(0).uniform(-1, 1, size=inp.shape).astype(np.float32)
feed = {inp.name: x}
samples = []
for _ in range(trials):
    for _ in range(20):
        sess.run(None, feed)
    for _ in range(80):
        t = time.perf_counter()
        sess.run(None, feed)
        samples.append((time.perf_counter() - t) * 1000.0)
print(np.mean(samples), np.percentile(samples, 50))
PY

rt_mean() {
    "$BIN" bench "$1" --threads "$THREADS" --trials "$TRIALS" --json \
        | "$VENV/bin/python" -c 'import json,sys; l = json.load(sys.stdin)["latency_ms"]; print(l["mean"], l["p50"])'
}

printf '%-20s %10s %10s %10s %10s %10s %10s\n' model rt_mean py_mean ratio rt_p50 py_p50 p50_ratio
for spec in "mobilenetv2 0.25" "resnet50 1.0"; do
    set -- $spec
    model="$WORK/$1-$2.onnx"
    "$BIN" zoo --arch "$1" --dataset cifar10 --ratio "$2" -o "$model" > /dev/null
    rt=() py=()
    for _ in $(seq "$ROUNDS"); do
        rt+=("$(rt_mean "$model")")
        py+=("$("$VENV/bin/python" "$WORK/harness.py" "$model" "$THREADS" "$TRIALS")")
    done
    "$VENV/bin/python" - "$1 ${2}x" "${rt[*]}" "${py[*]}" <<'PY'
import sys
name, rt, py = sys.argv[1], [float(v) for v in sys.argv[2].split()], [float(v) for v in sys.argv[3].split()]
def avg(v, i):
    return sum(v[i::2]) / len(v[i::2])
r, p, r50, p50 = avg(rt, 0), avg(py, 0), avg(rt, 1), avg(py, 1)
print(f"{name:<20} {r:10.4f} {p:10.4f} {r / p:10.3f} {r50:10.4f} {p50:10.4f} {r50 / p50:10.3f}")
PY
done
