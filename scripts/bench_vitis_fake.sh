#!/usr/bin/env bash
# Prints what rtinfer's Vitis AI path costs on our side of the ABI, on the fake DPU (zero device
# latency): the daemon's inference p50/p99 for a 224x224x3 int8 input and 1000 int8 scores
# (shim call, input and output copies inside the fake, dequantisation), plus preprocessing and
# end-to-end p50 from the same run. No DPU involved: this is the floor the real shim adds to.
#
#   scripts/bench_vitis_fake.sh            # the newer of target/release and target/debug rtinfer
#   SECS=20 scripts/bench_vitis_fake.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS="${SECS:-10}"
BIN=""
for b in "$ROOT/target/release/rtinfer" "$ROOT/target/debug/rtinfer"; do
  if [ -x "$b" ] && { [ -z "$BIN" ] || [ "$b" -nt "$BIN" ]; }; then BIN="$b"; fi
done
[ -n "$BIN" ] || { echo "build rtinfer first (cargo build --release)" >&2; exit 2; }
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT

"${CC:-cc}" -std=c11 -O2 -fPIC -shared -o "$TMP/librtinfer_vart.so" "$ROOT/cpp/fake_dpu/fake_dpu.c"
printf 'fake-dpu 1\ninput data int8 1 224 224 3 fix 6\noutput scores int8 1 1000 fix 4\n' \
  > "$TMP/bench.xmodel"
printf '[vitis]\nlibrary = "%s"\n' "$TMP/librtinfer_vart.so" > "$TMP/rtinfer.toml"

echo "binary: $BIN ($SECS s, synthetic://640x480@60, fake DPU with 0 ms latency)"
RUST_LOG=warn "$BIN" run --backend vitis --config "$TMP/rtinfer.toml" --model "$TMP/bench.xmodel" \
  --source synthetic://640x480@60 --duration "$SECS" --socket "$TMP/s.sock" --warmup 20
