// The fast path of config.json validation, without zod: loading zod and building its schema
// costs 10-30 ms per create, more than the whole validation is worth for the configs that
// pass. `schemaAccepts` is a plain-JS copy of config.ts's schema that may only ever be
// STRICTER than it (anything it is unsure of is refused): a config it accepts is one zod
// accepts, and a config it refuses goes to zod, whose verdict and message are the ones given.
// tests/unit/config_check_test.ts holds the two together (every schema path, mutated).
// The rules beyond the schema (namespaces listed twice, sysctls only in their namespace) live
// here, used by both paths. validate.ts chooses the path.
import { CapsuleError } from "./errors.ts";
import { sysctlDotted, sysctlPath } from "./plan.ts";
import type { Spec } from "./spec.ts";

type Check = (v: unknown) => boolean;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const str: Check = (v) => typeof v === "string";
const bool: Check = (v) => typeof v === "boolean";
const int = (min = -Number.MAX_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): Check => (v) =>
  Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max;
const u32 = int(0, 0xffffffff);
const U64_MAX = 2n ** 64n - 1n, I64_MIN = -(2n ** 63n);

/**
 * An rlimit value of config.json, a uint64 as parseJson reads it: an integer 0 to 2^64-1 (a
 * bigint past 2^53-1), 18446744073709551615 (RLIM_INFINITY, as Go writes ^uint64(0)) being
 * unlimited; or a value that reads as the double 2^64, which is how RLIM_INFINITY was read
 * before integers were exact (JSON.parse) and written back (18446744073709552000): unlimited too.
 */
export function isRlimitValue(v: unknown): boolean {
  if (typeof v === "bigint") return (v >= 0n && v <= U64_MAX) || Number(v) === 2 ** 64;
  return (Number.isSafeInteger(v) && (v as number) >= 0) || v === 2 ** 64;
}

/**
 * A seccomp argument value (value, valueTwo) of config.json: a uint64, or the negative int64
 * of the same 64 bits (-1 for 18446744073709551615), as parseJson reads it: a number (seccomp.ts
 * refuses one that is not an exact integer), or a bigint of -2^63 to 2^64-1.
 */
export function isSeccompValue(v: unknown): boolean {
  if (typeof v === "bigint") return v >= I64_MIN && v <= U64_MAX;
  return typeof v === "number" && Number.isFinite(v);
}
const re = (r: RegExp): Check => (v) => typeof v === "string" && r.test(v);
const absPath: Check = (v) => typeof v === "string" && v.startsWith("/");
const oneOf = (...values: string[]): Check => (v) => typeof v === "string" && values.includes(v);
const array = (each: Check, min = 0): Check => (v) =>
  Array.isArray(v) && v.length >= min && v.every(each);
const strings = array(str);
const opt = (c: Check): Check => (v) => v === undefined || c(v);
/** An object whose listed keys pass (others are tolerated, as the spec asks). */
const obj = (shape: Record<string, Check>): Check => (v) =>
  isObject(v) && Object.entries(shape).every(([k, c]) => c(v[k]));
const record = (each: Check): Check => (v) => isObject(v) && Object.values(v).every(each);

const hook = obj({ path: absPath, args: opt(strings), env: opt(strings), timeout: opt(int(1)) });
const hooks = opt(array(hook));
const idMap = obj({ containerID: u32, hostID: u32, size: u32 });

