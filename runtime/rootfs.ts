// The container's root filesystem, set up by the init inside its new mount namespace: the
// mounts of config.json, device nodes, pivot_root, sysctls, masked and read-only paths. Every
// system call goes through RootfsOps, so the order and flags are unit-tested with a fake.
// Nothing is created or mounted through a path that could be swapped for a symlink meanwhile
// (a directory shared with another container): every component is created and opened fd by
// fd from an fd on the root, never following a symlink, and mount(2) is given the target's
// fd (/proc/self/fd/N), the fix runc made in 1.1.14.
import { MNT_DETACH, MS } from "./consts.ts";
import { type MountEntry, mountsToDetach } from "./mountinfo.ts";
import type { DeviceOp, InitPlan, MountOp } from "./plan.ts";

export type FileKind = "file" | "dir" | "symlink" | "other";

/** What fstat tells about an open fd; `dev` for a device node. */
export interface FdInfo {
  kind: FileKind;
  /** Permission bits (07777). */
  mode: number;
  dev?: { type: "c" | "b"; major: number; minor: number };
}

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
  umask(mask: number): number;
  /** mknodat(dirFd, name): a device node or fifo (`mode`: permission bits only). */
  mknodAt(
    dirFd: number,
    name: string,
    type: DeviceOp["type"],
    mode: number,
    major: number,
    minor: number,
  ): void;
  /** fchownat(dirFd, name, AT_SYMLINK_NOFOLLOW). */
  chownAt(dirFd: number, name: string, uid: number, gid: number): void;
  /** Writes a sysctl: `path` is below /proc/sys ("net/ipv4/ip_forward"), never a link. */
  sysctl(path: string, value: string): void;
  /** lstat: the kind of the entry, or undefined when it does not exist (secureJoin). */
  lkind(path: string): FileKind | undefined;
  /** stat (follows links): for bind sources on the host. */
  kind(path: string): FileKind | undefined;
  readlink(path: string): string;
  /** Mount points strictly below `path` (from /proc/self/mountinfo), for recursive options. */
  submounts?(path: string): string[];
  /** This mount namespace's table (/proc/self/mountinfo), for --no-pivot's detaching. */
  mountTable(): MountEntry[];
  /** An O_PATH fd on a trusted absolute directory: the rootfs on the host, "/" after pivot. */
  openDir(path: string): number;
  /**
   * An O_PATH fd on the entry `name` (one component) of `dirFd` itself: a symlink is opened,
   * not followed, and nothing outside `dirFd` is reached. undefined when it does not exist.
   */
  openAt(dirFd: number, name: string): number | undefined;
  /**
   * An O_PATH fd on `path` resolved inside `rootFd` as if it were "/" (RESOLVE_IN_ROOT, no
   * magic links): every symlink, the last one too, is followed without leaving the root.
   * undefined when it does not exist.
   */
  openInRoot(rootFd: number, path: string): number | undefined;
  /** mkdirat(dirFd, name, mode); EEXIST is thrown as such. */
  mkdirAt(dirFd: number, name: string, mode: number): void;
  /** A new empty file (O_CREAT|O_EXCL|O_NOFOLLOW); EEXIST is thrown as such. */
  createAt(dirFd: number, name: string, mode: number): void;
  symlinkAt(target: string, dirFd: number, name: string): void;
  /** unlinkat (AT_REMOVEDIR when `dir`). */
  unlinkAt(dirFd: number, name: string, dir: boolean): void;
  stat(fd: number): FdInfo;
  /** The path mount(2) is given for what `fd` holds (/proc/self/fd/N). */
  fdPath(fd: number): string;
  close(fd: number): void;
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

function fail(code: string, message: string): never {
  throw Object.assign(new Error(message), { code });
}

/** The components of `path` (a secureJoin result) below `root`. */
function partsBelow(root: string, path: string): string[] {
  const base = root.replace(/\/+$/, "");
  if (path !== base && !path.startsWith(base + "/")) fail("EXDEV", `${path} is outside ${base}`);
  return path.slice(base.length).split("/").filter(Boolean);
}

/** What to do with a missing last component in walk(). */
type Make = { dir: number } | { file: number } | undefined;

/**
 * Opens `parts` below `rootFd` one component at a time, each with openat relative to the fd
 * of its parent and never following a symlink: a component that is (or was swapped for) a
 * symlink or a file is refused, so nothing outside the rootfs is ever reached. Missing
 * directories are made with mkdirat on the way; the last component is made as `make` says
 * (a directory or an empty file, with that mode). Returns an O_PATH fd (the caller closes
 * it) and whether the last component was made here.
 */
