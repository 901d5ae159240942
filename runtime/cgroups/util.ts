// Shared helpers of the cgroup drivers: mountinfo and /proc/self/cgroup parsing, path
// cleaning, synchronous file access with user-facing errors, the write plan executor
// (rollback on refusal), recursive removal and validation of linux.resources.

import { CapsuleError } from "../errors.ts";
import { stringifyJson } from "../json.ts";
import type { LinuxDeviceCgroup, LinuxResources } from "./types.ts";

/**
 * The key of a hybrid host's cgroup2 hierarchy (/sys/fs/cgroup/unified, no controllers) in a
 * v1 CgroupPaths: the container's processes are put there too, as runc does, so that tools
 * that read the `0::` line of /proc/PID/cgroup (systemd, runc's tests) find the container.
 */
export const UNIFIED = "unified";

/** One cgroup mount from /proc/self/mountinfo. */
export interface CgroupMount {
  /** Where it is mounted (with fsRoot prepended when testing). */
  mountPoint: string;
  /** The cgroup path of the hierarchy that is mounted there ("/" normally). */
  root: string;
  /** "cgroup" (v1) or "cgroup2". */
  fsType: string;
  /** v1: controllers (and "name=..."); v2: []. */
  controllers: string[];
}

const V1_CONTROLLERS = new Set([
  "cpu",
  "cpuacct",
  "cpuset",
  "memory",
  "devices",
  "freezer",
  "net_cls",
  "blkio",
  "perf_event",
  "net_prio",
  "hugetlb",
  "pids",
  "rdma",
  "misc",
]);

function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

/** Parse mountinfo text (proc(5)) into its cgroup mounts, in file order. */
/**
 * The smallest memory limit capsule accepts for an image container: docker's, 6 MB (6 MiB).
 * capsule's init (the native helper, ~0.9 MB static) is charged to the container's cgroup from
 * its start until it execs the program. Measured with `run` of `true` (busybox), 5 runs per
 * value, cgroup v1 here: 128 and 256 KiB always fail (the OOM killer), 512 KiB 1 in 5, 1-4 MiB
 * never. (The Deno init of before needed up to 15 MiB: the minimum was 32 MiB then.)
 */
export const MIN_MEMORY = 6 * 1024 * 1024;

/** MIN_MEMORY as docker writes its minimum ("6MB"). */
export const MIN_MEMORY_TEXT = `${MIN_MEMORY / 1024 / 1024}MB`;

export function parseMountinfo(text: string, fsRoot = ""): CgroupMount[] {
  const out: CgroupMount[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const fields = line.split(" ");
    const sep = fields.indexOf("-", 6);
    if (sep < 0 || fields.length < sep + 3) continue;
    const fsType = fields[sep + 1];
    if (fsType !== "cgroup" && fsType !== "cgroup2") continue;
    const superOpts = (fields[sep + 3] ?? "").split(",");
    const controllers = fsType === "cgroup"
      ? superOpts.filter((o) => V1_CONTROLLERS.has(o) || o.startsWith("name="))
      : [];
    out.push({
      mountPoint: fsRoot + unescapeMountField(fields[4]),
      root: unescapeMountField(fields[3]),
      fsType,
      controllers,
    });
  }
  return out;
}

/** Parse /proc/self/cgroup: controller -> path; the v2 entry is under "". */
export function parseProcCgroup(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = line.match(/^(\d+):([^:]*):(.*)$/);
    if (!m) continue;
    if (m[1] === "0" && m[2] === "") out.set("", m[3]);
    else for (const c of m[2].split(",")) out.set(c, m[3]);
  }
  return out;
}

/** Clean a path as an absolute one: "." and ".." resolved, never above "/". Returns "/a/b". */
export function cleanAbs(p: string): string {
  const parts: string[] = [];
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") parts.pop();
    else parts.push(seg);
  }
  return "/" + parts.join("/");
}

/** Join a mount point and a cgroup path ("/" -> the mount point itself). */
export function joinPath(base: string, p: string): string {
  const c = cleanAbs(p);
  return c === "/" ? base : base.replace(/\/+$/, "") + c;
}

