// What `image run` decides before anything is created, as pure functions (unit-tested without
// root): the OCI spec from the image's config with the flags over it, and the -v volumes.
import { CapsuleError } from "../runtime/errors.ts";
import { DEFAULT_PATH, defaultSpec, type Mount, type Spec } from "../runtime/spec.ts";
import { MIN_MEMORY, MIN_MEMORY_TEXT } from "../runtime/cgroups/util.ts";
import type { ImageConfig } from "./store.ts";
import { NAME_PATTERN } from "./store.ts";

export interface RunFlags {
  id: string;
  image: string;
  command: string[];
  entrypoint?: string;
  cwd?: string;
  hostname?: string;
  env?: string[];
  user?: string;
  cpuShares?: number;
  memory?: number;
  labels?: string[];
  readOnly?: boolean;
  tty?: boolean;
  /** --ulimit values, docker's syntax: NAME=SOFT[:HARD] (nofile=65536:65536). */
  ulimits?: string[];
}

/** One process rlimit of config.json (runtime spec "POSIX process" rlimits). */
export interface Rlimit {
  type: string;
  /** A uint64: RLIM_INFINITY is the bigint 18446744073709551615. */
  soft: number | bigint;
  hard: number | bigint;
}

/** docker's --ulimit names (setrlimit(2) without RLIMIT_, lowercase). */
const ULIMIT_NAMES = [
  "as",
  "core",
  "cpu",
  "data",
  "fsize",
  "locks",
  "memlock",
  "msgqueue",
  "nice",
  "nofile",
  "nproc",
  "rss",
  "rtprio",
  "rttime",
  "sigpending",
  "stack",
];

/**
 * An unlimited rlimit of config.json: RLIM_INFINITY, 2^64-1, as Go writes ^uint64(0) (a bigint:
 * runtime/json.ts stringifyJson writes it exactly).
 */
const UNLIMITED = 18446744073709551615n;

/**
 * --ulimit values (docker's syntax: `NAME=SOFT[:HARD]`, one value sets both; -1, as docker
 * takes it, or `unlimited` for no limit) into rlimits, a later one for the same name replacing
 * an earlier one. Throws CapsuleError naming the value for an unknown name, a value that is no
 * whole number of at most 15 digits, or a soft limit above the hard one.
 */
export function parseUlimits(values: string[]): Rlimit[] {
  const out = new Map<string, Rlimit>();
  const limit = (t: string) => t === "-1" || t === "unlimited" ? UNLIMITED : Number(t);
  const show = (n: number | bigint) => n === UNLIMITED ? "unlimited" : String(n);
  for (const v of values) {
    const m = /^([a-z]+)=(-1|unlimited|\d{1,15})(?::(-1|unlimited|\d{1,15}))?$/.exec(v);
    if (!m || !ULIMIT_NAMES.includes(m[1])) {
      throw new CapsuleError(
        `Invalid --ulimit "${v}": use NAME=SOFT[:HARD] with whole numbers or -1 (unlimited), ` +
          `e.g. nofile=65536:65536 (names: ${ULIMIT_NAMES.join(", ")})`,
      );
    }
    const soft = limit(m[2]), hard = limit(m[3] ?? m[2]);
    if (soft > hard) {
      throw new CapsuleError(
        `Invalid --ulimit "${v}": the soft limit ${show(soft)} is above the hard limit ${
          show(hard)
        }`,
      );
    }
    out.set(m[1], { type: `RLIMIT_${m[1].toUpperCase()}`, soft, hard });
  }
  return [...out.values()];
}

/**
 * The open-files limit an image container gets without --ulimit nofile: capsule's own hard
 * limit (as docker's containers inherit dockerd's), for soft and hard alike, at most 1048576
 * (docker's usual value; programs that close every possible fd at start take long past it).
 * `own` is capsule's [soft, hard] (getrlimit); unknown: 1024.
 */
export function defaultNofile(own: [bigint, bigint] | undefined): Rlimit {
  const cap = 1048576n;
  const hard = own ? (own[1] > cap ? cap : own[1]) : 1024n;
  const n = Number(hard);
  return { type: "RLIMIT_NOFILE", soft: n, hard: n };
}

export type Volume =
  | { kind: "bind"; source: string; destination: string; readonly: boolean }
  | { kind: "named"; name: string; destination: string; readonly: boolean }
  | { kind: "anon"; destination: string; readonly: boolean };

function cleanPath(p: string, what: string): string {
  if (!p.startsWith("/")) {
    throw new CapsuleError(`Invalid ${what} "${p}": it must be an absolute path in the container`);
  }
  const parts: string[] = [];
  for (const c of p.split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") parts.pop();
    else parts.push(c);
  }
  return "/" + parts.join("/");
}

