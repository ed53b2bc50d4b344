#!/usr/bin/env bash
# The status socket under load (figures printed, nothing asserted), against the release daemon
# running MobileNetV2 0.5x CIFAR-10 on synthetic://320x240@60:
#   1. answers/s with 50 concurrent clients requesting /status back to back;
#   2. honest clients' p50/p99 while 8 slowloris connections are held (reopened when dropped);
#   3. 50 clients polling /status and /metrics every 100 ms for 20 s: their errors, and the
#      pipeline's end-to-end p99 and misses over 20 s quiet vs 20 s under the pollers.
# Environment: SECS (phases 1-2, default 10), BIN (the daemon, default target/release/rtinfer:
# point it at an older build to compare), CLIENT_NICE (default 0: the load generator's nice value;
# the 50 client threads share this machine's cores with the daemon, which a board's remote
# scrapers would not: CLIENT_NICE=19 shows the server's own cost).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${SECS:-10}"
scripts/setup.sh --ort-only
cargo build --release --quiet
cargo bench --bench status_load --no-run --quiet 2>/dev/null
BIN="${BIN:-$ROOT/target/release/rtinfer}"
export ORT_DYLIB_PATH="$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1"
WORK="$(mktemp -d)"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
MODEL="$WORK/mobilenetv2.onnx"
"$BIN" zoo --arch mobilenetv2 --dataset cifar10 --ratio 0.5 -o "$MODEL" >/dev/null
SOCK="$WORK/s.sock"
"$BIN" run --model "$MODEL" --source synthetic://320x240@60 --socket "$SOCK" \
  >"$WORK/daemon.txt" 2>"$WORK/daemon.log" &
PID=$!
for _ in $(seq 1 200); do [ -S "$SOCK" ] && break; sleep 0.05; done
sleep 3
echo "daemon: $BIN ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
nice -n "${CLIENT_NICE:-0}" cargo bench --bench status_load --quiet -- "$SOCK" "$SECS"
kill -TERM "$PID"
wait "$PID" || true
PID=""