/** The cgroup path of this process inside a mount, made relative to the mount's root. */
export function ownPathInMount(own: string | undefined, mountRoot: string): string {
  const p = cleanAbs(own ?? "/");
  const root = cleanAbs(mountRoot);
  if (root === "/") return p;
  if (p === root) return "/";
  if (p.startsWith(root + "/")) return p.slice(root.length);
  return p;
}

/**
 * The inner cgroup path for an OCI cgroupsPath, as runc reads it: absolute from the hierarchy
 * root; relative below this process's own cgroup; systemd form "slice:prefix:name" as the
 * cgroupfs path "/<expanded slice>/<prefix>-<name>.scope"; undefined -> "capsule/<id>".
 */
export function innerPath(
  cgroupsPath: string | undefined,
  id: string,
): { path: string; relative: boolean } {
  const cp = cgroupsPath ?? "";
  if (cp === "") return { path: cleanAbs(`capsule/${id}`), relative: true };
  const sd = cp.split(":");
  if (sd.length === 3 && !cp.startsWith("/")) {
    const [slice, prefix, name] = sd;
    if (!name) throw new CapsuleError(`Invalid cgroupsPath "${cp}": the systemd name is empty`);
    const scope = name.endsWith(".slice") ? name : `${prefix ? prefix + "-" : ""}${name}.scope`;
    return {
      path: cleanAbs(`${expandSlice(slice || "system.slice", cp)}/${scope}`),
      relative: false,
    };
  }
  return { path: cleanAbs(cp), relative: !cp.startsWith("/") };
}

/** systemd's slice expansion: "a-b.slice" -> "/a.slice/a-b.slice"; "-.slice" -> "/". */
export function expandSlice(slice: string, whole: string): string {
  if (!slice.endsWith(".slice") || slice.includes("/")) {
    throw new CapsuleError(`Invalid cgroupsPath "${whole}": "${slice}" is not a slice name`);
  }
  if (slice === "-.slice") return "/";
  const base = slice.slice(0, -".slice".length);
  if (base.startsWith("-") || base.endsWith("-") || base.includes("--")) {
    throw new CapsuleError(`Invalid cgroupsPath "${whole}": "${slice}" is not a valid slice`);
  }
  let path = "";
  let prefix = "";
  for (const part of base.split("-")) {
    prefix = prefix ? `${prefix}-${part}` : part;
    path += `/${prefix}.slice`;
  }
  return path;
}

// ---------------------------------------------------------------------------------------------
// Files

/** The reason of a failed system call, as a user reads it: "device or resource busy". */
export function osReason(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const m = msg.match(/^(.*?) \(os error \d+\)/);
  const r = m ? m[1] : msg;
  return r.charAt(0).toLowerCase() + r.slice(1);
}

export function errCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown })?.code;
  if (typeof code === "string") return code;
  const m = e instanceof Error ? e.message.match(/\(os error (\d+)\)/) : null;
  if (!m) return undefined;
  return ({ 2: "ENOENT", 16: "EBUSY", 22: "EINVAL", 39: "ENOTEMPTY" } as Record<string, string>)[
    m[1]
  ];
}

export function isNotFound(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound || errCode(e) === "ENOENT";
}

