#!/usr/bin/env bash
# Cross-builds rtinfer for aarch64 boards against glibc 2.31 (JetPack 5 / Ubuntu 20.04 and newer),
# checks the binary's GLIBC symbol versions, and smoke-tests it under qemu-user with the aarch64
# ONNX Runtime: `zoo` a small model, `run` it for a few seconds, query its status.
#   scripts/cross.sh            # build + glibc check + qemu smoke test + frame path checks
#   scripts/cross.sh --frame-path   # only the frame path checks (NEON kernels, see below)
#   GLIBC=2.31 TARGET_ARCH=x86_64 scripts/cross.sh --build-only   # the amd64 build for packages
#
# Frame path checks: the preprocessing unit tests and `tests::frame_path` (every layout against
# the reference, NEON against the portable kernels) built for aarch64 and run under qemu; the
# frame path benchmark under qemu, whose tensor hashes must equal the host's (integer kernels:
# NEON, AVX2, SSE4.1 and portable code give the same bits); and the NEON instructions objdump
# finds in the kernels. qemu timings are emulation, not board timings: only the hashes count.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GLIBC="${GLIBC:-2.31}"
ARCH="${TARGET_ARCH:-aarch64}"
TRIPLE="$ARCH-unknown-linux-gnu"
BUILD_ONLY=0
FRAME_ONLY=0
[ "${1:-}" = "--build-only" ] && BUILD_ONLY=1
[ "${1:-}" = "--frame-path" ] && FRAME_ONLY=1
log() { echo "cross: $*" >&2; }

scripts/setup.sh --aarch64 >/dev/null
rustup target add "$TRIPLE" >/dev/null 2>&1 || true
command -v cargo-zigbuild >/dev/null || cargo install --locked cargo-zigbuild
# zig comes from PyPI (the ziglang wheel) in a private venv; cargo-zigbuild runs `python3 -m ziglang`.
ZVENV="$ROOT/.cache/zig-venv"
if [ ! -x "$ZVENV/bin/python3" ] || ! "$ZVENV/bin/python3" -c 'import ziglang' 2>/dev/null; then
  python3 -m venv "$ZVENV"
  "$ZVENV/bin/pip" install --quiet --disable-pip-version-check ziglang==0.13.0
fi
export PATH="$ZVENV/bin:$PATH"

# The v4l crate runs bindgen on <linux/videodev2.h> at build time: point clang at the target's
# kernel headers (Debian's linux-libc-dev-arm64-cross, pulled in by gcc-aarch64-linux-gnu).
# bindgen's clang gets no target headers under cargo-zigbuild; CPATH points it at Debian's ones
# for that architecture. Only bindgen reads them for layouts and constants (no C code of ours is compiled for the
# target), and the GLIBC symbol check below would catch anything linked against newer symbols.
case "$ARCH" in
  aarch64) export CPATH="/usr/aarch64-linux-gnu/include${CPATH:+:$CPATH}" ;;
  x86_64) export CPATH="/usr/include/x86_64-linux-gnu:/usr/include${CPATH:+:$CPATH}" ;;
