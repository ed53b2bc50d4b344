#!/usr/bin/env bash
# Command 2 of the README: the whole test suite (what CI runs).
# Installs what the tests need (scripts/setup.sh), checks formatting and lints, then runs every test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
export ORT_DYLIB_PATH="$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
cargo test -- --test-threads=2
bash scripts/test_tensorrt_double.sh