export function readFile(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** One write(2) of value into an existing file (cgroup files are never created). */
export function writeFile(path: string, value: string): void {
  Deno.writeTextFileSync(path, value, { create: false });
}

/** Sleep without an event loop turn (the cgroup code is synchronous). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Parse "key value" lines (memory.stat, cpu.stat, cgroup.events...). */
export function parseKeyValues(text: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (text ?? "").split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^-?\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

/** A number from a one-value file; "max" -> maxValue; missing -> 0. */
export function readNumber(path: string, maxValue = 0): number {
  const t = readFile(path)?.trim();
  if (!t) return 0;
  if (t === "max") return maxValue;
  const n = Number(t);
  return Number.isFinite(n) ? n : 0;
}

// ---------------------------------------------------------------------------------------------
// Write plans

/** One value to write into one cgroup file. */
export interface WriteOp {
  file: string;
  value: string;
  /** What is set, for the error message: "memory limit". */
  what: string;
  /** On failure, try again once after the rest (runc's cfs period retry). */
  retryLater?: boolean;
  /** Turn what the file read before the write into the value that restores it. */
  restore?: ((old: string) => string | undefined) | false;
  /** Extra words for the error message when the file is missing. */
  missingHint?: string;
}

/**
 * Write the ops in order. When one is refused, write back the old values of the ones already
 * written (newest first, best effort) and throw a CapsuleError naming the value and the file.
 */
export function executePlan(ops: WriteOp[]): void {
  const done: { op: WriteOp; old: string }[] = [];
  const run = (op: WriteOp): unknown => {
    let old: string | undefined;
    if (op.restore !== false) {
      try {
        old = readFile(op.file);
      } catch {
        old = undefined;
      }
    }
    try {
      writeFile(op.file, op.value);
    } catch (e) {
      return e;
    }
    if (old !== undefined && op.restore !== false) {
      const back = op.restore ? op.restore(old) : old.trim();
      if (back !== undefined) done.push({ op: { ...op, value: back }, old });
    }
    return undefined;
  };
  const later: WriteOp[] = [];
  const fail = (op: WriteOp, e: unknown): never => {
    for (const d of done.reverse()) {
      try {
        writeFile(d.op.file, d.op.value);
      } catch { /* best effort */ }
    }
    let reason = osReason(e);
    if (isNotFound(e) && op.missingHint) reason += ` (${op.missingHint})`;
    // The kernel refuses a memory limit below what the cgroup holds already (EBUSY).
    // (Deno reports it as an Error with code "EBUSY", not always as Deno.errors.Busy.)
    if ((e instanceof Deno.errors.Busy || errCode(e) === "EBUSY") && /^memory/.test(op.what)) {
      reason += `: the container uses more memory already (capsule's init and a program ` +
        `need up to ${MIN_MEMORY_TEXT} to start: minimum memory limit allowed is ` +
        `${MIN_MEMORY_TEXT}, ${MIN_MEMORY} bytes)`;
    }
    throw new CapsuleError(`Cannot set ${op.what} ${op.value} in ${op.file}: ${reason}`, {
      cause: e,
    });
  };
  for (const op of ops) {
    const e = run(op);
    if (e === undefined) continue;
    if (op.retryLater) later.push(op);
    else fail(op, e);
  }
  for (const op of later) {
    const e = run(op);
    if (e !== undefined) fail(op, e);
  }
}

// ---------------------------------------------------------------------------------------------
// Directories

/** mkdir each missing level from `base` (exclusive) down to `dir`; returns the ones made. */
export function mkdirLevels(base: string, dir: string): string[] {
  // The leaf first: its parents exist nearly always (the shared "capsule" parent stays), and a
  // throw per level costs more than the syscall (Deno builds an Error for every EEXIST).
  if (dir.length > base.length) {
    try {
      Deno.mkdirSync(dir);
      return [dir];
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) return [];
      if (!isNotFound(e)) {
        throw new CapsuleError(`Cannot create cgroup ${dir}: ${osReason(e)}`, { cause: e });
      }
    }
  }
  const made: string[] = [];
  const rel = dir.slice(base.length).split("/").filter(Boolean);
  let cur = base;
  for (const seg of rel) {
    cur = `${cur}/${seg}`;
    try {
      Deno.mkdirSync(cur);
      made.push(cur);
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) continue;
      removeDirs(made.reverse(), false);
      throw new CapsuleError(`Cannot create cgroup ${cur}: ${osReason(e)}`, { cause: e });
    }
  }
  return made;
}

/**
 * rmdir each directory (deepest first as given), children first, retrying EBUSY until about
 * retryMs from now (one deadline for all). `fake` also deletes regular files (a test tree is
 * not a cgroupfs).
 */
export function removeDirs(dirs: string[], fake: boolean, retryMs = 1000): void {
  const deadline = Date.now() + retryMs;
  for (const d of dirs) removeTree(d, fake, deadline);
}