/**
 * One -v value: `CTR` (anonymous), `NAME:CTR` (named volume), `/HOST:CTR` or `./HOST:CTR`
 * (a host directory), each with an optional `:ro` or `:rw`. Host paths are left as given
 * (the caller resolves and checks them).
 */
export function parseVolume(spec: string): Volume {
  const parts = spec.split(":");
  let mode: string | undefined;
  if (parts.length > 1 && (parts[parts.length - 1] === "ro" || parts[parts.length - 1] === "rw")) {
    mode = parts.pop();
  }
  const readonly = mode === "ro";
  const bad = (why: string) =>
    new CapsuleError(
      `Invalid volume "${spec}": ${why}; use CTR, NAME:CTR or /HOST:CTR, optionally with :ro`,
    );
  if (parts.length === 1) {
    if (!parts[0]) throw bad("empty");
    const destination = cleanPath(parts[0], "volume destination");
    if (destination === "/") throw bad("the container's root cannot be a volume");
    return { kind: "anon", destination, readonly };
  }
  if (parts.length !== 2 || !parts[0] || !parts[1]) throw bad("too many or empty fields");
  const destination = cleanPath(parts[1], "volume destination");
  if (destination === "/") throw bad("the container's root cannot be a volume");
  const src = parts[0];
  if (src.startsWith("/") || src.startsWith(".") || src.startsWith("~")) {
    return { kind: "bind", source: src, destination, readonly };
  }
  if (!NAME_PATTERN.test(src)) {
    throw bad(`"${src}" is neither a host path (start it with / or ./) nor a volume name`);
  }
  return { kind: "named", name: src, destination, readonly };
}

/** Checks a list of volumes: no destination twice. */
export function parseVolumes(specs: string[]): Volume[] {
  const vols = specs.map(parseVolume);
  const seen = new Set<string>();
  for (const v of vols) {
    if (seen.has(v.destination)) {
      throw new CapsuleError(`Invalid volumes: "${v.destination}" is given twice`);
    }
    seen.add(v.destination);
  }
  return vols;
}

/** KEY=VALUE into a list, later ones replacing earlier ones with the same key. */
export function mergeEnv(base: string[], over: string[]): string[] {
  const map = new Map<string, string>();
  for (const e of [...base, ...over]) {
    const eq = e.indexOf("=");
    map.set(eq < 0 ? e : e.slice(0, eq), e);
  }
  return [...map.values()];
}

/** -e values: KEY=VALUE, or KEY alone to take it from capsule's environment (as docker). */
export function parseEnvFlags(
  values: string[],
  hostEnv: (k: string) => string | undefined,
): string[] {
  const out: string[] = [];
  for (const v of values) {
    const eq = v.indexOf("=");
    const key = eq < 0 ? v : v.slice(0, eq);
    if (!/^[^=\0\s][^=\0]*$/.test(key)) {
      throw new CapsuleError(`Invalid environment variable "${v}": use KEY=VALUE`);
    }
    if (eq >= 0) out.push(v);
    else {
      const host = hostEnv(key);
      if (host !== undefined) out.push(`${key}=${host}`);
    }
  }
  return out;
}

/** -l values into annotations. */
export function parseLabels(values: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf("=");
    if (eq <= 0) throw new CapsuleError(`Invalid label "${v}": use KEY=VALUE`);
    out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

/**
 * uid and gid for a user spec ("1000", "1000:1000", "www-data", "www-data:adm") from the
 * image's /etc/passwd and /etc/group texts.
 */
export function resolveUser(
  spec: string,
  passwd: string | undefined,
  group: string | undefined,
): { uid: number; gid: number } {
  const [u, g] = spec.split(":", 2);
  const find = (text: string | undefined, name: string) =>
    text?.split("\n").map((l) => l.split(":")).find((f) => f[0] === name);
  let uid: number, gid = 0;
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    const row = passwd?.split("\n").map((l) => l.split(":")).find((f) => f[2] === u);
    if (row) gid = Number(row[3]);
  } else {
    const row = find(passwd, u);
    if (!row) {
      throw new CapsuleError(
        `User "${u}" is not in the image's /etc/passwd; give a number instead`,
      );
    }
    uid = Number(row[2]);
    gid = Number(row[3]);
  }
  if (g !== undefined && g !== "") {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const row = find(group, g);
      if (!row) {
        throw new CapsuleError(
          `Group "${g}" is not in the image's /etc/group; give a number instead`,
        );
      }
      gid = Number(row[2]);
    }
  }
  return { uid, gid };
}

export interface SpecInputs {
  config: ImageConfig;
  flags: RunFlags;
  rootfs: string;
  /** Resolved volume mounts (host source paths). */
  mounts: Mount[];
  hostEnv?: (k: string) => string | undefined;
  /** capsule's own RLIMIT_NOFILE [soft, hard], for the default (see defaultNofile). */
  nofile?: [bigint, bigint];
  /** The image's /etc/passwd and /etc/group, for a user name. */
  passwd?: string;
  group?: string;
}

