// The container lifecycle, runc-style, as one object: a thin facade over one module per
// operation (create.ts, start.ts, run.ts, kill.ts, delete.ts, exec.ts, query.ts for
// state/list/ps, cgroup_ops.ts for update/pause/resume/stats), which share a RuntimeContext
// (context.ts). Layers above the runtime (network, images) attach through Extensions
// (extension.ts).
import type { CgroupDriver, CgroupStats, LinuxResources } from "./cgroups/mod.ts";
import * as cgroupOps from "./cgroup_ops.ts";
import { createContext, type RuntimeContext, type RuntimeOptions } from "./context.ts";
import { createContainer, type CreateOptions } from "./create.ts";
import { deleteContainer } from "./delete.ts";
import { NotFoundError } from "./errors.ts";
import { exec, execLogFile, type ExecOptions } from "./exec.ts";
import type { Extension } from "./extension.ts";
import { kill } from "./kill.ts";
import * as query from "./query.ts";
import { run } from "./run.ts";
import { start } from "./start.ts";
import type { ContainerRecord, StateStore, Status } from "./state.ts";

export type { CreateContext, Extension, PrepareContext, Prepared } from "./extension.ts";
export type { RuntimeContext, RuntimeOptions } from "./context.ts";
export type { CreateOptions } from "./create.ts";
export type { ExecOptions } from "./exec.ts";
export type { OciState, ProcessInfo } from "./query.ts";

/**
 * The lifecycle of the containers under one state root (runtime spec "Operations"). Each
 * method delegates to the module of that operation; see there for what it does and throws.
 */
export class Runtime {
  /** What every operation shares: state store, cgroup driver, extensions, debug timings. */
  readonly ctx: RuntimeContext;

  constructor(opts: RuntimeOptions = {}) {
    this.ctx = createContext(opts);
  }

  get store(): StateStore {
    return this.ctx.store;
  }

  get extensions(): Extension[] {
    return this.ctx.extensions;
  }

  get cgroups(): CgroupDriver | undefined {
    return this.ctx.cgroups;
  }

  /** Creates a container; returns its record. The init waits for `start`. */
  async create(id: string, opts: CreateOptions = {}): Promise<ContainerRecord> {
    const { record, child } = await createContainer(this.ctx, id, opts, false);
    child.unref();
    return record;
  }

  /** Releases a created container: its init execs the program. Returns at once. */
  start(id: string): Promise<void> {
    return start(this.ctx, id);
  }

  /** create + start (+ wait + delete in the foreground); see run.ts. */
  run(id: string, opts: CreateOptions = {}): Promise<number> {
    return run(this.ctx, id, opts);
  }

  /** Applies new limits to a live container (`capsule update`). */
  update(id: string, resources: LinuxResources): void {
    cgroupOps.update(this.ctx, id, resources);
  }

  /** Freezes every process of a running container. */
  pause(id: string): void {
    cgroupOps.pause(this.ctx, id);
  }

  /** Thaws a paused container. */
  resume(id: string): void {
    cgroupOps.resume(this.ctx, id);
  }

  /** Memory, cpu, pids and OOM counts of the container's cgroup. */
  stats(id: string): CgroupStats {
    return cgroupOps.stats(this.ctx, id);
  }

  /** Runs one more program in a created or running container; see exec.ts. */
  exec(id: string, opts: ExecOptions): Promise<{ code?: number; execId?: string; pid: number }> {
    return exec(this.ctx, id, opts);
  }

  /** Where a detached exec's output goes. */
  execLogFile(id: string, execId: string): string {
    return execLogFile(this.ctx, id, execId);
  }

  /** The processes of a container: host pid, pid inside, uid, command line. */
  processes(id: string): query.ProcessInfo[] {
    return query.processes(this.ctx, id);
  }

  /** The container's status, derived from the kernel. */
  status(rec: ContainerRecord): Status {
    return query.status(this.ctx, rec);
  }

  /** The OCI state of a container, plus capsule's fields from extensions (ip...). */
  state(id: string, detail = false): query.OciState {
    return query.state(this.ctx, id, detail);
  }

  /** Every container under the root; a directory a crash left half-made is listed as stopped. */
  list(): query.OciState[] {
    return query.list(this.ctx);
  }

  /** The host pids of every process of the container (cgroup, else its PID namespace). */
  pids(rec: ContainerRecord): number[] {
    return query.pids(this.ctx, rec);
  }

  /** Sends a signal to the init (or, with `all`, to every process of the container). */
  kill(id: string, signal: number, all = false): void {
    kill(this.ctx, id, signal, all);
  }

  /** Removes a stopped container and all it held; `force` kills a live one first. */
  delete(id: string, opts: { force?: boolean } = {}): Promise<void> {
    return deleteContainer(this.ctx, id, opts);
  }
}

export { NotFoundError };
