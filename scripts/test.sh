#!/usr/bin/env bash
# Command 2 of the README: the whole test suite (what CI runs).
# Installs what the tests need (scripts/setup.sh), checks formatting, the import direction and lints,
# then runs every test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh
export ORT_DYLIB_PATH="$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1"
cargo fmt --all -- --check
# The import direction of docs/ARCHITECTURE.md (prints every import that points the wrong way).
bash scripts/check_imports.sh
cargo clippy --all-targets --quiet -- -D warnings
cargo clippy -p rtinfer-fuzz --all-targets --quiet -- -D warnings
# Timing-sensitive tests (hot swap gaps) run against the release binary, one at a time.
cargo build --release --quiet
export RTINFER_RELEASE_BIN="$ROOT/target/release/rtinfer"
cargo test -- --test-threads=2 --skip timed_
# The fuzz targets built on stable, replaying the committed seeds and past crashes (fuzz/).
cargo test -p rtinfer-fuzz
# The TensorRT layer against its CPU test double, in the 8.5, 10.3 and 10.16 API shapes.
bash scripts/test_tensorrt_double.sh
# The TensorRT layer and the VART shim against the vendors' real headers (third_party/).
bash scripts/check_sdk_headers.sh
# Tests named timed_* measure gaps between frames: alone, one at a time.
cargo test timed_ -- --test-threads=1
