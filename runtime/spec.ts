// The OCI runtime spec types capsule reads (1.0-1.2), and the starter config.json that
// `capsule spec` writes. Validation lives in config.ts (it loads zod; this file must not).
import { OCI_VERSION } from "./version.ts";

/** A mount of config.json (runtime spec config "Mounts"). */
export interface Mount {
  /** Absolute path in the container (1.1: relative is read from "/"). */
  destination: string;
  /** Filesystem type (e.g. "proc", "tmpfs"; "bind" or omitted with a bind option). */
  type?: string;
  /** Device, host path (bind) or filesystem name. */
  source?: string;
  /** mount(8) options: flags ("ro", "nosuid", "rbind", "rprivate"...) and data ("mode=755"). */
  options?: string[];
}

/** A namespace to make, or to join by `path` (runtime spec config-linux "Namespaces"). */
export interface Namespace {
  /** The namespace kind. */
  type: "pid" | "network" | "mount" | "ipc" | "uts" | "user" | "cgroup" | "time";
  /** Join this namespace (e.g. /proc/PID/ns/net) instead of making a new one. */
  path?: string;
}

/** A hook of config.json (runtime spec config "POSIX-platform Hooks"); timeout in seconds. */
export interface Hook {
  /** Absolute path of the program, run on the host. */
  path: string;
  /** argv, including argv[0]. */
  args?: string[];
  /** KEY=VALUE: its whole environment. */
  env?: string[];
  /** Seconds before it is killed. */
  timeout?: number;
}

/** The container's program and its context (runtime spec config "Process"). */
export interface Process {
  /** Give the program a pseudo-terminal. */
  terminal?: boolean;
  /** The terminal's size in characters. */
  consoleSize?: { height: number; width: number };
  /** uid/gid in the container, umask, and supplementary gids. */
  user: { uid: number; gid: number; umask?: number; additionalGids?: number[] };
  /** The program and its arguments (args[0] searched in PATH of env). */
  args: string[];
  /** KEY=VALUE environment. */
  env?: string[];
  /** Working directory, absolute in the container. */
  cwd: string;
  /** Capability sets, names like "CAP_KILL". */
  capabilities?: {
    bounding?: string[];
    effective?: string[];
    inheritable?: string[];
    permitted?: string[];
    ambient?: string[];
  };
  /**
   * setrlimit(2) limits: type like "RLIMIT_NOFILE", in the resource's units; uint64s, a bigint
   * past 2^53-1 (as runtime/json.ts parseJson reads one); 18446744073709551615 is unlimited.
   */
  rlimits?: { type: string; hard: number | bigint; soft: number | bigint }[];
  /** Set PR_SET_NO_NEW_PRIVS (setuid binaries gain nothing). */
  noNewPrivileges?: boolean;
  /** /proc/self/oom_score_adj, -1000 to 1000. */
  oomScoreAdj?: number;
  /** Accepted; capsule applies no AppArmor profile. */
  apparmorProfile?: string;
  /** Accepted; capsule applies no SELinux label. */
  selinuxLabel?: string;
}

/** A device node to make in the container (runtime spec config-linux "Devices"). */
export interface Device {
  /** c (char), b (block), u (unbuffered char), p (fifo). */
  type: "c" | "b" | "u" | "p";
  /** Absolute path in the container. */
  path: string;
  /** Major number. */
  major?: number;
  /** Minor number. */
  minor?: number;
  /** Permission bits (e.g. 0o666). */
  fileMode?: number;
  /** Owner in the container. */
  uid?: number;
  /** Group in the container. */
  gid?: number;
}

/**
 * config.json: the parts of the OCI runtime spec (1.0-1.2) capsule reads; `validateConfig`
 * checks a parsed one. Unknown fields are tolerated.
 */
export interface Spec {
  /** The spec version the config follows (1.0.x to 1.2.x). */
  ociVersion: string;
  /** The container's program (runtime spec config "Process"). */
  process?: Process;
  /** Root filesystem: path absolute or relative to the bundle; readonly remounts it ro. */
  root?: { path: string; readonly?: boolean };
  /** The UTS namespace's host name. */
  hostname?: string;
  /** The UTS namespace's domain name. */
  domainname?: string;
  /** Mounts, in order, after the root (runtime spec config "Mounts"). */
  mounts?: Mount[];
  /** Hooks by lifecycle point (runtime spec config "POSIX-platform Hooks"). */
  hooks?: {
    prestart?: Hook[];
    createRuntime?: Hook[];
    createContainer?: Hook[];
    startContainer?: Hook[];
    poststart?: Hook[];
    poststop?: Hook[];
  };
  /** Arbitrary metadata, copied to the state. */
  annotations?: Record<string, string>;
  /** Linux specifics (runtime spec config-linux): namespaces, id maps, devices, cgroups, seccomp. */
  linux?: {
    namespaces?: Namespace[];
    uidMappings?: { containerID: number; hostID: number; size: number }[];
    gidMappings?: { containerID: number; hostID: number; size: number }[];
    devices?: Device[];
    cgroupsPath?: string;
    resources?: Record<string, unknown>;
    rootfsPropagation?: string;
    maskedPaths?: string[];
    readonlyPaths?: string[];
    sysctl?: Record<string, string>;
    seccomp?: unknown;
    mountLabel?: string;
  };
}