function walk(
  ops: RootfsOps,
  rootFd: number,
  parts: string[],
  shown: string,
  make: Make,
): { fd: number; made: boolean } {
  let cur = ops.openAt(rootFd, ".")!;
  let made = false;
  try {
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      const want: Make = last ? make : { dir: 0o755 };
      let fd = ops.openAt(cur, parts[i]);
      if (fd === undefined) {
        if (!want) fail("ENOENT", `${shown}: no such file or directory`);
        try {
          if ("dir" in want) ops.mkdirAt(cur, parts[i], want.dir);
          else ops.createAt(cur, parts[i], want.file);
          made = last;
        } catch (e) {
          if (!hasCode(e, "EEXIST")) throw e; // made meanwhile: opened (and checked) below
        }
        fd = ops.openAt(cur, parts[i]);
        if (fd === undefined) fail("ENOENT", `${shown}: ${parts[i]} vanished while being made`);
      }
      const kind = ops.stat(fd).kind;
      const ok = kind === "dir" || (last && !(want && "dir" in want) && kind !== "symlink");
      if (!ok) {
        ops.close(fd);
        const what = kind === "symlink"
          ? "is a symlink (it was swapped after it was resolved: refused)"
          : "is not a directory";
        fail(kind === "symlink" ? "ELOOP" : "ENOTDIR", `${shown}: ${parts[i]} ${what}`);
      }
      ops.close(cur);
      cur = fd;
    }
    return { fd: cur, made };
  } catch (e) {
    ops.close(cur);
    throw e;
  }
}

/**
 * mkdir -p of `path` (a secureJoin result under `root`), fd by fd: nothing is created outside
 * `root` even if a component is swapped for a symlink meanwhile (that is refused, ELOOP).
 */
export function mkdirAll(ops: RootfsOps, root: string, path: string, mode = 0o755): void {
  const rootFd = ops.openDir(root);
  try {
    ops.close(walk(ops, rootFd, partsBelow(root, path), path, { dir: mode }).fd);
  } finally {
    ops.close(rootFd);
  }
}

