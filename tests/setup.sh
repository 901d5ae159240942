#!/usr/bin/env bash
# Installs what capsule's tests need on a fresh Debian/Ubuntu machine (run as root):
# busybox-static (the test rootfs), iptables and iproute2 (networking), podman and containerd (real clients
# of the runtime), qemu-system-x86 (a cgroup v2 kernel for the v2 tests, tests/vm/), python3
# (the console-socket receiver), jq, debootstrap and curl (Debian images with redis, mariadb and a
# python app for tests/e2e: the three-service demo), time (/usr/bin/time: peak RSS of an import),
# hyperfine, runc and crun (bench/run.sh's short mode, run by .ci/run), gcc and libc6-dev (a static
# probe of raw system calls for the seccomp test), and
# through scripts/install.sh Deno (pinned in tools/package.json, from the npm registry into
# tools/node_modules; needs Node.js and npm), zod (deno.lock, into node_modules/) and the bundle
# (dist/); then the cgroup v2 VM's kernel (a Debian package) and initramfs (tests/vm/.cache).
# Works as root and through sudo. Afterwards capsule itself never touches the network.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
for pkg in busybox-static iptables iproute2 conntrack util-linux podman containerd qemu-system-x86 python3 jq debootstrap curl docker-registry skopeo zstd openssl time hyperfine runc crun gcc libc6-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
# apt-get download (the VM's kernel) needs package lists even when nothing is missing.
if [ ${#need[@]} -gt 0 ] || ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
  apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash scripts/install.sh
tools/node_modules/.bin/deno --version | head -1
# The cgroup v2 kernel and initramfs for tests/vm (cached under tests/vm/.cache).
PATH="$PWD/tools/node_modules/.bin:$PATH" bash tests/vm/build.sh >/dev/null
