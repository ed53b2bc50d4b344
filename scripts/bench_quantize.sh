#!/usr/bin/env bash
# rtinfer quantize against ONNX Runtime's own Python quantize_static (QDQ, u8 activations, s8
# weights, MinMax, the same 1,000 calibration images) on MobileNetV2 1.0x and ResNet-50 1.0x
# CIFAR-10. Prints: quantize wall time of both, int8 latency rtinfer/python, int8 vs fp32
# speed-up (single thread, the same ONNX Runtime 1.31.1 for every model). One run; figures only,
# nothing asserted.
#
#   scripts/bench_quantize.sh [SAMPLES] [RUNS]     # defaults 1000 calibration images, 300 runs
#
# Needs scripts/setup.sh (the ORT library) and PyPI access for a venv in .cache/venv-quant
# (onnxruntime==1.31.1, onnx, numpy, pillow, sympy).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SAMPLES="${1:-1000}"
RUNS="${2:-300}"
WORK="$ROOT/.cache/bench_quantize"
VENV="$ROOT/.cache/venv-quant"
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1}"
# The Python side runs without ONNX Runtime telemetry too, as rtinfer does (see README).
export ORT_DISABLE_TELEMETRY="${ORT_DISABLE_TELEMETRY:-1}"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# sympy: quant_pre_process's symbolic shape inference.
"$VENV/bin/python" -c "import onnxruntime, onnx, numpy, PIL, sympy" 2>/dev/null ||
  "$VENV/bin/pip" install -q onnxruntime==1.31.1 onnx numpy pillow sympy
PY="$VENV/bin/python"

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
RT="$ROOT/target/release/rtinfer"
mkdir -p "$WORK"
CALIB="$WORK/calib-$SAMPLES"
[ -d "$CALIB" ] || "$PY" "$ROOT/scripts/bench_quantize.py" calib "$CALIB" "$SAMPLES" 32

for arch in mobilenetv2 resnet50; do
  m="$WORK/$arch-cifar10-r1.0.onnx"
  "$RT" zoo --arch "$arch" --ratio 1.0 -o "$m" >/dev/null
  echo "== $arch 1.0x cifar10"
  start=$(date +%s.%N)
  RUST_LOG=warn "$RT" quantize "$m" -o "$WORK/$arch.int8.onnx" --calib "$CALIB" --samples "$SAMPLES" \
    | sed 's/^/rtinfer: /'
  end=$(date +%s.%N)
  echo "rtinfer quantize wall time ($SAMPLES samples): $(echo "$end - $start" | bc) s"
  "$PY" "$ROOT/scripts/bench_quantize.py" quantize "$m" "$WORK/$arch.python.int8.onnx" "$CALIB" \
    2> >(grep -v -i "warning\|please consider" >&2)
  "$PY" "$ROOT/scripts/bench_quantize.py" latency "$arch" "$CALIB" "$m" \
    "$WORK/$arch.int8.onnx" "$WORK/$arch.python.int8.onnx" "$RUNS"
done
