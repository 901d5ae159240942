// The container's root filesystem, set up by the init inside its new mount namespace: the
// mounts of config.json, device nodes, pivot_root, masked and read-only paths. Every system
// call goes through RootfsOps, so the order and flags are unit-tested with a recording fake.
import { MNT_DETACH, MS } from "./consts.ts";
import type { DeviceOp, InitPlan, MountOp } from "./plan.ts";

export type FileKind = "file" | "dir" | "symlink" | "other";

/** The system calls rootfs setup makes; the real one is in init.ts, a fake in the tests. */
export interface RootfsOps {
  mount(
    source: string | null,
    target: string,
    fstype: string | null,
    flags: number,
    data: string | null,
  ): void;
  umount2(target: string, flags: number): void;
  pivotRoot(newRoot: string, putOld: string): void;
  chdir(path: string): void;
  chroot(path: string): void;
  mknod(path: string, type: DeviceOp["type"], mode: number, major: number, minor: number): void;
  chown(path: string, uid: number, gid: number): void;
  symlink(target: string, path: string): void;
  /** lstat: the kind of the entry, or undefined when it does not exist. */
  lkind(path: string): FileKind | undefined;
  /** stat (follows links): for bind sources on the host. */
  kind(path: string): FileKind | undefined;
  readlink(path: string): string;
  mkdir(path: string, mode: number): void;
  createFile(path: string): void;
  remove(path: string): void;
  umask(mask: number): number;
  /** Mount points strictly below `path` (from /proc/self/mountinfo), for recursive options. */
  submounts?(path: string): string[];
  /**
   * Opens `path` (O_PATH, no final symlink followed) and checks it still lies inside `root`;
   * mount(2) is then given the fd's /proc/self/fd path. A fake may leave it out.
   */
  pin?(path: string, root: string): { path: string; release(): void };
}

/** An errno-carrying error, as SysError is; rootfs code matches on `code` only. */
function hasCode(e: unknown, code: string): boolean {
  return typeof e === "object" && e !== null && (e as { code?: string }).code === code;
}

const MAX_SYMLINKS = 255;

/**
 * Resolves `unsafe` (a path as the container sees it) under `root` on the host, following
 * symlinks as if `root` were "/": an absolute link or a `..` never leaves `root`. The part
 * that does not exist yet is appended lexically (the caller creates it, inside `root`).
 */
export function secureJoin(
  ops: Pick<RootfsOps, "lkind" | "readlink">,
  root: string,
  unsafe: string,
): string {
  const base = root.replace(/\/+$/, "");
  const resolved: string[] = [];
  const queue = unsafe.split("/");
  let links = 0;
  let missing = false;
  while (queue.length) {
    const part = queue.shift()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    if (missing) {
      resolved.push(part);
      continue;
    }
    const candidate = `${base}/${[...resolved, part].join("/")}`;
    const kind = ops.lkind(candidate);
    if (kind === undefined) {
      missing = true;
      resolved.push(part);
      continue;
    }
    if (kind === "symlink") {
      if (++links > MAX_SYMLINKS) {
        throw Object.assign(new Error(`${unsafe}: too many levels of symbolic links`), {
          code: "ELOOP",
        });
      }
      const target = ops.readlink(candidate);
      if (target.startsWith("/")) resolved.length = 0;
      queue.unshift(...target.split("/"));
      continue;
    }
    resolved.push(part);
  }
  return resolved.length ? `${base}/${resolved.join("/")}` : base;
}

/** mkdir -p of `path`, which secureJoin already placed under `root`. */
export function mkdirAll(ops: RootfsOps, root: string, path: string, mode = 0o755): void {
  const base = root.replace(/\/+$/, "");
  if (!path.startsWith(base)) throw new Error(`${path} is outside ${base}`);
  const rest = path.slice(base.length).split("/").filter(Boolean);
  let cur = base;
  for (const part of rest) {
    cur = `${cur}/${part}`;
    const k = ops.lkind(cur);
    if (k === "dir") continue;
    if (k === undefined) {
      ops.mkdir(cur, mode);
      continue;
    }
    throw Object.assign(new Error(`mkdir ${cur}: not a directory`), { code: "ENOTDIR" });
  }
}

