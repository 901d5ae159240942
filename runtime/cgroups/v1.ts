// cgroup v1: one hierarchy per controller (or per group of co-mounted controllers). File
// formats from Documentation/admin-guide/cgroup-v1/*.rst.

import { CapsuleError } from "../errors.ts";
import type {
  CgroupDriver,
  CgroupPaths,
  CgroupStats,
  LinuxResources,
  MemoryEntry,
} from "./types.ts";
import {
  type CgroupMount,
  collectPids,
  DEFAULT_DEVICE_RULES,
  deviceRule,
  distinctDirs,
  executePlan,
  exists,
  innerPath,
  isBelowMount,
  joinPath,
  mkdirLevels,
  ownPathInMount,
  parseKeyValues,
  readFile,
  readNumber,
  removeDirs,
  sleepSync,
  validateResources,
  writeFile,
  type WriteOp,
} from "./util.ts";
import { osReason } from "./util.ts";
import { UNIFIED } from "./util.ts";

export { UNIFIED };

/** Clock ticks per second of cpuacct.stat (USER_HZ). */
const USER_HZ = 100;
const FREEZE_TIMEOUT_MS = 2000;

/** linux.resources.blockIO throttle fields and their cgroup v1 files. */
const THROTTLE_FILES = [
  ["throttleReadBpsDevice", "blkio.throttle.read_bps_device"],
  ["throttleWriteBpsDevice", "blkio.throttle.write_bps_device"],
  ["throttleReadIOPSDevice", "blkio.throttle.read_iops_device"],
  ["throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"],
] as const;

/** Current values the plan depends on (read from the cgroup; injectable for tests). */
export interface V1Current {
  /** memory.limit_in_bytes (exact: near 2^63 when unlimited); NaN when unreadable. */
  memoryLimit?: number | bigint;
  hasMemsw: boolean;
  blkioWeightFile?: string;
}

/**
 * What planV1 needs of `r` from the cgroup, and nothing more: each file looked at and missing
 * is a thrown error (the first in a process ~0.4 ms), so a config without memory or blkio
 * weight limits reads none.
 */
function readCurrent(paths: CgroupPaths, r: LinuxResources): V1Current {
  const mem = r.memory && (r.memory.limit || r.memory.swap) ? paths.memory : undefined;
  const blk = r.blockIO && (r.blockIO.weight || r.blockIO.leafWeight || r.blockIO.weightDevice)
    ? paths.blkio
    : undefined;
  return {
    memoryLimit: mem ? exactNumber(readFile(`${mem}/memory.limit_in_bytes`)) : undefined,
    hasMemsw: mem ? exists(`${mem}/memory.memsw.limit_in_bytes`) : false,
    blkioWeightFile: !blk
      ? undefined
      : exists(`${blk}/blkio.weight`)
      ? "blkio.weight"
      : exists(`${blk}/blkio.bfq.weight`)
      ? "blkio.bfq.weight"
      : undefined,
  };
}

/** The integer a cgroup file holds, exactly (a bigint past 2^53-1); NaN when it holds none. */
function exactNumber(text: string | undefined): number | bigint {
  const t = text?.trim() ?? "";
  if (!/^-?\d+$/.test(t)) return NaN;
  const n = Number(t);
  return Number.isSafeInteger(n) ? n : BigInt(t);
}

function need(paths: CgroupPaths, ctrl: string, what: string): string {
  const d = paths[ctrl];
  if (!d) {
    throw new CapsuleError(
      `Cannot set ${what}: the ${ctrl} cgroup controller is not mounted on this host`,
    );
  }
  return d;
}

