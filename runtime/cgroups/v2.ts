// cgroup v2: one unified hierarchy. File formats from Documentation/admin-guide/cgroup-v2.rst;
// conversions from OCI (v1-shaped) values as runc and crun do them.
//
// Devices: cgroup v2 has no devices.allow/deny files; the kernel enforces device access through
// an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the cgroup: capsule compiles the
// rules (devices_bpf.ts) and attaches one with BPF_F_ALLOW_MULTI. An update with new device
// rules attaches another: every attached program must allow an access, so an update can narrow
// the rules but not widen them. Also not applied on v2: memory.swappiness,
// memory.disableOOMKiller (no v2 equivalent), memory.kernel* (deprecated).

import { CapsuleError } from "../errors.ts";
import * as libc from "../../ffi/libc.ts";
import { deviceFilterInsns, packInsns } from "./devices_bpf.ts";
import type {
  CgroupDriver,
  CgroupPaths,
  CgroupStats,
  LinuxDeviceCgroup,
  LinuxResources,
} from "./types.ts";
import {
  blkioToIoWeight,
  type CgroupMount,
  collectPids,
  DEFAULT_DEVICE_RULES,
  executePlan,
  exists,
  innerPath,
  isBelowMount,
  joinPath,
  osReason,
  ownPathInMount,
  parseKeyValues,
  readFile,
  readNumber,
  removeDirs,
  sharesToWeight,
  sleepSync,
  validateResources,
  writeFile,
  type WriteOp,
} from "./util.ts";

/** memory.max "max" as runc reports it (2^64-1). */
export const UNLIMITED = 18446744073709551615;
const FREEZE_TIMEOUT_MS = 2000;

/**
 * runc's ConvertMemorySwapToCgroupV2Value: OCI memory+swap -> memory.swap.max. Exact for int64s
 * (validateResources: a bigint only past 2^53-1); a number when the result is a safe integer.
 */
export function swapToV2(swap: number | bigint, limit: number | bigint): number | bigint {
  if (limit === -1 && swap === 0) return -1;
  if (swap === -1 || swap === 0) return swap;
  if (limit === 0 || limit === -1) {
    throw new CapsuleError(
      `Invalid linux.resources.memory.swap ${swap}: a swap limit needs a memory limit`,
    );
  }
  if (swap < limit) {
    throw new CapsuleError(
      `Invalid linux.resources.memory.swap ${swap}: memory+swap must be >= memory.limit ${limit}`,
    );
  }
  const d = BigInt(swap) - BigInt(limit);
  return d <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(d) : d;
}

const maxOr = (n: number | bigint) => (n === -1 ? "max" : String(n));

/** The writes for linux.resources on cgroup v2 (dir: the container's cgroup). */
/** linux.resources.blockIO throttle fields and their io.max keys. */
const IO_MAX_KEYS = [
  ["throttleReadBpsDevice", "rbps"],
  ["throttleWriteBpsDevice", "wbps"],
  ["throttleReadIOPSDevice", "riops"],
  ["throttleWriteIOPSDevice", "wiops"],
] as const;

function unsupportedV2(field: string): never {
  throw new CapsuleError(
    `${field} cannot be applied on this host's cgroup v2 hierarchy: remove it from config.json`,
  );
}

