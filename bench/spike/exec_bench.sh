#!/usr/bin/env bash
# SPIKE, not used by the product: `exec true` into a running busybox container, side by side:
#   capsule         today's `capsule exec` (dist/capsule: the CLI's Deno, then a Deno exec-init)
#   spike           bench/spike: the CLI's planning in Deno, then the static C helper
#   spike-unsealed  the same without the sealed read-only view of the helper (what the seal costs)
#   spike-nowarm    the same without warming the cgroup lock early (what that lever gives)
#   spike-pid-early the helper spawned into the container's PID namespace instead of forking
#                   into it last (what the late fork costs)
#   runc, crun      their exec into their own container of the same bundle
#   floor           an empty `deno run` with dist/capsule's flags
# for two configs: `capsule spec`'s (no seccomp) and the same with podman's default seccomp
# profile (bench/spike/oci_seccomp.jq). First checks that the spike's program sees what today's
# sees (ids, caps, no_new_privs, seccomp, rlimit, cgroups, env, fds, exit status). ROUNDS rounds
# of hyperfine (-N, RUNS runs per command each, commands in turn) so that drift on a shared
# machine spreads over all; prints medians over all rounds. Takes the shared lock itself.
# Run as root:  bash bench/spike/exec_bench.sh   (ROUNDS=3 RUNS=10 by default)
set -euo pipefail
self=$(readlink -f "$0")
if [ -z "${SPIKE_LOCKED:-}" ]; then
  exec env SPIKE_LOCKED=1 flock -o /tmp/capsule-itest.lock bash "$self" "$@"
fi
# crun 1.8 refuses this hybrid host: a private mount namespace without the v2 mount (as bench/run.sh).
if [ -z "${CAPSULE_BENCH_NS:-}" ] && grep -q ' /sys/fs/cgroup/unified ' /proc/self/mountinfo; then
  exec env CAPSULE_BENCH_NS=1 unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec bash "$0" "$@"' "$self" "$@"
fi
cd "$(dirname "$self")/../.."
ROUNDS=${ROUNDS:-3} RUNS=${RUNS:-10}
export PATH=$PWD/tools/node_modules/.bin:$PATH
[ -x dist/capsule ] || deno task build >/dev/null
C=$PWD/dist/capsule X=$PWD/bench/spike/dist/exec-native
DENO=$(sed -n 's/^exec "\([^"]*\)" run .*/\1/p' "$C")
DENO=$DENO bash bench/spike/build.sh >/dev/null
work=$(mktemp -d /var/tmp/spike-exec.XXXXXX)
cleanup() {
  set +e
  for id in plain seccomp; do
    "$C" --root "$work/state-capsule" delete -f "$id" >/dev/null 2>&1
    for r in runc crun; do "$r" --root "$work/state-$r" delete -f "$id" >/dev/null 2>&1; done
  done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/plain/rootfs/bin" "$work/plain/rootfs/"{proc,sys,dev,tmp,etc,root} "$work/seccomp"
cp "$(command -v busybox)" "$work/plain/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/plain/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$work/plain/rootfs/etc/passwd"
echo 'root:x:0:' >"$work/plain/rootfs/etc/group"
(cd "$work/plain" && "$C" spec)
jq '.ociVersion = "1.0.2" | .process.args = ["sleep", "100000"] | .process.terminal = false' \
  "$work/plain/config.json" >"$work/c.json" && mv "$work/c.json" "$work/plain/config.json"
jq -f bench/spike/oci_seccomp.jq /usr/share/containers/seccomp.json >"$work/profile.json"
jq --slurpfile p "$work/profile.json" --arg root "$work/plain/rootfs" \
  '.linux.seccomp = $p[0] | .root.path = $root' "$work/plain/config.json" >"$work/seccomp/config.json"
bin() { case $1 in capsule) echo "$C" ;; *) echo "$1" ;; esac; }
for id in plain seccomp; do
  for r in capsule runc crun; do
    "$(bin $r)" --root "$work/state-$r" create -b "$work/$id" "$id" </dev/null >"$work/$r-$id.log" 2>&1 &&
      "$(bin $r)" --root "$work/state-$r" start "$id" >>"$work/$r-$id.log" 2>&1 ||
      { echo "spike: $r did not start $id:" >&2; cat "$work/$r-$id.log" >&2; exit 1; }
  done
