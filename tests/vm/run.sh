#!/usr/bin/env bash
# Runs tests in a cgroup v2 VM (qemu, software emulation; build it first with build.sh):
#   tests/vm/run.sh [--deno-dir] TESTFILE...     deno test --no-check -A TESTFILE... inside
#   tests/vm/run.sh [--deno-dir] --sh 'COMMAND'  a shell command inside (busybox sh)
# The checkout is shared read-only (9p) and mounted, with a tmpfs overlay, at the same path
# inside; cgroup2 is at /sys/fs/cgroup with cpu memory pids io cpuset enabled for children.
# --deno-dir also shares $DENO_DIR (default ~/.cache/deno) read-only, e.g. for npm packages.
# Prints the output from inside and exits with its status, read from the marker line the
# VM's /init prints on the serial console; 124 on timeout ($CAPSULE_VM_TIMEOUT s, 240),
# 125 when the VM ended without a marker.
set -uo pipefail
VM_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$VM_DIR/../.." && pwd)
CACHE=${CAPSULE_VM_CACHE:-$VM_DIR/.cache}
TIMEOUT=${CAPSULE_VM_TIMEOUT:-240}

share_deno_dir=0
cmd=
while [ $# -gt 0 ]; do
  case $1 in
  --deno-dir) share_deno_dir=1; shift ;;
  --sh) cmd=$2; shift 2 ;;
  --) shift; break ;;
  *) break ;;
  esac
done
if [ -z "$cmd" ]; then
  [ $# -gt 0 ] || { echo "usage: $0 [--deno-dir] TESTFILE... | --sh COMMAND" >&2; exit 2; }
  q=()
  for a in "$@"; do q+=("'${a//\'/\'\\\'\'}'"); done
  cmd="deno test --no-check -A ${q[*]}"
fi
for f in vmlinuz initrd.cpio; do
  [ -f "$CACHE/$f" ] || { echo "$CACHE/$f missing: run tests/vm/build.sh first" >&2; exit 2; }
done
case $REPO in *[[:space:]]* | *\"*) echo "checkout path must not contain spaces: $REPO" >&2; exit 2 ;; esac

run=$(mktemp -d /tmp/capsule-vm.XXXXXX)
trap '[ -n "${CAPSULE_VM_LOG:-}" ] && cp "$run/console.log" "$CAPSULE_VM_LOG"; rm -rf "$run"' EXIT
printf '%s\n' "$cmd" >"$run/cmd.sh"

append="console=ttyS0 quiet loglevel=3 panic=-1 CAPSULE_REPO=$REPO"
virtfs=(
  -virtfs "local,path=$REPO,mount_tag=host,security_model=none,readonly=on"
  -virtfs "local,path=$run,mount_tag=run,security_model=none"
)
if [ "$share_deno_dir" = 1 ]; then
  dd=${DENO_DIR:-$HOME/.cache/deno}
  if [ -d "$dd" ]; then
    virtfs+=(-virtfs "local,path=$dd,mount_tag=denodir,security_model=none,readonly=on")
    append+=" CAPSULE_DENO_DIR=1"
  fi
fi

# Everything after the VM's begin marker is the command's output; the exit marker ends it.
timeout -k 5 "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m "${CAPSULE_VM_MEM:-2048}" \
  -smp "${CAPSULE_VM_CPUS:-2}" -nographic -nic none -no-reboot -monitor none -serial stdio \
  -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initrd.cpio" -append "$append" "${virtfs[@]}" \
  </dev/null 2>&1 | tr -d '\r' | tee "$run/console.log" |
  awk '/^CAPSULE_VM_EXIT=/ { on = 0; next } on && /^$/ { blank++; next } on { for (; blank > 0; blank--) print ""; print; fflush() } /CAPSULE_VM_BEGIN$/ { on = 1 }'
qemu_status=${PIPESTATUS[0]}
marker=$(grep -a '^CAPSULE_VM_EXIT=[0-9]*$' "$run/console.log" | tail -1)
if [ -n "$marker" ]; then
  exit "${marker#CAPSULE_VM_EXIT=}"
fi
if [ "$qemu_status" = 124 ] || [ "$qemu_status" = 137 ]; then
  echo "tests/vm/run.sh: the VM did not finish within ${TIMEOUT}s; console tail:" >&2
  status=124
else
  echo "tests/vm/run.sh: the VM ended (qemu status $qemu_status) without a result marker; console tail:" >&2
  status=125
fi
tail -n 40 "$run/console.log" >&2
exit "$status"
