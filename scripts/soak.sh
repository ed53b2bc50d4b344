#!/usr/bin/env bash
# Soak test (not in CI): one daemon for a long time under everything that changes at run time.
#
#   scripts/soak.sh [SECONDS] [OUT_DIR]       (default 3600 s, .cache/soak/<date>/)
#
# 60 FPS synthetic source, two small zoo models swapped by an atomic rename every 30 s, a SIGHUP
# every 10 s (alternating run.budget_ms), a status poller (1 Hz), a results subscriber (GET
# /results when the daemon serves it, else a reader following the --results file), an exec://
# meter. Every minute RSS, threads, fds and the frame counters are sampled into soak.csv. At the
# end it prints: RSS growth per hour after the first 10 minutes (least squares over the samples),
# thread and fd ranges, the counter invariant (captured == processed + dropped + cancelled +
# in_flight) at every sample, and whether the daemon was still alive (0 crashes). Exit 1 when a
# target is missed: RSS growth >= 1 MiB/h, thread or fd growth after 10 min, an invariant
# violation, or a dead daemon.
#
# RTINFER=path/to/rtinfer overrides the binary (default target/release/rtinfer, built if missing).
# `scripts/soak.sh --report OUT_DIR` prints the figures of a finished soak again.
set -euo pipefail
cd "$(dirname "$0")/.."

