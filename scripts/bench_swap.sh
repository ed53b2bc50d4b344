#!/usr/bin/env bash
# Hot-swap benchmark (figures printed, nothing asserted), one run:
#   - missed frames caused by swaps over 10 swaps at 60 FPS with MobileNetV2 models;
#   - swap latency: rename -> first result from the new model, p50 over 10 swaps;
#   - inference p99 in the 2 s around each swap (rename +- 1 s) vs outside, each model against
#     frames of the same input size (the two models differ 4x in FLOPs: pooling them would
#     measure the models, not the swaps); swaps SPACING_S (default 4) s apart;
#   - RSS after the 1st swap and every 25th of MEMORY_SWAPS (default 50) more (memory stays flat?).
# The results file's times are CLOCK_MONOTONIC, the clock Python's time.monotonic() reads.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --ort-only
cargo build --release --quiet
BIN="$ROOT/target/release/rtinfer"
export ORT_DYLIB_PATH="$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1"
SPACING_S="${SPACING_S:-4}"
MEMORY_SWAPS="${MEMORY_SWAPS:-50}"
WORK="$(mktemp -d)"
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$BIN" zoo --arch mobilenetv2 --dataset cifar10 --ratio 1.0 -o "$WORK/a.onnx" >/dev/null
"$BIN" zoo --arch mobilenetv2 --dataset tinyimagenet --ratio 1.0 -o "$WORK/b.onnx" >/dev/null
mkdir "$WORK/models"
cp "$WORK/a.onnx" "$WORK/models/start.onnx"
"$BIN" run --models "$WORK/models" --source synthetic://320x240@60 --socket "$WORK/s.sock" \
  --results "$WORK/results.jsonl" 2> "$WORK/daemon.log" > /dev/null &
PID=$!
python3 - "$WORK" "$SPACING_S" "$MEMORY_SWAPS" <<'PY'
import json, os, shutil, socket, statistics, sys, time

work = sys.argv[1]
spacing = float(sys.argv[2])
memory_swaps = int(sys.argv[3])
sock = os.path.join(work, "s.sock")

def status():
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])

def wait(pred, secs=60):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            st = status()
            if pred(st):
                return st
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit("timed out waiting for the daemon")

def swap(i):
    src = os.path.join(work, "b.onnx" if i % 2 == 0 else "a.onnx")
    tmp = os.path.join(work, "models", f".m{i}.tmp")
    shutil.copy(src, tmp)
    t = time.monotonic()
    os.rename(tmp, os.path.join(work, "models", f"m{i}.onnx"))
    wait(lambda s: len(s["swaps"]) >= min(i + 2, 100) and s["swaps"][-1]["to"] == f"m{i}")
    return t * 1000.0

wait(lambda s: s["state"] == "running")
time.sleep(3)
renames = []
for i in range(10):
    renames.append((f"m{i}", swap(i)))
    time.sleep(spacing)
st = status()
rss_first = None
lines = [json.loads(l) for l in open(os.path.join(work, "results.jsonl"))]
lat = []
for name, t in renames:
    first = next((r for r in lines if r["model"] == name), None)
    if first:
        lat.append(first["done_ms"] - t)
# Models m0, m2, ... are b.onnx (64x64); start, m1, m3, ... are a.onnx (32x32).
def size_of(model):
    return "64x64" if model != "start" and int(model[1:]) % 2 == 0 else "32x32"
near = {"32x32": [], "64x64": []}
far = {"32x32": [], "64x64": []}
near_late = 0
for r in lines:
    close = any(abs(r["done_ms"] - t) <= 1000 for _, t in renames)
    (near if close else far)[size_of(r["model"])].append(r["inference_ms"])
    if close and r["late"]:
        near_late += 1
def p99(v):
    v = sorted(v)
    return v[min(len(v) - 1, int(0.99 * len(v)))] if v else float("nan")
ratios = {k: p99(near[k]) / p99(far[k]) for k in near}
f = st["frames"]
print(f"10 swaps {spacing:g} s apart at 60 FPS, MobileNetV2 1.0x CIFAR-10 (32x32) <-> tinyImageNet (64x64), 320x240 source")
print(f"  swaps ok: {sum(1 for s in st['swaps'] if s['result'] == 'ok')}, frames: {f}")
print(f"  late frames in the 2 s around a swap: {near_late}; late frames in the whole run: {f['missed_deadline']}")
print(f"  swap latency rename -> first new result: p50 {statistics.median(lat):.0f} ms, max {max(lat):.0f} ms (n={len(lat)})")
for k in sorted(near):
    print(f"  {k} model: inference p99 in the 2 s around swaps {p99(near[k]):.3f} ms (n={len(near[k])}) "
          f"vs elsewhere {p99(far[k]):.3f} ms (n={len(far[k])}): ratio {ratios[k]:.2f}")
print(f"  load_ms of the swaps: {[round(s['load_ms']) for s in st['swaps'] if s['load_ms']]}")
# More swaps for memory: RSS after the 1st and every 25th (a leak grows linearly; allocator
# high-water marks level off).
trail = []
for n in range(1, memory_swaps + 1):
    swap(9 + n)
    if n == 1 or n % 25 == 0:
        time.sleep(1.5)  # the old engine is freed after the swap; /status samples RSS every 1 s
        trail.append((n, status()["system"]["rss_bytes"]))
rss_first, rss_last = trail[0][1], trail[-1][1]
print(f"  RSS over {memory_swaps} swaps (MiB): " + ", ".join(f"#{n} {r / 2**20:.1f}" for n, r in trail)
      + f"; last vs first {(rss_last / rss_first - 1) * 100:+.1f} %")
PY
kill -INT "$PID"; wait "$PID" || true
