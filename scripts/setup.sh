#!/usr/bin/env bash
# Sets up everything rtinfer's build, demo and tests need on a fresh Debian 12 machine whose only
# network is the package registries (Debian, PyPI, crates.io). Idempotent and fast when cached.
#
#   scripts/setup.sh            # Debian packages (when missing) + ONNX Runtime for this host
#   scripts/setup.sh --aarch64  # also the aarch64 library (for cross builds and qemu tests)
#   scripts/setup.sh --ort-only # only the ONNX Runtime libraries (no apt)
#
# ONNX Runtime comes from the `onnxruntime==1.31.1` PyPI wheel (it carries
# onnxruntime/capi/libonnxruntime.so.1.31.1) into .cache/onnxruntime/<arch>/, which git ignores.
# The CUDA runtime headers the real-SDK compile checks need (scripts/check_sdk_headers.sh) come
# from the `nvidia-cuda-runtime-cu12` and `nvidia-cuda-nvcc-cu12` 12.6.77 wheels into
# .cache/cuda-12.6.77/include/ (headers only: nothing of CUDA runs here).
set -euo pipefail

ORT_VERSION=1.31.1
RAPIDOCR_VERSION=1.4.4
CUDA_HEADERS_VERSION=12.6.77
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
WANT_AARCH64=0
APT=1
for arg in "$@"; do
  case "$arg" in
    --aarch64) WANT_AARCH64=1 ;;
    --ort-only) APT=0 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

log() { echo "setup: $*" >&2; }

# Debian packages the demo and tests use: ffmpeg (a real Y4M client), curl (a real socket client),
# unzip (to open the wheel). Installed only when a command is missing.
install_debs() {
  local missing=()
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  command -v curl >/dev/null || missing+=(curl)
  command -v unzip >/dev/null || missing+=(unzip)
  command -v systemd-analyze >/dev/null || missing+=(systemd)
  # The MJPEG decoder's tests encode restart intervals, progressive and arithmetic JPEGs (cjpeg).
  command -v cjpeg >/dev/null || missing+=(libjpeg-turbo-progs)
  # Debian's python3 has the venv module but not ensurepip (python3-venv) nor pip (python3-pip,
  # which downloads the ONNX Runtime wheel).
  python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  # The tests compile C doubles (fake DPU, fake camera: cc), the TensorRT layer against its
  # double (c++), and check the committed bindings (libclang).
  command -v cc >/dev/null || missing+=(gcc)
  command -v c++ >/dev/null || missing+=(g++)
  compgen -G "/usr/lib/llvm-*/lib/libclang.so" >/dev/null || missing+=(libclang-dev)
  # The Vitis AI headers the VART shim is compile-checked against include glog.
  [ -f /usr/include/glog/logging.h ] || missing+=(libgoogle-glog-dev)
  # Issue 17's tests: promtool (the metrics and rules linters, in Debian's prometheus package), a
  # real MQTT broker, headless chromium + chromedriver for the page, an RTSP server fed by ffmpeg.
  command -v promtool >/dev/null || missing+=(prometheus)
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  # The RTSP server of tests/rtsp_server.py: gst-rtsp-server through python3-gi (udpsrc and the
  # RTP (de)payloaders are in plugins-good, h264parse in plugins-bad).
  /usr/bin/python3 -c 'import gi; gi.require_version("GstRtspServer", "1.0")' >/dev/null 2>&1 \
    || missing+=(gir1.2-gst-rtsp-server-1.0 python3-gi)
  [ -f /usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstrtp.so ] \
    || [ -n "$(find /usr/lib -name libgstrtp.so -path '*gstreamer-1.0*' 2>/dev/null | head -n1)" ] \
    || missing+=(gstreamer1.0-plugins-good)
  [ -n "$(find /usr/lib -name libgstvideoparsersbad.so -path '*gstreamer-1.0*' 2>/dev/null | head -n1)" ] \
    || missing+=(gstreamer1.0-plugins-bad)
  if [ "$WANT_AARCH64" = 1 ]; then
    command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu)
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    # prometheus and mosquitto ship services: the tests start their own on loopback, so none is
    # started by the install (policy-rc.d 101 = "not now"; an existing policy is left alone).
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
      $sudo chmod 755 "$policy"
      own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "$own_policy" = 1 ]; then $sudo rm -f "$policy"; fi
  fi
}

