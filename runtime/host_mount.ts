// A container without a mount namespace of its own (config.json lists none: runtime spec, an
// unlisted namespace is inherited) is built in the caller's: create binds its rootfs onto
// itself here, on the host, and makes that bind private, so that what the init mounts below
// it (proc, /dev, the config's mounts) stays below it and reaches no other namespace; the init
// then enters it by chroot. The host's "/" keeps its propagation (runc makes it rslave).
// delete (and a failed create's undo) detaches the bind, and everything below it, lazily:
// the host's mount table is what it was before create. Which mount is ours is kept in the
// state directory (host-mount.json, apart from state.json so that delete -f of a damaged
// state finds it too).
import * as libc from "../ffi/libc.ts";
import { MNT_DETACH, MS } from "./consts.ts";
import { readMountinfo } from "./mountinfo.ts";

const FILE = "host-mount.json";

/** The bind create made: where (the rootfs's real path) and its mount id. */
export interface HostMount {
  path: string;
  id: number;
}

/**
 * Binds `rootfs` (a real path: no symlinks) onto itself, recursively, then makes the bind
 * recursively private, and records it in `stateDir` before returning. Throws the mount(2)
 * error (nothing is left mounted then).
 */
export function bindRootfsOnHost(rootfs: string, stateDir: string): HostMount {
  const at = (t: ReturnType<typeof readMountinfo>) =>
    t.filter((m) => m.mountPoint === rootfs).map((m) => m.id);
  const before = new Set(at(readMountinfo()));
  libc.mount(rootfs, rootfs, "bind", MS.BIND | MS.REC, null);
  try {
    libc.mount(null, rootfs, null, MS.REC | MS.PRIVATE, null);
    // Mounts are listed in the order they were made: ours is the last new one at that path.
    const id = at(readMountinfo()).filter((i) => !before.has(i)).at(-1);
    if (id === undefined) throw new Error(`the bind of ${rootfs} is not in /proc/self/mountinfo`);
    const mount = { path: rootfs, id };
    Deno.writeTextFileSync(`${stateDir}/${FILE}`, JSON.stringify(mount) + "\n");
    return mount;
  } catch (e) {
    libc.umount2(rootfs, MNT_DETACH);
    throw e;
  }
}

/**
 * Detaches the bind recorded in `stateDir` (and whatever was mounted on or below it since),
 * then forgets it. Nothing to do when there is no record or the mount is gone already. Throws
 * when it cannot be detached (the record stays, so that delete can be run again).
 */
export function releaseHostMount(stateDir: string): void {
  let mount: HostMount;
  try {
    mount = JSON.parse(Deno.readTextFileSync(`${stateDir}/${FILE}`));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw new Error(`cannot read ${stateDir}/${FILE}: ${(e as Error).message}`);
  }
  const ours = () => readMountinfo().some((m) => m.id === mount.id && m.mountPoint === mount.path);
  // Each detach takes the topmost mount at the path: ours, or one stacked on it later.
  for (let i = 0; i < 64 && ours(); i++) {
    try {
      libc.umount2(mount.path, MNT_DETACH);
    } catch (e) {
      throw new Error(`cannot unmount the rootfs bind ${mount.path}: ${(e as Error).message}`);
    }
  }
  if (ours()) throw new Error(`the rootfs bind ${mount.path} is still mounted`);
  Deno.removeSync(`${stateDir}/${FILE}`);
}
