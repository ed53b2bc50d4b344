#!/usr/bin/env bash
# The import direction of docs/ARCHITECTURE.md ("Import direction"), checked with grep: prints
# every `crate::` path that points the wrong way, and fails when it printed anything.
#
#   main → daemon → {pipeline, capture, models, governor, status, power, systemd, signals, system,
#                    mqtt}
#        → {backend, source, preprocess, postprocess, slot, stats, tensor, time, rt, watchdog,
#           misslog, state, invalid_key, units, causes} → onnx
#   study → {backend, preprocess, source, config, onnx, power, tensor, time}; nothing imports study
#   config → option types (and their Raw sections) only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LOW=(src/backend src/source src/preprocess src/slot.rs src/stats.rs src/tensor.rs src/time.rs
  src/postprocess.rs src/postprocess src/rt.rs src/rt src/watchdog.rs src/misslog.rs src/state.rs src/invalid_key.rs src/units.rs src/causes.rs)
MID=(src/pipeline.rs src/capture.rs src/models src/governor src/status src/power src/systemd.rs
  src/signals.rs src/system.rs src/mqtt.rs)
ABOVE_LOW='daemon|config|study|pipeline|capture|models|governor|status|power|systemd|signals|system|mqtt'

wrong=$(
  {
    # Nothing but the CLI edge imports the study's tooling.
    grep -rnE 'crate::study\b' src --include='*.rs' --exclude-dir=study || true
    # onnx/ is the bottom: the format module imports nothing else of the crate.
    grep -rnE 'crate::[a-z_]+' src/onnx | grep -vE 'crate::onnx\b' || true
    # The low layer imports nothing above it.
    grep -rnE "crate::($ABOVE_LOW)\b" "${LOW[@]}" || true
    # The threads and services import neither the daemon, the configuration nor the tooling.
    grep -rnE 'crate::(daemon|config|study)\b' "${MID[@]}" || true
    # config imports option types: no module that runs, and no function of another module.
    grep -nE 'crate::(daemon|study|capture|status|systemd|signals|system|stats|slot)\b' \
      src/config.rs || true
    grep -nE 'crate::[a-z_]+(::[a-z_]+)*::[a-z_]+\(' src/config.rs || true
    # The tooling uses the runtime's parts, never the daemon or its threads.
    grep -rnE 'crate::(daemon|capture|models|governor|status|systemd|signals|pipeline|slot)\b' src/study ||
      true
  } | sort -u
)
if [ -n "$wrong" ]; then
  echo "imports against the direction of docs/ARCHITECTURE.md:" >&2
  echo "$wrong"
  exit 1
fi
