#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/fuzz_targets/) for N minutes and prints, per target, the
# executions libFuzzer made and whether it found a crash. Not part of scripts/test.sh (CI replays
# the committed seeds and regressions on stable instead: `cargo test -p rtinfer-fuzz`).
#
#   scripts/fuzz.sh [MINUTES] [TARGET...]    # default: 10 minutes, every target
#
# Needs the nightly toolchain and cargo-fuzz (installed here when missing: rustup, crates.io).
# The committed seeds (fuzz/seeds/<target>/) and regressions are read, never written; what the
# fuzzer finds goes to .cache/fuzz/corpus/<target>/ and a crashing input to
# .cache/fuzz/artifacts/<target>/ (both git-ignored). A crash becomes a file under
# fuzz/regressions/<target>/ plus a named test beside the fix.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MINUTES="${1:-10}"
[ $# -gt 0 ] && shift
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi
CACHE="$ROOT/.cache/fuzz"
echo "fuzz: building ${TARGETS[*]} (nightly, AddressSanitizer)" >&2
for t in "${TARGETS[@]}"; do
  nice cargo +nightly fuzz build "$t" >&2
done
printf '%-8s %8s %14s %10s %8s  %s\n' target minutes executions "exec/s" corpus result
for t in "${TARGETS[@]}"; do
  mkdir -p "$CACHE/corpus/$t" "$CACHE/artifacts/$t" "$CACHE/logs"
  log="$CACHE/logs/$t.log"
  dirs=("$CACHE/corpus/$t" "fuzz/seeds/$t")
  [ -d "fuzz/regressions/$t" ] && dirs+=("fuzz/regressions/$t")
  before=$(ls "$CACHE/artifacts/$t" | wc -l)
  status=0
  nice cargo +nightly fuzz run "$t" "${dirs[@]}" -- \
    -max_total_time=$((MINUTES * 60)) -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$CACHE/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -n1)
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log" | tail -n1)
  corpus=$(ls "$CACHE/corpus/$t" | wc -l)
  after=$(ls "$CACHE/artifacts/$t" | wc -l)
  if [ "$status" = 0 ] && [ "$after" = "$before" ]; then
    result="no crash"
  else
    result="CRASH (exit $status): $(ls -t "$CACHE/artifacts/$t" | head -n1) — see $log"
  fi
  printf '%-8s %8s %14s %10s %8s  %s\n' "$t" "$MINUTES" "${execs:-?}" "${rate:-?}" "$corpus" "$result"
done
