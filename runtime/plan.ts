// What the parent hands the init: everything already decided, numbers instead of names, so
// the init (which runs inside the new namespaces) only carries it out. Types and pure
// functions only; no I/O, no imports of the CLI or of zod.
import { CAPABILITIES, MS, RLIMITS } from "./consts.ts";
import { CapsuleError } from "./errors.ts";
import type { Process, Spec } from "./spec.ts";
import type { SeccompFilter } from "./seccomp.ts";

/**
 * One mount(2) the init makes inside the container, decided from a config.json `mounts` entry
 * (runtime spec config.md "Mounts") or added by a layer above the runtime: option names already
 * turned into MS_* flags by {@link parseMountOptions}, relative bind sources joined to the bundle.
 */
export interface MountOp {
  /** Path inside the container (resolved under the rootfs by the init, never following links out). */
  destination: string;
  /** Host path for bind mounts; the filesystem's source name otherwise. */
  source: string;
  /** Filesystem type for mount(2) ("proc", "tmpfs"...); "bind" for every bind mount. */
  type: string;
  /** mount(2) flags (MS_RDONLY, MS_NOSUID, MS_BIND, MS_REC...); MS_BIND is set for every bind. */
  flags: number;
  /** Propagation changes applied after the mount (MS_PRIVATE, MS_SLAVE|MS_REC...). */
  propagation: number[];
  /** Options mount(2) passes to the filesystem as its data string ("mode=755,size=65536k"). */
  data: string;
  /**
   * A bind mount (type "bind", or a "bind"/"rbind" option): the init binds `source` and then
   * remounts to apply MS_RDONLY and the like, which a bind ignores on its first mount(2).
   */
  bind: boolean;
  /** MS_RDONLY/NOSUID/NODEV/NOEXEC to apply to every submount of a recursive bind too. */
  recursiveFlags?: number;
}

/**
 * A device node the init creates in the container's /dev: the runtime spec's default devices
 * (null, zero, full, random, urandom, tty) and `linux.devices` (config-linux.md "Devices"),
 * an entry of the latter replacing a default of the same path.
 */
export interface DeviceOp {
  /** Path inside the container ("/dev/fuse"). */
  path: string;
  /** Node type as in config.json: c (character), u (unbuffered character), b (block), p (FIFO). */
  type: "c" | "b" | "u" | "p";
  /** Device major number (0 for a FIFO). */
  major: number;
  /** Device minor number (0 for a FIFO). */
  minor: number;
  /** Permission bits of the node (`fileMode`, default 0o666). */
  mode: number;
  /** Owner of the node, as seen in the container (`uid`, default 0). */
  uid: number;
  /** Group of the node, as seen in the container (`gid`, default 0). */
  gid: number;
}

/**
 * `process.capabilities` (config.md "POSIX process", capabilities(7)) as capability numbers
 * (CAP_CHOWN = 0 ...), one list per set; names unknown to capsule were refused when building.
 */
export interface Caps {
  /** The bounding set: capabilities outside it are dropped with PR_CAPBSET_DROP. */
  bounding: number[];
  /** The effective set the program starts with. */
  effective: number[];
  /** The permitted set. */
  permitted: number[];
  /** The inheritable set. */
  inheritable: number[];
  /** The ambient set (PR_CAP_AMBIENT_RAISE), kept across execve of an unprivileged program. */
  ambient: number[];
}

/**
 * The program the init (or `capsule exec`) runs, from config.json `process` (config.md "POSIX
 * process"): ids, limits and capabilities as numbers, ready for the syscalls.
 */