# fetch_ort ARCH PIP_PLATFORM: the wheel's shared library into .cache/onnxruntime/ARCH/.
fetch_ort() {
  local arch="$1" platform="$2"
  local dest="$CACHE/onnxruntime/$arch"
  local lib="$dest/libonnxruntime.so.$ORT_VERSION"
  if [ -s "$lib" ]; then
    log "ONNX Runtime $ORT_VERSION ($arch) cached: $lib"
    return
  fi
  mkdir -p "$dest" "$CACHE/wheels"
  local wheel
  wheel="$(ls "$CACHE"/wheels/onnxruntime-"$ORT_VERSION"-*"$platform"*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$wheel" ]; then
    log "downloading onnxruntime==$ORT_VERSION wheel for $platform from PyPI"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --platform "$platform" --python-version 3.11 \
      -d "$CACHE/wheels" "onnxruntime==$ORT_VERSION"
    wheel="$(ls "$CACHE"/wheels/onnxruntime-"$ORT_VERSION"-*"$platform"*.whl | head -n1)"
  fi
  local tmp; tmp="$(mktemp -d)"
  unzip -q -o "$wheel" "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" -d "$tmp"
  mv "$tmp/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$lib.part"
  mv "$lib.part" "$lib"
  rm -rf "$tmp"
  log "ONNX Runtime $ORT_VERSION ($arch): $lib"
}

# fetch_cuda_headers: the CUDA runtime headers of two PyPI wheels (runtime: cuda_runtime_api.h and
# friends; nvcc: crt/host_defines.h, which they include) into .cache/cuda-VERSION/include/, for the
# compile checks of cpp/trt_engine.cc against the real TensorRT headers. Headers only, so the
# x86_64 wheels serve any host.
fetch_cuda_headers() {
  local v="$CUDA_HEADERS_VERSION"
  local dest="$CACHE/cuda-$v/include"
  if [ -s "$dest/cuda_runtime_api.h" ] && [ -s "$dest/crt/host_defines.h" ]; then
    log "CUDA $v runtime headers cached: $dest"
    return
  fi
  mkdir -p "$CACHE/wheels"
  local pkg wheels=()
  for pkg in nvidia_cuda_runtime_cu12 nvidia_cuda_nvcc_cu12; do
    local w
    w="$(ls "$CACHE"/wheels/"$pkg"-"$v"-*manylinux2014_x86_64.whl 2>/dev/null | head -n1 || true)"
    if [ -z "$w" ]; then
      log "downloading ${pkg//_/-}==$v wheel from PyPI (headers only are kept)"
      python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux2014_x86_64 --python-version 3.11 \
        -d "$CACHE/wheels" "${pkg//_/-}==$v"
      w="$(ls "$CACHE"/wheels/"$pkg"-"$v"-*manylinux2014_x86_64.whl | head -n1)"
    fi
    wheels+=("$w")
  done
  local tmp; tmp="$(mktemp -d)"
  unzip -q -o "${wheels[0]}" 'nvidia/cuda_runtime/include/*' -d "$tmp"
  unzip -q -o "${wheels[1]}" 'nvidia/cuda_nvcc/include/crt/*' -d "$tmp"
  rm -rf "$dest.part"
  mkdir -p "$dest.part"
  cp -r "$tmp"/nvidia/cuda_runtime/include/. "$dest.part"/
  cp -r "$tmp"/nvidia/cuda_nvcc/include/crt "$dest.part"/
  rm -f "$dest.part/__init__.py"
  rm -rf "$dest" "$tmp"
  mv "$dest.part" "$dest"
  log "CUDA $v runtime headers: $dest"
}

