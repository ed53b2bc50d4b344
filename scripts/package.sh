#!/usr/bin/env bash
# Builds the release packages into target/packages/:
#   rtinfer_VERSION_amd64.deb, rtinfer_VERSION_arm64.deb (cargo-deb; binaries for glibc 2.31 via
#   cargo zigbuild, ONNX Runtime 1.31.1 of that architecture in /usr/lib/rtinfer/), and
#   rtinfer-VERSION-aarch64.tar.gz (install.sh + SysV init script, for images without dpkg).
#   --install-check   also installs the amd64 package here with dpkg -i, runs the installed
#                     binary (it must find /usr/lib/rtinfer's ONNX Runtime), and removes it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --aarch64 >/dev/null
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
OUT="$ROOT/target/packages"
mkdir -p "$OUT" "$ROOT/target/ort-stage"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"

for pair in "x86_64:amd64" "aarch64:arm64"; do
  arch="${pair%%:*}"
  TARGET_ARCH="$arch" GLIBC=2.31 scripts/cross.sh --build-only
  cp "$ROOT/.cache/onnxruntime/$arch/libonnxruntime.so.1.31.1" "$ROOT/target/ort-stage/"
  # The zig-built binary is already in target/<triple>/release; no rebuild (.cargo/config.toml
  # names the aarch64 strip/objcopy).
  cargo deb --no-build --strip --target "$arch-unknown-linux-gnu" --output "$OUT/"
done
dpkg-deb -c "$OUT/rtinfer_${VERSION}-1_arm64.deb"
dpkg-deb -f "$OUT/rtinfer_${VERSION}-1_arm64.deb" Depends Architecture

# The tarball: the same files as the arm64 package, plus install.sh and the SysV init script.
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
T="$STAGE/rtinfer-$VERSION-aarch64"
install -D -m 0755 target/aarch64-unknown-linux-gnu/release/rtinfer "$T/usr/bin/rtinfer"
install -D -m 0644 .cache/onnxruntime/aarch64/libonnxruntime.so.1.31.1 "$T/usr/lib/rtinfer/libonnxruntime.so.1.31.1"
install -D -m 0640 systemd/rtinfer.toml "$T/etc/rtinfer/rtinfer.toml"
install -D -m 0644 systemd/rtinfer.service "$T/lib/systemd/system/rtinfer.service"
install -D -m 0644 systemd/99-rtinfer-meters.rules "$T/lib/udev/rules.d/99-rtinfer-meters.rules"
install -D -m 0755 packaging/rtinfer.init "$T/etc/init.d/rtinfer"
install -D -m 0755 packaging/install.sh "$T/install.sh"
install -D -m 0644 README.md "$T/README.md"
tar -C "$STAGE" -czf "$OUT/rtinfer-$VERSION-aarch64.tar.gz" "rtinfer-$VERSION-aarch64"
ls -l "$OUT"

if [ "${1:-}" = "--install-check" ]; then
  DEB="$OUT/rtinfer_${VERSION}-1_amd64.deb"
  dpkg -i "$DEB"
  W="$(mktemp -d)"
  env -u ORT_DYLIB_PATH /usr/bin/rtinfer zoo --arch mobilenetv2 --ratio 0.25 -o "$W/m.onnx"
  env -u ORT_DYLIB_PATH /usr/bin/rtinfer run --model "$W/m.onnx" --duration 2 --socket "$W/s.sock" 2>&1 \
    | grep -E "ONNX Runtime loaded|frames:"
  /usr/bin/rtinfer check-config /etc/rtinfer/rtinfer.toml
  id rtinfer
  systemctl is-enabled rtinfer 2>/dev/null || echo "(no running systemd here: enablement not checked)"
  dpkg -r rtinfer
  rm -rf "$W"
fi