export interface ProcessPlan {
  /** A pseudo-terminal made inside the container; the master goes back to the parent. */
  terminal: boolean;
  /** Size of that terminal in character cells, set with TIOCSWINSZ on the master. */
  consoleSize?: { height: number; width: number };
  /** argv of the program; args[0] is looked up in the container's PATH as execvp(3) does. */
  args: string[];
  /** The program's environment, "KEY=value" strings (`process.env`, default none). */
  env: string[];
  /** Working directory inside the container (absolute). */
  cwd: string;
  /** User id the program runs as (`process.user.uid`), in the container's user namespace if any. */
  uid: number;
  /** Group id the program runs as (`process.user.gid`). */
  gid: number;
  /** Supplementary groups set with setgroups(2) (`process.user.additionalGids`, default none). */
  additionalGids: number[];
  /** File mode creation mask (`process.user.umask`, default 0o022). */
  umask: number;
  /**
   * `process.rlimits` for setrlimit(2): `resource` is the RLIMIT_* number, `soft` and `hard`
   * decimal strings (a u64 does not fit a JSON number; 2^64-1 is unlimited).
   */
  rlimits: { resource: number; soft: string; hard: string }[];
  /** PR_SET_NO_NEW_PRIVS before execve (`process.noNewPrivileges`). */
  noNewPrivileges: boolean;
  /** Written to /proc/self/oom_score_adj (`process.oomScoreAdj`, -1000..1000); unset: inherited. */
  oomScoreAdj?: number;
  /** The capability sets; unset: the init's own are kept (`process.capabilities` absent). */
  caps?: Caps;
  /** A compiled linux.seccomp profile, loaded last before execve. */
  seccomp?: SeccompFilter;
  /**
   * fds inherited from capsule's caller (of 3 to 3+N-1, runc's --preserve-fds) that stay open
   * through execve, at the same numbers; every other fd from 3 up is closed.
   */
  preserveFds?: number[];
  /** Socket activation: the first N of them are listening sockets (LISTEN_FDS, LISTEN_PID set). */
  listenFds?: number;
}

/** An OCI hook the init runs (config.md "POSIX-platform Hooks"). */
export interface HookPlan {
  /**
   * Absolute path of the program, opened where the init is when it runs it: createContainer in
   * the container's mount namespace before pivot_root (the host's paths, as the spec asks),
   * startContainer in the container's root.
   */
  path: string;
  /** argv as in config.json, args[0] included (execv's argv, as runc); unset: `[path]`. */
  args?: string[];
  /** Its whole environment, "KEY=value" strings; unset: empty. */
  env?: string[];
  /**
   * config.json's `timeout` in seconds: the init kills the hook (SIGKILL) when it runs longer,
   * and the operation fails naming the timeout, as with the hooks the parent runs.
   */
  timeout?: number;
}

/**
 * Everything the container's init carries out for `create`, decided by the parent from a
 * validated config.json ({@link buildInitPlan}) and sent to the init (capsule-nsexec init,
 * runtime/native/init.c) in nsexec.ts's record format: paths are absolute, options are
 * numbers, the init makes no decision of its own.
 */