function removeTree(dir: string, fake: boolean, deadline: number): void {
  // The rmdir first: a container's cgroup rarely has children, and listing one costs an entry
  // per control file (30-60 on v1). A cgroup with children is EBUSY; a test tree, ENOTEMPTY.
  try {
    Deno.removeSync(dir);
    return;
  } catch (e) {
    if (isNotFound(e)) return;
  }
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch (e) {
    if (isNotFound(e)) return;
    throw new CapsuleError(`Cannot remove cgroup ${dir}: ${osReason(e)}`, { cause: e });
  }
  for (const ent of entries) {
    if (ent.isDirectory) removeTree(`${dir}/${ent.name}`, fake, deadline);
    else if (fake) Deno.removeSync(`${dir}/${ent.name}`);
  }
  for (let wait = 5;; wait = Math.min(wait * 2, 100)) {
    try {
      Deno.removeSync(dir);
      return;
    } catch (e) {
      if (isNotFound(e)) return;
      const busy = e instanceof Deno.errors.Busy || errCode(e) === "EBUSY";
      if (!busy || Date.now() >= deadline) {
        const set = new Set<number>();
        try {
          collectPids(dir, set);
        } catch { /* said without them */ }
        const procs = [...set];
        const who = busy && procs.length ? ` (processes still in it: ${procs.join(" ")})` : "";
        throw new CapsuleError(`Cannot remove cgroup ${dir}: ${osReason(e)}${who}`, { cause: e });
      }
      sleepSync(Math.min(wait, Math.max(1, deadline - Date.now())));
    }
  }
}

/**
 * rmdir of each of `parents` that is the parent directory of one of `paths` (a container's
 * default "capsule" parents inside the caller's own cgroup, record.cgroupParents), once empty:
 * one still holding another container's cgroup stays. Never throws (best effort).
 */
export function removeEmptyParents(paths: Record<string, string>, parents: string[]): void {
  for (const parent of parents) {
    if (!Object.values(paths).some((d) => d.slice(0, d.lastIndexOf("/")) === parent)) continue;
    try {
      Deno.removeSync(parent);
    } catch { /* other containers still use it */ }
  }
}

/**
 * Pids listed in cgroup.procs of dir and every descendant (a threaded cgroup2 directory's
 * cgroup.threads). Throws CapsuleError naming the file when neither can be read.
 */
export function collectPids(dir: string, into: Set<number>): void {
  let procs: string | undefined;
  try {
    procs = readFile(`${dir}/cgroup.procs`);
  } catch (e) {
    // A threaded cgroup2 directory has no cgroup.procs to read (EOPNOTSUPP): its members are
    // threads (a thread id signals its whole process).
    try {
      procs = readFile(`${dir}/cgroup.threads`);
    } catch {
      throw new CapsuleError(`Cannot read ${dir}/cgroup.procs: ${osReason(e)}`, { cause: e });
    }
  }
  if (procs === undefined) return;
  for (const l of procs.split("\n")) if (l.trim()) into.add(Number(l));
  // A directory's link count is 2 plus its subdirectories on cgroupfs (kernfs), as on ext4 and
  // tmpfs: 2 means no child cgroup, and the listing (30-60 control files on v1) is skipped.
  // (btrfs says 1 for every directory: listed then.)
  try {
    if (Deno.statSync(dir).nlink === 2) return;
  } catch {
    return;
  }
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return;
  }
  for (const ent of entries) if (ent.isDirectory) collectPids(`${dir}/${ent.name}`, into);
}

/** True when path lies strictly below one of the mount points. */
export function isBelowMount(path: string, mountPoints: string[]): boolean {
  if (cleanAbs(path) !== path.replace(/\/+$/, "")) return false;
  return mountPoints.some((m) => path.startsWith(m.replace(/\/+$/, "") + "/"));
}

/** The distinct directories of a CgroupPaths, in first-seen order. */
export function distinctDirs(paths: Record<string, string>): string[] {
  return [...new Set(Object.values(paths))];
}

