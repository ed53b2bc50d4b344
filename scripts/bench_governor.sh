#!/usr/bin/env bash
# The real-time governor under a load pattern (figures printed, nothing asserted):
#   a MobileNetV2 ladder 1.0/0.75/0.5/0.25 (zoo, DATASET, default tinyimagenet: 64x64 inputs, so the
#   rungs span a 4-5x range of latency) in a watch folder; RUN_S (120) s at 60 FPS on
#   synthetic://320x240@60, the pipeline thread pinned to CPU (0) with one intra-op thread; a CPU
#   hog at SCHED_FIFO priority HOG_PRIO (50) pinned to the same CPU, busy HOG_BUSY_US (7500) of
#   every HOG_PERIOD_US (10000) us, switched on for PHASE_S (30) s and off for PHASE_S, twice
#   (on, off, on, off). Each run is done with the governor (default settings) and with the
#   largest model fixed (no governor, same folder, same load), PAIRS (2) times in alternated
#   order (governor first, then fixed first). Prints per run and in total: frames, misses,
#   end-to-end p99 (loaded and unloaded phases), the fraction of frames per rung, the fraction of
#   unloaded-phase frames on the largest model, governor steps; and the daemon's RSS with
#   governor.keep_loaded = none, neighbours and all.
# Needs root (or CAP_SYS_NICE) for the hog's SCHED_FIFO. Prints the load average first: this is
# a figure of the machine it ran on; compare runs only on a similarly quiet machine.
# KEEP=1 keeps the work folder (daemon logs, results files) and prints its path; MEMORY=0 skips the
# memory runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATASET="${DATASET:-tinyimagenet}"
RUN_S="${RUN_S:-120}"
PHASE_S="${PHASE_S:-30}"
PAIRS="${PAIRS:-2}"
CPU="${CPU:-0}"
HOG_PERIOD_US="${HOG_PERIOD_US:-10000}"
HOG_BUSY_US="${HOG_BUSY_US:-7500}"
HOG_PRIO="${HOG_PRIO:-50}"
scripts/setup.sh --ort-only
cargo build --release --quiet
BIN="$ROOT/target/release/rtinfer"
export ORT_DYLIB_PATH="$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1"
WORK="$(mktemp -d)"
HOG=""
cleanup() {
  [ -n "$HOG" ] && kill "$HOG" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# The hog: busy-waits BUSY us at the start of every PERIOD us (absolute CLOCK_MONOTONIC
# deadlines), sleeping the rest, under SCHED_FIFO on one CPU: a higher-priority real-time task
# taking 75 % of the inference core in 7.5 ms slices.
cat > "$WORK/hog.c" <<'C'
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}
int main(int argc, char **argv) {
  if (argc != 5) return 2;
  long long period = atoll(argv[2]) * 1000, busy = atoll(argv[3]) * 1000;
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(atoi(argv[1]), &s);
  struct sched_param p = {.sched_priority = atoi(argv[4])};
  if (sched_setaffinity(0, sizeof s, &s) != 0 || sched_setscheduler(0, SCHED_FIFO, &p) != 0) {
    perror("hog: affinity or SCHED_FIFO (needs root or CAP_SYS_NICE)");
    return 1;
  }
  for (long long next = now_ns() / period * period + period;; next += period) {
    while (now_ns() < next + busy) {
    }
    struct timespec t = {(time_t)((next + period) / 1000000000LL), (long)((next + period) % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) != 0) {
    }
  }
}
C
cc -O2 -o "$WORK/hog" "$WORK/hog.c"

MODELS="$WORK/models"
mkdir -p "$MODELS"
for r in 1.0 0.75 0.5 0.25; do
  "$BIN" zoo --arch mobilenetv2 --dataset "$DATASET" --ratio "$r" -o "$MODELS/mnv2-$r.onnx" >/dev/null
done
LARGEST="mnv2-1.0"
echo "machine: $(nproc) CPUs, $(uname -r); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "ladder: MobileNetV2 $DATASET 1.0/0.75/0.5/0.25; hog: SCHED_FIFO $HOG_PRIO on CPU $CPU, busy $HOG_BUSY_US of $HOG_PERIOD_US us, phases of $PHASE_S s (on, off, on, off)"

