// A host binary that capsule runs inside a container (Deno as the init, capsule-nsexec as an
// exec's process, until they execve) must not be writable through /proc/<pid>/exe (runc's CVE-2019-5736). The
// init is started from a read-only view of the binary, never from the path on disk:
//   1. "overlay": a detached overlayfs mount with the binary's directory as its upper lower
//      layer and no upper layer (read-only superblock, which no mount_setattr can undo), made
//      with fsopen/fsconfig/fsmount and unreachable by path (runc 1.2's sealedOverlayfs);
//      costs ~0.1-0.3 ms, needs CAP_SYS_ADMIN (root).
//   2. "memfd": a sealed memfd copy (F_SEAL_WRITE...), when the overlay cannot be made and
//      the binary is writable by this user (rootless with a Deno the user owns); ~95 MB copied.
//   3. "disk": the path itself, only when this user cannot write the binary: then neither can
//      the container, whose ids are at most this user's.
// See README "Security".
import * as libc from "../ffi/libc.ts";

/** How the init's binary is reached: `path` to execve, and the fd behind it (if any). */
export interface SealedExe {
  /** What to execve: `/proc/self/fd/N` (resolved by the child, which inherits N) or a path. */
  path: string;
  /** The O_PATH (overlay) or memfd fd that `path` names; close it with `release`. */
  fd?: number;
  how: "overlay" | "memfd" | "disk";
  /** Closes the fd: call once the child has exec'd (the child's exe keeps the file alive). */
  release(): void;
}

/** overlayfs's escaping of ':' and '\' in a lowerdir path. */
export function escapeLowerDir(path: string): string {
  return path.replaceAll("\\", "\\\\").replaceAll(":", "\\:");
}

function split(exe: string): [dir: string, name: string] {
  const i = exe.lastIndexOf("/");
  return [exe.slice(0, i) || "/", exe.slice(i + 1)];
}

function viaOverlay(exe: string): number {
  const [dir, name] = split(exe);
  // A lower-only overlay needs two layers; the second is an empty directory of our own, below
  // the binary's (so nothing in it can mask the binary), removed once the mount exists.
  const empty = Deno.makeTempDirSync({ prefix: "capsule-exe-" });
  let mnt = -1;
  try {
    mnt = libc.fsmountReadOnly("overlay", [
      ["lowerdir", `${escapeLowerDir(dir)}:${escapeLowerDir(empty)}`],
      ["xino", "off"],
    ]);
    return libc.openat(mnt, name, libc.O.PATH | libc.O.NOFOLLOW | libc.O.CLOEXEC);
  } finally {
    if (mnt >= 0) libc.close(mnt);
    try {
      Deno.removeSync(empty);
    } catch { /* a stray empty directory in the temp dir: harmless */ }
  }
}

/**
 * A read-only handle on `exe` (default: this Deno) to start the init from. Never throws for
 * the overlay's absence: falls back as described above; throws SysError only when a memfd copy
 * is needed and fails.
 */
export function sealedExe(exe: string = Deno.execPath()): SealedExe {
  const make = (fd: number, how: SealedExe["how"]): SealedExe => {
    let open = true;
    return {
      path: `/proc/self/fd/${fd}`,
      fd,
      how,
      release: () => {
        if (open) libc.close(fd);
        open = false;
      },
    };
  };
  try {
    return make(viaOverlay(exe), "overlay");
  } catch { /* no CAP_SYS_ADMIN (rootless), no overlayfs, or an old kernel */ }
  if (!libc.accessWritable(exe)) return { path: exe, how: "disk", release: () => {} };
  const src = libc.open(exe, libc.O.RDONLY | libc.O.CLOEXEC);
  try {
    const size = Deno.statSync(exe).size;
    return make(libc.sealedMemfdCopy("capsule-init", src, size), "memfd");
  } finally {
    libc.close(src);
  }
}
