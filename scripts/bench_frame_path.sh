#!/usr/bin/env bash
# The frame path (source frame -> model tensor) against OpenCV on the same frames, same run.
#
# Frames: ffmpeg's testsrc2 written as YUYV (yuyv422), I420 (yuv420p), NV12 and RGB24 at
# 640x480, 1280x720 and 1920x1080 (into .cache/bench-frames/), and as 4:2:2 MJPEG (whose decode
# on the capture side the benchmark times too; OpenCV has no counterpart row for it). rtinfer: `cargo bench --bench
# frame_path` on those files (preprocessing straight from the source layout into 224x224 and
# 32x32 NCHW f32, stretch and letterbox, antialiased bilinear). OpenCV: cvtColor to RGB,
# resize(INTER_LINEAR), normalise into NCHW f32 (dnn.blobFromImageWithParams), one thread,
# opencv-python-headless from PyPI in .cache/venv-frame (installed here).
#
# Both measure the thread CPU time per frame (the machine is shared: wall time would count
# other processes). They run alternately, ROUNDS times (default 3); each case's figure is the
# median over rounds of the per-round medians, and the ratio is rtinfer / OpenCV (below 1:
# rtinfer is faster). Prints a table; asserts nothing.
#
# Then the daemon itself on a live 1080p60 Y4M pipe: a one-second testsrc2 clip (I420, in
# .cache/) looped by `ffmpeg -re` for PIPE_SECONDS (default 30) into `rtinfer run --source
# pipe://` with a MobileNetV2 0.25x CIFAR-10 zoo model; prints frames, misses, fps and each
# stage's p50/p99 from /status just before the stream ends. RT_PRIORITY=50 adds
# `[realtime] priority = 50` (SCHED_FIFO; root or CAP_SYS_NICE) for a second run.
#
# Env: ROUNDS, ITERATIONS (per case and round, default 200), BENCH_ISA (rtinfer's kernels:
# scalar, sse4.1, avx2; default the widest), FILTER (substring of the case names), PIPE_SECONDS
# (0 skips the daemon run), RT_PRIORITY.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS="${ROUNDS:-3}"
PIPE_SECONDS="${PIPE_SECONDS:-30}"
RT_PRIORITY="${RT_PRIORITY:-}"
ITERATIONS="${ITERATIONS:-200}"
FILTER="${FILTER:-}"
FRAMES="$ROOT/.cache/bench-frames"
VENV="$ROOT/.cache/venv-frame"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

command -v ffmpeg >/dev/null || { echo "ffmpeg missing: run scripts/setup.sh" >&2; exit 1; }
mkdir -p "$FRAMES"
for size in 640x480 1280x720 1920x1080; do
  for fmt in yuyv422 yuv420p nv12 rgb24; do
    f="$FRAMES/${fmt}_${size}.raw"
    [ -s "$f" ] || ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi \
      -i "testsrc2=size=$size:rate=1,format=rgb24" -frames:v 1 -pix_fmt "$fmt" -f rawvideo "$f"
  done
  # MJPEG as USB cameras send it: 4:2:2, the standard Huffman tables.
  f="$FRAMES/mjpeg_${size}.jpg"
  [ -s "$f" ] || ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi \
    -i "testsrc2=size=$size:rate=1,format=rgb24" -frames:v 1 -pix_fmt yuvj422p -c:v mjpeg \
    -huffman default -q:v 3 "$f"
done

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import cv2' 2>/dev/null; then
  echo "creating $VENV with opencv-python-headless" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    opencv-python-headless==5.1.0.95 numpy==2.4.6
fi

echo "building the benchmark (release)..." >&2
nice cargo bench --bench frame_path --no-run --quiet 2>/dev/null
BIN="$(cargo bench --bench frame_path --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "frame_path" and m.get("executable"):
        print(m["executable"])' | tail -1)"

for r in $(seq 1 "$ROUNDS"); do
  echo "round $r/$ROUNDS: rtinfer" >&2
  FRAME_DIR="$FRAMES" BENCH_ITERATIONS="$ITERATIONS" BENCH_FILTER="$FILTER" "$BIN" >"$OUT/rt.$r"
  echo "round $r/$ROUNDS: opencv" >&2
  "$VENV/bin/python" scripts/bench_frame_path.py "$FRAMES" "$ITERATIONS" "$FILTER" >"$OUT/cv.$r"
done

python3 - "$OUT" "$ROUNDS" <<'EOF'
import statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def read(prefix):
    cases, header = {}, ""
    for r in range(1, rounds + 1):
        for line in open(f"{out}/{prefix}.{r}"):
            if line.startswith("#"):
                header = line[2:].strip()
            elif line.startswith("case "):
                parts = line.split()
                name = " ".join(parts[1:5])
                cases.setdefault(name, []).append(float(parts[parts.index("median_ms") + 1]))
    return header, {k: statistics.median(v) for k, v in cases.items()}
