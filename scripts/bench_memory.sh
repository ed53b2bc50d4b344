#!/usr/bin/env bash
# Memory benchmark (figures printed, nothing asserted): the daemon against its floor.
#
#   scripts/bench_memory.sh [ROUNDS]        (default 3 rounds, alternated floor/daemon)
#
# The floor is `examples/memory_floor.rs`: ONNX Runtime loaded, one session of the model built
# with the daemon's own backend settings, the heap trimmed after the load as the daemon does, one
# inference every 16.67 ms, nothing else. The daemon runs the same model on
# synthetic://640x480@60 with a status socket. Each process is sampled at 17 s
# (/proc/PID/smaps): RSS split into the heap and anonymous maps (private), libonnxruntime's
# pages, the program's own pages and the other libraries' (shared, clean: page cache the kernel
# can drop and other processes share). Printed: the median of each part over the rounds, and the
# daemon/floor ratios of RSS and of its private part.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${1:-3}"
scripts/setup.sh --ort-only
nice cargo build --release --quiet --bin rtinfer --example memory_floor
BIN="$ROOT/target/release/rtinfer"
FLOOR="$ROOT/target/release/examples/memory_floor"
export ORT_DYLIB_PATH="$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1"
WORK="$(mktemp -d)"
trap 'kill "${PID:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$BIN" zoo --arch mobilenetv2 --dataset cifar10 --ratio 1.0 -o "$WORK/m.onnx" >/dev/null

sample() { # PID NAME ROUND
    sleep 17
    cp "/proc/$1/smaps" "$WORK/$2.$3.smaps"
}
for r in $(seq "$ROUNDS"); do
    "$FLOOR" "$WORK/m.onnx" 19 >/dev/null &
    PID=$!
    sample "$PID" floor "$r"
    wait "$PID"
    rm -f "$WORK/s.sock"
    "$BIN" run --model "$WORK/m.onnx" --source synthetic://640x480@60 --socket "$WORK/s.sock" \
        --duration 19 >/dev/null 2>"$WORK/daemon.log" &
    PID=$!
    sample "$PID" daemon "$r"
    wait "$PID"
done
python3 - "$WORK" "$ROUNDS" <<'PY'
import re, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
PARTS = ["private (heap, anon, stacks)", "libonnxruntime", "own program", "other libraries", "RSS"]
def parts(path):
    out = dict.fromkeys(PARTS, 0)
    name = None
    for line in open(path):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            f = line.split()
            name = f[5] if len(f) > 5 else ""
        elif line.startswith("Rss:"):
            kib = int(line.split()[1])
            if name == "" or name.startswith("["):
                key = PARTS[0]
            elif "libonnxruntime" in name:
                key = PARTS[1]
            elif name.endswith("/rtinfer") or name.endswith("/memory_floor"):
                key = PARTS[2]
            else:
                key = PARTS[3]
            out[key] += kib
            out["RSS"] += kib
    return out
med = {}
for who in ("floor", "daemon"):
    runs = [parts(f"{work}/{who}.{r}.smaps") for r in range(1, rounds + 1)]
    med[who] = {p: statistics.median(x[p] for x in runs) / 1024 for p in PARTS}
print(f"MobileNetV2 1.0x CIFAR-10, 640x480@60, sampled at 17 s, median of {rounds} rounds (MiB)")
print(f"{'part':32} {'floor':>8} {'daemon':>8} {'+':>7}")
for p in PARTS:
    f, d = med["floor"][p], med["daemon"][p]
    print(f"{p:32} {f:8.1f} {d:8.1f} {d - f:+7.1f}")
f, d = med["floor"], med["daemon"]
print(f"daemon/floor: RSS {d['RSS'] / f['RSS']:.2f}x, private {d[PARTS[0]] / f[PARTS[0]]:.2f}x")
PY
