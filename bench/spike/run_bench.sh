#!/usr/bin/env bash
# SPIKE, not used by the product: `run true` of a busybox bundle, side by side: today's capsule,
# the rough run prototype (bench/spike/run_native.ts + the C helper in run mode: no state, no
# hooks; a lower bound), runc, crun, and an empty Deno start. First checks that the program sees
# the same under capsule and the prototype. Then create + start + delete -f the same way (the
# prototype's create returns once the helper waits on exec.fifo). ROUNDS rounds of hyperfine (-N, RUNS runs per
# command each); medians over all. Run as root; takes the shared lock itself.
set -euo pipefail
self=$(readlink -f "$0")
[ -n "${SPIKE_LOCKED:-}" ] || exec env SPIKE_LOCKED=1 flock -o /tmp/capsule-itest.lock bash "$self" "$@"
if [ -z "${CAPSULE_BENCH_NS:-}" ] && grep -q ' /sys/fs/cgroup/unified ' /proc/self/mountinfo; then
  exec env CAPSULE_BENCH_NS=1 unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec bash "$0" "$@"' "$self" "$@"
fi
cd "$(dirname "$self")/../.."
ROUNDS=${ROUNDS:-3} RUNS=${RUNS:-10}
export PATH=$PWD/tools/node_modules/.bin:$PATH
[ -x dist/capsule ] || deno task build >/dev/null
C=$PWD/dist/capsule R=$PWD/bench/spike/dist/run-native
DENO=$(sed -n 's/^exec "\([^"]*\)" run .*/\1/p' "$C")
DENO=$DENO bash bench/spike/build.sh >/dev/null
work=$(mktemp -d /var/tmp/spike-run.XXXXXX)
cleanup() {
  set +e
  for id in $("$C" --root "$work/state" list -q 2>/dev/null); do "$C" --root "$work/state" delete -f "$id" >/dev/null 2>&1; done
  for r in runc crun; do
    for id in $("$r" --root "$work/state-$r" list -q 2>/dev/null); do "$r" --root "$work/state-$r" delete -f "$id" >/dev/null 2>&1; done
  done
  [ -d /run/capsule-spike/csd-s ] && "$R" delete csd-s >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/b/rootfs/bin" "$work/b/rootfs/"{proc,sys,dev,tmp,etc,root} "$work/probe"
cp "$(command -v busybox)" "$work/b/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/b/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/b/rootfs/etc/passwd"
(cd "$work/b" && "$C" spec)
jq '.ociVersion = "1.0.2" | .process.args = ["true"] | .process.terminal = false' \
  "$work/b/config.json" >"$work/c.json" && mv "$work/c.json" "$work/b/config.json"
probe='echo "pid $$ $(hostname)"; echo "/proc/1 is $(cat /proc/1/comm), /proc/2: $(ls -d /proc/2 2>&1)"; mount | sort; ls -l /dev | sed "s/ [A-Z][a-z][a-z] .* / /"; grep -E "^(Uid|Gid|Cap|NoNewPrivs|Seccomp)" /proc/self/status; cat /proc/self/cgroup | sed "s/probe-[a-z]*/probe/"; env | sort; ulimit -n; touch /x 2>&1; exit 3'
jq --arg r "$work/b/rootfs" --arg p "$probe" '.root.path = $r | .process.args = ["sh", "-c", $p]' \
  "$work/b/config.json" >"$work/probe/config.json"
a=$("$C" --root "$work/state" run -b "$work/probe" probe-capsule 2>&1) && sa=0 || sa=$?
b=$("$R" run -b "$work/probe" probe-spike 2>&1) && sb=0 || sb=$?
if [ "$a" != "$b" ] || [ "$sa" != "$sb" ]; then
  echo "spike: the program sees something else under the run prototype (status $sa, $sb):" >&2
  diff <(echo "$a") <(echo "$b") >&2 || true
  exit 1
fi
echo "spike: the program sees the same under capsule run and the prototype (status $sa)" >&2
echo "spike: one run's phases (SPIKE_DEBUG=1, ms since the runtime began):" >&2
SPIKE_DEBUG=1 "$R" run -b "$work/b" phases 2>&1 | sed 's/^/  /' >&2
echo 'export default 0;' >"$work/empty.js"
for round in $(seq "$ROUNDS"); do
  hyperfine -N -i -w 3 -r "$RUNS" --export-json "$work/run-$round.json" \
    -n capsule "$C --root $work/state run -b $work/b r-capsule" \
    -n spike "$R run -b $work/b r-spike" \
    -n spike-nowarm "env SPIKE_NO_WARM=1 $R run -b $work/b r-spike" \
    -n runc "runc --root $work/state-runc run -b $work/b r-runc" \
    -n crun "crun --root $work/state-crun run -b $work/b r-crun" \
    -n floor "$DENO run -A --no-config --no-lock --quiet $work/empty.js" >/dev/null 2>&1
  hyperfine -i -S none -w 3 -r "$RUNS" --export-json "$work/csd-$round.json" \
    -n capsule "sh -c '$C --root $work/state create -b $work/b csd-c >/dev/null 2>&1 && $C --root $work/state start csd-c && $C --root $work/state delete -f csd-c'" \
    -n spike "sh -c '$R create -b $work/b csd-s >/dev/null 2>&1 && $R start csd-s && $R delete csd-s'" \
    -n runc "sh -c 'runc --root $work/state-runc create -b $work/b csd-r >/dev/null 2>&1 && runc --root $work/state-runc start csd-r && runc --root $work/state-runc delete -f csd-r'" \
    -n crun "sh -c 'crun --root $work/state-crun create -b $work/b csd-n >/dev/null 2>&1 && crun --root $work/state-crun start csd-n && crun --root $work/state-crun delete -f csd-n'" \
    >/dev/null 2>&1
done
med() { # file glob prefix, command: the median in ms over all rounds, and the failed runs
  jq -s -r --arg n "$2" '[.[].results[] | select(.command == $n)] as $r
    | ([$r[].times[]] | sort) as $t | ($t | length) as $k
    | "\(if $k % 2 == 1 then $t[($k - 1) / 2] else ($t[$k / 2 - 1] + $t[$k / 2]) / 2 end * 1000 * 10 | round / 10) ms | n=\($k), failed \([$r[].exit_codes[] | select(. != 0)] | length)"' \
    "$work/$1"-*.json
}
echo
echo "create + start + delete -f (sh -c, each a CLI call; the prototype's is crude: no state record)"
for n in capsule spike runc crun; do echo "| $n | $(med csd "$n") |"; done
echo
echo "run true, medians over $ROUNDS rounds x $RUNS runs ($(uname -r), $(nproc) cores, $(date -u +%FT%TZ))"
for n in capsule spike spike-nowarm runc crun floor; do
  jq -s -r --arg n "$n" '[.[].results[] | select(.command == $n)] as $r
    | ([$r[].times[]] | sort) as $t | ($t | length) as $k
    | "| \($n) | \(if $k % 2 == 1 then $t[($k - 1) / 2] else ($t[$k / 2 - 1] + $t[$k / 2]) / 2 end * 1000 * 10 | round / 10) ms | n=\($k), failed \([$r[].exit_codes[] | select(. != 0)] | length) |"' \
    "$work"/run-*.json
done