// ---------------------------------------------------------------------------------------------
// Validation (before anything is written) and conversions

/** The Go integer types of the runtime spec's linux.resources fields, and their ranges. */
const RANGES = {
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  uint16: [0n, 2n ** 16n - 1n],
} as const;

/** A value as config.json writes it, for a message (a bigint as its digits, never a TypeError). */
const shown = (v: unknown) => stringifyJson(v) ?? String(v);

/**
 * Refuses the integer field `path` unless `v` is absent, an integer (a safe one, or a bigint
 * as parseJson reads one past 2^53-1) that `check` (given it exactly) finds nothing against,
 * within the range of its runtime spec `type`. Throws CapsuleError naming the field, the value
 * as written and the reason.
 */
function field(
  path: string,
  v: unknown,
  type: keyof typeof RANGES,
  check?: (n: bigint) => string | undefined,
): void {
  if (v === undefined || v === null) return;
  if (typeof v !== "bigint" && !Number.isSafeInteger(v)) {
    throw new CapsuleError(`Invalid ${path} ${shown(v)}: expected an integer`);
  }
  const n = BigInt(v as number | bigint);
  const why = check?.(n);
  if (why) throw new CapsuleError(`Invalid ${path} ${n}: ${why}`);
  const [min, max] = RANGES[type];
  if (n < min || n > max) {
    throw new CapsuleError(
      `Invalid ${path} ${n}: out of range: must be an integer ${min} to ${max} (${type})`,
    );
  }
}

/** Each entry of the list `v` (undefined or null: none), with its path; a non-list refused. */
function entries(path: string, v: unknown): [string, Record<string, unknown>][] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new CapsuleError(`Invalid ${path}: expected a list`);
  return v.map((e, i) => {
    if (typeof e !== "object" || e === null) {
      throw new CapsuleError(`Invalid ${path}[${i}]: expected an object`);
    }
    return [`${path}[${i}]`, e];
  });
}

const LIST_RE = /^\s*(\d+(-\d+)?)(\s*,\s*\d+(-\d+)?)*\s*$/;

/**
 * `v` with every bigint of the safe range (-(2^53-1) to 2^53-1) made a number, so that a value
 * is a bigint only past 2^53-1 (as parseJson gives them): -1, 0 and the small fields compare and
 * compute as numbers. `v` itself when it holds no bigint.
 */
function safeNumbers<T>(v: T): T {
  if (typeof v === "bigint") {
    return (v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : v) as T;
  }
  if (typeof v !== "object" || v === null) return v;
  let out: T | undefined;
  for (const [k, x] of Object.entries(v)) {
    const y = safeNumbers(x);
    if (y === x) continue;
    out ??= (Array.isArray(v) ? [...v] : { ...v }) as T;
    (out as Record<string, unknown>)[k] = y;
  }
  return out ?? v;
}

/**
 * Throws a CapsuleError naming the first bad value of linux.resources (its field, the value as
 * written, the reason: a value out of its runtime spec type's range too); returns `r` with
 * bigints only past 2^53-1 (safeNumbers), for the drivers to write.
 */