export interface InitPlan {
  /**
   * The hooks the init runs itself, and the state JSON they read on stdin: createContainer
   * (before pivot_root) and startContainer (after start, before the program).
   */
  hooks?: {
    createContainer?: HookPlan[];
    startContainer?: HookPlan[];
    /** The parent runs prestart/createRuntime hooks: stop for them before pivot_root. */
    host?: boolean;
    state: string;
  };
  /** The container's id (runtime spec "State" `id`), already checked against {@link ID_PATTERN}. */
  id: string;
  /** Absolute host path of the rootfs. */
  rootfs: string;
  /** `root.readonly`: the rootfs is remounted MS_RDONLY once everything is mounted in it. */
  readonly: boolean;
  /** Flags applied to "/" before anything is mounted (default MS_REC|MS_SLAVE, like runc). */
  rootPropagation: number;
  /** Extra propagation for "/" after pivot_root, from linux.rootfsPropagation. */
  finalPropagation?: number;
  /**
   * runc's --no-pivot: enter the rootfs by MS_MOVE and chroot instead of pivot_root(2) (for a
   * rootfs on a ramfs, where pivot_root fails).
   */
  noPivot: boolean;
  /**
   * config.json lists no mount namespace: the init works in the caller's (runtime spec: an
   * unlisted namespace is inherited). create has bound the rootfs on the host and made that
   * bind private; the init mounts below it and enters it by chroot (config.ts refused what
   * needs a private mount namespace).
   */
  hostMountNs?: boolean;
  /**
   * In a user namespace the init's root may not reach a bind source (a 0700 directory of the
   * host's root): once its mount namespace exists, the init asks over the channel and the
   * parent (host root) sends each bind source opened O_PATH inside that namespace (runc's
   * mount fds); the init mounts from the fd.
   */
  sourcesByFd?: boolean;
  /** Namespaces other than pid and user (the init is already in those). */
  namespaces: { type: string; path?: string }[];
  /** The mounts, in config.json order, then those of the layers above (`extraMounts`). */
  mounts: MountOp[];
  /** Create the default devices and /dev links (no bind mount over /dev). */
  setupDev: boolean;
  /** Device nodes to create: the defaults when `setupDev`, then `linux.devices`. */
  devices: DeviceOp[];
  /**
   * `linux.maskedPaths`: paths inside the container made unreadable (/dev/null bound over a
   * file, an empty read-only tmpfs over a directory).
   */
  maskedPaths: string[];
  /** `linux.readonlyPaths`: paths inside the container bound onto themselves read-only. */
  readonlyPaths: string[];
  /** `hostname`, set with sethostname(2) in the container's UTS namespace. */
  hostname?: string;
  /** `domainname`, set with setdomainname(2) in the container's UTS namespace. */
  domainname?: string;
  /**
   * linux.sysctl by file below /proc/sys ("net/ipv4/ip_forward": "1"), written after
   * pivot_root and before the read-only paths; only namespaced keys (config.ts checks).
   */
  sysctl: Record<string, string>;
  /** The container's program, started by `capsule start` (its seccomp filter compiled). */
  process: ProcessPlan;
  /**
   * The create/start hand-off FIFO (runc's exec.fifo), opened O_PATH by the parent and
   * inherited: the init never needs to reach the state directory by path (a user-namespaced
   * init could not).
   */
  execFifoFd: number;
  /** Detached run: an inherited fd on the log for stdout and stderr; stdin is /dev/null. */
  logFd?: number;
  /** Start a new session (detached containers do not keep the caller's terminal). */
  setsid: boolean;
  /**
   * The helper places the init itself ({@link InitPlacement}); unset when capsule (or
   * util-linux's unshare, for a user namespace) started it in its PID namespace and cgroup.
   */
  clone?: InitPlacement;
}

/**
 * Where capsule-nsexec, started as capsule's child in the host's PID namespace, puts the init it
 * clones (runtime/native/init.c clone_init; crun's and runc's nsexec's way). It moves itself into
 * each cgroup v1 hierarchy by writing "0" to `tasks` (its one thread: the kernel takes no
 * cgroup_threadgroup_rwsem, so no RCU grace period, which a cgroup.procs write waits for: 6-8 ms
 * idle, 12-24 ms on a busy machine), then clone3s the init with CLONE_PARENT (capsule's child, as
 * it would be spawned), CLONE_INTO_CGROUP (born in the cgroup2 directory, no migration at all)
 * and the PID namespace, sends its pid ('P') and exits. The init waits for capsule's "g" (the
 * limits are applied by then).
 */
export interface InitPlacement {
  /** v1 `tasks` files (one per hierarchy directory), written "0" before the clone. */
  tasks: string[];
  /** The cgroup2 directory (v2, or a hybrid host's unified hierarchy) the init is born in. */
  cgroup2?: string;
  /** The PID namespace: a new one (`{}`), one joined by `path`, or none (the caller's). */
  pidNs?: { path?: string };
}

