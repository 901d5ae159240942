#!/usr/bin/env bash
# Two capsule builds side by side, interleaved, on the start path (as root):
#   bash bench/ab.sh BEFORE_CAPSULE AFTER_CAPSULE
# e.g. a copy of an older dist/ against this one. ROUNDS (default 4) rounds of R (default 8)
# hyperfine runs of each command, the builds alternating, so that the load of a shared machine
# falls on both alike; prints the median, p25 and p75 of all runs per command: `--version`,
# `run true`, create + start + delete -f, `exec true` into a running container. Hold the test
# lock while it runs (flock -o /tmp/capsule-itest.lock): tests empty cgroups under capsule/.
set -euo pipefail
[ $# = 2 ] || { echo "usage: bash bench/ab.sh BEFORE_CAPSULE AFTER_CAPSULE" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench/ab.sh: run as root" >&2; exit 1; }
A=$(readlink -f "$1") B=$(readlink -f "$2")
ROUNDS=${ROUNDS:-4} R=${R:-8}
w=$(mktemp -d /var/tmp/capsule-ab.XXXXXX)
cleanup() {
  set +e
  for c in "$A" "$B"; do
    for id in $("$c" --root "$w/st" list -q 2>/dev/null); do "$c" --root "$w/st" delete -f "$id" >/dev/null 2>&1; done
  done
  rm -rf "$w"
}
trap cleanup EXIT
mkdir -p "$w/bundle/rootfs/bin" "$w/bundle/rootfs/"{proc,sys,dev,tmp,etc,root} "$w/sleeper"
cp "$(command -v busybox)" "$w/bundle/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$w/bundle/rootfs/bin/$a"; done
(cd "$w/bundle" && "$B" spec)
jq '.process.args = ["true"] | .process.terminal = false' "$w/bundle/config.json" >"$w/c.json"
mv "$w/c.json" "$w/bundle/config.json"
jq --arg root "$w/bundle/rootfs" '.process.args = ["sleep", "100000"] | .root.path = $root' \
  "$w/bundle/config.json" >"$w/sleeper/config.json"
"$A" --root "$w/st" create -b "$w/sleeper" exa </dev/null >/dev/null 2>&1 && "$A" --root "$w/st" start exa
"$B" --root "$w/st" create -b "$w/sleeper" exb </dev/null >/dev/null 2>&1 && "$B" --root "$w/st" start exb
csd() { echo "sh -c '$1 --root $w/st create -b $w/bundle $2 >/dev/null 2>&1 && $1 --root $w/st start $2 && $1 --root $w/st delete -f $2'"; }
for _ in $(seq 1 "$ROUNDS"); do
  hyperfine -N -i -w 1 -r "$R" --export-json "$w/n.json" \
    -n "version before" "$A --version" -n "version after" "$B --version" \
    -n "run before" "$A --root $w/st run -b $w/bundle ra" -n "run after" "$B --root $w/st run -b $w/bundle rb" \
    -n "exec before" "$A --root $w/st exec exa true" -n "exec after" "$B --root $w/st exec exb true" >/dev/null 2>&1
  hyperfine -i -w 1 -r "$R" -S none --export-json "$w/s.json" \
    -n "csd before" "$(csd "$A" ca)" -n "csd after" "$(csd "$B" cb)" >/dev/null 2>&1
  jq -r '.results[] | .command as $c | .times[] | "\($c)\t\(. * 1000)"' "$w/n.json" "$w/s.json" >>"$w/times"
done
for k in version run csd exec; do
  for v in before after; do
    grep -P "^$k $v\t" "$w/times" | cut -f2 | sort -n | awk -v k="$k $v" '{a[NR] = $1}
      END {printf "%-15s n=%d median %.1f ms  p25 %.1f  p75 %.1f\n", k, NR, a[int((NR + 1) / 2)], a[int(NR / 4) + 1], a[int(3 * NR / 4)]}'
  done
done
