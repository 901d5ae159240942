#!/usr/bin/env bash
# capsule vs runc vs crun, side by side on one busybox bundle (as root):
#   1. `run` of `true` (create + start + wait + delete in one command)
#   2. create + start + delete -f as three commands
# Median of RUNS (default 30) runs each, with hyperfine; prints the ratios capsule/runc and
# capsule/crun. Needs: apt-get install hyperfine runc crun busybox-static, and `deno task build`.
set -euo pipefail
self=$(readlink -f "$0")
# crun 1.8 refuses a hybrid host ("cgroups in hybrid mode not supported") even when the v2
# hierarchy has no controllers: the benchmark runs in a private mount namespace without it, for
# all three runtimes alike (nothing of the host changes).
if [ -z "${CAPSULE_BENCH_NS:-}" ] && grep -q ' /sys/fs/cgroup/unified ' /proc/self/mountinfo; then
  exec env CAPSULE_BENCH_NS=1 unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec bash "$0" "$@"' "$self" "$@"
fi
cd "$(dirname "$self")/.."
RUNS=${RUNS:-30}
for tool in hyperfine runc crun busybox jq; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install hyperfine runc crun busybox-static jq)" >&2; exit 1; }
done
[ -x dist/capsule ] || deno task build >/dev/null
CAPSULE=${CAPSULE:-$PWD/dist/capsule}
work=$(mktemp -d /tmp/capsule-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/"{proc,sys,dev,tmp,etc}
cp "$(command -v busybox)" "$work/bundle/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/bundle/rootfs/bin/$a"; done
(cd "$work/bundle" && "$CAPSULE" spec)
# One config for all three: ociVersion 1.0.2 (crun 1.8 refuses newer), the program is `true`.
jq '.ociVersion = "1.0.2" | .process.args = ["true"] | .process.terminal = false' \
  "$work/bundle/config.json" >"$work/config.json" && mv "$work/config.json" "$work/bundle/config.json"

bin() { case $1 in capsule) echo "$CAPSULE" ;; *) echo "$1" ;; esac; }
cmds_run=() cmds_csd=()
for r in capsule runc crun; do
  b=$(bin "$r"); s="$work/state-$r"
  cmds_run+=("$b --root $s run -b $work/bundle bench-$r")
  cmds_csd+=("sh -c '$b --root $s create -b $work/bundle csd-$r >/dev/null 2>&1 && $b --root $s start csd-$r && $b --root $s delete -f csd-$r'")
done
hyperfine -N -i -w 3 -r "$RUNS" --export-json "$work/run.json" -n capsule -n runc -n crun "${cmds_run[@]}" >/dev/null
hyperfine -i -w 3 -r "$RUNS" -S none --export-json "$work/csd.json" -n capsule -n runc -n crun "${cmds_csd[@]}" >/dev/null
report() {
  jq -r --arg what "$1" '
    (.results | map({(.command): (.median * 1000)}) | add) as $m
    | "\($what)\n  capsule \($m.capsule | floor) ms   runc \($m.runc | floor) ms   crun \($m.crun | floor) ms   capsule/runc \(($m.capsule / $m.runc * 100 | floor) / 100)   capsule/crun \(($m.capsule / $m.crun * 100 | floor) / 100)"' "$2"
}
echo "medians of $RUNS runs, $(nproc) cores, $(uname -r), $(runc --version | head -1), $(crun --version | head -1)"
for f in run csd; do jq -r '.results[] | select(any(.exit_codes[]; . != 0)) | "FAILED RUNS: \(.command): \([.exit_codes[] | select(. != 0)] | length) of \(.exit_codes | length)"' "$work/$f.json"; done
report "run true:" "$work/run.json"
report "create + start + delete -f:" "$work/csd.json"