/** The writes for linux.resources on cgroup v1, in the order the kernel accepts them. */
export function planV1(paths: CgroupPaths, r: LinuxResources, cur: V1Current): WriteOp[] {
  const ops: WriteOp[] = [];
  const op = (ctrl: string, file: string, value: string | number | bigint, what: string, x = {}) =>
    ops.push({
      file: `${need(paths, ctrl, what)}/${file}`,
      value: String(value),
      what,
      missingHint: `is the ${ctrl} controller mounted and the feature in this kernel?`,
      ...x,
    });

  const c = r.cpu ?? {};
  if (c.shares) op("cpu", "cpu.shares", c.shares, "cpu shares");
  // A smaller period can be refused while the old quota is in force: retry it after the quota.
  if (c.period) op("cpu", "cpu.cfs_period_us", c.period, "cpu period", { retryLater: !!c.quota });
  if (c.quota) op("cpu", "cpu.cfs_quota_us", c.quota, "cpu quota");
  if (c.realtimePeriod) op("cpu", "cpu.rt_period_us", c.realtimePeriod, "cpu realtime period");
  if (c.realtimeRuntime) {
    op("cpu", "cpu.rt_runtime_us", c.realtimeRuntime, "cpu realtime runtime");
  }
  if (c.cpus) op("cpuset", "cpuset.cpus", c.cpus, "cpuset cpus");
  if (c.mems) op("cpuset", "cpuset.mems", c.mems, "cpuset mems");

  const m = r.memory ?? {};
  const limit = m.limit ?? 0;
  let swap = m.swap ?? 0;
  // "memory unlimited, swap unset" means both unlimited (runc).
  if (limit === -1 && swap === 0 && cur.hasMemsw) swap = -1;
  const setLimit = () => limit && op("memory", "memory.limit_in_bytes", limit, "memory limit");
  const setSwap = () => {
    if (!swap) return;
    if (!cur.hasMemsw) return; // no swap accounting in this kernel: nothing to limit
    op("memory", "memory.memsw.limit_in_bytes", swap, "memory+swap limit");
  };
  // The kernel keeps memory.limit <= memsw.limit at every step: when the new memsw is above the
  // current limit (raising), memsw goes first; when lowering, the limit goes first.
  if (limit && swap && (swap === -1 || (cur.memoryLimit ?? Infinity) < swap)) {
    setSwap();
    setLimit();
  } else {
    setLimit();
    setSwap();
  }
  if (m.reservation) {
    op("memory", "memory.soft_limit_in_bytes", m.reservation, "memory reservation");
  }
  if (m.swappiness !== undefined && m.swappiness !== null && m.swappiness >= 0) {
    op("memory", "memory.swappiness", m.swappiness, "memory swappiness");
  }
  if (m.disableOOMKiller !== undefined && m.disableOOMKiller !== null) {
    op("memory", "memory.oom_control", m.disableOOMKiller ? 1 : 0, "memory oom_kill_disable", {
      restore: (old: string) => String(parseKeyValues(old).oom_kill_disable ?? 0),
    });
  }
  // memory.kernel: deprecated by the kernel, ignored (runc >= 1.2 does the same).
  if (m.kernelTCP) {
    op("memory", "memory.kmem.tcp.limit_in_bytes", m.kernelTCP, "linux.resources.memory.kernelTCP");
  }

  if (r.pids?.limit !== undefined && r.pids.limit !== null) {
    op("pids", "pids.max", r.pids.limit > 0 ? r.pids.limit : "max", "pids limit");
  }
  // Runtime spec: a value this host cannot apply is an error, never silence. A missing file
  // fails the write with the field's name.
  const bio = r.blockIO ?? {};
  const weightFile = cur.blkioWeightFile ?? "blkio.weight";
  if (bio.weight) op("blkio", weightFile, bio.weight, "linux.resources.blockIO.weight");
  if (bio.leafWeight) {
    op("blkio", "blkio.leaf_weight", bio.leafWeight, "linux.resources.blockIO.leafWeight");
  }
  for (const d of bio.weightDevice ?? []) {
    const dev = `${d.major}:${d.minor}`;
    if (d.weight) {
      op(
        "blkio",
        `${weightFile}_device`,
        `${dev} ${d.weight}`,
        "linux.resources.blockIO.weightDevice",
        {
          restore: false,
        },
      );
    }
    if (d.leafWeight) {
      op(
        "blkio",
        "blkio.leaf_weight_device",
        `${dev} ${d.leafWeight}`,
        "linux.resources.blockIO.weightDevice leafWeight",
        {
          restore: false,
        },
      );
    }
  }
  for (const [key, file] of THROTTLE_FILES) {
    for (const d of bio[key] ?? []) {
      op("blkio", file, `${d.major}:${d.minor} ${d.rate}`, `linux.resources.blockIO.${key}`, {
        restore: false,
      });
    }
  }
  for (const h of r.hugepageLimits ?? []) {
    op(
      "hugetlb",
      `hugetlb.${h.pageSize}.limit_in_bytes`,
      h.limit,
      `linux.resources.hugepageLimits ${h.pageSize}`,
    );
  }
  if (r.network?.classID !== undefined) {
    op("net_cls", "net_cls.classid", r.network.classID, "linux.resources.network.classID");
  }
  for (const p of r.network?.priorities ?? []) {
    op(
      "net_prio",
      "net_prio.ifpriomap",
      `${p.name} ${p.priority}`,
      "linux.resources.network.priorities",
      {
        restore: false,
      },
    );
  }

  if (Array.isArray(r.devices)) {
    for (const d of [...r.devices, ...DEFAULT_DEVICE_RULES]) {
      const rule = deviceRule(d);
      if (rule === undefined) continue;
      const file = d.allow ? "devices.allow" : "devices.deny";
      op("devices", file, rule, d.allow ? "device rule allow" : "device rule deny", {
        restore: false,
      });
    }
  }
  return ops;
}

