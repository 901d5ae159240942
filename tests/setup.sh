#!/usr/bin/env bash
# Installs what capsule's tests need on a fresh Debian/Ubuntu machine (run as root):
# busybox-static (the test rootfs), iptables and iproute2 (networking), and Deno, pinned in
# tools/package.json and installed from the npm registry into tools/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in busybox-static iptables iproute2 util-linux; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x tools/node_modules/.bin/deno ]; then
  (cd tools && npm ci --no-audit --no-fund --loglevel=error)
fi
tools/node_modules/.bin/deno --version | head -1
