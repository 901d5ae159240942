#!/usr/bin/env bash
# Builds (once) a Debian rootfs with the given packages with debootstrap from Debian's mirror, and
# caches it as a flat rootfs tarball (`tar -C rootfs -c .`, what `capsule image create` imports)
# under tests/e2e/.cache/, keyed by suite, variant, mirror and package list. Prints the tarball's
# path. Needs root and debootstrap (apt-get install debootstrap) unless the tarball is cached.
#
#   rootfs.sh [--print-path] NAME PKG[,PKG...]
#     NAME   names the tarball (debian-SUITE-NAME-KEY.tar): lower-case letters, digits, '-'
#     PKG    Debian packages installed on top of the minbase variant (sorted, duplicates dropped:
#            the same set is the same tarball)
#     --print-path   only print where the tarball is (or would be), build nothing
#   SUITE (bookworm) and MIRROR (http://deb.debian.org/debian) override the defaults.
#
# Two builders of one tarball at once (two test runs) take turns: the second finds it made.
set -euo pipefail
cd "$(dirname "$0")"
usage() {
  echo "usage: rootfs.sh [--print-path] NAME PKG[,PKG...]" >&2
  exit 2
}
print_only=false
if [ "${1:-}" = --print-path ]; then
  print_only=true
  shift
fi
[ $# = 2 ] || usage
name=$1
if ! [[ $name =~ ^[a-z0-9][a-z0-9-]*$ ]]; then
  echo "rootfs.sh: invalid NAME \"$name\": use lower-case letters, digits and '-'" >&2
  exit 2
fi
if ! [[ $2 =~ ^[a-z0-9][a-z0-9.+-]*(,[a-z0-9][a-z0-9.+-]*)*$ ]]; then
  echo "rootfs.sh: invalid package list \"$2\": Debian package names separated by ','" >&2
  exit 2
fi
PACKAGES=$(tr , '\n' <<<"$2" | LC_ALL=C sort -u | paste -sd, -)
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
VARIANT=minbase
key=$(printf '%s\n' "$SUITE" "$VARIANT" "$MIRROR" "$PACKAGES" | sha256sum | cut -c1-12)
tarball="$PWD/.cache/debian-$SUITE-$name-$key.tar"
if $print_only || [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "rootfs.sh: debootstrap needs root" >&2
  exit 1
fi
command -v debootstrap >/dev/null || {
  echo "rootfs.sh: debootstrap is not installed (apt-get install debootstrap)" >&2
  exit 1
}
mkdir -p .cache
exec 9>"$tarball.lock"
flock 9
if [ -s "$tarball" ]; then # made by the builder we waited for
  echo "$tarball"
  exit 0
fi
work=$(mktemp -d "$PWD/.cache/debootstrap.XXXXXX")
# debootstrap mounts /proc (and /sys, or the host's /dev in a container) inside the target and
# unmounts them when it ends; killed, it leaves them: unmount before removing, and never let rm
# cross into another file system.
unmount_all() {
  local m
  for m in $(findmnt -rn -o TARGET | grep -F "$work/" | sort -r || true); do umount -l "$m"; done
}
cleanup() {
  unmount_all
  rm -rf --one-file-system "$work" "$tarball.lock"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start=$(date +%s)
debootstrap --variant="$VARIANT" --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" \
  >"$work/debootstrap.log" 2>&1 || {
  tail -30 "$work/debootstrap.log" >&2
  exit 1
}
# A mount debootstrap could not undo (busy) must not end up in the image.
unmount_all
# What an exported image does not carry: apt's downloaded packages and lists.
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
tar --numeric-owner --xattrs --one-file-system -C "$work/rootfs" -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$tarball"
echo "rootfs.sh: $name: debootstrap + tar took $(($(date +%s) - start)) s," \
  "$(du -m "$tarball" | cut -f1) MB" >&2
echo "$tarball"
