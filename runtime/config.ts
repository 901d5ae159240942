// Validation of config.json against the parts of the OCI runtime spec (1.0-1.2) that capsule
// uses. Unknown fields are tolerated, as the spec asks. This is the only module of the
// runtime that loads zod: it is imported lazily, off the paths that never read a config.
import { z } from "zod";
import { CapsuleError } from "./errors.ts";
import type { Spec } from "./spec.ts";

const u32 = z.number().int().min(0).max(0xffffffff);
const absPath = z.string().refine((s) => s.startsWith("/"), "must be an absolute path");
const strings = z.array(z.string());

const hook = z.looseObject({
  path: absPath,
  args: strings.optional(),
  env: strings.optional(),
  timeout: z.number().int().positive().optional(),
});

const NS_TYPES = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"] as const;

const schema = z.looseObject({
  ociVersion: z.string().regex(/^1\.\d+\.\d+/, "must be a 1.x version such as 1.2.0"),
  process: z.looseObject({
    terminal: z.boolean().optional(),
    consoleSize: z.looseObject({ height: u32, width: u32 }).optional(),
    user: z.looseObject({
      uid: u32,
      gid: u32,
      umask: u32.optional(),
      additionalGids: z.array(u32).optional(),
    }),
    args: z.array(z.string()).min(1, "must name the program to run"),
    env: z.array(z.string().regex(/^[^=]+=/, "must be KEY=VALUE")).optional(),
    cwd: absPath,
    capabilities: z.looseObject({
      bounding: strings.optional(),
      effective: strings.optional(),
      inheritable: strings.optional(),
      permitted: strings.optional(),
      ambient: strings.optional(),
    }).optional(),
    rlimits: z.array(z.looseObject({
      type: z.string().regex(/^RLIMIT_[A-Z]+$/, "must be an RLIMIT_* name"),
      hard: z.number().int().min(0),
      soft: z.number().int().min(0),
    })).optional(),
    noNewPrivileges: z.boolean().optional(),
    oomScoreAdj: z.number().int().min(-1000).max(1000).optional(),
  }).optional(),
  root: z.looseObject({ path: z.string().min(1), readonly: z.boolean().optional() }).optional(),
  hostname: z.string().max(64).optional(),
  domainname: z.string().max(64).optional(),
  mounts: z.array(z.looseObject({
    destination: z.string().min(1),
    type: z.string().optional(),
    source: z.string().optional(),
    options: strings.optional(),
  })).optional(),
  hooks: z.looseObject({
    prestart: z.array(hook).optional(),
    createRuntime: z.array(hook).optional(),
    createContainer: z.array(hook).optional(),
    startContainer: z.array(hook).optional(),
    poststart: z.array(hook).optional(),
    poststop: z.array(hook).optional(),
  }).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
  linux: z.looseObject({
    namespaces: z.array(z.looseObject({ type: z.enum(NS_TYPES), path: absPath.optional() }))
      .optional(),
    devices: z.array(z.looseObject({
      type: z.enum(["c", "b", "u", "p"]),
      path: absPath,
      major: z.number().int().optional(),
      minor: z.number().int().optional(),
      fileMode: u32.optional(),
      uid: u32.optional(),
      gid: u32.optional(),
    })).optional(),
    cgroupsPath: z.string().optional(),
    resources: z.looseObject({}).optional(),
    rootfsPropagation: z.enum([
      "private",
      "rprivate",
      "slave",
      "rslave",
      "shared",
      "rshared",
      "unbindable",
      "runbindable",
    ]).optional(),
    maskedPaths: z.array(absPath).optional(),
    readonlyPaths: z.array(absPath).optional(),
    sysctl: z.record(z.string(), z.string()).optional(),
  }).optional(),
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
  return spec;
}