const FLAG_OPTIONS: Record<string, [set: boolean, flag: number]> = {
  ro: [true, MS.RDONLY],
  rw: [false, MS.RDONLY],
  nosuid: [true, MS.NOSUID],
  suid: [false, MS.NOSUID],
  nodev: [true, MS.NODEV],
  dev: [false, MS.NODEV],
  noexec: [true, MS.NOEXEC],
  exec: [false, MS.NOEXEC],
  sync: [true, MS.SYNCHRONOUS],
  async: [false, MS.SYNCHRONOUS],
  dirsync: [true, MS.DIRSYNC],
  remount: [true, MS.REMOUNT],
  mand: [true, MS.MANDLOCK],
  nomand: [false, MS.MANDLOCK],
  atime: [false, MS.NOATIME],
  noatime: [true, MS.NOATIME],
  diratime: [false, MS.NODIRATIME],
  nodiratime: [true, MS.NODIRATIME],
  bind: [true, MS.BIND],
  rbind: [true, MS.BIND | MS.REC],
  relatime: [true, MS.RELATIME],
  norelatime: [false, MS.RELATIME],
  strictatime: [true, MS.STRICTATIME],
  nostrictatime: [false, MS.STRICTATIME],
  lazytime: [true, MS.LAZYTIME],
  nolazytime: [false, MS.LAZYTIME],
  symfollow: [false, MS.NOSYMFOLLOW],
  nosymfollow: [true, MS.NOSYMFOLLOW],
};

export const PROPAGATION: Record<string, number> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

/** Options runc accepts that change nothing in the mount(2) call itself. */
const IGNORED_OPTIONS = new Set(["defaults", "tmpcopyup"]);

/**
 * Recursive attributes (rro, rnosuid...): applied to the mount and, for a recursive bind, to
 * every submount below it by the init (the same as mount_setattr(AT_RECURSIVE) gives runc).
 */
const RECURSIVE_OPTIONS: Record<string, [set: boolean, flag: number]> = {
  rro: [true, MS.RDONLY],
  rrw: [false, MS.RDONLY],
  rnosuid: [true, MS.NOSUID],
  rsuid: [false, MS.NOSUID],
  rnodev: [true, MS.NODEV],
  rdev: [false, MS.NODEV],
  rnoexec: [true, MS.NOEXEC],
  rexec: [false, MS.NOEXEC],
};

/** Splits mount options into mount(2) flags, propagation changes and the data string. */
export function parseMountOptions(options: readonly string[] = []): {
  flags: number;
  propagation: number[];
  data: string;
  recursiveFlags: number;
} {
  let flags = 0, recursiveFlags = 0;
  const propagation: number[] = [];
  const data: string[] = [];
  for (const opt of options) {
    if (Object.hasOwn(FLAG_OPTIONS, opt)) {
      const [set, f] = FLAG_OPTIONS[opt];
      flags = set ? flags | f : flags & ~f;
    } else if (Object.hasOwn(RECURSIVE_OPTIONS, opt)) {
      const [set, f] = RECURSIVE_OPTIONS[opt];
      flags = set ? flags | f : flags & ~f;
      recursiveFlags = set ? recursiveFlags | f : recursiveFlags & ~f;
    } else if (Object.hasOwn(PROPAGATION, opt)) propagation.push(PROPAGATION[opt]);
    else if (!IGNORED_OPTIONS.has(opt)) data.push(opt);
  }
  return { flags, propagation, data: data.join(","), recursiveFlags };
}

const DEFAULT_DEVICES: [string, number, number][] = [
  ["/dev/null", 1, 3],
  ["/dev/zero", 1, 5],
  ["/dev/full", 1, 7],
  ["/dev/random", 1, 8],
  ["/dev/urandom", 1, 9],
  ["/dev/tty", 5, 0],
];

function capNumbers(names: string[] | undefined, field: string, file: string): number[] {
  return (names ?? []).map((n) => {
    const i = CAPABILITIES.indexOf(n.toUpperCase());
    if (i < 0) {
      throw new CapsuleError(
        `Invalid ${file}: process.capabilities.${field}: unknown capability "${n}"`,
      );
    }
    return i;
  });
}

/**
 * A sysctl key in dot form: "net/ipv4/conf/eth0.100/rp_filter" (slash form, as sysctl(8)
 * takes it) becomes "net.ipv4.conf.eth0/100.rp_filter", as runc converts it.
 */
