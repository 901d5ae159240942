// Validation of config.json against the parts of the OCI runtime spec (1.0-1.2) that capsule
// uses. Unknown fields are tolerated, as the spec asks. This is the only module of the
// runtime that loads zod: it is imported lazily, off the paths that never read a config.
import * as z from "zod/mini";

// zod/mini (tree-shaken, ~half the start-up cost of full zod) with English messages.
z.config(z.locales.en());
import { CapsuleError } from "./errors.ts";
import { parseJson } from "./json.ts";
import type { Spec } from "./spec.ts";
import { checkRules, isRlimitValue, isSeccompValue } from "./config_check.ts";
export { checkNamespacedSettings } from "./config_check.ts";

/**
 * zod's options for an integer field capsule reads as a number (of `min` to `max`): an integer
 * literal past 2^53-1, which parseJson reads as a bigint, is refused naming its value as written
 * and the range (zod would say "expected number, received bigint").
 */
const bigintRefused = (min: number, max: number) => ({
  error: (issue: { input?: unknown }) =>
    typeof issue.input === "bigint"
      ? `${issue.input} is out of range: must be an integer ${min} to ${max}`
      : undefined,
});
const SAFE = Number.MAX_SAFE_INTEGER;
const u32 = z.int(bigintRefused(0, 0xffffffff)).check(z.minimum(0), z.maximum(0xffffffff));
const absPath = z.string().check(z.startsWith("/", "must be an absolute path"));
const strings = z.array(z.string());
/**
 * An rlimit value of config.json (a uint64, config_check.ts isRlimitValue): an integer 0 to
 * 18446744073709551615 (RLIM_INFINITY as Go writes ^uint64(0), unlimited, as runc takes it), a
 * bigint past 2^53-1 (parseJson), exact.
 */
const rlimitNumber = z.custom<number | bigint>(
  isRlimitValue,
  "must be an integer 0 to 18446744073709551615 (18446744073709551615: unlimited)",
);
/** A seccomp argument value (a uint64, or the negative int64 of its bits): isSeccompValue. */
const seccompValue = z.custom<number | bigint>(
  isSeccompValue,
  "must be an integer -9223372036854775808 to 18446744073709551615",
);

const hook = z.looseObject({
  path: absPath,
  args: z.optional(strings),
  env: z.optional(strings),
  timeout: z.optional(z.int(bigintRefused(1, SAFE)).check(z.positive())),
});

const NS_TYPES = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"] as const;

/**
 * The schema of config.json (zod/mini). config_check.ts's fast check must never accept what
 * this refuses: change both together (tests/unit/config_check_test.ts walks this one).
 */
export const schema = z.looseObject({
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
      hard: rlimitNumber,
      soft: rlimitNumber,
    }))),
    noNewPrivileges: z.optional(z.boolean()),
    oomScoreAdj: z.optional(
      z.int(bigintRefused(-1000, 1000)).check(z.minimum(-1000), z.maximum(1000)),
    ),
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
      major: z.optional(z.int(bigintRefused(-SAFE, SAFE))),
      minor: z.optional(z.int(bigintRefused(-SAFE, SAFE))),
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
          index: z.int(bigintRefused(0, 5)).check(z.minimum(0), z.maximum(5)),
          value: seccompValue,
          valueTwo: z.optional(seccompValue),
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
    raw = parseJson(text);
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
  checkRules(spec, file);
  return spec;
}
