// Shared helpers of the unit tests: the assertions (tests/assert.ts, on node:assert/strict) and a
// recording fake of RootfsOps. The fake's file operations act on a real directory (so
// secureJoin meets real symlinks), while the privileged system calls are only recorded.
import type { DeviceOp, InitPlan } from "../../runtime/plan.ts";
import type { FileKind, RootfsOps } from "../../runtime/rootfs.ts";

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
}

/**
 * RootfsOps whose lkind/kind/readlink/mkdir/createFile/remove/symlink act on the real
 * filesystem, and whose mount/umount2/pivotRoot/chdir/chroot/mknod/chown/umask are recorded
 * only. After pivotRoot or chroot, absolute paths of file operations are taken under
 * `newRoot` (the host directory that became "/"), as they would be in the container.
 */
export class FakeRootfsOps implements RootfsOps {
  calls: Call[] = [];
  private mask = 0o022;
  /** Host directory that "/" means for file operations; "" = the host's "/". */
  private rootDir = "";
  /** Host directory of the last chdir (to know what "." is at pivot_root/chroot). */
  private cwd = "";

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

  private record(op: string, ...args: unknown[]): void {
    this.calls.push({ op, args });
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
  mknod(path: string, type: DeviceOp["type"], mode: number, major: number, minor: number): void {
    this.record("mknod", path, type, mode, major, minor);
    if (this.opts.mknodError) throw sysError(this.opts.mknodError, `mknod ${path}`);
  }
  chown(path: string, uid: number, gid: number): void {
    this.record("chown", path, uid, gid);
  }
  umask(mask: number): number {
    this.record("umask", mask);
    const old = this.mask;
    this.mask = mask;
    return old;
  }
  symlink(target: string, path: string): void {
    this.record("symlink", target, path);
    Deno.symlinkSync(target, this.host(path));
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
  mkdir(path: string, mode: number): void {
    this.record("mkdir", path, mode);
    Deno.mkdirSync(this.host(path), { mode });
  }
  createFile(path: string): void {
    this.record("createFile", path);
    Deno.openSync(this.host(path), { write: true, createNew: true }).close();
  }
  remove(path: string): void {
    this.record("remove", path);
    Deno.removeSync(this.host(path));
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