export function validateResources(r: LinuxResources, version: 1 | 2): LinuxResources {
  const p = "linux.resources";
  if (typeof r !== "object" || r === null) {
    throw new CapsuleError(`Invalid ${p}: expected an object`);
  }
  r = safeNumbers(r);
  const m = r.memory ?? {};
  const limitOrMinus1 = (n: bigint) => n < -1n ? "must be -1 (unlimited) or a byte count" : "";
  field(`${p}.memory.limit`, m.limit, "int64", limitOrMinus1);
  field(`${p}.memory.reservation`, m.reservation, "int64", limitOrMinus1);
  field(`${p}.memory.swap`, m.swap, "int64", limitOrMinus1);
  field(`${p}.memory.kernel`, m.kernel, "int64");
  field(`${p}.memory.kernelTCP`, m.kernelTCP, "int64");
  // A negative swappiness is none (planV1 writes none), as before: int64, not the spec's uint64.
  field(`${p}.memory.swappiness`, m.swappiness, "int64", (n) => n > 100n ? "must be 0 to 100" : "");
  if (m.swap && m.swap > 0) {
    if (version === 2 && !(m.limit && m.limit > 0)) {
      throw new CapsuleError(
        `Invalid ${p}.memory.swap ${m.swap}: a swap limit needs a memory limit on cgroup v2`,
      );
    }
    if (m.limit && m.limit > 0 && m.swap < m.limit) {
      throw new CapsuleError(
        `Invalid ${p}.memory.swap ${m.swap}: memory+swap must be >= memory.limit ${m.limit}`,
      );
    }
  }
  if (m.disableOOMKiller !== undefined && typeof m.disableOOMKiller !== "boolean") {
    throw new CapsuleError(`Invalid ${p}.memory.disableOOMKiller: expected true or false`);
  }
  const c = r.cpu ?? {};
  field(
    `${p}.cpu.shares`,
    c.shares,
    "uint64",
    (n) => n !== 0n && (n < 2n || n > 262144n) ? "must be 2 to 262144" : "",
  );
  field(
    `${p}.cpu.quota`,
    c.quota,
    "int64",
    (n) => n !== 0n && n !== -1n && n < 1000n ? "must be -1 (unlimited) or >= 1000 µs" : "",
  );
  field(
    `${p}.cpu.period`,
    c.period,
    "uint64",
    (n) => n !== 0n && (n < 1000n || n > 1000000n) ? "must be 1000 to 1000000 µs" : "",
  );
  field(
    `${p}.cpu.realtimeRuntime`,
    c.realtimeRuntime,
    "int64",
    (n) => n < -1n ? "must be >= -1" : "",
  );
  field(`${p}.cpu.realtimePeriod`, c.realtimePeriod, "uint64", (n) => n < 0n ? "must be >= 0" : "");
  if (version === 2 && (c.realtimeRuntime || c.realtimePeriod)) {
    throw new CapsuleError(
      `Invalid ${p}.cpu.realtimeRuntime/realtimePeriod: not supported on cgroup v2`,
    );
  }
  for (const k of ["cpus", "mems"] as const) {
    const v = c[k];
    if (v === undefined || v === null || v === "") continue;
    if (typeof v !== "string" || !LIST_RE.test(v)) {
      throw new CapsuleError(
        `Invalid ${p}.cpu.${k} ${shown(v)}: expected a list like "0-2,4"`,
      );
    }
  }
  field(`${p}.pids.limit`, r.pids?.limit, "int64");
  const bio = r.blockIO ?? {};
  const weight = (n: bigint) => n !== 0n && (n < 10n || n > 1000n) ? "must be 10 to 1000" : "";
  field(`${p}.blockIO.weight`, bio.weight, "uint16", weight);
  field(`${p}.blockIO.leafWeight`, bio.leafWeight, "uint16");
  for (const [at, d] of entries(`${p}.blockIO.weightDevice`, bio.weightDevice)) {
    field(`${at}.major`, d.major, "int64");
    field(`${at}.minor`, d.minor, "int64");
    field(`${at}.weight`, d.weight, "uint16");
    field(`${at}.leafWeight`, d.leafWeight, "uint16");
  }
  for (
    const key of [
      "throttleReadBpsDevice",
      "throttleWriteBpsDevice",
      "throttleReadIOPSDevice",
      "throttleWriteIOPSDevice",
    ] as const
  ) {
    for (const [at, d] of entries(`${p}.blockIO.${key}`, bio[key])) {
      field(`${at}.major`, d.major, "int64");
      field(`${at}.minor`, d.minor, "int64");
      field(`${at}.rate`, d.rate, "uint64");
    }
  }
  for (const [at, h] of entries(`${p}.hugepageLimits`, r.hugepageLimits)) {
    field(`${at}.limit`, h.limit, "uint64");
  }
  field(`${p}.network.classID`, r.network?.classID, "uint32");
  for (const [at, n] of entries(`${p}.network.priorities`, r.network?.priorities)) {
    field(`${at}.priority`, n.priority, "uint32");
  }
  if (r.devices !== undefined && r.devices !== null) {
    if (!Array.isArray(r.devices)) throw new CapsuleError(`Invalid ${p}.devices: expected a list`);
    r.devices.forEach((d, i) => deviceRule(d, `${p}.devices[${i}]`));
  }
  if (r.unified !== undefined && r.unified !== null) {
    if (version === 1 && Object.keys(r.unified).length) {
      throw new CapsuleError(`Invalid ${p}.unified: needs cgroup v2, this host uses cgroup v1`);
    }
    for (const [k, v] of Object.entries(r.unified)) {
      if (!/^[a-z0-9_]+\.[a-z0-9_.]+$/.test(k) || k.startsWith("cgroup.")) {
        throw new CapsuleError(
          `Invalid ${p}.unified key ${JSON.stringify(k)}: not a settable file`,
        );
      }
      if (typeof v !== "string") {
        throw new CapsuleError(`Invalid ${p}.unified.${k} ${shown(v)}: expected a string`);
      }
    }
  }
  return r;
}