report() { # CSV ALIVE RC OUT
    python3 - "$@" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
alive, rc, out = sys.argv[2], int(sys.argv[3]), sys.argv[4]
late_all = [r for r in rows if int(r["t_s"]) >= 600]
# A sample taken while a model loads (a load's worker thread alive: more threads than the floor)
# counts the engine being built beside the serving one; RSS is fitted over the others.
floor = min((int(r["threads"]) for r in late_all), default=0)
late = [r for r in late_all if int(r["threads"]) == floor]
def slope(rs):
    if len(rs) < 2:
        return float("nan")
    xs = [int(r["t_s"]) / 3600 for r in rs]; ys = [int(r["rss_kib"]) / 1024 for r in rs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
g = slope(late)
rng = lambda k, rs: (min(int(r[k]) for r in rs), max(int(r[k]) for r in rs)) if rs else (0, 0)
thr, fds = rng("threads", late_all), rng("fds", late_all)
# Growth: the floor (least count) of the last third above the floor of the first third. A sample
# taken while a load runs sees its worker thread and the model file's fd (a transient +1); a leak
# raises the floor.
third = max(1, len(late) // 3)
third = max(1, len(late_all) // 3)
grow = lambda k: (min(int(r[k]) for r in late_all[-third:]) - min(int(r[k]) for r in late_all[:third])) if late_all else 0
thr_growth, fd_growth = grow("threads"), grow("fds")
bad = [r for r in rows if r["invariant"] != "ok"]
last = rows[-1]
print(f"samples {len(rows)} over {last['t_s']} s; RSS first {rows[0]['rss_kib']} KiB, at 10 min "
      f"{late[0]['rss_kib'] if late else '-'} KiB, last {last['rss_kib']} KiB")
print(f"RSS growth after 10 min: {g:.3f} MiB/h (least squares over {len(late)} samples; "
      f"{len(late_all) - len(late)} taken during a load left out; all samples: "
      f"{slope(late_all):.3f} MiB/h)")
print(f"threads after 10 min: {thr[0]}..{thr[1]} (growth {thr_growth}); fds after 10 min: "
      f"{fds[0]}..{fds[1]} (growth {fd_growth})")
print(f"swaps: ok {last['swaps_ok']} rejected {last['swaps_rejected']}")
print(f"invariant: {len(rows) - len(bad)}/{len(rows)} samples ok")
print(f"frames: captured {last['captured']} processed {last['processed']} dropped {last['dropped']} "
      f"cancelled {last['cancelled']}")
print(f"daemon alive at the end: {alive}; exit code after SIGTERM: {rc}")
try:
    print("poller failures:", sum(1 for _ in open(f"{out}/poller.err")))
except FileNotFoundError:
    print("poller failures: 0")
ok = g < 1.0 and thr_growth <= 0 and fd_growth <= 0 and not bad and alive == "yes" and rc == 0
print("soak:", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
EOF
}
if [ "${1:-}" = --report ]; then
    D=${2:?usage: scripts/soak.sh --report OUT_DIR}
    report "$D/soak.csv" "$(cat "$D/alive" 2>/dev/null || echo unknown)" "$(cat "$D/rc" 2>/dev/null || echo 0)" "$D"
    exit $?
fi
SECS=${1:-3600}
OUT=${2:-.cache/soak/$(date +%Y%m%d-%H%M%S)}
BIN=${RTINFER:-target/release/rtinfer}
if [ ! -x "$BIN" ]; then nice cargo build --release; fi
: "${ORT_DYLIB_PATH:=$PWD/.cache/onnxruntime/x86_64/libonnxruntime.so.1.31.1}"
export ORT_DYLIB_PATH

mkdir -p "$OUT/models" "$OUT/stage"
OUT=$(cd "$OUT" && pwd)
# The binary is copied so a rebuild during the soak does not replace it under the daemon.
cp "$BIN" "$OUT/rtinfer"
BIN=$OUT/rtinfer
SOCK=$OUT/status.sock
CFG=$OUT/rtinfer.toml
CSV=$OUT/soak.csv

"$BIN" zoo --arch mobilenetv2 --dataset cifar10 --ratio 0.25 --seed 1 -o "$OUT/stage/a.onnx" >/dev/null
"$BIN" zoo --arch mobilenetv2 --dataset cifar10 --ratio 0.25 --seed 2 -o "$OUT/stage/b.onnx" >/dev/null
cp "$OUT/stage/a.onnx" "$OUT/models/a.onnx"

write_config() { # $1 = budget_ms
    cat >"$CFG.new" <<EOF
[run]
source = "synthetic://160x120@60"
fps = 60.0
budget_ms = $1
warmup = 5
results = "$OUT/results.jsonl"

[status]
socket = "$SOCK"

[models]
watch_dir = "$OUT/models"

[power]
meter = "exec://?regex=(?P<watts>[0-9.]+)"
command = ["sh", "-c", "while :; do echo 5.0; sleep 0.1; done"]
idle_watts = 4.0

[log]
level = "info"
EOF
    mv "$CFG.new" "$CFG"
}
write_config 16.67
"$BIN" check-config "$CFG" >/dev/null

nohup "$BIN" run --config "$CFG" >"$OUT/daemon.log" 2>&1 &
PID=$!
echo "soak: daemon pid $PID, $SECS s, output in $OUT"
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done

get() { curl -sf --max-time 5 --unix-socket "$SOCK" "http://localhost$1"; }
# Each helper runs in its own process group (job control on) so stopping it ends its children too.
set -m
HELPERS=()
stop_helpers() {
    for p in "${HELPERS[@]}"; do kill -- "-$p" 2>/dev/null || true; done
    HELPERS=()
}
cleanup() {
    stop_helpers
    kill -TERM "$PID" 2>/dev/null || true
}
trap cleanup EXIT

# Status poller: 1 Hz, failures counted.
(while :; do get /status >/dev/null || echo "$(date +%s) status poll failed" >>"$OUT/poller.err"; sleep 1; done) &
HELPERS+=($!)
# Results subscriber.
if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --unix-socket "$SOCK" http://localhost/results || true)" = 200 ]; then
    (curl -sN --unix-socket "$SOCK" http://localhost/results | wc -l >"$OUT/subscriber.lines") &
    echo "soak: subscribed to GET /results"
else
    (tail -n0 -F "$OUT/results.jsonl" 2>/dev/null | wc -l >"$OUT/subscriber.lines") &
    echo "soak: following the --results file (no GET /results on this daemon)"
fi
HELPERS+=($!)
# Swapper: a model every 30 s, atomically renamed in, alternating a/b (same name replaced).
(n=0; while :; do
    sleep 30; n=$((n + 1)); m=$([ $((n % 2)) = 1 ] && echo b || echo a)
    cp "$OUT/stage/$m.onnx" "$OUT/models/.$m.onnx.tmp" && mv "$OUT/models/.$m.onnx.tmp" "$OUT/models/$m.onnx"
done) &
HELPERS+=($!)
# Reloader: a SIGHUP every 10 s, the budget alternating.
(n=0; while :; do
    sleep 10; n=$((n + 1)); write_config "$([ $((n % 2)) = 1 ] && echo 20 || echo 16.67)"
    kill -HUP "$PID" 2>/dev/null || exit 0
done) &
HELPERS+=($!)

echo "t_s,rss_kib,threads,fds,state,captured,processed,dropped,cancelled,in_flight,invariant,swaps_ok,swaps_rejected" >"$CSV"
T0=$(date +%s)
sample() {
    local t rss thr fds js
    t=$(($(date +%s) - T0))
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status")
    thr=$(awk '/^Threads/ {print $2}' "/proc/$PID/status")
    fds=$(find "/proc/$PID/fd" -mindepth 1 -maxdepth 1 | wc -l)
    # Counters and the state from one /status answer (one snapshot under the slot's lock).
    js=$(get /status | jq -r '[.state, .frames.captured, .frames.processed, .frames.dropped,
        .frames.cancelled, .frames.in_flight,
        (if .frames.captured == .frames.processed + .frames.dropped + .frames.cancelled + .frames.in_flight
         then "ok" else "VIOLATED" end)] | @csv' | tr -d '"') || js="unanswered,,,,,,unanswered"
    local m ok rej
    m=$(get /metrics || true)
    ok=$(echo "$m" | awk '/^rtinfer_swaps_total\{result="ok"\}/ {print $2}')
    rej=$(echo "$m" | awk '/^rtinfer_swaps_total\{result="rejected"\}/ {print $2}')
    echo "$t,$rss,$thr,$fds,$js,$ok,$rej" >>"$CSV"
}
sample
while [ $(($(date +%s) - T0)) -lt "$SECS" ]; do
    sleep 60
    kill -0 "$PID" 2>/dev/null || break
    sample
done

ALIVE=yes
kill -0 "$PID" 2>/dev/null || ALIVE=no
stop_helpers
kill -TERM "$PID" 2>/dev/null || true
RC=0
wait "$PID" || RC=$?
trap - EXIT

echo "$ALIVE" >"$OUT/alive"
echo "$RC" >"$OUT/rc"
report "$CSV" "$ALIVE" "$RC" "$OUT"
