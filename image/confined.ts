// Files inside a directory that is not capsule's to trust (an image layer or its overlay, an
// unpacked archive directory), opened from an fd on that directory by openat2, never by
// joining path strings: a symlink on the way is resolved inside the directory (RESOLVE_IN_ROOT,
// as the container sees it: an absolute link leads to the image's own root) or refused when
// it leads out (RESOLVE_BENEATH), and no magic link of /proc is followed. A file is opened
// O_PATH first and its type checked through that fd before any read: a FIFO or a device is
// never opened for reading (no hang, no device side effect). No tar code: on the start path.
import * as libc from "../ffi/libc.ts";

/** How a path is resolved under its directory (see the module comment). */
export type Scope = "in-root" | "beneath";

/** An O_PATH fd on the directory `path` (the directory itself, not followed if a symlink). */
export function openDir(path: string): number {
  return libc.open(path, libc.O.PATH | libc.O.DIRECTORY | libc.O.CLOEXEC);
}

/**
 * An O_PATH fd on `rel` (relative, "/"-separated) under the directory open as `dirFd`, its final
 * symlink followed within the same bounds. Throws SysError: ENOENT, ELOOP (a link loop), EXDEV
 * (with "beneath": a path that leads out of the directory).
 */
export function openUnder(dirFd: number, rel: string, scope: Scope): number {
  const resolve = libc.RESOLVE.NO_MAGICLINKS |
    (scope === "in-root" ? libc.RESOLVE.IN_ROOT : libc.RESOLVE.BENEATH);
  return libc.openat2(dirFd, rel, libc.O.PATH | libc.O.CLOEXEC, resolve);
}

/** What the fd holds (through /proc/self/fd: the file itself, whatever path named it). */
export function statFd(fd: number): Deno.FileInfo {
  return Deno.statSync(`/proc/self/fd/${fd}`);
}

/** The kind of a non-regular file, for an error message. */
export function kindOf(st: Deno.FileInfo): string {
  if (st.isDirectory) return "a directory";
  if (st.isFifo) return "a FIFO";
  if (st.isCharDevice) return "a character device";
  if (st.isBlockDevice) return "a block device";
  if (st.isSocket) return "a socket";
  return "not a regular file";
}

/** The regular file open O_PATH as `fd`, open again for reading (its own inode, no lookup). */
export function reopenSync(fd: number): Deno.FsFile {
  return Deno.openSync(`/proc/self/fd/${fd}`, { read: true });
}

/** As reopenSync. */
export function reopen(fd: number): Promise<Deno.FsFile> {
  return Deno.open(`/proc/self/fd/${fd}`, { read: true });
}

/**
 * The first `max` bytes of the regular file open O_PATH as `fd`, and whether it has more
 * (`more`: it grew or was larger than `max`).
 */
export function readUpTo(fd: number, max: number): { data: Uint8Array; more: boolean } {
  using f = reopenSync(fd);
  const buf = new Uint8Array(max + 1);
  let n = 0;
  while (n < buf.length) {
    const r = f.readSync(buf.subarray(n));
    if (r === null || r === 0) break;
    n += r;
  }
  return { data: buf.subarray(0, Math.min(n, max)), more: n > max };
}