const accepts = obj({
  ociVersion: re(/^1\.\d+\.\d+/),
  process: opt(obj({
    terminal: opt(bool),
    consoleSize: opt(obj({ height: u32, width: u32 })),
    user: obj({ uid: u32, gid: u32, umask: opt(u32), additionalGids: opt(array(u32)) }),
    args: array(str, 1),
    env: opt(array(re(/^[^=]+=/))),
    cwd: absPath,
    capabilities: opt(obj({
      bounding: opt(strings),
      effective: opt(strings),
      inheritable: opt(strings),
      permitted: opt(strings),
      ambient: opt(strings),
    })),
    rlimits: opt(
      array(obj({ type: re(/^RLIMIT_[A-Z]+$/), hard: isRlimitValue, soft: isRlimitValue })),
    ),
    noNewPrivileges: opt(bool),
    oomScoreAdj: opt(int(-1000, 1000)),
  })),
  root: opt(obj({ path: (v) => typeof v === "string" && v.length >= 1, readonly: opt(bool) })),
  hostname: opt((v) => typeof v === "string" && v.length <= 64),
  domainname: opt((v) => typeof v === "string" && v.length <= 64),
  mounts: opt(array(obj({
    destination: (v) => typeof v === "string" && v.length >= 1,
    type: opt(str),
    source: opt(str),
    options: opt(strings),
  }))),
  hooks: opt(obj({
    prestart: hooks,
    createRuntime: hooks,
    createContainer: hooks,
    startContainer: hooks,
    poststart: hooks,
    poststop: hooks,
  })),
  annotations: opt(record(str)),
  linux: opt(obj({
    namespaces: opt(array(obj({
      type: oneOf("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"),
      path: opt(absPath),
    }))),
    devices: opt(array(obj({
      type: oneOf("c", "b", "u", "p"),
      path: absPath,
      major: opt(int()),
      minor: opt(int()),
      fileMode: opt(u32),
      uid: opt(u32),
      gid: opt(u32),
    }))),
    cgroupsPath: opt(str),
    uidMappings: opt(array(idMap)),
    gidMappings: opt(array(idMap)),
    resources: opt(obj({})),
    rootfsPropagation: opt(oneOf(
      "private",
      "rprivate",
      "slave",
      "rslave",
      "shared",
      "rshared",
      "unbindable",
      "runbindable",
    )),
    maskedPaths: opt(array(absPath)),
    readonlyPaths: opt(array(absPath)),
    sysctl: opt(record(str)),
    seccomp: opt(obj({
      defaultAction: str,
      defaultErrnoRet: opt(u32),
      architectures: opt(strings),
      flags: opt(strings),
      syscalls: opt(array(obj({
        names: strings,
        action: str,
        errnoRet: opt(u32),
        args: opt(array(obj({
          index: int(0, 5),
          value: isSeccompValue,
          valueTwo: opt(isSeccompValue),
          op: str,
        }))),
      }))),
    })),
  })),
});

/**
 * True when `raw` certainly passes config.ts's schema; false when it may not (zod decides
 * then). Never throws.
 */
export function schemaAccepts(raw: unknown): boolean {
  try {
    return accepts(raw);
  } catch {
    return false;
  }
}

/**
 * Refuses what capsule cannot apply to a process, naming the field rather than ignoring it
 * (runtime spec: an unsupported value is an error; runc fails on each on a host without AppArmor
 * and SELinux): a `process.apparmorProfile` or `process.selinuxLabel` other than "" or null, of
 * any type (config.md "POSIX process"; `capsule features` says neither is enabled). For config.json's process at create and
 * an exec's --process file alike: exec never runs a process with fewer restrictions than it asks
 * for. `file` names it in the error. Throws CapsuleError.
 */
export function refuseUnappliedProcess(proc: unknown, file: string): void {
  const fields: [string, string][] = [
    ["apparmorProfile", "capsule applies no AppArmor profile"],
    ["selinuxLabel", "capsule applies no SELinux label"],
  ];
  for (const [key, why] of fields) {
    // Of any type (runc cannot even read a value that is not a string); null and "" are none.
    const value = isObject(proc) ? proc[key] : undefined;
    if (value !== undefined && value !== null && value !== "") {
      throw new CapsuleError(`Invalid ${file}: process.${key}: ${why}; drop it to run without it`);
    }
  }
}

/**
 * What the schema cannot say: each namespace type listed once, process and root present,
 * and checkNamespacedSettings. Throws CapsuleError naming `file`.
 */
export function checkRules(spec: Spec, file: string): void {
  const seen = new Set<string>();
  for (const ns of spec.linux?.namespaces ?? []) {
    if (seen.has(ns.type)) {
      throw new CapsuleError(`Invalid ${file}: linux.namespaces: "${ns.type}" is listed twice`);
    }
    seen.add(ns.type);
  }
  if (!spec.process) {
    throw new CapsuleError(`Invalid ${file}: process: is required to run a container`);
  }
  if (!spec.root) {
    throw new CapsuleError(`Invalid ${file}: root: is required (root.path names the rootfs)`);
  }
  checkNamespacedSettings(spec, file);
}

