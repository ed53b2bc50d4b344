#!/usr/bin/env bash
# Command 1 of the README: set up, build, and run the embedded default end to end.
#   ONNX Runtime on the CPU, a generated MobileNetV2 (CIFAR-10, 1.0x), a synthetic 320x240 source at
#   60 FPS for ~10 s, the status socket queried with curl, percentiles and misses printed.
# Environment: DURATION (seconds, default 10), RATIO (default 1.0), ARCH (default mobilenetv2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${DURATION:-10}"
RATIO="${RATIO:-1.0}"
ARCH="${ARCH:-mobilenetv2}"

scripts/setup.sh
cargo build --release --quiet
BIN="$ROOT/target/release/rtinfer"
export ORT_DYLIB_PATH="$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
MODEL="$WORK/$ARCH-cifar10-$RATIO.onnx"
SOCK="$WORK/status.sock"
"$BIN" zoo --arch "$ARCH" --dataset cifar10 --ratio "$RATIO" -o "$MODEL"

"$BIN" run --model "$MODEL" --source synthetic://320x240@60 --duration "$DURATION" --socket "$SOCK" \
  > "$WORK/summary.txt" &
PID=$!
for _ in $(seq 1 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
sleep "$(awk -v d="$DURATION" 'BEGIN { print (d > 3 ? d - 2 : d / 2) }')"

echo
echo "== curl --unix-socket $SOCK http://localhost/status"
curl -sS --unix-socket "$SOCK" http://localhost/status > "$WORK/status.json"
python3 - "$WORK/status.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
f, e2e, inf = s["frames"], s["latency_ms"]["end_to_end"], s["latency_ms"]["inference"]
m = s["model"]
print(f"state {s['state']}  model {m['name']} ({m['backend']}, {m['precision']}, {m['params']} params)")
print(f"fps {s['fps']:.1f} / target {s['target_fps']}  budget {s['budget_ms']:.2f} ms")
print("frames " + "  ".join(f"{k} {f[k]}" for k in ("captured", "processed", "missed_deadline", "dropped", "cancelled", "in_flight")))
for name, st in (("end-to-end", e2e), ("inference", inf)):
    print(f"{name:>10} ms  p50 {st['p50']:.3f}  p90 {st['p90']:.3f}  p99 {st['p99']:.3f}  max {st['max']:.3f}  (n={st['count']})")
PY
echo
echo "== rtinfer status"
"$BIN" status --socket "$SOCK"
wait "$PID"
echo
echo "== final summary"
cat "$WORK/summary.txt"
