#!/usr/bin/env bash
# A first container: builds a busybox rootfs from the host's busybox-static, writes a bundle
# with `capsule spec`, and runs a shell in it that shows its hostname, PID 1 and mounts.
# Run as root on Debian/Ubuntu: sudo bash demo.sh
# The first run installs (with network): busybox-static, then scripts/install.sh (Deno from the
# npm registry, zod from deno.lock, the bundle in dist/). Later runs need no network.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" != 0 ]; then
  echo "demo.sh: run it as root (sudo bash demo.sh): containers need root" >&2
  exit 1
fi
if ! command -v busybox >/dev/null; then
  apt-get update -qq && apt-get install -y -qq busybox-static >/dev/null
fi
bash scripts/install.sh
export DENO_NO_UPDATE_CHECK=1
repo=$PWD
capsule() { "$repo/dist/capsule" "$@"; }
bundle=$(mktemp -d /tmp/capsule-demo.XXXXXX)
trap 'rm -rf "$bundle"' EXIT
mkdir -p "$bundle/rootfs/"{bin,proc,sys,dev,etc,tmp}
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
for applet in $(busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$bundle/rootfs/bin/$applet"
done
(cd "$bundle" && capsule spec)
# The program: a shell command that shows where it runs.
"$repo/tools/node_modules/.bin/deno" eval --no-config --quiet '
  const f = Deno.args[0];
  const spec = JSON.parse(Deno.readTextFileSync(f));
  spec.hostname = "demo";
  spec.process.terminal = false; // a command, not an interactive sh
  spec.process.args = ["sh", "-c", "echo hostname: $(hostname); echo PID 1: $(cat /proc/1/cmdline | tr \"\\0\" \" \"); echo mounts:; cat /proc/mounts"];
  Deno.writeTextFileSync(f, JSON.stringify(spec, null, 2));
' "$bundle/config.json"
echo "+ capsule run -b $bundle demo"
capsule --root "$bundle/state" run -b "$bundle" demo