function parentDir(p: string): string {
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

function baseName(p: string): string {
  return p.slice(p.lastIndexOf("/") + 1);
}

const REMOUNTABLE = ~(MS.BIND | MS.REC | MS.REMOUNT) & 0xffffffff;

/**
 * Runs `fn` with the fd path of `parts` below `rootFd`, opened afresh for each call: after a
 * mount on the target, a new open lands on the new mount (an old fd would still hold the
 * directory below it), so each remount or propagation change reaches the right mount.
 */
function atTarget(
  ops: RootfsOps,
  rootFd: number,
  parts: string[],
  shown: string,
  fn: (path: string) => void,
  make?: Make,
): boolean {
  const { fd, made } = walk(ops, rootFd, parts, shown, make);
  try {
    fn(ops.fdPath(fd));
  } finally {
    ops.close(fd);
  }
  return made;
}

/** The mode= tmpfs takes from an existing directory (runc keeps a target's mode), as "0755". */
function modeOf(ops: RootfsOps, rootFd: number, parts: string[]): string | undefined {
  let fd: number;
  try {
    fd = walk(ops, rootFd, parts, parts.join("/"), undefined).fd;
  } catch (e) {
    if (hasCode(e, "ENOENT")) return undefined;
    throw e;
  }
  try {
    const info = ops.stat(fd);
    return info.kind === "dir" ? info.mode.toString(8).padStart(4, "0") : undefined;
  } finally {
    ops.close(fd);
  }
}

/**
 * Mounts one entry of config.json under `root`. The target is resolved inside the rootfs
 * (secureJoin), created fd by fd if missing, and every mount(2) is given its fd's path, so a
 * path swapped for a symlink after the check is never followed (runc CVE-2021-30465, 1.1.14).
 * A tmpfs over an existing directory keeps that directory's mode unless `mode=` is given.
 */
export function mountOne(ops: RootfsOps, root: string, m: MountOp): void {
  const target = m.bind || (m.type !== "proc" && m.type !== "sysfs")
    ? secureJoin(ops, root, m.destination)
    : ordinaryDir(ops, root, m);
  const parts = partsBelow(root, target);
  const rootFd = ops.openDir(root);
  try {
    const at = (fn: (path: string) => void, make?: Make) =>
      atTarget(ops, rootFd, parts, target, fn, make);
    if (m.bind) {
      const srcKind = ops.kind(m.source);
      if (srcKind === undefined) {
        fail("ENOENT", `bind mount source ${m.source} does not exist`);
      }
      const make: Make = srcKind === "dir" ? { dir: 0o755 } : { file: 0o644 };
      at((t) => ops.mount(m.source, t, "bind", m.flags & (MS.BIND | MS.REC), null), make);
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
      let data = m.data;
      if (m.type === "tmpfs" && !/(^|,)mode=/.test(data)) {
        const mode = modeOf(ops, rootFd, parts);
        if (mode) data = data ? `mode=${mode},${data}` : `mode=${mode}`;
      }
      try {
        at((t) => ops.mount(m.source, t, m.type, m.flags, data || null), { dir: 0o755 });
      } catch (e) {
        // sysfs cannot be mounted from a network namespace we do not own: bind the host's.
        if (m.type !== "sysfs" || !hasCode(e, "EPERM")) throw e;
        at((t) => ops.mount("/sys", t, "bind", MS.BIND | MS.REC, null));
        at((t) => ops.mount(null, t, null, (m.flags & REMOUNTABLE) | MS.BIND | MS.REMOUNT, null));
      }
    }
    for (const p of m.propagation) at((t) => ops.mount(null, t, null, p, null));
  } finally {
    ops.close(rootFd);
  }
}

/**
 * Where a proc or sysfs goes: the destination taken literally under `root`, every existing
 * component of it a real directory. A symlink there (/proc -> /tmp/x, say) is refused rather
 * than followed, as runc does: a kernel filesystem lands only where the config says, never
 * where a link in an image points (runc's "must be mounted on ordinary directory").
 */
function ordinaryDir(ops: RootfsOps, root: string, m: MountOp): string {
  const parts: string[] = [];
  for (const p of m.destination.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") parts.pop();
    else parts.push(p);
  }
  let path = root;
  for (const p of parts) {
    path = `${path}/${p}`;
    const kind = ops.lkind(path);
    if (kind === undefined) break; // the rest is made, fd by fd, by the mount itself
    if (kind !== "dir") {
      fail(
        kind === "symlink" ? "ELOOP" : "ENOTDIR",
        `cannot mount ${m.type} at ${m.destination}: ${path.slice(root.length)} in the rootfs ` +
          `is ${kind === "symlink" ? "a symlink" : "not a directory"} (filesystem "${m.type}" ` +
          `must be mounted on ordinary directory)`,
      );
    }
  }
  return `${root}/${parts.join("/")}`.replace(/\/$/, "");
}

/** Opens the directory `path` (container path) under `root`, made if missing; the caller closes. */
function openDirIn(ops: RootfsOps, root: string, rootFd: number, path: string): number {
  const dir = secureJoin(ops, root, path);
  return walk(ops, rootFd, partsBelow(root, dir), dir, { dir: 0o755 }).fd;
}

/** Default device nodes, falling back to bind mounts of the host's where mknod is refused. */
export function createDevices(ops: RootfsOps, root: string, devices: DeviceOp[]): void {
  const rootFd = ops.openDir(root);
  const old = ops.umask(0);
  try {
    for (const d of devices) {
      const target = secureJoin(ops, root, d.path);
      const dir = parentDir(target);
      const dirFd = walk(ops, rootFd, partsBelow(root, dir), dir, { dir: 0o755 }).fd;
      const name = baseName(target);
      try {
        const existing = ops.openAt(dirFd, name);
        if (existing !== undefined) {
          const kind = ops.stat(existing).kind;
          ops.close(existing);
          ops.unlinkAt(dirFd, name, kind === "dir");
        }
        try {
          ops.mknodAt(dirFd, name, d.type, d.mode, d.major, d.minor);
          ops.chownAt(dirFd, name, d.uid, d.gid);
        } catch (e) {
          if (!hasCode(e, "EPERM") || d.type === "p") throw e;
          ops.createAt(dirFd, name, 0o644);
          const fd = walk(ops, dirFd, [name], target, undefined).fd;
          try {
            ops.mount(d.path, ops.fdPath(fd), "bind", MS.BIND, null);
          } finally {
            ops.close(fd);
          }
        }
      } finally {
        ops.close(dirFd);
      }
    }
  } finally {
    ops.umask(old);
    ops.close(rootFd);
  }
}

const DEV_LINKS: [string, string][] = [
  ["/proc/self/fd", "fd"],
  ["/proc/self/fd/0", "stdin"],
  ["/proc/self/fd/1", "stdout"],
  ["/proc/self/fd/2", "stderr"],
];

/** /dev/fd, stdin, stdout, stderr and ptmx links, and /dev/pts and /dev/shm, made in /dev's fd. */
export function setupDevLinks(ops: RootfsOps, root: string): void {
  const rootFd = ops.openDir(root);
  try {
    const dev = openDirIn(ops, root, rootFd, "/dev");
    try {
      for (const [target, name] of DEV_LINKS) {
        const fd = ops.openAt(dev, name);
        if (fd === undefined) ops.symlinkAt(target, dev, name);
        else ops.close(fd);
      }
      // /dev/ptmx points at the container's own devpts instance.
      const ptmx = ops.openAt(dev, "ptmx");
      if (ptmx !== undefined) {
        const kind = ops.stat(ptmx).kind;
        ops.close(ptmx);
        ops.unlinkAt(dev, "ptmx", kind === "dir");
      }
      ops.symlinkAt("pts/ptmx", dev, "ptmx");
    } finally {
      ops.close(dev);
    }
    for (const dir of ["/dev/pts", "/dev/shm"]) ops.close(openDirIn(ops, root, rootFd, dir));
  } finally {
    ops.close(rootFd);
  }
}

/** Runs `fn` with the fd path of `path` resolved inside `root`; false when it does not exist. */
function withPathIn(
  ops: RootfsOps,
  root: string,
  path: string,
  fn: (fdPath: string, info: FdInfo) => void,
): boolean {
  const rootFd = ops.openDir(root);
  try {
    const fd = ops.openInRoot(rootFd, path);
    if (fd === undefined) return false;
    try {
      fn(ops.fdPath(fd), ops.stat(fd));
    } finally {
      ops.close(fd);
    }
    return true;
  } finally {
    ops.close(rootFd);
  }
}

/**
 * Hides a path from the container: an empty read-only tmpfs over a directory, the container's
 * /dev/null (checked to be the null device, 1:3, not a planted link) over anything else.
 * `root` is "/" once pivot_root is done.
 */
export function maskPath(ops: RootfsOps, path: string, root = "/"): void {
  withPathIn(ops, root, path, (target, info) => {
    if (info.kind === "dir") {
      ops.mount("tmpfs", target, "tmpfs", MS.RDONLY, null);
      return;
    }
    const found = withPathIn(ops, root, "/dev/null", (nul, n) => {
      if (n.dev?.type !== "c" || n.dev.major !== 1 || n.dev.minor !== 3) {
        fail("EPERM", `cannot mask ${path}: /dev/null is not the null device (1:3)`);
      }
      ops.mount(nul, target, "bind", MS.BIND, null);
    });
    if (!found) fail("ENOENT", `cannot mask ${path}: there is no /dev/null`);
  });
}

/** Binds `path` onto itself, then remounts that bind read-only (each through a fresh fd). */
export function readonlyPath(ops: RootfsOps, path: string, root = "/"): void {
  const there = withPathIn(
    ops,
    root,
    path,
    (t) => ops.mount(t, t, "bind", MS.BIND | MS.REC, null),
  );
  if (!there) return;
  withPathIn(ops, root, path, (t) =>
    ops.mount(
      null,
      t,
      null,
      MS.BIND | MS.REMOUNT | MS.RDONLY | MS.REC | MS.NOSUID | MS.NODEV | MS.NOEXEC,
      null,
    ));
}

/**
 * Mounts that capsule fills after mounting them (a tmpfs: cgroup binds, /dev's nodes and
 * links, /dev/pts, the console) are mounted writable and made read-only only once everything
 * is in (runc's finalizeRootfs): a `ro` tmpfs or /dev is remounted at the end.
 */
function remountedLater(m: MountOp): boolean {
  return !m.bind && (m.flags & MS.RDONLY) !== 0 &&
    (m.type === "tmpfs" || m.destination.replace(/\/+$/, "") === "/dev");
}

/**
 * --no-pivot: before the rootfs is moved onto "/", every mount of the namespace outside it
 * (the host's /proc, /sys, ...) is detached, so that nothing of the host stays in the
 * container's mount namespace below its root: a process in the container that makes a user
 * namespace could otherwise mount a fresh proc (the kernel allows it where a full proc is
 * visible in the namespace) and write /proc/sysrq-trigger. The mounts are slaves of the
 * host's ("/" was made rslave first), so nothing propagates back. A mount that cannot be
 * detached (locked in a user namespace) is covered with an empty tmpfs, as runc does.
 */
function detachOutside(ops: RootfsOps, root: string): void {
  for (const p of mountsToDetach(ops.mountTable(), root)) {
    try {
      ops.umount2(p, MNT_DETACH);
    } catch (e) {
      if (hasCode(e, "ENOENT")) continue; // a parent went first
      if (!hasCode(e, "EINVAL") && !hasCode(e, "EPERM")) throw e;
      try {
        ops.mount("tmpfs", p, "tmpfs", MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC, "size=0");
      } catch (e2) {
        if (!hasCode(e2, "ENOENT")) throw e2;
      }
    }
  }
}

/**
 * The whole rootfs sequence, in runc's order: mounts, devices, pivot_root, then the sysctls
 * (while /proc/sys is still writable), `inContainer` (hostname, console: the init's), then
 * masked and read-only paths, the read-only tmpfs and /dev, and the read-only root. Runs
 * inside the new mount namespace; when it returns, "/" is the container's root and the cwd is
 * "/". With `plan.hostMountNs` (config.json lists no mount namespace) it runs in the caller's:
 * "/" keeps its propagation, the rootfs bind is create's (made private on the host), and the
 * root is entered by chroot; masked and read-only paths and rootfsPropagation were refused.
 */
export function setupRootfs(
  ops: RootfsOps,
  plan: InitPlan,
  inContainer?: () => void,
  beforePivot?: () => void,
): void {
  const root = plan.rootfs.replace(/\/+$/, "");
  if (plan.hostMountNs) {
    if (plan.maskedPaths.length || plan.readonlyPaths.length || plan.finalPropagation) {
      fail("EINVAL", "masked or read-only paths need a mount namespace of the container's own");
    }
  } else {
    ops.mount(null, "/", null, plan.rootPropagation, null);
    // The rootfs must be a mount point for pivot_root.
    ops.mount(root, root, "bind", MS.BIND | MS.REC, null);
  }
  const later = plan.mounts.filter(remountedLater);
  for (const m of plan.mounts) {
    mountOne(ops, root, remountedLater(m) ? { ...m, flags: m.flags & ~MS.RDONLY } : m);
    // In the caller's mount namespace a bind of a shared host mount joins its peer group: what
    // is mounted below it later would appear on the host too. Private, unless asked otherwise.
    if (plan.hostMountNs && m.bind && m.propagation.length === 0) {
      withPathIn(
        ops,
        root,
        m.destination,
        (t) => ops.mount(null, t, null, MS.REC | MS.PRIVATE, null),
      );
    }
  }
  if (plan.setupDev) {
    createDevices(ops, root, plan.devices);
    setupDevLinks(ops, root);
  } else if (plan.devices.length) {
    createDevices(ops, root, plan.devices);
  }
  // The working directory is created now: later the root may be read-only.
  mkdirAll(ops, root, secureJoin(ops, root, plan.process.cwd));
  // The hooks before pivot_root (createContainer: in the container's mount namespace), in the
  // rootfs as cwd, as runc runs them.
  ops.chdir(root);
  beforePivot?.();
  if (plan.hostMountNs) {
    ops.chroot(".");
  } else if (plan.noPivot) {
    detachOutside(ops, root);
    ops.mount(root, "/", null, MS.MOVE, null);
    ops.chroot(".");
  } else {
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves only ours.
    ops.pivotRoot(".", ".");
    ops.umount2(".", MNT_DETACH);
  }
  ops.chdir("/");
  for (const [path, value] of Object.entries(plan.sysctl)) ops.sysctl(path, value);
  inContainer?.();
  for (const p of plan.maskedPaths) maskPath(ops, p);
  for (const p of plan.readonlyPaths) readonlyPath(ops, p);
  for (const m of later) {
    withPathIn(ops, "/", m.destination, (t) =>
      ops.mount(
        null,
        t,
        null,
        (m.flags & REMOUNTABLE) | MS.BIND | MS.REMOUNT | MS.RDONLY,
        null,
      ));
  }
  if (plan.readonly) ops.mount(null, "/", null, MS.BIND | MS.REMOUNT | MS.RDONLY, null);
  if (plan.finalPropagation !== undefined) ops.mount(null, "/", null, plan.finalPropagation, null);
}