status() { curl -s --max-time 5 --unix-socket "$1" http://localhost/status; }

# run NAME MODE(governor|fixed) [KEEP]: one 120 s run under the load pattern; writes NAME.json.
run() {
  local name="$1" mode="$2" keep="${3:-neighbours}"
  local cfg="$WORK/$name.toml" sock="$WORK/$name.sock" res="$WORK/$name.jsonl"
  printf '[run]\nthreads = 1\n[realtime]\ncpus = [%s]\n' "$CPU" > "$cfg"
  local model_args=(--models "$MODELS")
  if [ "$mode" = governor ]; then
    printf '[governor]\nenabled = true\nkeep_loaded = "%s"\n' "$keep" >> "$cfg"
  else
    model_args=(--model "$MODELS/$LARGEST.onnx")
  fi
  rm -f "$res"
  "$BIN" run --config "$cfg" "${model_args[@]}" --source synthetic://320x240@60 \
    --socket "$sock" --results "$res" > "$WORK/$name.out" 2> "$WORK/$name.err" &
  local pid=$!
  # Ready: running, and (governor) the ladder measured, its top rung serving, its neighbour kept.
  local ready=""
  for _ in $(seq 1 600); do
    s="$(status "$sock" 2>/dev/null || true)"
    if [ -n "$s" ] && python3 -c '
import json, sys
v = json.loads(sys.argv[1]); g = v["governor"]
ok = v["state"] == "running" and (not g["enabled"] or (g["rung"] is not None and g["rung"] == g["rungs"] - 1
     and all(r["loaded"] for r in g["ladder"] if abs(r["rung"] - g["rung"]) <= 1)))
sys.exit(0 if ok else 1)' "$s" 2>/dev/null; then
      ready=1
      break
    fi
    sleep 0.2
  done
  [ -n "$ready" ] || echo "warning: $name: the governor was not on its top rung after 120 s; measuring anyway"
  if [ "$mode" = governor ]; then
    python3 -c '
import json, sys
g = json.loads(sys.argv[1])["governor"]
print("%s: ladder measured at load (p10/p50/p99 ms): %s" % (sys.argv[2], ", ".join(
    "%s %.2f/%.2f/%.2f" % (r["name"], r["p10_ms"], r["p50_ms"], r["p99_ms"]) for r in g["ladder"])))' \
      "$(status "$sock")" "$name"
  fi
  sleep 2
  local before after t0
  before="$(status "$sock")"
  t0="$(python3 -c 'import time; print(time.monotonic())')"
  local phases=$((RUN_S / PHASE_S)) i
  for i in $(seq 0 $((phases - 1))); do
    if [ $((i % 2)) -eq 0 ]; then
      "$WORK/hog" "$CPU" "$HOG_PERIOD_US" "$HOG_BUSY_US" "$HOG_PRIO" & HOG=$!
    fi
    sleep "$PHASE_S"
    if [ -n "$HOG" ]; then kill "$HOG"; wait "$HOG" 2>/dev/null || true; HOG=""; fi
  done
  after="$(status "$sock")"
  kill -INT "$pid"
  wait "$pid" || true
  python3 - "$res" "$t0" "$RUN_S" "$PHASE_S" "$name" "$mode" "$LARGEST" "$before" "$after" \
    > "$WORK/$name.json" <<'PY'
import json, sys
res, t0, run_s, phase_s, name, mode, largest = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7]
before, after = json.loads(sys.argv[8]), json.loads(sys.argv[9])
rows = []
for line in open(res):
    r = json.loads(line)
    t = r["done_ms"] / 1000.0 - t0
    if 0 <= t < run_s:
        rows.append((t, r))
def p99(xs):
    xs = sorted(xs)
    return xs[int(0.99 * (len(xs) - 1))] if xs else None
def phase_loaded(t):
    return int(t // phase_s) % 2 == 0
loaded = [r for t, r in rows if phase_loaded(t)]
unloaded = [r for t, r in rows if not phase_loaded(t)]
seqs = [r["seq"] for _, r in rows]
models = {}
for _, r in rows:
    models[r["model"]] = models.get(r["model"], 0) + 1
out = {
    "name": name, "mode": mode,
    "captured": (max(seqs) - min(seqs) + 1) if seqs else 0,
    "processed": len(rows),
    "misses": sum(1 for _, r in rows if r["late"]),
    "misses_loaded": sum(1 for r in loaded if r["late"]),
    "misses_unloaded": sum(1 for r in unloaded if r["late"]),
    "p99_ms": p99([r["latency_ms"] for _, r in rows]),
    "p99_loaded_ms": p99([r["latency_ms"] for r in loaded]),
    "p99_unloaded_ms": p99([r["latency_ms"] for r in unloaded]),
    "frames_per_model": {k: v / max(1, len(rows)) for k, v in sorted(models.items())},
    "unloaded_on_largest": sum(1 for r in unloaded if r["model"] == largest) / max(1, len(unloaded)),
    "steps": after["governor"]["steps_total"] - before["governor"]["steps_total"],
    "rss_mib": after["system"]["rss_bytes"] / 1048576 if after["system"]["rss_bytes"] else None,
    "kept_loaded_mib": after["governor"]["kept_loaded_bytes"] / 1048576,
    "ladder": [(r["name"], round(r["p10_ms"], 3), round(r["p50_ms"], 3), round(r["p99_ms"], 3), r["memory_bytes"]) for r in after["governor"]["ladder"]],
}
print(json.dumps(out))
PY
  python3 - "$WORK/$name.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
fmt = lambda v: "-" if v is None else f"{v:.2f}"
per = ", ".join(f"{k} {100 * v:.1f} %" for k, v in r["frames_per_model"].items())
print(f"{r['name']:>10} ({r['mode']}): processed {r['processed']} of {r['captured']}, misses {r['misses']} "
      f"(loaded {r['misses_loaded']}, unloaded {r['misses_unloaded']}), e2e p99 {fmt(r['p99_ms'])} ms "
      f"(loaded {fmt(r['p99_loaded_ms'])}, unloaded {fmt(r['p99_unloaded_ms'])}); steps {r['steps']}; "
      f"unloaded frames on the largest {100 * r['unloaded_on_largest']:.1f} %; frames per model: {per}")
PY
}

for pair in $(seq 1 "$PAIRS"); do
  if [ $((pair % 2)) -eq 1 ]; then order="governor fixed"; else order="fixed governor"; fi
  for mode in $order; do
    run "$mode$pair" "$mode"
  done
done
python3 - "$WORK" "$PAIRS" <<'PY'
import json, sys
runs = [json.load(open(f"{sys.argv[1]}/{m}{p}.json")) for p in range(1, int(sys.argv[2]) + 1) for m in ("governor", "fixed")]
g = [r for r in runs if r["mode"] == "governor"]
f = [r for r in runs if r["mode"] == "fixed"]
mg, mf = sum(r["misses"] for r in g), sum(r["misses"] for r in f)
print("total: governor %d misses in %d runs, fixed largest %d: %.1fx fewer with the governor"
      % (mg, len(g), mf, mf / max(1, mg)))
shares = ", ".join("%.1f %%" % (100 * r["unloaded_on_largest"]) for r in g)
steps = ", ".join(str(r["steps"]) for r in g)
print("governor: unloaded-phase frames on the largest model %s; steps %s" % (shares, steps))
print("ladder of the first governor run (name, p10, p50, p99 ms, memory bytes): %s" % g[0]["ladder"])
PY

[ "${MEMORY:-1}" = 1 ] || exit 0
echo "== memory: the daemon's RSS by governor.keep_loaded (no load, largest rung serving)"
for keep in none neighbours all; do
  cfg="$WORK/mem-$keep.toml" sock="$WORK/mem-$keep.sock"
  printf '[run]\nthreads = 1\n[governor]\nenabled = true\nkeep_loaded = "%s"\n' "$keep" > "$cfg"
  "$BIN" run --config "$cfg" --models "$MODELS" --source synthetic://320x240@60 --socket "$sock" \
    > /dev/null 2>&1 &
  pid=$!
  # Sampled once the top rung serves and what keep_loaded keeps is loaded (or after 60 s).
  for _ in $(seq 1 300); do
    s="$(status "$sock" 2>/dev/null || true)"
    [ -n "$s" ] && python3 -c '
import json, sys
g = json.loads(sys.argv[1])["governor"]; keep = sys.argv[2]
want = {"none": 0, "neighbours": 1, "all": g["rungs"] - 1}[keep]
ok = g["rung"] is not None and g["rung"] == g["rungs"] - 1 and sum(r["loaded"] for r in g["ladder"]) - 1 == want
sys.exit(0 if ok else 1)' "$s" "$keep" 2>/dev/null && break
    sleep 0.2
  done
  sleep 3
  python3 -c '
import json, sys
v = json.loads(sys.argv[1]); g = v["governor"]
print("keep_loaded = %-10s: RSS %.1f MiB, serving %s, kept loaded beside it %.1f MiB (%d engines)" % (
    sys.argv[2], v["system"]["rss_bytes"] / 1048576, g["model"], g["kept_loaded_bytes"] / 1048576,
    sum(r["loaded"] for r in g["ladder"]) - 1))' \
    "$(status "$sock")" "$keep"
  kill -INT "$pid"
  wait "$pid" || true
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