/** IPC-namespaced sysctls (besides fs.mqueue.*), as runc lists them. */
const IPC_SYSCTLS = new Set([
  "kernel.msgmax",
  "kernel.msgmnb",
  "kernel.msgmni",
  "kernel.sem",
  "kernel.shmall",
  "kernel.shmmax",
  "kernel.shmmni",
  "kernel.shm_rmid_forced",
]);

const NS_FILE: Record<string, string> = { network: "net", ipc: "ipc", uts: "uts" };
const NS_NAME: Record<string, string> = { network: "network", ipc: "IPC", uts: "UTS" };

/** True when `path` is the namespace this process is in (runc's isHostNetNS, for any type). */
function isHostNamespace(type: string, path: string, file: string): boolean {
  let a: Deno.FileInfo, b: Deno.FileInfo;
  try {
    a = Deno.statSync(`/proc/self/ns/${NS_FILE[type]}`);
    b = Deno.statSync(path);
  } catch (e) {
    throw new CapsuleError(
      `Invalid ${file}: linux.namespaces: cannot check the ${type} namespace "${path}": ${
        (e as Error).message
      }`,
    );
  }
  return a.dev === b.dev && a.ino === b.ino;
}

/**
 * runc's rule for what only a private namespace may change, checked at create so nothing of
 * the host is ever touched: `linux.sysctl` keys must be namespaced (net.* with a network
 * namespace, kernel.msg*, sem, shm* and fs.mqueue.* with an IPC one, kernel.domainname with a
 * UTS one), and `hostname`/`domainname` need a UTS namespace. A namespace joined by path
 * counts as private unless it is the one capsule runs in (runc checks that for net only).
 * Throws CapsuleError naming the key (or field) and the namespace it needs.
 */
export function checkNamespacedSettings(spec: Spec, file = "config.json"): void {
  const nss = spec.linux?.namespaces ?? [];
  const why = new Map<string, string | undefined>();
  /** undefined when the config has a private namespace of `type`, else what is missing. */
  const missing = (type: string): string | undefined => {
    if (!why.has(type)) {
      const ns = nss.find((n) => n.type === type);
      why.set(
        type,
        !ns
          ? `a private ${NS_NAME[type]} namespace: add {"type": "${type}"} to linux.namespaces`
          : ns.path && isHostNamespace(type, ns.path, file)
          ? `a private ${NS_NAME[type]} namespace, and "${ns.path}" is the host's ${
            NS_NAME[type]
          } namespace`
          : undefined,
      );
    }
    return why.get(type);
  };
  for (const field of ["hostname", "domainname"] as const) {
    const need = spec[field] !== undefined ? missing("uts") : undefined;
    if (need) {
      throw new CapsuleError(`Invalid ${file}: ${field}: setting it needs ${need}`);
    }
  }
  for (const key of Object.keys(spec.linux?.sysctl ?? {})) {
    const at = `Invalid ${file}: linux.sysctl: "${key}"`;
    if (sysctlPath(key) === undefined) {
      throw new CapsuleError(`${at} is not a sysctl name (such as net.ipv4.ip_forward)`);
    }
    const k = sysctlDotted(key);
    let type: string;
    if (IPC_SYSCTLS.has(k) || k.startsWith("fs.mqueue.")) type = "ipc";
    else if (k.startsWith("net.")) type = "network";
    else if (k === "kernel.domainname") type = "uts";
    else if (k === "kernel.hostname") {
      throw new CapsuleError(`${at} conflicts with the "hostname" field: set that instead`);
    } else {
      throw new CapsuleError(
        `${at} is not in a separate kernel namespace (it would change the host): remove it; ` +
          `only net.*, kernel.msg*/sem/shm*, fs.mqueue.* and kernel.domainname can be set`,
      );
    }
    const need = missing(type);
    if (need) throw new CapsuleError(`${at} needs ${need}`);
  }
}
