#!/usr/bin/env bash
# Images, as root:
#   1. `capsule image create` of a large rootfs tarball (the Debian + redis rootfs that
#      tests/e2e/redis_rootfs.sh makes with debootstrap, grown to >= MIN_MB with extra files when
#      it is smaller) against GNU tar extracting the same tarball into a directory on the same
#      filesystem; RUNS_IMPORT (default 5) runs each, the target removed before every run;
#      prints the ratio capsule/tar of the medians.
#   2. `capsule image run --rm IMAGE true` from a tiny busybox image and from the large image,
#      median of RUNS_RUN (default 20) runs each (no network: nothing of the host changes).
# Needs: apt-get install hyperfine jq busybox-static debootstrap (debootstrap only until the
# rootfs tarball is cached), and `deno task build` (or CAPSULE=... to time another capsule).
# WORK=DIR puts the stores and the extraction target elsewhere (default a temp dir in /var/tmp).
set -euo pipefail
self=$(readlink -f "$0")
cd "$(dirname "$self")/.."
RUNS_IMPORT=${RUNS_IMPORT:-5}
RUNS_RUN=${RUNS_RUN:-20}
MIN_MB=${MIN_MB:-200}
[ "$(id -u)" = 0 ] || { echo "bench/import.sh: run as root" >&2; exit 1; }
for tool in hyperfine jq busybox tar; do
  command -v "$tool" >/dev/null || { echo "bench/import.sh: $tool is missing (apt-get install hyperfine jq busybox-static)" >&2; exit 1; }
done
[ -x dist/capsule ] || deno task build >/dev/null
CAPSULE=${CAPSULE:-$PWD/dist/capsule}

# The large tarball: debootstrap's rootfs, grown with files when it is under MIN_MB.
base=$(bash tests/e2e/redis_rootfs.sh)
base_mb=$(($(stat -c %s "$base") / 1048576))
big=$base
if [ "$base_mb" -lt "$MIN_MB" ]; then
  big="${base%.tar}-grown-$MIN_MB.tar"
  if [ ! -s "$big" ]; then
    grow=$(mktemp -d /var/tmp/capsule-grow.XXXXXX)
    trap 'rm -rf "$grow"' EXIT
    mkdir "$grow/rootfs"
    tar -C "$grow/rootfs" -xf "$base"
    # What makes an image bigger: many small files (a language's packages) and a few large
    # ones (data, binaries), incompressible so no layer of the stack gets them for free.
    extra=$((MIN_MB - base_mb + 16))
    small_mb=$((extra / 2))
    mkdir -p "$grow/rootfs/opt/extra/small" "$grow/rootfs/opt/extra/large"
    head -c $((small_mb * 1048576)) /dev/urandom |
      split -a 5 -b 8192 - "$grow/rootfs/opt/extra/small/f"
    for i in $(seq 1 $(((extra - small_mb + 15) / 16))); do
      head -c $((16 * 1048576)) /dev/urandom >"$grow/rootfs/opt/extra/large/blob$i"
    done
    tar --numeric-owner --xattrs -C "$grow/rootfs" -cf "$big.tmp" . && mv "$big.tmp" "$big"
    rm -rf "$grow"
    trap - EXIT
  fi
fi
files=$(tar -tf "$big" | wc -l)
size_mb=$(($(stat -c %s "$big") / 1048576))

work=$(mktemp -d "${WORK:-/var/tmp}/capsule-bench-import.XXXXXX")
cleanup() {
  for s in "$work"/store-*; do
    [ -d "$s" ] || continue
    "$CAPSULE" --root "$work/state" --store "$s" image delete -f big >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
fs=$(df -P "$work" | awk 'NR==2 {print $1}')

# 1. import vs tar (the tarball is read once before, so both read it from the page cache).
cat "$big" >/dev/null
hyperfine -N -r "$RUNS_IMPORT" --export-json "$work/import.json" \
  --prepare "rm -rf $work/store-import $work/tar-target" \
  -n "capsule image create" "$CAPSULE --root $work/state --store $work/store-import image create big $big" \
  --prepare "sh -c 'rm -rf $work/store-import $work/tar-target && mkdir $work/tar-target'" \
  -n "tar -xf" "tar -C $work/tar-target -xf $big" >/dev/null
rm -rf "$work/store-import" "$work/tar-target"

# 2. image run --rm true: busybox image vs the large one.
mkdir -p "$work/bb/bin" "$work/bb/"{proc,sys,dev,tmp,etc,root}
cp "$(command -v busybox)" "$work/bb/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/bb/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/bb/etc/passwd"
echo 'root:x:0:' >"$work/bb/etc/group"
tar -C "$work/bb" -cf "$work/bb.tar" .
bb_mb=$(awk "BEGIN {printf \"%.1f\", $(stat -c %s "$work/bb.tar") / 1048576}")
S="$work/store-run"
"$CAPSULE" --root "$work/state" --store "$S" image create tiny "$work/bb.tar" >/dev/null
"$CAPSULE" --root "$work/state" --store "$S" image create big "$big" >/dev/null
hyperfine -N -w 3 -r "$RUNS_RUN" --export-json "$work/run.json" \
  -n "busybox ($bb_mb MB)" "$CAPSULE --root $work/state --store $S image run --rm tiny true" \
  -n "large ($size_mb MB)" "$CAPSULE --root $work/state --store $S image run --rm big true" >/dev/null
"$CAPSULE" --root "$work/state" --store "$S" image delete tiny >/dev/null

echo "$(nproc) cores, $(uname -r), $(df -PT "$work" | awk 'NR==2 {print $2}') on $fs; capsule: $CAPSULE"
echo "tarball: $big ($size_mb MB, $files entries)"
for f in import run; do
  jq -r '.results[] | select(any(.exit_codes[]; . != 0)) | "FAILED RUNS: \(.command): \([.exit_codes[] | select(. != 0)] | length) of \(.exit_codes | length)"' "$work/$f.json"
done
jq -r --arg n "$RUNS_IMPORT" '
  (.results | map({(.command): .}) | add) as $r
  | "import, \($n) runs each (median / min / max):",
    (.results[] | "  \(.command | . + " " * (22 - length)) \(.median * 1000 | floor) ms / \(.min * 1000 | floor) / \(.max * 1000 | floor)"),
    "  capsule/tar \(($r["capsule image create"].median / $r["tar -xf"].median * 100 | floor) / 100)"' \
  "$work/import.json"
jq -r --arg n "$RUNS_RUN" '
  "image run --rm IMAGE true, median of \($n):",
  (.results[] | "  \(.command | . + " " * (22 - length)) \(.median * 1000 | floor) ms (min \(.min * 1000 | floor), max \(.max * 1000 | floor))"),
  "  large/busybox \((.results[1].median / .results[0].median * 100 | floor) / 100)"' "$work/run.json"