export function sysctlDotted(key: string): string {
  const first = key.search(/[./]/);
  if (first < 0 || key[first] === ".") return key;
  return key.replace(/[./]/g, (c) => (c === "." ? "/" : "."));
}

/** The file of a sysctl below /proc/sys ("net/ipv4/ip_forward"), or undefined for a bad key. */
export function sysctlPath(key: string): string | undefined {
  const parts = sysctlDotted(key).split(".").map((p) => p.replaceAll("/", "."));
  if (parts.some((p) => p === "" || p === "." || p === "..")) return undefined;
  return parts.join("/");
}

const U64_MAX = "18446744073709551615";

/**
 * A validated rlimit value of config.json (config_check.ts isRlimitValue) as a decimal u64: one
 * past 2^64-1 is the double 2^64 as RLIM_INFINITY was read and written before integers were
 * exact (18446744073709552000): unlimited.
 */
function rlimitValue(n: number | bigint): string {
  const v = BigInt(typeof n === "number" ? Math.trunc(Math.min(n, 2 ** 64)) : n);
  return v > 18446744073709551615n ? U64_MAX : v.toString();
}

function joinPath(dir: string, p: string): string {
  if (p.startsWith("/")) return p;
  return `${dir.replace(/\/+$/, "")}/${p}`;
}

/**
 * The largest uid or gid a process may be given: 2^31-1, runc's bound. 4294967295 is -1 to
 * setresuid(2), which changes nothing: the program would keep the init's root.
 */
export const MAX_ID = 2147483647;

/**
 * An OCI process (config.json's, or exec's --process file) as the init carries it out. Throws
 * CapsuleError naming `file` for an id out of range, an unknown capability or rlimit, or a soft
 * limit above its hard one.
 */
export function buildProcessPlan(proc: Process, file = "config.json"): ProcessPlan {
  const ids = [proc.user.uid, proc.user.gid, ...(proc.user.additionalGids ?? [])];
  const bad = ids.find((v) => !Number.isInteger(v) || v < 0 || v > MAX_ID);
  if (bad !== undefined) {
    throw new CapsuleError(
      `Invalid process.user: uid or gid ${bad}: uids and gids must be in range 0-${MAX_ID}`,
    );
  }
  const caps = proc.capabilities
    ? {
      bounding: capNumbers(proc.capabilities.bounding, "bounding", file),
      effective: capNumbers(proc.capabilities.effective, "effective", file),
      permitted: capNumbers(proc.capabilities.permitted, "permitted", file),
      inheritable: capNumbers(proc.capabilities.inheritable, "inheritable", file),
      ambient: capNumbers(proc.capabilities.ambient, "ambient", file),
    }
    : undefined;
  return {
    terminal: proc.terminal ?? false,
    consoleSize: proc.consoleSize,
    args: proc.args,
    env: proc.env ?? [],
    cwd: proc.cwd,
    uid: proc.user.uid,
    gid: proc.user.gid,
    additionalGids: proc.user.additionalGids ?? [],
    umask: proc.user.umask ?? 0o022,
    rlimits: (proc.rlimits ?? []).map((r) => {
      const resource = RLIMITS[r.type];
      if (resource === undefined) {
        throw new CapsuleError(`Invalid ${file}: process.rlimits: unknown limit "${r.type}"`);
      }
      const soft = rlimitValue(r.soft), hard = rlimitValue(r.hard);
      if (BigInt(soft) > BigInt(hard)) {
        throw new CapsuleError(
          `Invalid ${file}: process.rlimits: ${r.type} soft limit ${soft} is above its ` +
            `hard limit ${hard}: lower soft or raise hard`,
        );
      }
      return { resource, soft, hard };
    }),
    noNewPrivileges: proc.noNewPrivileges ?? false,
    oomScoreAdj: proc.oomScoreAdj,
    caps,
  };
}

