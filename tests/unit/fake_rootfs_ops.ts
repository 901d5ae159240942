// Shared helpers of the unit tests: the assertions (tests/assert.ts, on node:assert/strict) and a
// recording fake of RootfsOps. The fake's file operations act on a real directory (so
// secureJoin meets real symlinks), while the privileged system calls are only recorded.
import type { DeviceOp, InitPlan } from "../../runtime/plan.ts";
import type { FdInfo, FileKind, RootfsOps } from "../../runtime/rootfs.ts";
import * as libc from "../../ffi/libc.ts";
import type { MountEntry } from "../../runtime/mountinfo.ts";

// ---------------------------------------------------------------------------------------------
// Assertions: node:assert/strict underneath (tests/assert.ts)

export {
  assert,
  assertEquals,
  AssertionError,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
  deepEqual,
} from "../assert.ts";

// ---------------------------------------------------------------------------------------------
// The recording fake

export interface Call {
  op: string;
  args: unknown[];
}

/** An errno-carrying error like SysError: rootfs code only looks at `code`. */
export function sysError(code: string, what = "operation"): Error {
  return Object.assign(new Error(`${what}: ${code}`), { code });
}

/** The system calls that change the mount table or process state (not plain file I/O). */
export const SYSCALLS = new Set([
  "mount",
  "umount2",
  "pivotRoot",
  "chdir",
  "chroot",
  "mknod",
  "chown",
  "umask",
  "sysctl",
]);

export interface FakeOptions {
  /** Return an errno code to make this mount(2) call fail (after it is recorded). */
  failMount?: (
    source: string | null,
    target: string,
    fstype: string | null,
    flags: number,
  ) => string | undefined;
  /** Errno code thrown by every mknod (e.g. "EPERM" in a user namespace). */
  mknodError?: string;
  /**
   * Called before each openAt (host path of the directory, the name): a test swaps a
   * component for a symlink there, as another container sharing the directory could.
   */
  beforeOpenAt?: (dir: string, name: string) => void;
  /** What mountTable() returns (default: none), and umount2's errno by target. */
  mountTable?: MountEntry[];
  failUmount?: (target: string) => string | undefined;
}

const O_PATH_NOFOLLOW = libc.O.PATH | libc.O.NOFOLLOW | libc.O.CLOEXEC;
const STEP = libc.RESOLVE.BENEATH | libc.RESOLVE.NO_SYMLINKS | libc.RESOLVE.NO_MAGICLINKS;

function orUndefined(fn: () => number): number | undefined {
  try {
    return fn();
  } catch (e) {
    if ((e as libc.SysError).code === "ENOENT") return undefined;
    throw e;
  }
}

/**
 * RootfsOps whose file operations (openAt, mkdirAt, createAt, symlinkAt, unlinkAt, stat...)
 * are the real fd-relative system calls on a real directory (no privilege needed), so a
 * symlink swapped in between meets the kernel's rules; mount/umount2/pivotRoot/chdir/chroot/
 * mknod/chown/umask/sysctl are only recorded (mknod leaves an empty file standing for the
 * node). Calls are recorded with paths: a fd-relative call as "<dir's path>/<name>", an fd
 * given to mount(2) as its path. After pivotRoot or chroot, absolute paths are taken under
 * `newRoot` (the host directory that became "/") and shown as the container sees them.
 */
export class FakeRootfsOps implements RootfsOps {
  calls: Call[] = [];
  private mask = 0o022;
  /** Host directory that "/" means for file operations; "" = the host's "/". */
  private rootDir = "";
  /** Host directory of the last chdir (to know what "." is at pivot_root/chroot). */
  private cwd = "";
  /** Device nodes "made" by mknodAt, by host path. */
  private devices = new Map<string, { type: "c" | "b"; major: number; minor: number }>();
  /** fds this fake opened and has not closed (a test checks none leak). */
  open = new Set<number>();

  constructor(private readonly opts: FakeOptions = {}) {}

  /** The recorded calls, keeping only the ops named (default: the syscalls). */
  ops(names: Set<string> = SYSCALLS): Call[] {
    return this.calls.filter((c) => names.has(c.op));
  }

  /** The recorded mount(2) calls as [source, target, fstype, flags, data]. */
  mounts(): unknown[][] {
    return this.calls.filter((c) => c.op === "mount").map((c) => c.args);
  }

  private host(p: string): string {
    return this.rootDir && p.startsWith("/") ? `${this.rootDir}${p}` : p;
  }

  /** A host path as the container sees it once "/" is rootDir. */
  private shown(p: string): string {
    if (!this.rootDir) return p;
    if (p === this.rootDir) return "/";
    return p.startsWith(this.rootDir + "/") ? p.slice(this.rootDir.length) : p;
  }

  private realPath(fd: number): string {
    return Deno.readLinkSync(`/proc/self/fd/${fd}`);
  }

  private at(dirFd: number, name: string): string {
    return this.shown(`${this.realPath(dirFd)}/${name}`);
  }

  private record(op: string, ...args: unknown[]): void {
    this.calls.push({ op, args });
  }

  private track(fd: number | undefined): number | undefined {
    if (fd !== undefined) this.open.add(fd);
    return fd;
  }

