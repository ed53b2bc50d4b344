#!/usr/bin/env bash
# CPU a daemon spends on an exec:// meter that prints as fast as it can (`yes 5.0`), the case of
# issue 18 item 12 (113 % of a core before the meter was sampled). Not in CI: it prints figures.
#
#   scripts/bench_exec_meter.sh [SECONDS] [BINARY]      (default 10 s, target/release/rtinfer)
#
# Prints the daemon's CPU (user+system over the window, % of one core) and the meter command's.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
BIN=${2:-target/release/rtinfer}
: "${ORT_DYLIB_PATH:=$PWD/.cache/onnxruntime/x86_64/libonnxruntime.so.1.31.1}"
export ORT_DYLIB_PATH
DIR=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$DIR"' EXIT
cat >"$DIR/c.toml" <<TOML
[run]
source = "synthetic://64x48@30"
[power]
meter = "exec://"
command = ["yes", "5.0"]
idle_watts = 1.0
[models]
watch_dir = "$DIR/models"
TOML
"$BIN" run --config "$DIR/c.toml" --socket "$DIR/s.sock" >/dev/null 2>&1 &
PID=$!
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
YES=$(pgrep -P "$PID" yes | head -1)
d0=$(ticks "$PID"); y0=$(ticks "$YES")
sleep "$SECS"
d1=$(ticks "$PID"); y1=$(ticks "$YES")
HZ=$(getconf CLK_TCK)
awk -v d=$((d1 - d0)) -v y=$((y1 - y0)) -v hz="$HZ" -v s="$SECS" 'BEGIN {
  printf "daemon: %.1f %% of a core; meter command (yes): %.1f %% of a core, over %d s\n",
    100 * d / hz / s, 100 * y / hz / s, s }'