/** The container's config.json: the image's config first, the flags over it. */
export function buildSpec(i: SpecInputs): Spec {
  const { config, flags } = i;
  const spec = defaultSpec();
  const p = spec.process!;
  // The program: Entrypoint + (command given after the image, else the image's Cmd).
  const entrypoint = flags.entrypoint !== undefined
    ? (flags.entrypoint ? [flags.entrypoint] : [])
    : (config.Entrypoint ?? []);
  const cmd = flags.command.length
    ? flags.command
    : (flags.entrypoint !== undefined ? [] : (config.Cmd ?? []));
  const args = [...entrypoint, ...cmd];
  if (!args.length) {
    throw new CapsuleError(
      `Image "${flags.image}" has no command (its config has no Entrypoint or Cmd): give one ` +
        `after the image name, e.g. "capsule image run ${flags.image} sh -c 'echo hi'"`,
    );
  }
  p.args = args;
  const hostname = flags.hostname ?? flags.id;
  let env = mergeEnv([`PATH=${DEFAULT_PATH}`], config.Env ?? []);
  env = mergeEnv(env, [`HOSTNAME=${hostname}`]);
  env = mergeEnv(env, parseEnvFlags(flags.env ?? [], i.hostEnv ?? (() => undefined)));
  if (flags.tty) env = mergeEnv(["TERM=xterm"], env);
  p.env = env;
  const cwd = flags.cwd ?? (config.WorkingDir || "/");
  p.cwd = cleanPath(cwd, "working directory");
  const user = flags.user ?? config.User;
  if (user) {
    const { uid, gid } = resolveUser(user, i.passwd, i.group);
    p.user = { uid, gid };
  }
  p.terminal = flags.tty === true;
  // An image run is not a hand-written bundle: docker's looser defaults, not runc's starter.
  p.noNewPrivileges = false;
  const ulimits = parseUlimits(flags.ulimits ?? []);
  p.rlimits = [
    ...(ulimits.some((r) => r.type === "RLIMIT_NOFILE") ? [] : [defaultNofile(i.nofile)]),
    ...ulimits,
  ];
  const caps = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    // Not CAP_MKNOD (docker has it): on cgroup v2 no device rules are enforced without an eBPF
    // program, and a container that can mknod could open the host's disks.
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
  ];
  p.capabilities = {
    bounding: [...caps],
    effective: [...caps],
    permitted: [...caps],
  };
  spec.hostname = hostname;
  spec.root = { path: i.rootfs, readonly: flags.readOnly === true };
  spec.mounts = [
    ...spec.mounts!,
    // The container's own cgroup, read-only (in its cgroup namespace): programs size
    // themselves from memory.max / memory.limit_in_bytes (JVMs, Go), as under docker.
    {
      destination: "/sys/fs/cgroup",
      type: "cgroup",
      source: "cgroup",
      options: ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
    ...i.mounts,
  ];
  const annotations: Record<string, string> = {
    ...(config.Labels ?? {}),
    // The OCI annotation engines read for the signal that stops the container.
    ...(typeof config.StopSignal === "string" && config.StopSignal
      ? { "org.opencontainers.image.stopSignal": config.StopSignal }
      : {}),
    ...parseLabels(flags.labels ?? []),
  };
  if (Object.keys(annotations).length) spec.annotations = annotations;
  const resources = spec.linux!.resources as Record<string, unknown>;
  if (flags.cpuShares !== undefined) {
    if (!Number.isInteger(flags.cpuShares) || flags.cpuShares < 2 || flags.cpuShares > 262144) {
      throw new CapsuleError(
        `Invalid cpu shares "${flags.cpuShares}": use a whole number from 2 to 262144 (1024 is one share)`,
      );
    }
    resources.cpu = { shares: flags.cpuShares };
  }
  if (flags.memory !== undefined && flags.memory !== 0) {
    if (flags.memory !== -1 && flags.memory < MIN_MEMORY) {
      throw new CapsuleError(
        `Invalid memory limit ${flags.memory} bytes: minimum memory limit allowed is ` +
          `${MIN_MEMORY_TEXT} (${MIN_MEMORY} bytes, what capsule's init and a program need to ` +
          `start); a number without a unit is bytes: give one, e.g. -m 512m`,
      );
    }
    resources.memory = { limit: flags.memory };
  }
  return spec;
}

/** A bind mount of config.json for one volume, from its host directory. */
export function volumeMount(v: Volume, source: string): Mount {
  return {
    destination: v.destination,
    type: "bind",
    source,
    options: ["rbind", v.readonly ? "ro" : "rw", "nosuid", "nodev"],
  };
}
