#!/usr/bin/env bash
# The TensorRT backend's tests against the CPU test double, in the three API shapes it imitates:
# TensorRT 8.5 (JetPack 5.1: 32-bit Dims, enqueueV2 still present, int8 calibrated), 10.3 (JetPack
# 6.1/6.2: 64-bit Dims, enqueueV2 gone, int8 by explicit quantization) and 10.16 (fp16 from a
# float16 model: kFP16 deprecated). The very same cpp/trt_engine.cc is compiled against each. No
# GPU or SDK needed. Called by scripts/test.sh; also runs on its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo clippy --all-targets --features tensorrt-double --quiet -- -D warnings
# One test at a time: the double's device-memory counter (behind cudaMemGetInfo) is process-wide,
# so a parallel test's allocation would skew another's persistent-memory figure.
for shape in 8.5 10.3 10.16; do
  echo "== TensorRT test double, API shape $shape" >&2
  RTINFER_TRT_DOUBLE="$shape" cargo test --features tensorrt-double --test tests --quiet \
    -- tensorrt:: --test-threads=1
done
