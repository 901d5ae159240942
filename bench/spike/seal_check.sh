#!/usr/bin/env bash
# SPIKE, not used by the product: can a process in the container reach the exec helper while it
# runs (ptrace-class access to /proc/<pid>/exe, environ, mem)? Builds the helper with a 2 s
# pause (1: right after reading the plan, as host root with every capability; 2: after dropping
# to the program's ids and capabilities, just before seccomp and execve), with and without its
# PR_SET_DUMPABLE 0, runs the spike's exec with it, unsealed (the worst case: the host path), and
# probes from a second exec in the container meanwhile. Then the case where only the seal
# protects: a container granted CAP_SYS_PTRACE (a debugger's), which the dumpable flag does not
# stop; the probe keeps the helper's exe open and, once the helper is gone, reopens it for
# writing (never writes): the unsealed host binary opens, the sealed overlay view is EROFS.
# Run as root; takes the shared lock.
set -euo pipefail
self=$(readlink -f "$0")
[ -n "${SPIKE_LOCKED:-}" ] || exec env SPIKE_LOCKED=1 flock -o /tmp/capsule-itest.lock bash "$self" "$@"
cd "$(dirname "$self")/../.."
export PATH=$PWD/tools/node_modules/.bin:$PATH
[ -x dist/capsule ] || deno task build >/dev/null
C=$PWD/dist/capsule X=$PWD/bench/spike/dist/exec-native
DENO=$(sed -n 's/^exec "\([^"]*\)" run .*/\1/p' "$C") bash bench/spike/build.sh >/dev/null
work=$(mktemp -d /var/tmp/spike-seal.XXXXXX)
trap 'for i in seal ptrace; do "$C" --root "$work/state" delete -f $i >/dev/null 2>&1; done; rm -rf "$work"' EXIT
mkdir -p "$work/b/rootfs/bin" "$work/b/rootfs/"{proc,sys,dev,tmp,etc,root}
cp "$(command -v busybox)" "$work/b/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/b/rootfs/bin/$a"; done
(cd "$work/b" && "$C" spec)
jq '.process.args = ["sleep", "100000"] | .process.terminal = false' "$work/b/config.json" >"$work/c.json"
mv "$work/c.json" "$work/b/config.json"
"$C" --root "$work/state" create -b "$work/b" seal </dev/null >/dev/null 2>&1
"$C" --root "$work/state" start seal
# From inside: every process that is not the sleeper or this probe, and what /proc gives of it.
probe='for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = 1 ] || [ "$p" = $$ ] || [ "$p" = self ] && continue
  c=$(cat $d/comm 2>/dev/null) || continue; case $c in sleep|sh|cat|ls|head) continue ;; esac
  echo "  helper pid $p (comm $c): exe -> $(readlink $d/exe 2>&1 || echo denied); environ: $(cat $d/environ 2>&1 | head -c 60 || true); caps $(grep CapEff $d/status | cut -f2)"
  (exec 3<$d/exe && echo "  opened its exe for reading: reachable") 2>&1 | sed "s/^/  /"; done'
for at in 1 2; do
  for dump in nondumpable dumpable; do
    flags=(-DSPIKE_PAUSE_AT=$at)
    [ $dump = dumpable ] && flags+=(-DSPIKE_KEEP_DUMPABLE)
    gcc -O2 -static "${flags[@]}" -o "$work/helper" bench/spike/exec_helper.c
    echo "pause $at ($([ $at = 1 ] && echo 'host root, all caps' || echo 'program ids and caps')), $dump:"
    "$X" --helper "$work/helper" --seal none --root "$work/state" exec seal true &
    sleep 1
    "$C" --root "$work/state" exec seal sh -c "$probe"
    wait
  done
done

mkdir -p "$work/p"
jq --arg r "$work/b/rootfs" '.root.path = $r | .process.capabilities |= with_entries(.value += ["CAP_SYS_PTRACE"])' \
  "$work/b/config.json" >"$work/p/config.json"
"$C" --root "$work/state" create -b "$work/p" ptrace </dev/null >/dev/null 2>&1
"$C" --root "$work/state" start ptrace
gcc -O2 -static -DSPIKE_PAUSE_AT=2 -o "$work/helper" bench/spike/exec_helper.c
keep='for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = 1 ] || [ "$p" = $$ ] || [ "$p" = self ] && continue
  c=$(cat $d/comm 2>/dev/null) || continue; case $c in sleep|sh|cat|ls|head) continue ;; esac
  echo "  helper pid $p (comm $c, non-dumpable): exe -> $(readlink $d/exe 2>&1)"
  exec 3<$d/exe || exit; while [ -e $d ]; do sleep 0.2; done
  if (exec 4<>/proc/self/fd/3) 2>/dev/null; then echo "  after it exited: its binary OPENED FOR WRITING (host binary reachable)"
  else echo "  after it exited: reopening its binary for writing: $( (exec 4<>/proc/self/fd/3) 2>&1 | sed "s/.*: //")"; fi; done'
for seal in none overlay; do
  echo "CAP_SYS_PTRACE container, pause 2, non-dumpable, seal $seal:"
  "$X" --helper "$work/helper" --seal $seal --root "$work/state" exec ptrace true &
  sleep 1
  "$C" --root "$work/state" exec ptrace sh -c "$keep"
  wait
done