# A private Python venv for test tools: prometheus_client's parser checks /metrics.
python_tools() {
  local venv="$CACHE/venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import prometheus_client' 2>/dev/null; then
    log "creating $venv with prometheus_client"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check prometheus_client==0.21.1
  fi
}

# Third-party pretrained models for the tests of models as users bring them (issue 15): PaddleOCR's
# text-direction classifier (cls, ends in Softmax, dims [?, 3, ?, ?]) and text detector (det, a
# DB probability map) exactly as the rapidocr-onnxruntime wheel ships them, into
# .cache/models/rapidocr-VERSION/ (git ignores it; nothing is fetched at run time).
fetch_models() {
  local dest="$CACHE/models/rapidocr-$RAPIDOCR_VERSION"
  local cls=ch_ppocr_mobile_v2.0_cls_infer.onnx det=ch_PP-OCRv4_det_infer.onnx
  if [ -s "$dest/$cls" ] && [ -s "$dest/$det" ]; then
    log "rapidocr $RAPIDOCR_VERSION models cached: $dest"
    return
  fi
  mkdir -p "$dest" "$CACHE/wheels"
  local wheel
  wheel="$(ls "$CACHE"/wheels/rapidocr_onnxruntime-"$RAPIDOCR_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
  if [ -z "$wheel" ]; then
    log "downloading rapidocr-onnxruntime==$RAPIDOCR_VERSION wheel from PyPI (its two models are kept)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      -d "$CACHE/wheels" "rapidocr-onnxruntime==$RAPIDOCR_VERSION"
    wheel="$(ls "$CACHE"/wheels/rapidocr_onnxruntime-"$RAPIDOCR_VERSION"-*.whl | head -n1)"
  fi
  local m
  for m in "$cls" "$det"; do
    unzip -p "$wheel" "rapidocr_onnxruntime/models/$m" > "$dest/$m.part"
    mv "$dest/$m.part" "$dest/$m"
  done
  log "rapidocr $RAPIDOCR_VERSION models: $dest"
}

# The reference the model tests compare with: ONNX Runtime's own Python API (the same 1.31.1
# wheel as the library), numpy, and onnx (to count initializer and Constant-node weights).
python_models() {
  local venv="$CACHE/venv-models"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnxruntime, numpy, onnx' 2>/dev/null; then
    local wheel
    wheel="$(ls "$CACHE"/wheels/onnxruntime-"$ORT_VERSION"-*"$(uname -m)"*.whl | head -n1)"
    log "creating $venv with onnxruntime $ORT_VERSION, numpy and onnx"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" \
      numpy==2.4.6 onnx==1.20.1
  fi
}

# The references of tests/preprocess_reference.rs: Pillow's and OpenCV's resize and numpy, the
# versions pinned (scripts/bench_frame_path.sh times OpenCV from the same venv).
python_frame() {
  local venv="$CACHE/venv-frame"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import cv2, PIL, numpy' 2>/dev/null; then
    log "creating $venv with opencv-python-headless, Pillow and numpy"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      opencv-python-headless==5.1.0.95 pillow==13.0.0 numpy==2.4.6
  fi
}

[ "$APT" = 1 ] && install_debs
[ "$APT" = 1 ] && python_tools
[ "$APT" = 1 ] && python_frame
case "$(uname -m)" in
  x86_64) fetch_ort x86_64 manylinux_2_28_x86_64 ;;
  aarch64) fetch_ort aarch64 manylinux_2_28_aarch64 ;;
  *) log "no onnxruntime wheel for $(uname -m); set onnxruntime.library to your own build" ;;
esac
if [ "$WANT_AARCH64" = 1 ] && [ "$(uname -m)" != aarch64 ]; then
  fetch_ort aarch64 manylinux_2_28_aarch64
fi
if [ "$APT" = 1 ]; then fetch_cuda_headers; fi
if [ "$APT" = 1 ]; then fetch_models; python_models; fi