/**
 * The r, w and m of a rule's access, in that order (default "rwm"). Other letters are dropped,
 * as runc reads them (its update.bats writes "rwa"); "" when none is left: such a rule
 * allows or denies nothing. A non-string is a CapsuleError naming `where`.
 */
export function deviceAccess(d: LinuxDeviceCgroup, where = "device rule"): string {
  const access = d.access ?? "rwm";
  if (typeof access !== "string") {
    throw new CapsuleError(
      `Invalid ${where}.access ${shown(access)}: expected a string of r, w, m`,
    );
  }
  return [..."rwm"].filter((c) => access.includes(c)).join("");
}

/**
 * "c 1:3 rwm" for a device rule (cgroup-v1/devices.rst format), or undefined for a rule without
 * any of r, w, m (nothing to write: the kernel refuses an empty access).
 */
export function deviceRule(d: LinuxDeviceCgroup, where = "device rule"): string | undefined {
  if (typeof d !== "object" || d === null || typeof d.allow !== "boolean") {
    throw new CapsuleError(`Invalid ${where}: expected {allow: boolean, ...}`);
  }
  const type = d.type ?? "a";
  if (!["a", "b", "c"].includes(type)) {
    throw new CapsuleError(`Invalid ${where}.type ${shown(type)}: expected a, b or c`);
  }
  const num = (v: number | null | undefined, k: string) => {
    if (v === undefined || v === null || v === -1) return "*";
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new CapsuleError(`Invalid ${where}.${k} ${shown(v)}: expected a number`);
    }
    return String(v);
  };
  const access = deviceAccess(d, where);
  const rule = type === "a"
    ? `a *:* ${access}`
    : `${type} ${num(d.major, "major")}:${num(d.minor, "minor")} ${access}`;
  return access ? rule : undefined;
}

/**
 * Devices every container may use, appended after the spec's rules as runc does
 * (null, zero, full, tty, random, urandom, console, ptmx, pts, tun, and mknod of any).
 * Allow rules for linux.devices entries must come from the caller.
 */
export const DEFAULT_DEVICE_RULES: readonly LinuxDeviceCgroup[] = [
  { allow: true, type: "c", major: -1, minor: -1, access: "m" },
  { allow: true, type: "b", major: -1, minor: -1, access: "m" },
  { allow: true, type: "c", major: 1, minor: 3, access: "rwm" },
  { allow: true, type: "c", major: 1, minor: 5, access: "rwm" },
  { allow: true, type: "c", major: 1, minor: 7, access: "rwm" },
  { allow: true, type: "c", major: 5, minor: 0, access: "rwm" },
  { allow: true, type: "c", major: 1, minor: 8, access: "rwm" },
  { allow: true, type: "c", major: 1, minor: 9, access: "rwm" },
  { allow: true, type: "c", major: 5, minor: 1, access: "rwm" },
  { allow: true, type: "c", major: 5, minor: 2, access: "rwm" },
  { allow: true, type: "c", major: 136, minor: -1, access: "rwm" },
  { allow: true, type: "c", major: 10, minor: 200, access: "rwm" },
];