export class CgroupV1Driver implements CgroupDriver {
  readonly version = 1 as const;
  readonly devicesEnforced = true;
  readonly #mounts: Map<string, CgroupMount>;
  readonly #own: Map<string, string>;
  readonly #fake: boolean;

  /**
   * mounts: controller (or "name=...", or UNIFIED for a hybrid host's cgroup2) -> its mount;
   * own: /proc/self/cgroup entries (the cgroup2 one under "").
   */
  constructor(mounts: Map<string, CgroupMount>, own: Map<string, string>, fake = false) {
    this.#mounts = mounts;
    this.#own = own;
    this.#fake = fake;
  }

  paths(cgroupsPath: string | undefined, id: string): CgroupPaths {
    const inner = innerPath(cgroupsPath, id);
    const out: CgroupPaths = {};
    for (const [ctrl, m] of this.#mounts) {
      const own = this.#own.get(ctrl === UNIFIED ? "" : ctrl);
      const base = inner.relative ? ownPathInMount(own, m.root) : "/";
      out[ctrl] = joinPath(m.mountPoint, `${base}/${inner.path}`);
    }
    return out;
  }

  #mountOf(dir: string): CgroupMount {
    for (const m of this.#mounts.values()) {
      if (isBelowMount(dir, [m.mountPoint])) return m;
    }
    throw new CapsuleError(`Refusing to use ${dir}: it is not below a cgroup v1 mount`);
  }

  create(
    paths: CgroupPaths,
    resources?: LinuxResources,
    onExisting?: (existing: CgroupPaths) => void,
  ): void {
    if (resources) resources = validateResources(resources, 1);
    const created: string[] = [];
    const existing: CgroupPaths = {};
    try {
      for (const [ctrl, dir] of Object.entries(paths)) {
        const m = this.#mountOf(dir);
        const made = mkdirLevels(m.mountPoint, dir);
        created.push(...made);
        // A co-mounted hierarchy (cpu,cpuacct) names the directory made a moment ago.
        if (!made.length && !created.includes(dir)) existing[ctrl] = dir;
        if (ctrl === "cpuset") this.#inheritCpuset(m.mountPoint, dir, made);
      }
      if (onExisting && Object.keys(existing).length) onExisting(existing);
      if (resources) executePlan(planV1(paths, resources, readCurrent(paths, resources)));
    } catch (e) {
      try {
        removeDirs(created.reverse(), this.#fake, 200);
      } catch { /* keep the first error */ }
      throw e;
    }
  }

  /**
   * A new v1 cpuset has empty cpus and mems (no task may join): copy them from the parent, for
   * each level from the mount down. A level in `made` is known to be new (empty) and is not
   * read; a value read or written is the next level's parent value.
   */
  #inheritCpuset(mountPoint: string, dir: string, made: string[]): void {
    let parent = mountPoint;
    let above: Record<string, string | undefined> = {};
    for (const seg of dir.slice(mountPoint.length).split("/").filter(Boolean)) {
      const cur = `${parent}/${seg}`;
      const here: Record<string, string | undefined> = {};
      for (const f of ["cpuset.cpus", "cpuset.mems"]) {
        const mine = made.includes(cur) ? "" : readFile(`${cur}/${f}`)?.trim();
        if (mine === undefined) continue;
        if (mine !== "") {
          here[f] = mine;
          continue;
        }
        const theirs = above[f] ?? readFile(`${parent}/${f}`)?.trim() ?? "";
        try {
          writeFile(`${cur}/${f}`, theirs);
        } catch (e) {
          throw new CapsuleError(`Cannot set ${f} ${theirs} in ${cur}/${f}: ${osReason(e)}`, {
            cause: e,
          });
        }
        here[f] = theirs;
      }
      above = here;
      parent = cur;
    }
  }

  procsFiles(paths: CgroupPaths): string[] {
    return distinctDirs(paths).map((dir) => `${dir}/cgroup.procs`);
  }

  placement(paths: CgroupPaths): { tasks: string[]; cgroup2?: string } {
    const unified = paths[UNIFIED];
    const tasks = distinctDirs(paths).filter((d) => d !== unified).map((d) => `${d}/tasks`);
    return unified === undefined ? { tasks } : { tasks, cgroup2: unified };
  }

  addProcess(paths: CgroupPaths, pid: number): void {
    for (const dir of distinctDirs(paths)) {
      try {
        writeFile(`${dir}/cgroup.procs`, String(pid));
      } catch (e) {
        throw new CapsuleError(`adding pid ${pid} to ${dir}/cgroup.procs: ${osReason(e)}`, {
          cause: e,
        });
      }
    }
  }

  apply(paths: CgroupPaths, resources: LinuxResources): void {
    resources = validateResources(resources, 1);
    executePlan(planV1(paths, resources, readCurrent(paths, resources)));
  }

  pids(paths: CgroupPaths): number[] {
    const set = new Set<number>();
    for (const dir of distinctDirs(paths)) collectPids(dir, set);
    return [...set].sort((a, b) => a - b);
  }

  freeze(paths: CgroupPaths): void {
    const file = `${need(paths, "freezer", "freezer state")}/freezer.state`;
    const set = (v: string) => {
      try {
        writeFile(file, v);
      } catch (e) {
        throw new CapsuleError(`Cannot set freezer state ${v} in ${file}: ${osReason(e)}`, {
          cause: e,
        });
      }
    };
    set("FROZEN");
    const deadline = Date.now() + FREEZE_TIMEOUT_MS;
    for (let i = 1;; i++) {
      const state = readFile(file)?.trim();
      if (state === "FROZEN") return;
      if (Date.now() >= deadline) {
        set("THAWED");
        throw new CapsuleError(
          `Cannot freeze ${file}: still ${state} after ${FREEZE_TIMEOUT_MS} ms (thawed again)`,
        );
      }
      // The kernel can stay in FREEZING when a task escapes; writing FROZEN again retries.
      if (i % 20 === 0) set("FROZEN");
      sleepSync(Math.min(i, 10));
    }
  }

  thaw(paths: CgroupPaths): void {
    const file = `${need(paths, "freezer", "freezer state")}/freezer.state`;
    try {
      writeFile(file, "THAWED");
    } catch (e) {
      throw new CapsuleError(`Cannot set freezer state THAWED in ${file}: ${osReason(e)}`, {
        cause: e,
      });
    }
  }

  isFrozen(paths: CgroupPaths): boolean {
    if (!paths.freezer) return false;
    return readFile(`${paths.freezer}/freezer.state`)?.trim() === "FROZEN";
  }

  freezerFile(paths: CgroupPaths): { path: string; thawed: string } | undefined {
    return paths.freezer ? { path: `${paths.freezer}/freezer.state`, thawed: "THAWED" } : undefined;
  }

  stats(paths: CgroupPaths): CgroupStats {
    const acct = paths.cpuacct;
    const cpu = paths.cpu;
    const mem = paths.memory;
    const pids = paths.pids;
    let kernel = 0;
    let user = 0;
    let percpu: number[] | undefined;
    if (acct) {
      if (exists(`${acct}/cpuacct.usage_user`)) {
        user = readNumber(`${acct}/cpuacct.usage_user`);
        kernel = readNumber(`${acct}/cpuacct.usage_sys`);
      } else {
        const st = parseKeyValues(readFile(`${acct}/cpuacct.stat`));
        user = ((st.user ?? 0) * 1e9) / USER_HZ;
        kernel = ((st.system ?? 0) * 1e9) / USER_HZ;
      }
      const pc = readFile(`${acct}/cpuacct.usage_percpu`)?.trim();
      if (pc) percpu = pc.split(/\s+/).map(Number);
    }
    const cs = cpu ? parseKeyValues(readFile(`${cpu}/cpu.stat`)) : {};
    const entry = (prefix: string): MemoryEntry => ({
      usage: mem ? readNumber(`${mem}/${prefix}usage_in_bytes`) : 0,
      limit: mem ? readNumber(`${mem}/${prefix}limit_in_bytes`) : 0,
      max: mem ? readNumber(`${mem}/${prefix}max_usage_in_bytes`) : 0,
      failcnt: mem ? readNumber(`${mem}/${prefix}failcnt`) : 0,
    });
    const stats = mem ? parseKeyValues(readFile(`${mem}/memory.stat`)) : {};
    const oom = mem ? parseKeyValues(readFile(`${mem}/memory.oom_control`)) : {};
    return {
      cpu: {
        usage: {
          total: acct ? readNumber(`${acct}/cpuacct.usage`) : 0,
          ...(percpu ? { percpu } : {}),
          kernel,
          user,
        },
        throttling: {
          periods: cs.nr_periods ?? 0,
          throttledPeriods: cs.nr_throttled ?? 0,
          throttledTime: cs.throttled_time ?? 0,
        },
      },
      memory: {
        cache: stats.cache ?? 0,
        usage: entry("memory."),
        swap: entry("memory.memsw."),
        kernel: entry("memory.kmem."),
        stats,
      },
      pids: {
        current: pids ? readNumber(`${pids}/pids.current`) : 0,
        limit: pids ? readNumber(`${pids}/pids.max`, 0) : 0,
      },
      oomKillCount: oom.oom_kill ?? 0,
    };
  }

  destroy(paths: CgroupPaths): void {
    const mountPoints = [...this.#mounts.values()].map((m) => m.mountPoint);
    const dirs = distinctDirs(paths);
    for (const d of dirs) {
      if (!isBelowMount(d, mountPoints)) {
        throw new CapsuleError(`Refusing to remove ${d}: it is not below a cgroup mount`);
      }
    }
    // One deadline for all hierarchies: busy cgroups cost about a second, not one per controller.
    const deadline = Date.now() + 1000;
    const errors: string[] = [];
    for (const d of dirs) {
      try {
        removeDirs([d], this.#fake, Math.max(0, deadline - Date.now()));
      } catch (e) {
        errors.push((e as Error).message);
      }
    }
    if (errors.length) {
      const more = errors.length > 1 ? ` (and ${errors.length - 1} more controllers)` : "";
      throw new CapsuleError(errors[0] + more);
    }
  }
}