/** What {@link buildInitPlan} needs besides config.json: the parent's decisions and fds. */
export interface PlanOptions {
  /** The container's id ({@link InitPlan.id}). */
  id: string;
  /** Absolute path of the bundle: relative `root.path` and bind sources are joined to it. */
  bundle: string;
  /** The exec FIFO's fd ({@link InitPlan.execFifoFd}). */
  execFifoFd: number;
  /** A detached container's log fd ({@link InitPlan.logFd}). */
  logFd?: number;
  /** Detached (`create`, `run -d`): the init starts a new session ({@link InitPlan.setsid}). */
  detach?: boolean;
  /** runc's --no-pivot ({@link InitPlan.noPivot}); default false. */
  noPivot?: boolean;
  /** Extra mounts from the layers above the runtime (e.g. /etc/hosts from a network). */
  extraMounts?: MountOp[];
  /**
   * The container's own cgroup directories, for a "cgroup" mount in config.json: by
   * controller on v1 (key "" on v2). The container sees only its own cgroup, read-only as asked.
   */
  cgroups?: Record<string, string>;
  /**
   * linux.seccomp compiled (seccomp.ts compileSeccomp), required when config.json has one: the
   * caller loads the compiler only then (15.7 KB of a run's ~140 KB of modules). A profile
   * without it is an error, never a container without its filter.
   */
  seccomp?: SeccompFilter;
  /** The init's placement ({@link InitPlan.clone}), when the helper clones it. */
  clone?: InitPlacement;
}

/**
 * A "cgroup" mount: on v2, the container's cgroup directory bound at the target; on v1, a
 * tmpfs with one bind per hierarchy (/sys/fs/cgroup/memory ...), as runc lays it out.
 */
export function cgroupMounts(
  destination: string,
  flags: number,
  cgroups: Record<string, string> | undefined,
): MountOp[] {
  const dest = destination.startsWith("/") ? destination : `/${destination}`;
  const keep = flags & (MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC);
  const bind = (source: string, at: string): MountOp => ({
    destination: at,
    source,
    type: "bind",
    flags: MS.BIND | MS.REC | keep,
    propagation: [],
    data: "",
    bind: true,
  });
  if (!cgroups || !Object.keys(cgroups).length) return [];
  if ("" in cgroups) return [bind(cgroups[""], dest)];
  const out: MountOp[] = [{
    destination: dest,
    source: "tmpfs",
    type: "tmpfs",
    flags: (flags & ~MS.RDONLY) | MS.NOSUID | MS.NODEV | MS.NOEXEC,
    propagation: [],
    data: "mode=755",
    bind: false,
  }];
  for (const [controller, dir] of Object.entries(cgroups)) {
    // A hybrid host's cgroup2 hierarchy ("unified", cgroups/v1.ts) is not shown, as runc's.
    if (controller === "unified") continue;
    out.push(bind(dir, `${dest}/${controller.replace(/^name=/, "")}`));
  }
  // The tmpfs itself read-only last, once the binds are in (runc does the same).
  if (flags & MS.RDONLY) {
    out.push({
      destination: dest,
      source: "",
      type: "bind",
      flags: MS.BIND | MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC,
      propagation: [],
      data: "",
      bind: false,
    });
  }
  return out;
}

function compiledSeccomp(o: PlanOptions): SeccompFilter {
  if (!o.seccomp) throw new Error("buildInitPlan: linux.seccomp was not compiled (o.seccomp)");
  return o.seccomp;
}

/**
 * Turns a validated spec into the init's plan. Pure: unit-tested without root. Throws a
 * {@link CapsuleError} naming the config.json field for what validation cannot see: a bind
 * mount without a source, an unknown rlimit or capability, a soft rlimit above the hard one,
 * a sysctl key that is no name, a seccomp profile capsule cannot compile.
 */
