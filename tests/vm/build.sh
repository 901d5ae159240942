#!/usr/bin/env bash
# Builds a tiny cgroup v2 VM for tests/vm/run.sh: a Debian kernel (vmlinuz + the virtio/9p/
# overlay modules) and an initramfs with static busybox, the deno binary and its glibc
# libraries, and tests/vm/init. Idempotent: reuses the cached kernel and rebuilds the
# initramfs only when an input changed. Installs nothing; needs (as root, once):
#   apt-get install qemu-system-x86 busybox-static
# The kernel package is fetched with `apt-get download` (the one linux-image-amd64 depends
# on, or $CAPSULE_VM_KERNEL_PKG) into the cache dir, $CAPSULE_VM_CACHE or tests/vm/.cache.
# Prints the cache dir (holding vmlinuz and initrd.cpio) as its last line.
set -euo pipefail
VM_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$VM_DIR/../.." && pwd)
CACHE=${CAPSULE_VM_CACHE:-$VM_DIR/.cache}
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

die() { echo "tests/vm/build.sh: $*" >&2; exit 1; }

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: apt-get install qemu-system-x86"
BUSYBOX=${BUSYBOX:-$(command -v busybox || true)}
[ -n "$BUSYBOX" ] || die "busybox missing: apt-get install busybox-static"
BUSYBOX=$(readlink -f "$BUSYBOX")
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked: apt-get install busybox-static"
fi
DENO=${DENO:-$(command -v deno || echo "$REPO/tools/node_modules/.bin/deno")}
DENO=$(readlink -f "$DENO")
[ -x "$DENO" ] || die "deno not found (set DENO=/path/to/deno)"

# One build at a time per cache dir (tests may run this concurrently).
exec 9>"$CACHE/.lock"
flock 9

# --- kernel ---------------------------------------------------------------------------------
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci 9pnet 9pnet_virtio netfs fscache 9p overlay"
KDIR=$CACHE/kernel
if [ ! -f "$KDIR/vmlinuz" ] || [ ! -f "$KDIR/modules.list" ]; then
  pkg=${CAPSULE_VM_KERNEL_PKG:-}
  if [ -z "$pkg" ]; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
      awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  fi
  [ -n "$pkg" ] || die "cannot tell which kernel package linux-image-amd64 depends on (apt-get update?)"
  mkdir -p "$CACHE/debs"
  deb=$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    echo "build.sh: apt-get download $pkg" >&2
    (cd "$CACHE/debs" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
      die "apt-get download $pkg failed"
    deb=$(ls "$CACHE/debs/${pkg}_"*.deb 2>/dev/null | head -1 || true)
    [ -n "$deb" ] || die "apt-get download $pkg left no .deb in $CACHE/debs"
  fi
  rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp/x" "$KDIR.tmp/modules"
  # Only the few files needed, not the whole 400 MB module tree.
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$KDIR.tmp/x" --wildcards \
    '*/vmlinuz-*' '*/modules.builtin' '*/drivers/virtio/*' '*/net/9p/*' '*/fs/9p/*' \
    '*/fs/netfs/*' '*/fs/fscache/*' '*/fs/overlayfs/*'
  vmlinuz=$(find "$KDIR.tmp/x" -name 'vmlinuz-*' | head -1)
  [ -n "$vmlinuz" ] || die "no vmlinuz in $deb"
  cp "$vmlinuz" "$KDIR.tmp/vmlinuz"
  builtin=$(find "$KDIR.tmp/x" -name modules.builtin | head -1)
  : >"$KDIR.tmp/modules.list"
  for m in $MODULES; do
    f=$(find "$KDIR.tmp/x" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -1)
    if [ -z "$f" ]; then
      # Built into the kernel: nothing to load.
      grep -q "/$m.ko\$" "$builtin" 2>/dev/null || die "module $m neither in $deb nor built in"
      continue
    fi
    case $f in
    *.xz) xz -dc "$f" >"$KDIR.tmp/modules/$m.ko" ;;
    *.zst) zstd -qdc "$f" >"$KDIR.tmp/modules/$m.ko" ;;
    *) cp "$f" "$KDIR.tmp/modules/$m.ko" ;;
    esac
    echo "$m" >>"$KDIR.tmp/modules.list"
  done
  basename "$deb" >"$KDIR.tmp/package"
  rm -rf "$KDIR.tmp/x" "$KDIR"
  mv "$KDIR.tmp" "$KDIR"
fi

# --- initramfs ------------------------------------------------------------------------------
libs=$(ldd "$DENO" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
stamp=$(
  {
    stat -c '%n %s %Y' "$DENO" "$BUSYBOX" $libs "$KDIR/vmlinuz"
    cat "$VM_DIR/init" "$VM_DIR/build.sh" "$KDIR/modules.list"
  } | sha256sum | cut -d' ' -f1
)
if [ -f "$CACHE/initrd.cpio" ] && [ "$(cat "$CACHE/initrd.stamp" 2>/dev/null)" = "$stamp" ]; then
  ln -sf kernel/vmlinuz "$CACHE/vmlinuz"
  echo "$CACHE"
  exit 0
fi
ROOT=$CACHE/root.tmp
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,mnt,newroot,lib/vm-modules}
mknod -m 600 "$ROOT/dev/console" c 5 1
mknod -m 666 "$ROOT/dev/null" c 1 3
cp "$BUSYBOX" "$ROOT/bin/busybox"
for a in $("$BUSYBOX" --list); do
  [ "$a" = busybox ] || ln -s busybox "$ROOT/bin/$a"
done
cp "$DENO" "$ROOT/bin/deno"
for l in $libs; do
  mkdir -p "$ROOT$(dirname "$l")"
  cp -L "$l" "$ROOT$l"
done
for m in $(cat "$KDIR/modules.list"); do cp "$KDIR/modules/$m.ko" "$ROOT/lib/vm-modules/"; done
cp "$KDIR/modules.list" "$ROOT/lib/vm-modules/order"
cp "$VM_DIR/init" "$ROOT/init"
chmod 755 "$ROOT/init"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$ROOT/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOT/etc/group"
echo capsule-vm >"$ROOT/etc/hostname"
(cd "$ROOT" && find . | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) >"$CACHE/initrd.cpio.tmp"
mv "$CACHE/initrd.cpio.tmp" "$CACHE/initrd.cpio"
rm -rf "$ROOT"
echo "$stamp" >"$CACHE/initrd.stamp"
ln -sf kernel/vmlinuz "$CACHE/vmlinuz"
echo "$CACHE"
