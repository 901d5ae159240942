// The few system calls extraction needs that Deno does not offer for a symlink itself (its
// chown/utime follow links): lchown, lutimes, lsetxattr (in ffi/libc.ts, which returns errno
// numbers: the caller decides what to skip), and mknod for device entries.
import { makedev, mknod } from "../ffi/libc.ts";

export { lchown, lsetxattr, lutimes } from "../ffi/libc.ts";

const S_IF = { char: 0o020000, block: 0o060000, fifo: 0o010000 } as const;

export function makeNode(
  path: string,
  type: keyof typeof S_IF,
  mode: number,
  major: number,
  minor: number,
): void {
  mknod(path, S_IF[type] | (mode & 0o7777), makedev(major, minor));
}
