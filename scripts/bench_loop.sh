#!/usr/bin/env bash
# Benchmarks of the loop (figures printed, nothing asserted). One run, medians and ratios:
#   1. inference-stage p50 in the daemon vs a Python onnxruntime==1.31.1 InferenceSession.run loop
#      on the same MobileNetV2 1.0x CIFAR-10 file, same library version, same intra-op threads and
#      spinning (off), both paced at 60 FPS;
#   2. loop overhead = end-to-end p50 - inference p50 (320x240 synthetic source into 32x32);
#   3. daemon RSS vs the Python process's RSS;
#   4. (SOAK=1) RSS over 10^5 frames, sampled every 10 s, to show it stays flat.
# Environment: SECONDS_RUN (default 30), THREADS (default 1), SOAK (default 0).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_RUN="${SECONDS_RUN:-30}"
THREADS="${THREADS:-1}"
scripts/setup.sh --ort-only
cargo build --release --quiet
BIN="$ROOT/target/release/rtinfer"
LIB="$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1"
export ORT_DYLIB_PATH="$LIB"
# The Python side runs without ONNX Runtime telemetry too, as rtinfer does (see README).
export ORT_DISABLE_TELEMETRY="${ORT_DISABLE_TELEMETRY:-1}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
MODEL="$WORK/mobilenetv2.onnx"
"$BIN" zoo --arch mobilenetv2 --dataset cifar10 --ratio 1.0 -o "$MODEL" >/dev/null

# Python side: a private venv with the same ONNX Runtime version.
VENV="$ROOT/.cache/bench-venv"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet onnxruntime==1.31.1 numpy
fi

SOCK="$WORK/s.sock"
"$BIN" run --model "$MODEL" --source synthetic://320x240@60 --threads "$THREADS" \
  --duration "$SECONDS_RUN" --socket "$SOCK" > "$WORK/daemon.txt" 2> "$WORK/daemon.log" &
PID=$!
for _ in $(seq 1 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
sleep $((SECONDS_RUN - 2))
curl -sS --unix-socket "$SOCK" http://localhost/status > "$WORK/status.json"
wait "$PID"

"$VENV/bin/python" - "$MODEL" "$THREADS" "$SECONDS_RUN" > "$WORK/python.json" <<'PY'
import json, sys, time
import numpy as np
import onnxruntime as ort
model, threads, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
so.add_session_config_entry("session.inter_op.allow_spinning", "0")
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
for _ in range(20):
    s.run(None, {name: x})
period, t0, n, lat = 1 / 60, time.monotonic(), 0, []
while time.monotonic() - t0 < secs:
    due = t0 + n * period
    d = due - time.monotonic()
    if d > 0:
        time.sleep(d)
    a = time.perf_counter()
    s.run(None, {name: x})
    lat.append((time.perf_counter() - a) * 1000)
    n += 1
rss = int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) * 1024
print(json.dumps({"p50": float(np.median(lat)), "n": n, "rss": rss, "version": ort.__version__}))
PY

python3 - "$WORK/status.json" "$WORK/python.json" "$THREADS" <<'PY'
import json, sys
s, p, threads = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
lat = s["latency_ms_lifetime"]
inf, e2e = lat["inference"]["p50"], lat["end_to_end"]["p50"]
rss = s["system"]["rss_bytes"]
print(f"MobileNetV2 1.0x CIFAR-10 fp32, ONNX Runtime {p['version']}, intra-op threads {threads}, spinning off, 60 FPS")
print(f"daemon inference p50      {inf:.4f} ms   (n={lat['inference']['count']})")
print(f"python session.run p50    {p['p50']:.4f} ms   (n={p['n']})")
print(f"ratio daemon/python       {inf / p['p50']:.3f}   (target <= 1.0)")
print(f"loop overhead (e2e-inf)   {e2e - inf:.4f} ms   (e2e p50 {e2e:.4f}; target <= 0.1)")
print(f"RSS daemon / python       {rss/2**20:.1f} MiB / {p['rss']/2**20:.1f} MiB = {rss / p['rss']:.3f}   (target <= 0.5)")
print(f"frames: {s['frames']}")
PY

if [ "${SOAK:-0}" = 1 ]; then
  SMALL="$WORK/mnv2-025.onnx"
  "$BIN" zoo --arch mobilenetv2 --dataset cifar10 --ratio 0.25 -o "$SMALL" >/dev/null
  "$BIN" run --model "$SMALL" --source synthetic://64x48@1000 --budget-ms 1000 --socket "$SOCK" \
    > "$WORK/soak.txt" 2> "$WORK/soak.log" &
  PID=$!
  for _ in $(seq 1 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
  echo "soak: processed frames vs RSS (MiB)"
  while :; do
    sleep 10
    J="$(curl -sS --unix-socket "$SOCK" http://localhost/status)"
    P="$(echo "$J" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["frames"]["processed"], round(s["system"]["rss_bytes"]/2**20, 2))')"
    echo "  $P"
    [ "${P%% *}" -ge 100000 ] && break
  done
  kill -INT "$PID"; wait "$PID" || true
fi
