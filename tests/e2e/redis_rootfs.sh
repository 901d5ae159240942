#!/usr/bin/env bash
# Builds (once) a Debian bookworm rootfs with redis-server and redis-tools with debootstrap from
# Debian's mirror, and caches it as a flat rootfs tarball (`tar -C rootfs -c .`, what
# `capsule image create` imports) under tests/e2e/.cache/, keyed by suite, variant, mirror and
# package list. Prints the tarball's path. Needs root and debootstrap (apt-get install debootstrap)
# unless the tarball is already cached.
#   SUITE, MIRROR, PACKAGES override the defaults; --print-path only prints where it would be.
set -euo pipefail
cd "$(dirname "$0")"
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PACKAGES=${PACKAGES:-redis-server,redis-tools}
VARIANT=minbase
key=$(printf '%s\n' "$SUITE" "$VARIANT" "$MIRROR" "$PACKAGES" | sha256sum | cut -c1-12)
tarball="$PWD/.cache/debian-$SUITE-redis-$key.tar"
if [ "${1:-}" = --print-path ] || [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "redis_rootfs.sh: debootstrap needs root" >&2
  exit 1
fi
command -v debootstrap >/dev/null || {
  echo "redis_rootfs.sh: debootstrap is not installed (apt-get install debootstrap)" >&2
  exit 1
}
mkdir -p .cache
work=$(mktemp -d "$PWD/.cache/debootstrap.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
debootstrap --variant="$VARIANT" --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" \
  >"$work/debootstrap.log" 2>&1 || {
  tail -30 "$work/debootstrap.log" >&2
  exit 1
}
# What an exported image does not carry: apt's downloaded packages and lists.
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
tar --numeric-owner --xattrs -C "$work/rootfs" -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$tarball"
echo "redis_rootfs.sh: debootstrap + tar took $(($(date +%s) - start)) s," \
  "$(du -m "$tarball" | cut -f1) MB" >&2
echo "$tarball"