export { OCI_VERSION };
/** PATH of the starter config and of images without one. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The capabilities runc's starter spec keeps (docker's default set is wider). */
const DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/**
 * What `capsule spec` writes: runc's starter config (runc 1.1's `runc spec`), so that a runc
 * user, and scripts written for runc such as runc's own test suite, get what they expect: an
 * interactive `sh` (`process.terminal: true`: run it in the foreground, or give
 * `--console-socket` to create/run -d), the tty group (gid 5) on /dev/pts, the container's
 * own cgroups read-only at /sys/fs/cgroup, and a cgroup namespace only where the host has cgroup
 * v2 (`cgroupV2`, detected by default). The rest is {@link defaultSpec}.
 */
export function starterSpec(cgroupV2 = isCgroupV2()): Spec {
  const spec = defaultSpec();
  spec.process!.terminal = true;
  // runc's starter has a cgroup namespace on cgroup v2 hosts only (v1 scripts add their own).
  if (!cgroupV2) {
    spec.linux!.namespaces = spec.linux!.namespaces!.filter((n) => n.type !== "cgroup");
  }
  for (const m of spec.mounts!) {
    if (m.type === "devpts") m.options = [...m.options!, "gid=5"];
  }
  spec.mounts!.push({
    destination: "/sys/fs/cgroup",
    type: "cgroup",
    source: "cgroup",
    options: ["nosuid", "noexec", "nodev", "relatime", "ro"],
  });
  return spec;
}

/** Whether the host runs the unified cgroup v2 hierarchy at /sys/fs/cgroup (runc's test). */
function isCgroupV2(): boolean {
  try {
    return Deno.statSync("/sys/fs/cgroup/cgroup.controllers").isFile;
  } catch {
    return false;
  }
}

/**
 * The starter config for a container run by an unprivileged user (`capsule spec --rootless`,
 * as runc's): {@link starterSpec} with a user namespace mapping the user to root, and no
 * uid=/gid= mount options (those ids are not mapped).
 */
export function rootlessSpec(uid: number, gid: number): Spec {
  const spec = starterSpec();
  for (const m of spec.mounts!) {
    if (m.options) m.options = m.options.filter((o) => !/^[ug]id=/.test(o));
  }
  spec.linux!.namespaces = [...spec.linux!.namespaces!, { type: "user" }];
  spec.linux!.uidMappings = [{ containerID: 0, hostID: uid, size: 1 }];
  spec.linux!.gidMappings = [{ containerID: 0, hostID: gid, size: 1 }];
  delete spec.linux!.resources; // no cgroups without delegation
  return spec;
}

/**
 * The base config capsule builds bundles from (image run, tests): runc's starter shape, but
 * without a terminal (the program's stdio is the caller's) and without the tty-group and
 * cgroup mounts that {@link starterSpec} adds.
 */
export function defaultSpec(): Spec {
  return {
    ociVersion: OCI_VERSION,
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: ["sh"],
      env: [`PATH=${DEFAULT_PATH}`, "TERM=xterm"],
      cwd: "/",
      capabilities: {
        bounding: [...DEFAULT_CAPS],
        effective: [...DEFAULT_CAPS],
        permitted: [...DEFAULT_CAPS],
        ambient: [...DEFAULT_CAPS],
      },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: "rootfs", readonly: true },
    hostname: "capsule",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
      },
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
      },
      {
        destination: "/dev/mqueue",
        type: "mqueue",
        source: "mqueue",
        options: ["nosuid", "noexec", "nodev"],
      },
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev", "ro"],
      },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: "rwm" }] },
      namespaces: [
        { type: "pid" },
        { type: "network" },
        { type: "ipc" },
        { type: "uts" },
        { type: "mount" },
        { type: "cgroup" },
      ],
      maskedPaths: [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
      ],
      readonlyPaths: [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
      ],
    },
  };
}
