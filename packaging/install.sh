#!/bin/sh
# Installs rtinfer from this tarball on images without dpkg (the ZCU104's PetaLinux / Vitis AI
# image): binary, ONNX Runtime, config, udev rule, and a systemd unit or, without systemd, a
# SysV init script. Run as root from the unpacked folder: ./install.sh
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
install -D -m 0755 "$HERE/usr/bin/rtinfer" /usr/bin/rtinfer
install -D -m 0644 "$HERE/usr/lib/rtinfer/libonnxruntime.so.1.31.1" /usr/lib/rtinfer/libonnxruntime.so.1.31.1
[ -e /etc/rtinfer/rtinfer.toml ] || install -D -m 0640 "$HERE/etc/rtinfer/rtinfer.toml" /etc/rtinfer/rtinfer.toml
install -D -m 0644 "$HERE/lib/udev/rules.d/99-rtinfer-meters.rules" /lib/udev/rules.d/99-rtinfer-meters.rules
id rtinfer >/dev/null 2>&1 || { adduser -S -D -H -h /var/lib/rtinfer rtinfer 2>/dev/null || useradd -r -d /var/lib/rtinfer -s /sbin/nologin rtinfer; }
for g in video dialout render; do
  grep -q "^$g:" /etc/group && { addgroup rtinfer "$g" 2>/dev/null || usermod -aG "$g" rtinfer 2>/dev/null || true; }
done
mkdir -p /var/lib/rtinfer/models /var/cache/rtinfer /run/rtinfer
chown -R rtinfer /var/lib/rtinfer /var/cache/rtinfer /run/rtinfer
# The config is 0640: the daemon's group must read it (as the deb's postinst does).
chgrp rtinfer /etc/rtinfer/rtinfer.toml 2>/dev/null || chown root:"$(id -g rtinfer)" /etc/rtinfer/rtinfer.toml
# The SysV script's log, written by the daemon's user.
touch /var/log/rtinfer.log && chown rtinfer /var/log/rtinfer.log
if [ -d /run/systemd/system ]; then
  install -D -m 0644 "$HERE/lib/systemd/system/rtinfer.service" /lib/systemd/system/rtinfer.service
  systemctl daemon-reload
  systemctl enable rtinfer.service
  echo "rtinfer installed; start it with: systemctl start rtinfer"
else
  install -D -m 0755 "$HERE/etc/init.d/rtinfer" /etc/init.d/rtinfer
  command -v update-rc.d >/dev/null && update-rc.d rtinfer defaults || true
  echo "rtinfer installed; start it with: /etc/init.d/rtinfer start"
fi
/usr/bin/rtinfer check-config /etc/rtinfer/rtinfer.toml