rt_head, rt = read("rt")
cv_head, cv = read("cv")
print(f"rtinfer: {rt_head}; {cv_head}; median of {rounds} rounds of per-case medians,")
print("thread CPU time per frame (ms); ratio = rtinfer / OpenCV")
print()
print(f"| {'case':<40} | rtinfer | OpenCV | ratio |")
print(f"|{'-' * 42}|---------|--------|-------|")
worst = {}
for name, ms in rt.items():
    if name not in cv or name.startswith("mjpeg"):
        continue
    ratio = ms / cv[name]
    fmt = name.split()[0]
    worst[fmt] = max(worst.get(fmt, 0.0), ratio)
    print(f"| {name:<40} | {ms:7.3f} | {cv[name]:6.3f} | {ratio:5.2f} |")
print()
for fmt, r in worst.items():
    print(f"largest ratio {fmt}: {r:.2f}")
print("(rgb24 is not a camera layout: OpenCV converts nothing, and INTER_LINEAR reads 2x2 pixels")
print(" per output where the antialiased filter reads its whole footprint.)")
print()
print("MJPEG 4:2:2 (ffmpeg -huffman default -q:v 3): rtinfer decodes planar YCbCr (zune: the")
print("fallback); OpenCV's imdecode (libjpeg-turbo, SIMD) also upsamples chroma and converts to BGR.")
print("224x224: decode (at the DCT scale that keeps 224) + resize + normalise; ratio = rtinfer / OpenCV")
print()
print(f"| {'case':<40} | rtinfer | OpenCV | ratio |")
print(f"|{'-' * 42}|---------|--------|-------|")
for name in sorted({n for n in list(rt) + list(cv) if n.startswith("mjpeg")},
                   key=lambda n: (int(n.split()[1].split("x")[0]), n.split()[2], n.split()[3])):
    a, b = rt.get(name), cv.get(name)
    cell = lambda v: f"{v:7.3f}" if v is not None else "      -"
    ratio = f"{a / b:5.2f}" if a is not None and b is not None else "    -"
    print(f"| {name:<40} | {cell(a)} | {cell(b)[1:]} | {ratio} |")
EOF

[ "$PIPE_SECONDS" = 0 ] && exit 0
export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$ROOT/.cache/onnxruntime/$(uname -m)/libonnxruntime.so.1.31.1}"
echo "building the daemon (release)..." >&2
nice cargo build --release --quiet
RT="$ROOT/target/release/rtinfer"
CLIP="$FRAMES/testsrc2_1080p60_1s.y4m"
[ -s "$CLIP" ] || ffmpeg -hide_banner -loglevel error -nostdin -y -f lavfi \
  -i "testsrc2=size=1920x1080:rate=60,format=rgb24" -frames:v 60 -pix_fmt yuv420p \
  -f yuv4mpegpipe "$CLIP"
"$RT" zoo --arch mobilenetv2 --dataset cifar10 --ratio 0.25 -o "$OUT/model.onnx" >/dev/null

pipe_run() {
  local label="$1" config="$2"
  local sock="$OUT/status.sock"
  rm -f "$sock"
  echo "daemon on a 1080p60 Y4M pipe for ${PIPE_SECONDS} s ($label)..." >&2
  ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -t "$PIPE_SECONDS" \
    -f yuv4mpegpipe - 2>/dev/null \
    | "$RT" run --source pipe:// --model "$OUT/model.onnx" --socket "$sock" $config \
      >"$OUT/summary.txt" 2>"$OUT/log.txt" &
  local pid=$!
  sleep "$((PIPE_SECONDS - 2))"
  curl -sS --unix-socket "$sock" http://localhost/status >"$OUT/status.json"
  wait "$pid" || true
  python3 - "$OUT/status.json" "$label" <<'EOF2'
import json, sys
s, label = json.load(open(sys.argv[1])), sys.argv[2]
f, l = s["frames"], s["latency_ms_lifetime"]
src = s["source"]
print(f"\n1080p60 Y4M pipe ({src['width']}x{src['height']}, {label}): captured {f['captured']}, "
      f"processed {f['processed']}, missed {f['missed_deadline']}, dropped {f['dropped']}, "
      f"fps {s['fps']:.1f}, budget {s['budget_ms']} ms")
print("| stage | p50 ms | p99 ms | max ms | mean ms |")
print("|---|---|---|---|---|")
for stage in ["end_to_end", "capture", "queue", "preprocess", "inference", "postprocess"]:
    p = l[stage]
    print(f"| {stage} | {p['p50']:.3f} | {p['p99']:.3f} | {p['max']:.3f} | {p['mean']:.3f} |")
chain = sum(l[x]["mean"] for x in ["capture", "queue", "preprocess", "inference", "postprocess"])
print(f"stages' means add up to {chain:.3f} ms, end_to_end mean {l['end_to_end']['mean']:.3f} ms")
EOF2
}

pipe_run "default scheduling" ""
if [ -n "$RT_PRIORITY" ]; then
  printf '[realtime]\npriority = %s\n' "$RT_PRIORITY" >"$OUT/rt.toml"
  pipe_run "realtime.priority = $RT_PRIORITY" "--config $OUT/rt.toml"
fi