export function planV2(dir: string, r: LinuxResources): WriteOp[] {
  const ops: WriteOp[] = [];
  const op = (ctrl: string, file: string, value: string | number | bigint, what: string, x = {}) =>
    ops.push({
      file: `${dir}/${file}`,
      value: String(value),
      what,
      missingHint: `is the ${ctrl} controller enabled in the parent's cgroup.subtree_control?`,
      ...x,
    });

  const c = r.cpu ?? {};
  if (c.shares) {
    // 2 to 262144 (validateResources): a number.
    op("cpu", "cpu.weight", sharesToWeight(Number(c.shares)), `cpu weight (shares ${c.shares})`);
  }
  if (c.quota || c.period) {
    // cpu.max is "$MAX $PERIOD"; keep what is not given.
    const [curMax, curPeriod] = (readFile(`${dir}/cpu.max`) ?? "max 100000").trim().split(/\s+/);
    const max = c.quota ? (c.quota > 0 ? String(c.quota) : "max") : (curMax ?? "max");
    const period = c.period || Number(curPeriod) || 100000;
    op("cpu", "cpu.max", `${max} ${period}`, "cpu quota and period");
  }
  if (c.cpus) op("cpuset", "cpuset.cpus", c.cpus, "cpuset cpus");
  if (c.mems) op("cpuset", "cpuset.mems", c.mems, "cpuset mems");

  const m = r.memory ?? {};
  const limit = m.limit ?? 0;
  const swap = swapToV2(m.swap ?? 0, limit);
  if (swap !== 0) {
    const v = maxOr(swap);
    // No swap accounting: setting "max" (or 0) is a no-op, anything else an error (as runc).
    if (exists(`${dir}/memory.swap.max`) || v !== "max") {
      op("memory", "memory.swap.max", v, `memory swap limit (memory+swap ${m.swap ?? 0})`);
    }
  }
  if (limit) op("memory", "memory.max", maxOr(limit), "memory limit");
  if (m.reservation) op("memory", "memory.low", maxOr(m.reservation), "memory reservation");

  if (r.pids?.limit !== undefined && r.pids.limit !== null) {
    op("pids", "pids.max", r.pids.limit > 0 ? r.pids.limit : "max", "pids limit");
  }
  const bio = r.blockIO ?? {};
  const w = bio.weight;
  const bfq = exists(`${dir}/io.bfq.weight`);
  if (w) {
    if (bfq) op("io", "io.bfq.weight", w, "io weight (bfq)");
    else op("io", "io.weight", blkioToIoWeight(Number(w)), `io weight (blkio weight ${w})`);
  }
  // Runtime spec: what cgroup v2 cannot apply is refused, naming the field.
  if (bio.leafWeight) unsupportedV2("linux.resources.blockIO.leafWeight");
  for (const d of bio.weightDevice ?? []) {
    if (d.leafWeight) unsupportedV2("linux.resources.blockIO.weightDevice leafWeight");
    if (!d.weight) continue;
    const dev = `${d.major}:${d.minor}`;
    if (bfq) {
      op("io", "io.bfq.weight", `${dev} ${d.weight}`, "linux.resources.blockIO.weightDevice");
    } else {
      op(
        "io",
        "io.weight",
        `${dev} ${blkioToIoWeight(Number(d.weight))}`,
        "linux.resources.blockIO.weightDevice",
        {
          restore: false,
        },
      );
    }
  }
  for (const [key, name] of IO_MAX_KEYS) {
    for (const d of bio[key] ?? []) {
      op(
        "io",
        "io.max",
        `${d.major}:${d.minor} ${name}=${d.rate}`,
        `linux.resources.blockIO.${key}`,
        {
          restore: false,
        },
      );
    }
  }
  for (const h of r.hugepageLimits ?? []) {
    op(
      "hugetlb",
      `hugetlb.${h.pageSize}.max`,
      h.limit,
      `linux.resources.hugepageLimits ${h.pageSize}`,
    );
  }
  if (r.network?.classID !== undefined || r.network?.priorities?.length) {
    unsupportedV2("linux.resources.network (net_cls/net_prio are cgroup v1 controllers)");
  }
  if (r.memory?.kernelTCP) unsupportedV2("linux.resources.memory.kernelTCP");
  for (const [k, v] of Object.entries(r.unified ?? {})) {
    op(k.split(".")[0], k, v, `unified ${k}`);
  }
  return ops;
}

export class CgroupV2Driver implements CgroupDriver {
  readonly version = 2 as const;
  readonly devicesEnforced = true;
  readonly #mount: CgroupMount;
  readonly #own: string;
  readonly #fake: boolean;

  constructor(mount: CgroupMount, own: Map<string, string>, fake = false) {
    this.#mount = mount;
    this.#own = own.get("") ?? "/";
    this.#fake = fake;
  }