/** runc's cgroup v2 conversion of cpu shares [2-262144] to cpu.weight [1-10000]. */
export function sharesToWeight(shares: number): number {
  if (shares === 0) return 0;
  return 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

/** runc's conversion of blkio weight [10-1000] to io.weight [1-10000]. */
export function blkioToIoWeight(weight: number): number {
  if (weight === 0) return 0;
  return 1 + Math.floor(((weight - 10) * 9999) / 990);
}

/**
 * The directories an exec joins for `exec --cgroup` values (runc's flag): "SUB" puts it in SUB
 * below the container's cgroup in every hierarchy (v1: every controller's; the cgroup2
 * hierarchy of a hybrid host only when named, "unified:SUB"); "CTRL[,CTRL...]:SUB" (v1) in
 * those controllers' only, the others staying in the container's own. SUB is read below the
 * container's cgroup ("/" is the cgroup itself) and may not leave it. Pure: whether the
 * directories exist is the join's business. Throws a CapsuleError naming the value: a second
 * plain SUB, a controller given twice or not mounted, a controller on cgroup v2, a path
 * that leaves the container's cgroup, two directories for co-mounted controllers.
 */
export function subCgroupPaths(
  paths: Record<string, string>,
  values: string[],
): Record<string, string> {
  const bad = (v: string, why: string) => new CapsuleError(`Invalid --cgroup "${v}": ${why}`);
  const out = { ...paths };
  const v2 = "" in paths;
  const named = new Set<string>();
  for (const v of values) {
    const colon = v.indexOf(":");
    const sub = colon < 0 ? v : v.slice(colon + 1);
    let ctrls: string[];
    if (colon < 0) {
      if (values.length > 1) {
        throw bad(v, "a path without a controller must be the only --cgroup (or give CTRL:PATH)");
      }
      ctrls = Object.keys(paths).filter((k) => k !== "unified" || v2);
    } else {
      if (v2) {
        throw bad(v, "cgroup v2 has one hierarchy: give the sub-cgroup without a controller");
      }
      ctrls = v.slice(0, colon).split(",");
      for (const c of ctrls) {
        if (c === "") throw bad(v, "an empty controller name");
        if (!(c in paths)) {
          throw bad(
            v,
            `unknown controller ${c} (this host's: ${Object.keys(paths).sort().join(", ")})`,
          );
        }
        if (named.has(c)) throw bad(v, `controller ${c} is given twice`);
        named.add(c);
      }
    }
    if (sub === "" || sub.includes("\0")) throw bad(v, "an empty sub-cgroup path");
    for (const c of ctrls) {
      const base = paths[c];
      const dir = joinPath(base, cleanAbs(`/${sub}`));
      // cleanAbs keeps ".." inside the joined path; refuse any that tries to climb.
      if (cleanAbs(`/${sub}`) !== cleanAbsKeepUp(sub)) {
        throw bad(v, `${sub} is not a sub cgroup path: it leaves the container's cgroup ${base}`);
      }
      out[c] = dir;
    }
  }
  // Co-mounted controllers (cpu,cpuacct) share one directory: they must go to the same one.
  const byBase = new Map<string, string>();
  for (const [c, base] of Object.entries(paths)) {
    const seen = byBase.get(base);
    if (seen !== undefined && seen !== out[c]) {
      throw new CapsuleError(
        `Invalid --cgroup ${values.map((v) => `"${v}"`).join(" ")}: controllers mounted ` +
          `together (${base}) are given different sub-cgroups; name them together (a,b:PATH)`,
      );
    }
    byBase.set(base, out[c]);
  }
  return out;
}

/** "/" + p with "." removed and ".." kept where it would climb above the start ("/../x"). */
function cleanAbsKeepUp(p: string): string {
  const parts: string[] = [];
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === ".." && parts.length && parts[parts.length - 1] !== "..") parts.pop();
    else parts.push(seg);
  }
  return "/" + parts.join("/");
}