function parentDir(p: string): string {
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

const REMOUNTABLE = ~(MS.BIND | MS.REC | MS.REMOUNT) & 0xffffffff;

/** Mounts one entry of config.json under `root`. */
export function mountOne(ops: RootfsOps, root: string, m: MountOp): void {
  const target = secureJoin(ops, root, m.destination);
  // Each mount(2) goes to the target through a pinned fd checked to lie inside the rootfs, so
  // a path swapped for a symlink after secureJoin is never followed (runc CVE-2021-30465).
  const at = (fn: (path: string) => void) => {
    const pinned = ops.pin?.(target, root);
    try {
      fn(pinned?.path ?? target);
    } finally {
      pinned?.release();
    }
  };
  if (m.bind) {
    const srcKind = ops.kind(m.source);
    if (srcKind === undefined) {
      throw Object.assign(new Error(`bind mount source ${m.source} does not exist`), {
        code: "ENOENT",
      });
    }
    if (srcKind === "dir") {
      mkdirAll(ops, root, target);
    } else {
      mkdirAll(ops, root, parentDir(target));
      if (ops.lkind(target) === undefined) ops.createFile(target);
    }
    at((t) => ops.mount(m.source, t, "bind", m.flags & (MS.BIND | MS.REC), null));
    // Flags such as ro/nosuid only take effect on a bind through a remount.
    if (m.flags & REMOUNTABLE) {
      at((t) => ops.mount(null, t, null, (m.flags & REMOUNTABLE) | MS.BIND | MS.REMOUNT, null));
    }
    // rro, rnosuid...: every submount a recursive bind brought along gets the flags too.
    if (m.recursiveFlags && (m.flags & MS.REC)) {
      for (const sub of ops.submounts?.(target) ?? []) {
        ops.mount(null, sub, null, m.recursiveFlags | MS.BIND | MS.REMOUNT, null);
      }
    }
  } else {
    mkdirAll(ops, root, target);
    try {
      at((t) => ops.mount(m.source, t, m.type, m.flags, m.data || null));
    } catch (e) {
      // sysfs cannot be mounted from a network namespace we do not own: bind the host's.
      if (m.type !== "sysfs" || !hasCode(e, "EPERM")) throw e;
      at((t) => ops.mount("/sys", t, "bind", MS.BIND | MS.REC, null));
      at((t) => ops.mount(null, t, null, (m.flags & REMOUNTABLE) | MS.BIND | MS.REMOUNT, null));
    }
  }
  for (const p of m.propagation) at((t) => ops.mount(null, t, null, p, null));
}

/** Default device nodes, falling back to bind mounts of the host's where mknod is refused. */
export function createDevices(ops: RootfsOps, root: string, devices: DeviceOp[]): void {
  const old = ops.umask(0);
  try {
    for (const d of devices) {
      const target = secureJoin(ops, root, d.path);
      mkdirAll(ops, root, parentDir(target));
      if (ops.lkind(target) !== undefined) ops.remove(target);
      try {
        ops.mknod(target, d.type, d.mode, d.major, d.minor);
        ops.chown(target, d.uid, d.gid);
      } catch (e) {
        if (!hasCode(e, "EPERM") || d.type === "p") throw e;
        ops.createFile(target);
        ops.mount(d.path, target, "bind", MS.BIND, null);
      }
    }
  } finally {
    ops.umask(old);
  }
}

const DEV_LINKS: [string, string][] = [
  ["/proc/self/fd", "/dev/fd"],
  ["/proc/self/fd/0", "/dev/stdin"],
  ["/proc/self/fd/1", "/dev/stdout"],
  ["/proc/self/fd/2", "/dev/stderr"],
];

export function setupDevLinks(ops: RootfsOps, root: string): void {
  for (const [target, link] of DEV_LINKS) {
    const at = secureJoin(ops, root, link);
    if (ops.lkind(at) === undefined) ops.symlink(target, at);
  }
  // /dev/ptmx points at the container's own devpts instance.
  const ptmx = secureJoin(ops, root, "/dev/ptmx");
  if (ops.lkind(ptmx) !== undefined) ops.remove(ptmx);
  ops.symlink("pts/ptmx", ptmx);
  for (const dir of ["/dev/pts", "/dev/shm"]) mkdirAll(ops, root, secureJoin(ops, root, dir));
}

/** Hides a path from the container: /dev/null over a file, an empty read-only tmpfs over a dir. */
export function maskPath(ops: RootfsOps, path: string): void {
  const k = ops.lkind(path);
  if (k === undefined) return;
  if (k === "dir") ops.mount("tmpfs", path, "tmpfs", MS.RDONLY, null);
  else ops.mount("/dev/null", path, "bind", MS.BIND, null);
}

export function readonlyPath(ops: RootfsOps, path: string): void {
  if (ops.lkind(path) === undefined) return;
  ops.mount(path, path, "bind", MS.BIND | MS.REC, null);
  ops.mount(
    null,
    path,
    null,
    MS.BIND | MS.REMOUNT | MS.RDONLY | MS.REC | MS.NOSUID | MS.NODEV | MS.NOEXEC,
    null,
  );
}

/**
 * The whole rootfs sequence, in runc's order. Runs inside the new mount namespace; when it
 * returns, "/" is the container's root and the cwd is "/".
 */
export function setupRootfs(ops: RootfsOps, plan: InitPlan): void {
  const root = plan.rootfs.replace(/\/+$/, "");
  ops.mount(null, "/", null, plan.rootPropagation, null);
  // The rootfs must be a mount point for pivot_root.
  ops.mount(root, root, "bind", MS.BIND | MS.REC, null);
  for (const m of plan.mounts) mountOne(ops, root, m);
  if (plan.setupDev) {
    createDevices(ops, root, plan.devices);
    setupDevLinks(ops, root);
  } else if (plan.devices.length) {
    createDevices(ops, root, plan.devices);
  }
  // The working directory is created now: later the root may be read-only.
  mkdirAll(ops, root, secureJoin(ops, root, plan.process.cwd));
  ops.chdir(root);
  if (plan.noPivot) {
    ops.mount(root, "/", null, MS.MOVE, null);
    ops.chroot(".");
  } else {
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only ours.
    ops.pivotRoot(".", ".");
    ops.umount2(".", MNT_DETACH);
  }
  ops.chdir("/");
  for (const p of plan.maskedPaths) maskPath(ops, p);
  for (const p of plan.readonlyPaths) readonlyPath(ops, p);
  if (plan.readonly) ops.mount(null, "/", null, MS.BIND | MS.REMOUNT | MS.RDONLY, null);
  if (plan.finalPropagation !== undefined) ops.mount(null, "/", null, plan.finalPropagation, null);
}