  paths(cgroupsPath: string | undefined, id: string): CgroupPaths {
    const inner = innerPath(cgroupsPath, id);
    const base = inner.relative ? ownPathInMount(this.#own, this.#mount.root) : "/";
    return { "": joinPath(this.#mount.mountPoint, `${base}/${inner.path}`) };
  }

  #dir(paths: CgroupPaths): string {
    const d = paths[""];
    if (!d) throw new CapsuleError(`Invalid cgroup paths for cgroup v2: ${JSON.stringify(paths)}`);
    if (!isBelowMount(d, [this.#mount.mountPoint])) {
      throw new CapsuleError(`Refusing to use ${d}: it is not below the cgroup2 mount`);
    }
    return d;
  }

  /** Enable every available controller for the children of dir (as runc does). */
  #enableControllers(dir: string): void {
    const avail = (readFile(`${dir}/cgroup.controllers`) ?? "").split(/\s+/).filter(Boolean);
    const on = new Set((readFile(`${dir}/cgroup.subtree_control`) ?? "").split(/\s+/));
    for (const c of avail) {
      if (on.has(c)) continue;
      try {
        writeFile(`${dir}/cgroup.subtree_control`, `+${c}`);
      } catch {
        // EBUSY when dir has processes of its own (no internal processes rule): then the
        // resource write for that controller fails later with a message naming the file.
      }
    }
  }

  create(
    paths: CgroupPaths,
    resources?: LinuxResources,
    onExisting?: (existing: CgroupPaths) => void,
  ): void {
    const r = validateResources(resources ?? {}, 2);
    const dir = this.#dir(paths);
    const created: string[] = [];
    try {
      let cur = this.#mount.mountPoint.replace(/\/+$/, "");
      for (const seg of dir.slice(cur.length).split("/").filter(Boolean)) {
        this.#enableControllers(cur);
        cur = `${cur}/${seg}`;
        try {
          Deno.mkdirSync(cur);
          created.push(cur);
        } catch (e) {
          if (!(e instanceof Deno.errors.AlreadyExists)) {
            throw new CapsuleError(`Cannot create cgroup ${cur}: ${osReason(e)}`, { cause: e });
          }
        }
      }
      if (onExisting && created.at(-1) !== dir) onExisting(paths);
      executePlan(planV2(dir, r));
      this.#applyDevices(dir, r.devices);
    } catch (e) {
      try {
        removeDirs(created.reverse(), this.#fake, 200);
      } catch { /* keep the first error */ }
      throw e;
    }
  }

  procsFiles(paths: CgroupPaths): string[] {
    return [`${this.#dir(paths)}/cgroup.procs`];
  }

  placement(paths: CgroupPaths): { tasks: string[]; cgroup2?: string } {
    return { tasks: [], cgroup2: this.#dir(paths) };
  }

  addProcess(paths: CgroupPaths, pid: number): void {
    const file = `${this.#dir(paths)}/cgroup.procs`;
    try {
      writeFile(file, String(pid));
    } catch (e) {
      throw new CapsuleError(`adding pid ${pid} to ${file}: ${osReason(e)}`, { cause: e });
    }
  }

  apply(paths: CgroupPaths, resources: LinuxResources): void {
    resources = validateResources(resources, 2);
    const dir = this.#dir(paths);
    executePlan(planV2(dir, resources));
    this.#applyDevices(dir, resources.devices);
  }

  /** The device rules (then runc's defaults) as an eBPF program attached to the cgroup. */
  #applyDevices(dir: string, devices: LinuxDeviceCgroup[] | undefined): void {
    if (!devices || this.#fake) return;
    const insns = packInsns(deviceFilterInsns([...devices, ...DEFAULT_DEVICE_RULES]));
    let prog = -1, cg = -1;
    try {
      prog = libc.bpfLoadDeviceProgram(insns);
      cg = libc.open(dir, libc.O.RDONLY | libc.O.DIRECTORY | libc.O.CLOEXEC);
      libc.bpfAttachDeviceProgram(cg, prog, libc.BPF_F_ALLOW_MULTI);
    } catch (e) {
      throw new CapsuleError(`Cannot apply device rules to ${dir} (eBPF): ${(e as Error).message}`);
    } finally {
      if (prog >= 0) libc.close(prog);
      if (cg >= 0) libc.close(cg);
    }
  }

  pids(paths: CgroupPaths): number[] {
    const set = new Set<number>();
    collectPids(this.#dir(paths), set);
    return [...set].sort((a, b) => a - b);
  }

  #setFreeze(dir: string, v: "0" | "1"): void {
    try {
      writeFile(`${dir}/cgroup.freeze`, v);
    } catch (e) {
      throw new CapsuleError(
        `Cannot set freezer state ${v} in ${dir}/cgroup.freeze: ${osReason(e)}`,
        { cause: e },
      );
    }
  }

  freeze(paths: CgroupPaths): void {
    const dir = this.#dir(paths);
    this.#setFreeze(dir, "1");
    const deadline = Date.now() + FREEZE_TIMEOUT_MS;
    for (let i = 1;; i++) {
      if (parseKeyValues(readFile(`${dir}/cgroup.events`)).frozen === 1) return;
      if (Date.now() >= deadline) {
        this.#setFreeze(dir, "0");
        throw new CapsuleError(
          `Cannot freeze ${dir}: cgroup.events not "frozen 1" after ${FREEZE_TIMEOUT_MS} ms (thawed again)`,
        );
      }
      sleepSync(Math.min(i, 10));
    }
  }

  thaw(paths: CgroupPaths): void {
    this.#setFreeze(this.#dir(paths), "0");
  }

  isFrozen(paths: CgroupPaths): boolean {
    return readFile(`${this.#dir(paths)}/cgroup.freeze`)?.trim() === "1";
  }

  freezerFile(paths: CgroupPaths): { path: string; thawed: string } {
    return { path: `${this.#dir(paths)}/cgroup.freeze`, thawed: "0" };
  }

  stats(paths: CgroupPaths): CgroupStats {
    const dir = this.#dir(paths);
    const cs = parseKeyValues(readFile(`${dir}/cpu.stat`));
    const stats = parseKeyValues(readFile(`${dir}/memory.stat`));
    const ev = parseKeyValues(readFile(`${dir}/memory.events`));
    const sev = parseKeyValues(readFile(`${dir}/memory.swap.events`));
    const usage = readNumber(`${dir}/memory.current`);
    const limit = readNumber(`${dir}/memory.max`, UNLIMITED);
    const swapUsage = readNumber(`${dir}/memory.swap.current`);
    const swapMax = readNumber(`${dir}/memory.swap.max`, UNLIMITED);
    return {
      cpu: {
        usage: {
          total: (cs.usage_usec ?? 0) * 1000,
          kernel: (cs.system_usec ?? 0) * 1000,
          user: (cs.user_usec ?? 0) * 1000,
        },
        throttling: {
          periods: cs.nr_periods ?? 0,
          throttledPeriods: cs.nr_throttled ?? 0,
          throttledTime: (cs.throttled_usec ?? 0) * 1000,
        },
      },
      memory: {
        cache: stats.file ?? 0,
        usage: {
          usage,
          limit,
          max: readNumber(`${dir}/memory.peak`),
          failcnt: ev.max ?? 0,
        },
        // As runc: the v1-shaped "swap" entry is memory + swap.
        swap: {
          usage: usage + swapUsage,
          limit: limit === UNLIMITED || swapMax === UNLIMITED ? UNLIMITED : limit + swapMax,
          max: readNumber(`${dir}/memory.swap.peak`),
          failcnt: sev.fail ?? 0,
        },
        stats,
      },
      pids: {
        current: readNumber(`${dir}/pids.current`),
        limit: readNumber(`${dir}/pids.max`, 0),
      },
      oomKillCount: ev.oom_kill ?? 0,
    };
  }

  destroy(paths: CgroupPaths): void {
    removeDirs([this.#dir(paths)], this.#fake);
  }
}
