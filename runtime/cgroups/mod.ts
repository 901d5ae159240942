// cgroups of containers: detection of the hierarchy from /proc/self/mountinfo, one driver
// interface with a v1 and a v2 implementation chosen at run time, and helpers for the CLI.
// Synchronous Deno file APIs only, no npm and no node: imports (this is on the start path).
//
// Use: const cg = detectCgroups(); const paths = cg.paths(spec.linux?.cgroupsPath, id);
// save `paths` in the container state; cg.create(paths, spec.linux?.resources);
// cg.addProcess(paths, pid); ... on delete: cg.destroy(savedPaths).

import { CapsuleError } from "../errors.ts";
import type { CgroupDriver, CgroupStats, MemoryEntry } from "./types.ts";
import { stringifyJson } from "../json.ts";
import { type DetectOptions, hostHierarchies } from "./detect.ts";
import { CgroupV1Driver } from "./v1.ts";
import { CgroupV2Driver } from "./v2.ts";

export type {
  CgroupDriver,
  CgroupPaths,
  CgroupStats,
  LinuxDeviceCgroup,
  LinuxResources,
  MemoryEntry,
  ThrottleDevice,
} from "./types.ts";
export { CgroupV1Driver, UNIFIED } from "./v1.ts";
export { CgroupV2Driver } from "./v2.ts";
export { FakeCgroupDriver } from "./fake.ts";
export { DEFAULT_DEVICE_RULES } from "./util.ts";

export type { DetectOptions } from "./detect.ts";

/**
 * The cgroup driver of this host: v1 when any v1 controller is mounted (hybrid setups count
 * as v1, their cgroup2 mount one more hierarchy under the key UNIFIED), else v2 on the unified
 * hierarchy. Throws a CapsuleError when neither is mounted.
 */
export function detectCgroups(opts: DetectOptions = {}): CgroupDriver {
  const h = hostHierarchies(opts);
  return h.v1 ? new CgroupV1Driver(h.v1, h.own, h.fake) : new CgroupV2Driver(h.v2!, h.own, h.fake);
}

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
  p: 1024 ** 5,
};

/**
 * Bytes from a CLI memory value: "1048576", "512m", "1g", "1.5GiB", "64kb"; binary units
 * (as docker/runc's RAMInBytes). "-1" is unlimited. Anything else is a CapsuleError, naming
 * `flag` (e.g. "--memory-swap") when given.
 */
export function parseMemory(value: string, flag?: string): number {
  const v = String(value).trim();
  if (v === "-1") return -1;
  const m = v.match(/^(\d+(?:\.\d+)?) ?([kmgtp]?)(i?b)?$/i);
  const bad = () =>
    new CapsuleError(
      `Invalid ${flag ?? "memory"} value "${value}": expected bytes with an optional unit ` +
        `(b, k, m, g, t, p), ` +
        `e.g. 512m`,
    );
  if (!m || (m[3] && m[3].toLowerCase() === "ib" && !m[2])) throw bad();
  const n = Math.floor(Number(m[1]) * UNITS[m[2].toLowerCase()]);
  if (!Number.isSafeInteger(n)) throw bad();
  return n;
}

/**
 * runc's `events --stats` "data" (toRuncStats) as JSON text, with every integer exact as Go's
 * encoding/json writes a uint64: a count past 2^53-1 (v1's unlimited memory.limit_in_bytes,
 * 9223372036854771712, or a hierarchical limit in memory.stat) as the integer its double holds,
 * where JSON.stringify writes the shortest digits that read back (9223372036854772000), and v2's
 * "max" (UNLIMITED, the double 2^64) as 18446744073709551615, which a Go reader takes (it cannot
 * read 18446744073709552000 into a uint64).
 */
export function runcStatsJson(s: CgroupStats, wrap = (data: unknown) => data): string {
  return stringifyJson(wrap(exactIntegers(toRuncStats(s))));
}

/** `v` with each integer past 2^53-1 a bigint of the same value (2^64 and past: u64's max). */
function exactIntegers(v: unknown): unknown {
  if (typeof v === "number") {
    if (!Number.isInteger(v) || Math.abs(v) <= Number.MAX_SAFE_INTEGER) return v;
    return v >= 2 ** 64 ? 2n ** 64n - 1n : BigInt(v);
  }
  if (Array.isArray(v)) return v.map(exactIntegers);
  if (typeof v !== "object" || v === null) return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, exactIntegers(x)]));
}

/** A CgroupStats in the JSON shape of runc's `events --stats` "data" (types.Stats). */
export function toRuncStats(s: CgroupStats): Record<string, unknown> {
  const entry = (e: MemoryEntry | undefined) =>
    e ? { limit: e.limit, usage: e.usage, max: e.max, failcnt: e.failcnt } : {};
  return {
    cpu: {
      usage: {
        total: s.cpu.usage.total,
        ...(s.cpu.usage.percpu ? { percpu: s.cpu.usage.percpu } : {}),
        kernel: s.cpu.usage.kernel,
        user: s.cpu.usage.user,
      },
      throttling: {
        periods: s.cpu.throttling.periods,
        throttled_periods: s.cpu.throttling.throttledPeriods,
        throttled_time: s.cpu.throttling.throttledTime,
      },
    },
    memory: {
      cache: s.memory.cache,
      usage: entry(s.memory.usage),
      swap: entry(s.memory.swap),
      kernel: entry(s.memory.kernel),
      kernelTCP: {},
      raw: s.memory.stats,
    },
    pids: { current: s.pids.current, limit: s.pids.limit },
    blkio: {},
    hugetlb: {},
    intel_rdt: {},
    network_interfaces: null,
  };
}