done

# What the program sees: today's exec and the spike's must agree.
probe='id; echo "HOME=$HOME"; grep -E "^(Uid|Gid|Groups|Cap|NoNewPrivs|Seccomp)" /proc/self/status; ulimit -n; cat /proc/self/cgroup; env | sort; ls /proc/self/fd; echo "pid ns: $(readlink /proc/self/ns/pid)"; echo "sleeper: $(cat /proc/1/cmdline | tr "\0" " ")"'
for id in plain seccomp; do
  a=$("$C" --root "$work/state-capsule" exec "$id" sh -c "$probe" 2>&1) || true
  b=$("$X" --root "$work/state-capsule" exec "$id" sh -c "$probe" 2>&1) || true
  if [ "$a" != "$b" ]; then
    echo "spike: $id: the program sees something else under the spike:" >&2
    diff <(echo "$a") <(echo "$b") >&2 || true
    exit 1
  fi
  for cmd in "sh -c 'exit 7'" nosuch /etc/passwd; do
    sa=0 sb=0
    eval "\"$C\" --root \"$work/state-capsule\" exec $id $cmd" >/dev/null 2>&1 || sa=$?
    eval "\"$X\" --root \"$work/state-capsule\" exec $id $cmd" >/dev/null 2>&1 || sb=$?
    [ "$sa" = "$sb" ] || echo "spike: $id: exec $cmd: status $sa today, $sb in the spike" >&2
  done
done
echo "spike: the program sees the same under today's exec and the spike (both configs)" >&2
echo 'export default 0;' >"$work/empty.js"
echo "spike: one exec's phases (SPIKE_DEBUG=1, ms since the runtime began):" >&2
SPIKE_DEBUG=1 "$X" --root "$work/state-capsule" exec seccomp true 2>&1 | sed 's/^/  /' >&2

declare -A all
for round in $(seq "$ROUNDS"); do
  for id in plain seccomp; do
    hyperfine -N -i -w 3 -r "$RUNS" --export-json "$work/$id-$round.json" \
      -n capsule "$C --root $work/state-capsule exec $id true" \
      -n spike "$X --root $work/state-capsule exec $id true" \
      -n spike-unsealed "$X --seal none --root $work/state-capsule exec $id true" \
      -n spike-nowarm "env SPIKE_NO_WARM=1 $X --root $work/state-capsule exec $id true" \
      -n spike-pid-early "$X --pid early --root $work/state-capsule exec $id true" \
      -n runc "runc --root $work/state-runc exec $id true" \
      -n crun "crun --root $work/state-crun exec $id true" \
      -n floor "$DENO run -A --no-config --no-lock --quiet $work/empty.js" >/dev/null 2>&1
  done
done
median() { # config, command name: the median in ms over every round's runs; failed runs
  jq -s -r --arg n "$2" '[.[].results[] | select(.command == $n)] as $r
    | ([$r[].times[]] | sort) as $t
    | ($t | length) as $k
    | "\(if $k % 2 == 1 then $t[($k - 1) / 2] else ($t[$k / 2 - 1] + $t[$k / 2]) / 2 end * 1000 * 10 | round / 10) ms (n=\($k), failed \([$r[].exit_codes[] | select(. != 0)] | length))"' \
    "$work/$1"-*.json
}
echo
echo "exec true, medians over $ROUNDS rounds x $RUNS runs ($(uname -r), $(nproc) cores, $(date -u +%FT%TZ))"
printf '| %-15s | %-34s | %-34s |\n' command "capsule spec config" "+ podman's seccomp profile"
printf '| %-15s | %-34s | %-34s |\n' --- --- ---
for n in capsule spike spike-unsealed spike-nowarm spike-pid-early runc crun floor; do
  printf '| %-15s | %-34s | %-34s |\n' "$n" "$(median plain "$n")" "$(median seccomp "$n")"
done
