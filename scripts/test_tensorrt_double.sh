#!/usr/bin/env bash
# The TensorRT backend's tests against the CPU test double, in both API shapes it imitates:
# TensorRT 8.5 (JetPack 5.1: 32-bit Dims, enqueueV2 still present) and 10.x (JetPack 6.1+: 64-bit
# Dims, enqueueV2 gone). The very same cpp/trt_engine.cc is compiled against each. No GPU or SDK
# needed. Called at the end of scripts/test.sh; also runs on its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo clippy --all-targets --features tensorrt-double --quiet -- -D warnings
# One test at a time: the double's device-memory counter (behind cudaMemGetInfo) is process-wide,
# so a parallel test's allocation would skew another's persistent-memory figure.
for shape in 8.5 10; do
  echo "== TensorRT test double, API shape $shape" >&2
  RTINFER_TRT_DOUBLE="$shape" cargo test --features tensorrt-double --test tests --quiet \
    -- tensorrt:: --test-threads=1
done
