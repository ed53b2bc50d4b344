#!/usr/bin/env bash
# Real-time benchmarks (figures printed, nothing asserted; kernel RT throttling and hypervisor
# steal apply, so these are reports, not pass/fail):
#   1. pacing: 60 FPS synthetic for PACING_S (default 60) s with MobileNetV2 1.0x: frames captured
#      (3600 +- 1 expected for 60 s) and /status source.interval_jitter_ms_p99;
#   2. under load (LOAD_S, default 30 s each): two CPU-bound busy loops on both cores (stress-ng
#      --cpu 2 when installed), MobileNetV2 1.0x on synthetic://640x480@60, threads = 2 with the
#      intra-op thread pinned beside the pipeline thread (cpus = [0, 1]): miss rate and end-to-end
#      p99 without and with realtime.priority = 50, beside the unloaded p99.
# Prints the load average first: compare runs only on a similarly quiet machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PACING_S="${PACING_S:-60}"
LOAD_S="${LOAD_S:-30}"
scripts/setup.sh --ort-only
cargo build --release --quiet
BIN="$ROOT/target/release/rtinfer"
export ORT_DYLIB_PATH="$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1"
WORK="$(mktemp -d)"
LOADPIDS=()
cleanup() { for p in "${LOADPIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
MODEL="$WORK/mobilenetv2.onnx"
"$BIN" zoo --arch mobilenetv2 --dataset cifar10 --ratio 1.0 -o "$MODEL" >/dev/null
echo "machine: $(nproc) CPUs, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# run NAME SECONDS SOURCE CONFIG: runs the daemon, samples /status until the end, prints figures.
run() {
  local name="$1" secs="$2" src="$3" cfg="$WORK/$1.toml" sock="$WORK/$1.sock"
  printf '%b' "$4" > "$cfg"
  "$BIN" run --config "$cfg" --source "$src" --model "$MODEL" --socket "$sock" --warmup 20 \
    --duration "$secs" > "$WORK/$name.out" 2> "$WORK/$name.err" &
  local pid=$!
  local last=""
  while kill -0 "$pid" 2>/dev/null; do
    s="$(curl -s --unix-socket "$sock" http://localhost/status 2>/dev/null || true)"
    [ -n "$s" ] && last="$s"
    sleep 1
  done
  wait "$pid" || true
  echo "$last" > "$WORK/$name.json"
  python3 - "$WORK/$name.json" "$WORK/$name.out" "$name" <<'PY'
import json, re, sys
status = json.load(open(sys.argv[1])) if open(sys.argv[1]).read().strip() else {}
out = open(sys.argv[2]).read()
f = {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", out.splitlines()[0])} if out else {}
e2e = re.search(r"end-to-end ms: p50 (\S+) p99 (\S+)", out)
miss = 100.0 * f.get("missed_deadline", 0) / max(1, f.get("processed", 0))
print(f"{sys.argv[3]}: captured {f.get('captured')} processed {f.get('processed')} "
      f"missed {f.get('missed_deadline')} ({miss:.3f} %) cancelled {f.get('cancelled')} "
      f"e2e p50 {e2e.group(1) if e2e else '-'} p99 {e2e.group(2) if e2e else '-'} ms; "
      f"jitter p99 {status.get('source', {}).get('interval_jitter_ms_p99')} ms; "
      f"realtime {json.dumps(status.get('realtime'))}")
PY
}

echo "== pacing: synthetic 60 FPS for $PACING_S s"
run pacing "$PACING_S" "synthetic://640x480@60" ""

echo "== unloaded, threads 2, cpus [0, 1]"
PIN='[run]\nthreads = 2\n[realtime]\ncpus = [0, 1]\n'
run unloaded "$LOAD_S" "synthetic://640x480@60" "$PIN"

echo "== under load: two CPU-bound processes"
if command -v stress-ng >/dev/null; then
  stress-ng --cpu 2 --quiet & LOADPIDS+=($!)
else
  for _ in 1 2; do (while :; do :; done) & LOADPIDS+=($!); done
fi
sleep 2
run loaded "$LOAD_S" "synthetic://640x480@60" "$PIN"
run loaded_rt "$LOAD_S" "synthetic://640x480@60" "${PIN}priority = 50\n"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
