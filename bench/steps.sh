#!/usr/bin/env bash
# Where `run true`'s milliseconds go, per step, for one or more capsule builds side by side (as
# root): bash bench/steps.sh CAPSULE... (e.g. a copy of an older dist/capsule and this one).
# N (default 30) rounds; each round runs `capsule --debug run` of `true` once per build, in
# turn, so that a shared machine's load falls on all alike; prints the median of each --debug
# step (create's and run's, in milliseconds, and when each began after Deno's runtime started).
# Steps are less noisy than whole commands (Deno's own start and exit are not in them). Hold the
# test lock while it runs (flock -o /tmp/capsule-itest.lock): tests empty cgroups under capsule/.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bash bench/steps.sh CAPSULE..." >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench/steps.sh: run as root" >&2; exit 1; }
N=${N:-30}
builds=()
for c in "$@"; do builds+=("$(readlink -f "$c")"); done
w=$(mktemp -d /var/tmp/capsule-steps.XXXXXX)
cleanup() {
  set +e
  for c in "${builds[@]}"; do
    for id in $("$c" --root "$w/st" list -q 2>/dev/null); do "$c" --root "$w/st" delete -f "$id" >/dev/null 2>&1; done
  done
  rm -rf "$w"
}
trap cleanup EXIT
mkdir -p "$w/bundle/rootfs/bin" "$w/bundle/rootfs/"{proc,sys,dev,tmp,etc,root}
cp "$(command -v busybox)" "$w/bundle/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$w/bundle/rootfs/bin/$a"; done
(cd "$w/bundle" && "${builds[-1]}" spec)
jq '.process.args = ["true"] | .process.terminal = false' "$w/bundle/config.json" >"$w/c.json"
mv "$w/c.json" "$w/bundle/config.json"
for i in $(seq 1 "$N"); do
  for b in "${!builds[@]}"; do
    "${builds[$b]}" --root "$w/st" --debug run -b "$w/bundle" "s$i" 2>&1 >/dev/null |
      sed 's/.*msg="//; s/"$//' >>"$w/steps.$b"
  done
done
for b in "${!builds[@]}"; do
  echo "== ${builds[$b]}"
  # "create ID: STEP +X ms (...)" and "create ID: began X ms after the runtime started"
  sed -nE 's/^(create|run) [^:]+: (.*) \+([0-9.]+) ms \(.*$/\1: \2\t\3/p; s/^(create|run) [^:]+: began ([0-9.]+) ms.*/\1 began\t\2/p' \
    "$w/steps.$b" | sed -E 's/ \(pid [0-9]+\)//' | awk -F'\t' '
      !($1 in n) { order[++k] = $1 } { v[$1, ++n[$1]] = $2 }
      END {
        for (i = 1; i <= k; i++) {
          s = order[i]; m = n[s]
          for (a = 1; a <= m; a++) x[a] = v[s, a]
          for (a = 1; a <= m; a++) for (b = a + 1; b <= m; b++) if (x[b] < x[a]) { t = x[a]; x[a] = x[b]; x[b] = t }
          printf "%-62s %6.2f ms\n", s, (m % 2 ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2)
        }
      }'
done