export function buildInitPlan(spec: Spec, o: PlanOptions): InitPlan {
  const proc = spec.process!;
  const linux = spec.linux ?? {};
  const mounts: MountOp[] = (spec.mounts ?? []).flatMap((m, i) => {
    // Runtime spec 1.2 idmapped mounts: capsule makes none, and a mount without the mapping
    // would show the wrong owners: refused rather than ignored (spec: unsupported is an error).
    const idmap = (m.options ?? []).find((o) => o === "idmap" || o === "ridmap");
    if (idmap) {
      throw new CapsuleError(
        `Invalid config.json: mounts[${i}] (${m.destination}): option "${idmap}" (an idmapped ` +
          `mount) is not supported by capsule; drop it, and chown the source if needed`,
      );
    }
    const { flags, propagation, data, recursiveFlags } = parseMountOptions(m.options);
    if (m.type === "cgroup" || m.type === "cgroup2") {
      return cgroupMounts(m.destination, flags, o.cgroups);
    }
    const bind = m.type === "bind" || (flags & MS.BIND) !== 0;
    // Runtime spec 1.1: a relative destination is read relative to "/".
    if (bind && !m.source) {
      throw new CapsuleError(
        `Invalid config.json: mounts.${i}.source: a bind mount needs a source`,
      );
    }
    return [{
      destination: m.destination.startsWith("/") ? m.destination : `/${m.destination}`,
      recursiveFlags: recursiveFlags || undefined,
      source: bind ? joinPath(o.bundle, m.source!) : (m.source ?? m.type ?? "none"),
      type: bind ? "bind" : (m.type ?? "none"),
      flags: bind ? flags | MS.BIND : flags,
      propagation,
      data,
      bind,
    }];
  });
  mounts.push(...(o.extraMounts ?? []));
  const setupDev = !mounts.some((m) => m.bind && m.destination.replace(/\/+$/, "") === "/dev");
  const devices: DeviceOp[] = [];
  if (setupDev) {
    for (const [path, major, minor] of DEFAULT_DEVICES) {
      devices.push({ path, type: "c", major, minor, mode: 0o666, uid: 0, gid: 0 });
    }
  }
  for (const d of linux.devices ?? []) {
    const op: DeviceOp = {
      path: d.path,
      type: d.type,
      major: d.major ?? 0,
      minor: d.minor ?? 0,
      mode: d.fileMode ?? 0o666,
      uid: d.uid ?? 0,
      gid: d.gid ?? 0,
    };
    const at = devices.findIndex((x) => x.path === d.path);
    if (at >= 0) devices[at] = op;
    else devices.push(op);
  }
  return {
    id: o.id,
    rootfs: joinPath(o.bundle, spec.root!.path),
    readonly: spec.root!.readonly ?? false,
    rootPropagation: MS.REC | MS.SLAVE,
    finalPropagation: linux.rootfsPropagation ? PROPAGATION[linux.rootfsPropagation] : undefined,
    noPivot: o.noPivot ?? false,
    hostMountNs: !(linux.namespaces ?? []).some((n) => n.type === "mount") || undefined,
    // The pid and user namespaces are made before the init runs (by the parent, or unshare(1)).
    namespaces: (linux.namespaces ?? []).filter((n) => n.type !== "pid" && n.type !== "user"),
    mounts,
    setupDev,
    devices,
    maskedPaths: linux.maskedPaths ?? [],
    readonlyPaths: linux.readonlyPaths ?? [],
    hostname: spec.hostname,
    domainname: spec.domainname,
    sysctl: Object.fromEntries(
      Object.entries(linux.sysctl ?? {}).map(([key, value]) => {
        const path = sysctlPath(key);
        if (path === undefined) {
          throw new CapsuleError(
            `Invalid config.json: linux.sysctl: "${key}" is not a sysctl name`,
          );
        }
        return [path, value];
      }),
    ),
    process: {
      ...buildProcessPlan(proc),
      seccomp: linux.seccomp ? compiledSeccomp(o) : undefined,
    },
    execFifoFd: o.execFifoFd,
    logFd: o.logFd,
    setsid: o.detach ?? false,
    ...(o.clone ? { clone: o.clone } : {}),
  };
}

/** Every mount option name parseMountOptions knows (`capsule features` "mountOptions"). */
export function mountOptionNames(): string[] {
  return [
    ...Object.keys(FLAG_OPTIONS),
    ...Object.keys(PROPAGATION),
    ...Object.keys(RECURSIVE_OPTIONS),
    ...IGNORED_OPTIONS,
  ].sort();
}
