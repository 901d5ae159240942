#!/usr/bin/env bash
# SPIKE, not used by the product: what can a process in the container do to the exec helper while
# it runs? Builds the helper with a 2 s pause at one point, runs the spike's exec with it, and
# probes from a second exec in the container meanwhile (every process but the sleeper and the
# probe's own: its exe link, caps, environ, and whether its exe and /proc/<pid>/mem open):
#   pause 1: right after reading the plan (host root, every capability, host mount namespace)
#   pause 2: after dropping to the program's ids and caps, before the fork into the PID namespace
#   pause 3: right before seccomp and execve (in the late-fork design: the forked child)
# 1. A default container (caps: AUDIT_WRITE, KILL, NET_BIND_SERVICE), the helper spawned into the
#    PID namespace (--pid early, runtime/spawn.ts's way), with and without PR_SET_DUMPABLE 0.
# 2. A container granted CAP_SYS_PTRACE (a debugger's), which dumpable does not stop: --pid early
#    against the default late fork; then the sealed overlay view against the bare binary (the
#    probe keeps the exe open and, once the helper is gone, reopens it for writing; never writes).
# 3. The same container against today's `capsule exec` (a Deno exec-init spawned into the PID
#    namespace) and runc's exec: a static C loop (mem_probe.c) in the container during 10 execs.
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
trap 'for i in seal ptrace; do "$C" --root "$work/state" delete -f $i >/dev/null 2>&1; done; runc --root "$work/state-runc" delete -f ptrace >/dev/null 2>&1; rm -rf "$work"' EXIT
mkdir -p "$work/b/rootfs/bin" "$work/b/rootfs/"{proc,sys,dev,tmp,etc,root} "$work/p"
cp "$(command -v busybox)" "$work/b/rootfs/bin/busybox"
for a in $(busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/b/rootfs/bin/$a"; done
(cd "$work/b" && "$C" spec)
jq '.process.args = ["sleep", "100000"] | .process.terminal = false' "$work/b/config.json" >"$work/c.json"
mv "$work/c.json" "$work/b/config.json"
jq --arg r "$work/b/rootfs" '.root.path = $r | .process.capabilities |= with_entries(.value += ["CAP_SYS_PTRACE"])' \
  "$work/b/config.json" >"$work/p/config.json"
for id in seal ptrace; do
  "$C" --root "$work/state" create -b "$work/$([ $id = seal ] && echo b || echo p)" $id </dev/null >/dev/null 2>&1
  "$C" --root "$work/state" start $id
done
probe='n=0; for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = 1 ] || [ "$p" = $$ ] && continue
  c=$(cat $d/comm 2>/dev/null) || continue; case $c in sleep|sh|cat|ls|head|grep|cut) continue ;; esac; n=1
  echo "    pid $p: exe -> $(readlink $d/exe 2>&1 || true); caps $(grep CapEff $d/status | cut -f2); environ: $( (cat $d/environ | head -c 40) 2>&1 || true)"
  if (exec 3<$d/exe) 2>/dev/null; then echo "    its exe opens"; else echo "    its exe: $( (exec 3<$d/exe) 2>&1 | sed "s/.*: //")"; fi
  if (exec 3<>$d/mem) 2>/dev/null; then echo "    its /proc/$p/mem OPENS READ-WRITE"; else echo "    its mem: $( (exec 3<>$d/mem) 2>&1 | sed "s/.*: //")"; fi
done; [ $n = 1 ] || echo "    no helper process in the container"'
try() { # id, pause point, --pid mode, extra gcc flags...
  local id=$1 at=$2 mode=$3
  shift 3
  gcc -O2 -static -DSPIKE_PAUSE_AT="$at" "$@" -o "$work/helper" bench/spike/exec_helper.c
  "$X" --helper "$work/helper" --seal none --pid "$mode" --root "$work/state" exec "$id" true &
  sleep 1
  "$C" --root "$work/state" exec "$id" sh -c "$probe"
  wait
}
echo "1. default container, helper spawned into the PID namespace (--pid early), unsealed:"
for at in 1 2; do
  echo "  pause $at, non-dumpable:"; try seal $at early
  echo "  pause $at, left dumpable:"; try seal $at early -DSPIKE_KEEP_DUMPABLE
done
echo "2. container with CAP_SYS_PTRACE, unsealed:"
echo "  --pid early, pause 1:"; try ptrace 1 early
for at in 1 2 3; do echo "  late fork (default), pause $at:"; try ptrace $at late; done
gcc -O2 -static -DSPIKE_PAUSE_AT=3 -o "$work/helper" bench/spike/exec_helper.c
keep='for d in /proc/[0-9]*; do p=${d#/proc/}; [ "$p" = 1 ] || [ "$p" = $$ ] && continue
  c=$(cat $d/comm 2>/dev/null) || continue; case $c in sleep|sh|cat|ls|head) continue ;; esac
  echo "    pid $p: exe -> $(readlink $d/exe 2>&1)"
  exec 3<$d/exe || exit; while [ -e $d ]; do sleep 0.2; done
  if (exec 4<>/proc/self/fd/3) 2>/dev/null; then echo "    after it exited: its binary OPENED FOR WRITING (the host file)"
  else echo "    after it exited: reopening its binary for writing: $( (exec 4<>/proc/self/fd/3) 2>&1 | sed "s/.*: //")"; fi; done'
for seal in none overlay; do
  echo "  late fork, pause 3, seal $seal: keep the exe, reopen it for writing once the helper is gone"
  "$X" --helper "$work/helper" --seal $seal --root "$work/state" exec ptrace true &
  sleep 1
  "$C" --root "$work/state" exec ptrace sh -c "$keep"
  wait
done
echo "3. container with CAP_SYS_PTRACE, 10 execs of true while mem_probe runs inside:"
gcc -O2 -static -o "$work/b/rootfs/mem_probe" bench/spike/mem_probe.c
runc --root "$work/state-runc" create -b "$work/p" ptrace </dev/null >/dev/null 2>&1
runc --root "$work/state-runc" start ptrace
for rt in capsule runc spike; do
  case $rt in
    capsule) ex=("$C" --root "$work/state" exec ptrace) ;;
    runc) ex=(runc --root "$work/state-runc" exec ptrace) ;;
    spike) ex=("$X" --root "$work/state" exec ptrace) ;;
  esac
  # the probe runs through today's capsule exec (or runc's) in both cases; only the 10 execs differ
  if [ $rt = runc ]; then runc --root "$work/state-runc" exec ptrace /mem_probe >"$work/probe.out" 2>&1 &
  else "$C" --root "$work/state" exec ptrace /mem_probe >"$work/probe.out" 2>&1 & fi
  sleep 0.5
  for _ in $(seq 10); do "${ex[@]}" true; done
  wait
  echo "  $rt exec:"
  sed 's/^/    /' "$work/probe.out"
done
