// An in-memory CgroupDriver for unit tests of code that uses cgroups (container create,
// delete, pause...). It records every call and can be told to fail one operation.

import { CapsuleError } from "../errors.ts";
import type { CgroupDriver, CgroupPaths, CgroupStats, LinuxResources } from "./types.ts";
import { innerPath } from "./util.ts";

export interface FakeCgroup {
  resources: LinuxResources;
  pids: Set<number>;
  frozen: boolean;
}

export class FakeCgroupDriver implements CgroupDriver {
  readonly devicesEnforced: boolean;
  /** Existing cgroups by directory ("/fake/<path>"). */
  readonly groups = new Map<string, FakeCgroup>();
  /** Calls in order: "create /fake/capsule/x", "addProcess /fake/capsule/x 42"... */
  readonly calls: string[] = [];
  /** Make the named method throw a CapsuleError once. */
  failNext?: keyof CgroupDriver;

  constructor(readonly version: 1 | 2 = 2) {
    this.devicesEnforced = version === 1;
  }

  #dir(paths: CgroupPaths): string {
    return Object.values(paths)[0] ?? "";
  }

  #call(name: keyof CgroupDriver, paths: CgroupPaths, extra = ""): FakeCgroup | undefined {
    const dir = this.#dir(paths);
    this.calls.push(`${name} ${dir}${extra ? " " + extra : ""}`);
    if (this.failNext === name) {
      this.failNext = undefined;
      throw new CapsuleError(`fake ${name} failure for ${dir}`);
    }
    return this.groups.get(dir);
  }

  #must(name: keyof CgroupDriver, paths: CgroupPaths, extra = ""): FakeCgroup {
    const g = this.#call(name, paths, extra);
    if (!g) throw new CapsuleError(`fake cgroup ${this.#dir(paths)} does not exist`);
    return g;
  }

  paths(cgroupsPath: string | undefined, id: string): CgroupPaths {
    const p = innerPath(cgroupsPath, id).path;
    return this.version === 2 ? { "": `/fake${p}` } : { memory: `/fake${p}`, pids: `/fake${p}` };
  }

  create(
    paths: CgroupPaths,
    resources?: LinuxResources,
    onExisting?: (existing: CgroupPaths) => void,
  ): void {
    this.#call("create", paths);
    if (onExisting && this.groups.has(this.#dir(paths))) onExisting(paths);
    this.groups.set(this.#dir(paths), {
      resources: resources ?? {},
      pids: new Set(),
      frozen: false,
    });
  }

  procsFiles(paths: CgroupPaths): string[] {
    this.#must("procsFiles", paths);
    return [`${this.#dir(paths)}/cgroup.procs`];
  }

  placement(paths: CgroupPaths): { tasks: string[]; cgroup2?: string } {
    this.#must("placement", paths);
    return this.version === 2
      ? { tasks: [], cgroup2: this.#dir(paths) }
      : { tasks: [`${this.#dir(paths)}/tasks`] };
  }

  addProcess(paths: CgroupPaths, pid: number): void {
    this.#must("addProcess", paths, String(pid)).pids.add(pid);
  }

  apply(paths: CgroupPaths, resources: LinuxResources): void {
    const g = this.#must("apply", paths);
    g.resources = { ...g.resources, ...resources };
  }

  pids(paths: CgroupPaths): number[] {
    return [...(this.#call("pids", paths)?.pids ?? [])].sort((a, b) => a - b);
  }

  freeze(paths: CgroupPaths): void {
    this.#must("freeze", paths).frozen = true;
  }

  thaw(paths: CgroupPaths): void {
    this.#must("thaw", paths).frozen = false;
  }

  isFrozen(paths: CgroupPaths): boolean {
    return this.#call("isFrozen", paths)?.frozen ?? false;
  }

  /** No file: the fake keeps its state in memory, so exec's front end has nothing to read. */
  freezerFile(_paths: CgroupPaths): undefined {
    return undefined;
  }

  stats(paths: CgroupPaths): CgroupStats {
    const g = this.#must("stats", paths);
    const entry = { usage: 0, limit: Number(g.resources.memory?.limit ?? 0), max: 0, failcnt: 0 };
    return {
      cpu: {
        usage: { total: 0, kernel: 0, user: 0 },
        throttling: { periods: 0, throttledPeriods: 0, throttledTime: 0 },
      },
      memory: { cache: 0, usage: entry, swap: { ...entry }, stats: {} },
      pids: { current: g.pids.size, limit: Math.max(0, Number(g.resources.pids?.limit ?? 0)) },
      oomKillCount: 0,
    };
  }

  destroy(paths: CgroupPaths): void {
    this.#call("destroy", paths);
    this.groups.delete(this.#dir(paths));
  }
}