esac
frame_path_checks() {
  # Debian's cross gcc links these (.cargo/config.toml); the checks run on the build host's glibc.
  local qemu=(env QEMU_CPU=cortex-a72 qemu-aarch64-static -L /usr/aarch64-linux-gnu)
  local json lib tests bench
  json="$(cargo test --release --target "$TRIPLE" --no-run --lib --test tests --bench frame_path \
    --message-format=json 2>/dev/null)"
  exe() { echo "$json" | python3 -c 'import json,sys
kind, name = sys.argv[1].split(":")
for l in sys.stdin:
    m = json.loads(l)
    t = m.get("target", {})
    if m.get("reason") == "compiler-artifact" and t.get("name") == name and kind in t.get("kind", []) \
            and m["profile"]["test"] and m.get("executable"):
        print(m["executable"])' "$1" | tail -1; }
  lib="$(exe lib:rtinfer)"; tests="$(exe test:tests)"; bench="$(exe bench:frame_path)"
  [ -n "$lib" ] && [ -n "$tests" ] && [ -n "$bench" ] || { log "FAIL: aarch64 test build"; exit 1; }
  log "aarch64 preprocessing unit tests (NEON against the portable kernels) under qemu"
  "${qemu[@]}" "$lib" preprocess:: --quiet
  log "aarch64 tests::frame_path (every layout, every instruction set) under qemu"
  "${qemu[@]}" "$tests" frame_path:: --quiet
  log "frame path benchmark: tensor hashes, host against aarch64 under qemu"
  local host_bench work
  host_bench="$(env -u CPATH cargo bench --bench frame_path --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "frame_path" and m.get("executable"):
        print(m["executable"])' | tail -1)"
  work="$(mktemp -d)"
  BENCH_ITERATIONS=3 "$host_bench" | awk '/^case/ {print $2, $3, $4, $5, $NF}' >"$work/host"
  BENCH_ITERATIONS=3 "${qemu[@]}" "$bench" | awk '/^case/ {print $2, $3, $4, $5, $NF}' >"$work/aarch64"
  if ! diff "$work/host" "$work/aarch64" >&2; then
    log "FAIL: the aarch64 tensors differ from the host's"
    exit 1
  fi
  log "$(wc -l <"$work/host") tensors equal on $(uname -m) and aarch64 (NEON)"
  rm -rf "$work"
  log "NEON instructions in the kernels (aarch64-linux-gnu-objdump of the benchmark binary):"
  aarch64-linux-gnu-objdump -d --no-show-raw-insn -C "$bench" | python3 -c 'import collections, re, sys
want = ["vertical", "horizontal", "split2", "to_rgb"]
stats, fn = collections.OrderedDict(), None
for line in sys.stdin:
    m = re.match(r"^[0-9a-f]+ <rtinfer::preprocess::kernels::(\w+)>:$", line)
    if m or re.match(r"^[0-9a-f]+ <", line):
        fn = m.group(1) if m and m.group(1) in want else None
        if fn:
            stats.setdefault(fn, collections.Counter())
        continue
    parts = line.rstrip("\n").split("\t")
    if fn and len(parts) > 2:
        c = stats[fn]
        c["all"] += 1
        if re.search(r"\bv\d+\.(8b|16b|4h|8h|2s|4s|2d)\b|\{v\d+", parts[2]):
            c["neon"] += 1
            c[parts[1].strip()] += 1
for f, c in stats.items():
    ops = [k for k, _ in c.most_common() if k not in ("all", "neon")][:8]
    neon, total, names = c["neon"], c["all"], ", ".join(ops)
    print(f"  kernels::{f}: {neon} of {total} instructions on NEON registers ({names})")
    if c["neon"] == 0:
        sys.exit(f"no NEON instruction in kernels::{f}")'
}

if [ "$FRAME_ONLY" = 1 ]; then
  frame_path_checks
  exit 0
fi

log "building $TRIPLE.$GLIBC (release)"
# zig links with its own glibc stubs of that version; the gcc linker from .cargo/config.toml is
# overridden by cargo-zigbuild.
cargo zigbuild --release --quiet --target "$TRIPLE.$GLIBC"
BIN="$ROOT/target/$TRIPLE/release/rtinfer"
ls -l "$BIN" >&2

OBJDUMP=objdump
[ "$ARCH" = aarch64 ] && OBJDUMP=aarch64-linux-gnu-objdump
NEWEST="$($OBJDUMP -T "$BIN" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -Vu | tail -n1)"
log "newest GLIBC symbol version required: $NEWEST (target $GLIBC)"
if [ "$(printf '%s\n%s\n' "$NEWEST" "$GLIBC" | sort -V | tail -n1)" != "$GLIBC" ]; then
  log "FAIL: the binary needs glibc $NEWEST > $GLIBC"
  exit 1
fi
[ "$BUILD_ONLY" = 1 ] && exit 0
[ "$ARCH" = aarch64 ] || exit 0

# Smoke test under qemu-user. ONNX Runtime 1.31 under qemu reads the host's
# /sys/devices/system/cpu cache files and crashes (a qemu artefact, not a board issue): run it in
# a private mount namespace with a tmpfs over that folder holding possible/present/online = 0-1.
LIB="$ROOT/.cache/onnxruntime/aarch64/libonnxruntime.so.1.31.1"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/smoke.sh" <<SMOKE
set -e
mount -t tmpfs none /sys/devices/system/cpu
for f in possible present online; do echo 0-1 > /sys/devices/system/cpu/\$f; done
export QEMU_CPU=cortex-a72 QEMU_LD_PREFIX=/usr/aarch64-linux-gnu ORT_DYLIB_PATH="$LIB"
Q="qemu-aarch64-static"
\$Q "$BIN" --version
\$Q "$BIN" zoo --arch mobilenetv2 --dataset cifar10 --ratio 0.25 -o "$WORK/m.onnx"
\$Q "$BIN" run --model "$WORK/m.onnx" --source synthetic://64x48@30 --duration 6 --warmup 2 \
   --budget-ms 1000 --socket "$WORK/s.sock" > "$WORK/summary.txt" 2> "$WORK/log.txt" &
PID=\$!
sleep 5
curl -sS --unix-socket "$WORK/s.sock" http://localhost/status > "$WORK/status.json" || true
wait \$PID
SMOKE
unshare -m bash "$WORK/smoke.sh"
cat "$WORK/summary.txt"
python3 - "$WORK/status.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
f, inf = s["frames"], s["latency_ms"]["inference"]
print(f"qemu aarch64 status: state {s['state']}, processed {f['processed']}, inference p50 {inf['p50']} ms")
assert f["processed"] > 0, "no frame processed under qemu"
PY
log "aarch64 smoke test passed"

frame_path_checks
log "aarch64 frame path checks passed"
