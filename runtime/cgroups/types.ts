// Types of the cgroup layer: the OCI linux.resources subset capsule applies, the driver
// interface (one implementation per cgroup version, chosen at run time) and the stats shape.

/** One OCI device cgroup rule (linux.resources.devices[]). */
export interface LinuxDeviceCgroup {
  /** Allow (true) or deny (false) the matching devices. */
  allow: boolean;
  /** "a" (all), "c" or "b"; default "a". */
  type?: string;
  /** Undefined or -1 means any ("*"). */
  major?: number | null;
  /** Undefined or -1 means any ("*"). */
  minor?: number | null;
  /** Any of "r", "w", "m"; default "rwm". */
  access?: string;
}

/**
 * One device's throttle (linux.resources.blockIO.throttle*Device, config-linux.md "Block IO"):
 * written as "MAJOR:MINOR RATE" to blkio.throttle.* on v1, as rbps/wbps/riops/wiops in io.max
 * on v2.
 */
export interface ThrottleDevice {
  /** The block device's major number (int64). */
  major: number | bigint;
  /** The block device's minor number (int64). */
  minor: number | bigint;
  /**
   * The limit (uint64): bytes per second in the *Bps* lists, operations per second in the
   * *IOPS* ones.
   */
  rate: number | bigint;
}

/**
 * OCI linux.resources (the parts capsule applies). Integers as in config.json, of the runtime
 * spec's Go types (in parentheses), whose ranges validateResources checks: a number, or a bigint
 * past 2^53-1 (how runtime/json.ts parseJson reads such a literal, exactly; validateResources
 * makes a smaller bigint a number).
 */
export interface LinuxResources {
  /** Memory in bytes. */
  memory?: {
    /** int64; -1 unlimited. */
    limit?: number | bigint;
    /** int64. */
    reservation?: number | bigint;
    /** memory + swap (cgroup v1 semantics, as in OCI), int64; -1 unlimited. */
    swap?: number | bigint;
    /** Deprecated; ignored (as runc >= 1.2 does). int64. */
    kernel?: number | bigint;
    /** cgroup v1: memory.kmem.tcp.limit_in_bytes; refused on v2, which has no such limit. int64. */
    kernelTCP?: number | bigint;
    /** 0 to 100 (uint64). */
    swappiness?: number | bigint;
    disableOOMKiller?: boolean;
  };
  /** shares: relative weight (1024 = one share); quota and period in microseconds. */
  cpu?: {
    /** 2 to 262144 (uint64). */
    shares?: number | bigint;
    /** int64; -1 unlimited. */
    quota?: number | bigint;
    /** 1000 to 1000000 (uint64). */
    period?: number | bigint;
    /** int64. */
    realtimeRuntime?: number | bigint;
    /** uint64. */
    realtimePeriod?: number | bigint;
    cpus?: string;
    mems?: string;
  };
  /** Most processes at once (0 or -1: no limit); int64. */
  pids?: { limit?: number | bigint };
  /** Block I/O: relative weights 10-1000 (per device too) and per-device throttles. */
  blockIO?: {
    /** 10 to 1000 (uint16). */
    weight?: number | bigint;
    /** uint16. */
    leafWeight?: number | bigint;
    /** major and minor int64, weights uint16. */
    weightDevice?: {
      major: number | bigint;
      minor: number | bigint;
      weight?: number | bigint;
      leafWeight?: number | bigint;
    }[];
    /** Bytes per second. */
    throttleReadBpsDevice?: ThrottleDevice[];
    /** Bytes per second. */
    throttleWriteBpsDevice?: ThrottleDevice[];
    /** Operations per second. */
    throttleReadIOPSDevice?: ThrottleDevice[];
    /** Operations per second. */
    throttleWriteIOPSDevice?: ThrottleDevice[];
  };
  /** Huge pages per page size ("2MB", "1GB"): the most bytes of that size (uint64). */
  hugepageLimits?: { pageSize: string; limit: number | bigint }[];
  /** cgroup v1 only: net_cls class id and net_prio priorities per interface (uint32s). */
  network?: {
    classID?: number | bigint;
    priorities?: { name: string; priority: number | bigint }[];
  };
  /** Device rules, applied in order (the last that matches wins). */
  devices?: LinuxDeviceCgroup[];
  /** cgroup v2 only: file name -> value, written as given. */
  unified?: Record<string, string>;
}

/**
 * Controller name -> absolute directory (v1; "unified" for a hybrid host's cgroup2 hierarchy),
 * or {"": dir} for v2. Store it in the state.
 */
export type CgroupPaths = Record<string, string>;

