#!/usr/bin/env bash
# What each kind of source costs, stage by stage (figures printed, nothing asserted): the same
# 1280x720 30 fps clip (ffmpeg's testsrc2, 10 s) as a Y4M file, as an H.264 MP4 decoded by the
# ffmpeg child, and as Y4M on a pipe fed by `ffmpeg -re`, each run by the release daemon with
# MobileNetV2 0.5x CIFAR-10 for SECS seconds. Prints, from /status `latency_ms_lifetime`, the mean
# of every stage, their sum against end_to_end (the stages add up), and end_to_end's p50/p99.
# Environment: SECS (default 8), BIN (default target/release/rtinfer).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECS="${SECS:-8}"
scripts/setup.sh --ort-only
cargo build --release --quiet
BIN="${BIN:-$ROOT/target/release/rtinfer}"
export ORT_DYLIB_PATH="$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1"
WORK="$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
MODEL="$WORK/mobilenetv2.onnx"
"$BIN" zoo --arch mobilenetv2 --dataset cifar10 --ratio 0.5 -o "$MODEL" >/dev/null
FF=(ffmpeg -hide_banner -loglevel error -nostdin -y)
"${FF[@]}" -f lavfi -i testsrc2=size=1280x720:rate=30 -t 10 -pix_fmt yuv420p "$WORK/clip.y4m"
"${FF[@]}" -i "$WORK/clip.y4m" -c:v libx264 -preset veryfast -pix_fmt yuv420p "$WORK/clip.mp4"
echo "daemon: $BIN ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)), ${SECS} s per source"

# run NAME SOURCE [FEEDER...]: the daemon on SOURCE (stdin from FEEDER when given) for SECS s.
run() {
  local name="$1" source="$2"
  shift 2
  local sock="$WORK/$name.sock"
  if [ $# -gt 0 ]; then
    "$@" | "$BIN" run --model "$MODEL" --source "$source" --socket "$sock" --warmup 5 \
      >/dev/null 2>"$WORK/$name.log" &
  else
    "$BIN" run --model "$MODEL" --source "$source" --socket "$sock" --warmup 5 \
      >/dev/null 2>"$WORK/$name.log" &
  fi
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 400); do [ -S "$sock" ] && break; sleep 0.05; done
  sleep "$SECS"
  curl -s --max-time 5 --unix-socket "$sock" http://localhost/status >"$WORK/$name.json"
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  python3 - "$name" "$WORK/$name.json" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
v = json.load(open(path))
life = v["latency_ms_lifetime"]
chain = [s for s in ["capture", "queue", "preprocess", "inference", "postprocess"] if s in life]
means = {s: life[s]["mean"] or 0.0 for s in chain}
e2e = life["end_to_end"]
total = sum(means.values())
gap = 100.0 * (total - e2e["mean"]) / e2e["mean"] if e2e["mean"] else float("nan")
stages = "  ".join(f"{s} {means[s]:.3f}" for s in chain)
print(f"{name:5s} frames {v['frames']['processed']:4d}  mean ms: {stages}  sum {total:.3f} "
      f"end_to_end {e2e['mean']:.3f} ({gap:+.2f} %)  e2e p50 {e2e['p50']:.3f} p99 {e2e['p99']:.3f}")
PY
}

run y4m "file://$WORK/clip.y4m?loop=true"
run mp4 "file://$WORK/clip.mp4?loop=true"
run pipe "pipe://" "${FF[@]}" -re -stream_loop -1 -i "$WORK/clip.y4m" -f yuv4mpegpipe -
