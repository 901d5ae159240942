// A container without a mount namespace of its own (config.json lists none: runtime spec, an
// unlisted namespace is inherited) is built in the caller's: create binds its rootfs, here on
// the host, at <state dir>/rootfs (a mount point of its own, so that two such containers of
// one rootfs never stack on each other) and makes that bind private, so that what the init
// mounts below it (proc, /dev, the config's mounts) stays below it and reaches no other
// namespace; the init then enters it by chroot. The host's "/" keeps its propagation (runc
// 1.1.5 makes it rslave).
// delete (and a failed create's undo) detaches the bind, and everything below it, lazily:
// the host's mount table is what it was before create. The bind is announced in the state
// directory (host-mount.json, written before the mount, apart from state.json so that delete
// -f of a damaged state finds it too); while it is there the state directory is never removed
// (a recursive removal would go through the bind into the rootfs).
import * as libc from "../ffi/libc.ts";
import { MNT_DETACH, MS } from "./consts.ts";
import { readMountinfo } from "./mountinfo.ts";

const FILE = "host-mount.json";

/**
 * Binds `rootfs` at `<stateDir>/rootfs`, recursively, then makes the bind recursively private;
 * returns that path (what the init chroots into). Throws the mount(2) error (nothing is left
 * mounted then).
 */
export function bindRootfsOnHost(rootfs: string, stateDir: string): string {
  Deno.mkdirSync(`${stateDir}/rootfs`, { mode: 0o755 });
  const target = Deno.realPathSync(`${stateDir}/rootfs`); // as mountinfo shows it
  Deno.writeTextFileSync(`${stateDir}/${FILE}`, JSON.stringify({ path: target }) + "\n");
  libc.mount(rootfs, target, "bind", MS.BIND | MS.REC, null);
  try {
    libc.mount(null, target, null, MS.REC | MS.PRIVATE, null);
  } catch (e) {
    libc.umount2(target, MNT_DETACH);
    throw e;
  }
  return target;
}

/**
 * Whether the state directory lists the record, from its listing (a read of a missing file is
 * a thrown error: Deno's first in a process costs ~0.4 ms, and nearly every delete has none).
 */
function recorded(stateDir: string): boolean {
  try {
    for (const e of Deno.readDirSync(stateDir)) if (e.name === FILE) return true;
  } catch { /* no state directory: nothing recorded */ }
  return false;
}

/**
 * Detaches whatever is mounted at the path recorded in `stateDir` (the bind, with all below
 * it; the path is the state directory's own, so every mount there is the container's), then
 * forgets it. Nothing to do without a record. Throws when it cannot be detached (the record
 * stays, so that delete can be run again).
 */
export function releaseHostMount(stateDir: string): void {
  if (!recorded(stateDir)) return;
  let path: string;
  try {
    path = JSON.parse(Deno.readTextFileSync(`${stateDir}/${FILE}`)).path;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw new Error(`cannot read ${stateDir}/${FILE}: ${(e as Error).message}`);
  }
  let real: string;
  try {
    real = Deno.realPathSync(`${stateDir}/rootfs`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    Deno.removeSync(`${stateDir}/${FILE}`); // no mount point, so nothing mounted there
    return;
  }
  if (path !== real) {
    throw new Error(`${stateDir}/${FILE} names ${path}, not the state directory's rootfs`);
  }
  const mounted = () => readMountinfo().some((m) => m.mountPoint === path);
  // Private first, the whole tree: a bind below it that is a peer of a host mount (a config
  // mount asking for shared propagation) would carry the detach over to the host's own mounts.
  if (mounted()) {
    try {
      libc.mount(null, path, null, MS.REC | MS.PRIVATE, null);
    } catch { /* the detach below says what is wrong */ }
  }
  for (let i = 0; i < 64 && mounted(); i++) {
    try {
      libc.umount2(path, MNT_DETACH);
    } catch (e) {
      throw new Error(`cannot unmount the rootfs bind ${path}: ${(e as Error).message}`);
    }
  }
  if (mounted()) throw new Error(`the rootfs bind ${path} is still mounted`);
  Deno.removeSync(`${stateDir}/${FILE}`);
}