/** One memory counter. Unlimited limits are 2^64-1 on v2 ("max") and the kernel's value on v1. */
export interface MemoryEntry {
  /** Bytes now. */
  usage: number;
  /** Bytes allowed. */
  limit: number;
  /** Most bytes ever used. */
  max: number;
  /** Times the limit was hit. */
  failcnt: number;
}

/** Statistics, shaped after runc's `events --stats` (see toRuncStats for its JSON). */
export interface CgroupStats {
  /** cpu time. */
  cpu: {
    /** Nanoseconds. */
    usage: { total: number; percpu?: number[]; kernel: number; user: number };
    /** throttledTime in nanoseconds. */
    throttling: { periods: number; throttledPeriods: number; throttledTime: number };
  };
  /** Memory counters in bytes. */
  memory: {
    cache: number;
    usage: MemoryEntry;
    /** v1: memsw (memory + swap) counters; v2: memory.swap.* plus memory.* as runc reports. */
    swap: MemoryEntry;
    kernel?: MemoryEntry;
    /** memory.stat as numbers. */
    stats: Record<string, number>;
  };
  /** limit 0 means unlimited (as runc reports it). */
  pids: { current: number; limit: number };
  /** Processes the OOM killer killed in the cgroup. */
  oomKillCount: number;
}

/**
 * One cgroup version's implementation (v1.ts, v2.ts; fake.ts for tests). Methods throw
 * CapsuleError naming the file and the kernel's reason when a write is refused.
 */
export interface CgroupDriver {
  /** The cgroup version it drives. */
  readonly version: 1 | 2;
  /** false on cgroup v2: device rules need an eBPF program there, which capsule does not load. */
  readonly devicesEnforced: boolean;
  /** Resolve an OCI cgroupsPath (or undefined -> "capsule/<id>") to directories. Pure. */
  paths(cgroupsPath: string | undefined, id: string): CgroupPaths;
  /**
   * mkdir and apply resources; on failure remove what it created, then throw. `onExisting`, when
   * given, is called after the mkdirs and before any write with the hierarchies whose directory
   * was there already (not called when every one is new); what it throws fails the create the
   * same way (what was made is removed, what was there is left).
   */
  create(
    paths: CgroupPaths,
    resources?: LinuxResources,
    onExisting?: (existing: CgroupPaths) => void,
  ): void;
  /**
   * Write pid to cgroup.procs of every directory. A refusal is a CapsuleError "adding pid N to
   * FILE: reason" (runc's words), for the caller to put after what it was doing.
   */
  addProcess(paths: CgroupPaths, pid: number): void;
  /**
   * The cgroup.procs files that {@link addProcess} writes for `paths` (one per distinct v1
   * directory, or the v2 one), for a process that moves another in itself (capsule-nsexec).
   * Throws CapsuleError for paths this driver refuses (v2: not below its mount).
   */
  procsFiles(paths: CgroupPaths): string[];
  /**
   * How a single-threaded process that clones the container's init places it (runtime/plan.ts
   * InitPlacement): the v1 `tasks` files it writes "0" into (one per distinct directory; moving
   * its own one thread takes no RCU grace period), and the cgroup2 directory (v2, or a hybrid
   * host's unified hierarchy) the init is cloned into. Throws CapsuleError for paths this
   * driver refuses.
   */
  placement(paths: CgroupPaths): { tasks: string[]; cgroup2?: string };
  /** Apply resources to an existing cgroup; a refused value restores the old values written. */
  apply(paths: CgroupPaths, resources: LinuxResources): void;
  /** Pids in the cgroup and its descendants, sorted. [] when the cgroup is gone. */
  pids(paths: CgroupPaths): number[];
  /** Freezes every process (v1 freezer.state, v2 cgroup.freeze); returns once frozen. */
  freeze(paths: CgroupPaths): void;
  /** Thaws every process. */
  thaw(paths: CgroupPaths): void;
  /** Whether the cgroup is frozen now. */
  isFrozen(paths: CgroupPaths): boolean;
  /**
   * The file that says whether the cgroup is frozen, and what it holds (trimmed) while it is
   * not: v1 `freezer.state` and "THAWED", v2 `cgroup.freeze` and "0"; undefined without a
   * freezer. exec's native front end (runtime/native/front.c) reads it instead of isFrozen.
   */
  freezerFile(paths: CgroupPaths): { path: string; thawed: string } | undefined;
  /** The counters now. */
  stats(paths: CgroupPaths): CgroupStats;
  /** Remove the directories, children first; missing ones are fine. */
  destroy(paths: CgroupPaths): void;
}
