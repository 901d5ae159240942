// Validation of config.json against the parts of the OCI runtime spec (1.0-1.2) that capsule
// uses. Unknown fields are tolerated, as the spec asks. This is the only module of the
// runtime that loads zod: it is imported lazily, off the paths that never read a config.
import * as z from "zod/mini";

// zod/mini (tree-shaken, ~half the start-up cost of full zod) with English messages.
z.config(z.locales.en());
import { CapsuleError } from "./errors.ts";
import type { Spec } from "./spec.ts";
import { sysctlDotted, sysctlPath } from "./plan.ts";

const u32 = z.int().check(z.minimum(0), z.maximum(0xffffffff));
const absPath = z.string().check(z.startsWith("/", "must be an absolute path"));
const strings = z.array(z.string());

const hook = z.looseObject({
  path: absPath,
  args: z.optional(strings),
  env: z.optional(strings),
  timeout: z.optional(z.int().check(z.positive())),
});

const NS_TYPES = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"] as const;

const schema = z.looseObject({
  ociVersion: z.string().check(z.regex(/^1\.\d+\.\d+/, "must be a 1.x version such as 1.2.0")),
  process: z.optional(z.looseObject({
    terminal: z.optional(z.boolean()),
    consoleSize: z.optional(z.looseObject({ height: u32, width: u32 })),
    user: z.looseObject({
      uid: u32,
      gid: u32,
      umask: z.optional(u32),
      additionalGids: z.optional(z.array(u32)),
    }),
    args: z.array(z.string()).check(z.minLength(1, "must name the program to run")),
    env: z.optional(z.array(z.string().check(z.regex(/^[^=]+=/, "must be KEY=VALUE")))),
    cwd: absPath,
    capabilities: z.optional(z.looseObject({
      bounding: z.optional(strings),
      effective: z.optional(strings),
      inheritable: z.optional(strings),
      permitted: z.optional(strings),
      ambient: z.optional(strings),
    })),
    rlimits: z.optional(z.array(z.looseObject({
      type: z.string().check(z.regex(/^RLIMIT_[A-Z]+$/, "must be an RLIMIT_* name")),
      hard: z.int().check(z.minimum(0)),
      soft: z.int().check(z.minimum(0)),
    }))),
    noNewPrivileges: z.optional(z.boolean()),
    oomScoreAdj: z.optional(z.int().check(z.minimum(-1000), z.maximum(1000))),
  })),
  root: z.optional(
    z.looseObject({ path: z.string().check(z.minLength(1)), readonly: z.optional(z.boolean()) }),
  ),
  hostname: z.optional(z.string().check(z.maxLength(64))),
  domainname: z.optional(z.string().check(z.maxLength(64))),
  mounts: z.optional(z.array(z.looseObject({
    destination: z.string().check(z.minLength(1)),
    type: z.optional(z.string()),
    source: z.optional(z.string()),
    options: z.optional(strings),
  }))),
  hooks: z.optional(z.looseObject({
    prestart: z.optional(z.array(hook)),
    createRuntime: z.optional(z.array(hook)),
    createContainer: z.optional(z.array(hook)),
    startContainer: z.optional(z.array(hook)),
    poststart: z.optional(z.array(hook)),
    poststop: z.optional(z.array(hook)),
  })),
  annotations: z.optional(z.record(z.string(), z.string())),
  linux: z.optional(z.looseObject({
    namespaces: z.optional(
      z.array(z.looseObject({ type: z.enum(NS_TYPES), path: z.optional(absPath) })),
    ),
    devices: z.optional(z.array(z.looseObject({
      type: z.enum(["c", "b", "u", "p"]),
      path: absPath,
      major: z.optional(z.int()),
      minor: z.optional(z.int()),
      fileMode: z.optional(u32),
      uid: z.optional(u32),
      gid: z.optional(u32),
    }))),
    cgroupsPath: z.optional(z.string()),
    uidMappings: z.optional(z.array(z.looseObject({ containerID: u32, hostID: u32, size: u32 }))),
    gidMappings: z.optional(z.array(z.looseObject({ containerID: u32, hostID: u32, size: u32 }))),
    resources: z.optional(z.looseObject({})),
    rootfsPropagation: z.optional(z.enum([
      "private",
      "rprivate",
      "slave",
      "rslave",
      "shared",
      "rshared",
      "unbindable",
      "runbindable",
    ])),
    maskedPaths: z.optional(z.array(absPath)),
    readonlyPaths: z.optional(z.array(absPath)),
    sysctl: z.optional(z.record(z.string(), z.string())),
    seccomp: z.optional(z.looseObject({
      defaultAction: z.string(),
      defaultErrnoRet: z.optional(u32),
      architectures: z.optional(strings),
      flags: z.optional(strings),
      syscalls: z.optional(z.array(z.looseObject({
        names: strings,
        action: z.string(),
        errnoRet: z.optional(u32),
        args: z.optional(z.array(z.looseObject({
          index: z.int().check(z.minimum(0), z.maximum(5)),
          value: z.number(),
          valueTwo: z.optional(z.number()),
          op: z.string(),
        }))),
      }))),
    })),
  })),
});

/**
 * Parses and validates the text of a config.json. The error names the file, the JSON path
 * of the first problem and the reason: `config.json: process.args: expected array`.
 */
export function parseConfig(text: string, file = "config.json"): Spec {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CapsuleError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  return validateConfig(raw, file);
}

/**
 * Validates a parsed config.json (runtime spec "Configuration", 1.0-1.2); returns it typed.
 * Throws CapsuleError naming `file`, the JSON path of the first problem and the reason.
 */
export function validateConfig(raw: unknown, file = "config.json"): Spec {
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue.path.length ? issue.path.join(".") : "(top level)";
    throw new CapsuleError(`Invalid ${file}: ${where}: ${issue.message}`);
  }
  const spec = r.data as Spec;
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
  return spec;
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