  mount(
    source: string | null,
    target: string,
    fstype: string | null,
    flags: number,
    data: string | null,
  ): void {
    this.record("mount", source, target, fstype, flags, data);
    const code = this.opts.failMount?.(source, target, fstype, flags);
    if (code) throw sysError(code, `mount ${target}`);
  }
  umount2(target: string, flags: number): void {
    this.record("umount2", target, flags);
    const code = this.opts.failUmount?.(target);
    if (code) throw sysError(code, `umount ${target}`);
  }
  mountTable(): MountEntry[] {
    return this.opts.mountTable ?? [];
  }
  pivotRoot(newRoot: string, putOld: string): void {
    this.record("pivotRoot", newRoot, putOld);
    if (newRoot === ".") this.rootDir = this.cwd;
  }
  chdir(path: string): void {
    this.record("chdir", path);
    this.cwd = this.host(path);
  }
  chroot(path: string): void {
    this.record("chroot", path);
    if (path === ".") this.rootDir = this.cwd;
  }
  umask(mask: number): number {
    this.record("umask", mask);
    const old = this.mask;
    this.mask = mask;
    return old;
  }
  mknodAt(
    dirFd: number,
    name: string,
    type: DeviceOp["type"],
    mode: number,
    major: number,
    minor: number,
  ): void {
    this.record("mknod", this.at(dirFd, name), type, mode, major, minor);
    if (this.opts.mknodError) throw sysError(this.opts.mknodError, `mknod ${name}`);
    libc.close(libc.openat2(dirFd, name, libc.O.CREAT | libc.O.EXCL | libc.O.WRONLY, STEP, mode));
    if (type === "c" || type === "b") {
      this.devices.set(`${this.realPath(dirFd)}/${name}`, { type, major, minor });
    }
  }
  chownAt(dirFd: number, name: string, uid: number, gid: number): void {
    this.record("chown", this.at(dirFd, name), uid, gid);
  }
  sysctl(path: string, value: string): void {
    this.record("sysctl", path, value);
  }
  lkind(path: string): FileKind | undefined {
    return statKind(this.host(path), false);
  }
  kind(path: string): FileKind | undefined {
    return statKind(this.host(path), true);
  }
  readlink(path: string): string {
    this.record("readlink", path);
    return Deno.readLinkSync(this.host(path));
  }
  openDir(path: string): number {
    return this.track(libc.open(this.host(path), libc.O.PATH | libc.O.DIRECTORY | libc.O.CLOEXEC))!;
  }
  openAt(dirFd: number, name: string): number | undefined {
    this.opts.beforeOpenAt?.(this.realPath(dirFd), name);
    return this.track(orUndefined(() => libc.openat2(dirFd, name, O_PATH_NOFOLLOW, STEP)));
  }
  openInRoot(rootFd: number, path: string): number | undefined {
    return this.track(orUndefined(() =>
      libc.openat2(
        rootFd,
        path,
        libc.O.PATH | libc.O.CLOEXEC,
        libc.RESOLVE.IN_ROOT | libc.RESOLVE.NO_MAGICLINKS,
      )
    ));
  }
  mkdirAt(dirFd: number, name: string, mode: number): void {
    this.record("mkdir", this.at(dirFd, name), mode);
    libc.mkdirat(dirFd, name, mode);
  }
  createAt(dirFd: number, name: string, mode: number): void {
    this.record("createFile", this.at(dirFd, name));
    libc.close(
      libc.openat2(dirFd, name, libc.O.CREAT | libc.O.EXCL | libc.O.WRONLY, STEP, mode),
    );
  }
  symlinkAt(target: string, dirFd: number, name: string): void {
    this.record("symlink", target, this.at(dirFd, name));
    libc.symlinkat(target, dirFd, name);
  }
  unlinkAt(dirFd: number, name: string, dir: boolean): void {
    this.record("remove", this.at(dirFd, name));
    libc.unlinkat(dirFd, name, dir);
  }
  stat(fd: number): FdInfo {
    const st = libc.fstatFd(fd);
    const fmt = st.mode & 0o170000;
    const kind: FileKind = fmt === 0o040000
      ? "dir"
      : fmt === 0o100000
      ? "file"
      : fmt === 0o120000
      ? "symlink"
      : "other";
    const made = this.devices.get(this.realPath(fd));
    if (made) return { kind: "other", mode: st.mode & 0o7777, dev: made };
    const dev = fmt === 0o020000 || fmt === 0o060000
      ? {
        type: fmt === 0o020000 ? "c" as const : "b" as const,
        major: st.rdevMajor,
        minor: st.rdevMinor,
      }
      : undefined;
    return { kind, mode: st.mode & 0o7777, dev };
  }
  fdPath(fd: number): string {
    return this.shown(this.realPath(fd));
  }
  close(fd: number): void {
    this.open.delete(fd);
    libc.close(fd);
  }
}

function statKind(path: string, follow: boolean): FileKind | undefined {
  let info: Deno.FileInfo;
  try {
    info = follow ? Deno.statSync(path) : Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  if (info.isSymlink) return "symlink";
  if (info.isDirectory) return "dir";
  if (info.isFile) return "file";
  return "other";
}

/** A minimal plan for rootfs tests (no mounts, no devices, not read-only). */
export function basePlan(rootfs: string, over: Partial<InitPlan> = {}): InitPlan {
  return {
    id: "t",
    rootfs,
    readonly: false,
    rootPropagation: 16384 | (1 << 19), // MS_REC | MS_SLAVE
    noPivot: false,
    namespaces: [{ type: "mount" }],
    mounts: [],
    setupDev: false,
    devices: [],
    maskedPaths: [],
    readonlyPaths: [],
    sysctl: {},
    process: {
      terminal: false,
      args: ["sh"],
      env: [],
      cwd: "/",
      uid: 0,
      gid: 0,
      additionalGids: [],
      umask: 0o022,
      rlimits: [],
      noNewPrivileges: false,
    },
    execFifoFd: 99,
    setsid: false,
    ...over,
  };
}

/** Runs `fn` with a fresh temp dir (its real path, no symlinks in it), removed afterwards. */
export async function withTempDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = Deno.realPathSync(await Deno.makeTempDir({ prefix: "capsule-unit-" }));
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
