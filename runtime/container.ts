// The container lifecycle, runc-style, as one object: a thin facade over one module per
// operation (create.ts, start.ts, run.ts, kill.ts, delete.ts, exec.ts, query.ts for
// state/list/ps, cgroup_ops.ts for update/pause/resume/stats), which share a RuntimeContext
// (context.ts). Layers above the runtime (network, images) attach through Extensions
// (extension.ts).
import type { CgroupDriver, CgroupStats, LinuxResources } from "./cgroups/mod.ts";
import * as cgroupOps from "./cgroup_ops.ts";
import { createContext, type RuntimeContext, type RuntimeOptions } from "./context.ts";
import { createContainer, type CreateOptions } from "./create.ts";
import { deleteContainer, type DeleteOptions } from "./delete.ts";
import { NotFoundError } from "./errors.ts";
import { exec, type ExecOptions } from "./exec.ts";
import type { Extension } from "./extension.ts";
import { kill } from "./kill.ts";
import * as query from "./query.ts";
import { run, type RunOptions } from "./run.ts";
import { start } from "./start.ts";
import { type InitInstance, releaseStopped, stop, type StopOptions } from "./stop.ts";
import { type ContainerRecord, execLogFile, type StateStore, type Status } from "./state.ts";

export type { CreateContext, Extension, PrepareContext, Prepared } from "./extension.ts";
export type { RuntimeContext, RuntimeOptions } from "./context.ts";
export type { CreateOptions } from "./create.ts";
export type { ExecOptions } from "./exec.ts";
export type { RunOptions } from "./run.ts";
export type { InitInstance, StopOptions } from "./stop.ts";
export type { DeleteOptions } from "./delete.ts";
export type { OciState, ProcessInfo } from "./query.ts";

/**
 * The lifecycle of the containers under one state root, runc-style (runtime spec
 * "Operations" and "Lifecycle"). Each method delegates to the module of that operation, all
 * loaded with this one: loading create, run and exec on first use saved start, state and delete
 * ~0.5 ms each but cost run ~1 ms and exec 0.3-1.2 (`bash bench/steps.sh`, medians of 30).
 * Errors: a `CapsuleError` names the value and what to do; `NotFoundError` for an
 * unknown container id; `StateTransitionError` for a move the container's status does not
 * allow (e.g. start a stopped container). Needs root unless the bundle is rootless.
 */
export class Runtime {
  /** What every operation shares: state store, cgroup driver, extensions, debug timings. */
  readonly ctx: RuntimeContext;

  /** A runtime over `opts.root` (default /var/run/capsule); nothing is read or made yet. */
  constructor(opts: RuntimeOptions = {}) {
    this.ctx = createContext(opts);
  }

  /** Where the containers' state lives (`<root>/<id>/state.json`). */
  get store(): StateStore {
    return this.ctx.store;
  }

  /** The layers attached to the lifecycle (network, image), in the order they prepare. */
  get extensions(): Extension[] {
    return this.ctx.extensions;
  }

  /** The cgroup driver (found on first use); undefined when capsule manages no cgroups. */
  get cgroups(): CgroupDriver | undefined {
    return this.ctx.cgroups;
  }

  /**
   * Creates a container from a bundle (runtime spec "create"): namespaces, mounts, cgroup,
   * hooks prestart and createRuntime; its program waits for `start`. Returns its record.
   * Throws CapsuleError for a bad id, bundle or config.json (naming the JSON path), an id in
   * use, or the init's own error; nothing of the container is left then.
   */
  async create(id: string, opts: CreateOptions = {}): Promise<ContainerRecord> {
    const { record, child } = await createContainer(this.ctx, id, opts, false);
    child.unref(); // reaped here if it ends while this process runs, else by whoever adopts it
    return record;
  }

  /**
   * Starts a created container (runtime spec "start"): its program runs, then the poststart
   * hooks. Returns at once. Throws StateTransitionError unless it is created; CapsuleError
   * if its init exited or did not answer within 10 s.
   */
  start(id: string): Promise<void> {
    return start(this.ctx, id);
  }

  /**
   * create + start. In the foreground: stdio attached, SIGINT/SIGTERM passed on, resolves to
   * the program's exit status (128+N when killed by signal N) once it exits, and the container
   * is deleted (`keep`: left stopped, for `delete`). `detach`: resolves to 0 once started,
   * output in `<root>/<id>/container.log`. Throws as `create` and `start` do.
   */
  run(id: string, opts: RunOptions = {}): Promise<number> {
    return run(this.ctx, id, opts);
  }

  /**
   * New limits for a live container (`linux.resources`, runtime spec config-linux "Control
   * groups"; memory in bytes, cpu quota/period in microseconds). Throws CapsuleError if it
   * has no cgroup or the kernel refuses a value, StateTransitionError if stopped.
   */
  update(id: string, resources: LinuxResources): void {
    cgroupOps.update(this.ctx, id, resources);
  }

  /**
   * Freezes every process of a running container (cgroup freezer; runc's `pause`). Throws
   * StateTransitionError unless running, CapsuleError if it has no cgroup.
   */
  pause(id: string): void {
    cgroupOps.pause(this.ctx, id);
  }

  /** Thaws a paused container. Throws StateTransitionError unless paused. */
  resume(id: string): void {
    cgroupOps.resume(this.ctx, id);
  }

  /**
   * Memory (bytes), cpu (nanoseconds), pids and OOM counts of the container's cgroup. Throws
   * CapsuleError if it has no cgroup.
   */
  stats(id: string): CgroupStats {
    return cgroupOps.stats(this.ctx, id);
  }

  /**
   * Runs one more program in a created or running container (its namespaces, cgroup,
   * environment with `env` over it, and seccomp profile). Foreground: resolves to `{ code }`,
   * the exit status; `detach`: to `{ execId }` at once (output: `execLogFile`). `pid` is the
   * host pid. Throws StateTransitionError unless created or running, CapsuleError for a bad
   * option or when the program cannot be started (naming it and why).
   */
  exec(id: string, opts: ExecOptions): Promise<{ code?: number; execId?: string; pid: number }> {
    return exec(this.ctx, id, opts);
  }

  /** Where a detached exec's output goes. Throws CapsuleError for a malformed exec id. */
  execLogFile(id: string, execId: string): string {
    return execLogFile(this.ctx.store.dir(id), execId);
  }

  /** The processes of a container, by host pid (`capsule ps`). Throws NotFoundError. */
  processes(id: string): query.ProcessInfo[] {
    return query.processes(this.ctx, id);
  }

  /** The container's status now, derived from the kernel (never stored). */
  status(rec: ContainerRecord): Status {
    return query.status(this.ctx, rec);
  }

  /**
   * The OCI state of a container (runtime spec "State"), plus capsule's fields from
   * extensions (`ip`, `image`); `detail` adds cgroup paths, stats, log file and extension
   * data. Throws NotFoundError.
   */
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

  /**
   * Sends `signal` (a number: see parseSignal) to the init, or with `all` to every process of
   * the container (runtime spec "kill"). Throws StateTransitionError if stopped, CapsuleError
   * if the kernel refuses.
   */
  kill(id: string, signal: number, all = false): void {
    kill(this.ctx, id, signal, all);
  }

  /**
   * Stops a container (docker's stop): its stop signal (the image's StopSignal, else SIGTERM),
   * up to `timeout` seconds (default 10) for the init to exit, then SIGKILL to all its
   * processes. A stopped container is no error. Resolves to true when SIGKILL was needed.
   * Throws NotFoundError for an unknown id, CapsuleError if processes survive SIGKILL.
   */
  stop(id: string, opts: StopOptions = {}): Promise<boolean> {
    return stop(this.ctx, id, opts);
  }

  /**
   * A stopped container whose state is kept gives back what its extensions let go of while
   * stopped (network: published ports, address), docker's stop semantics; with `init`, only if
   * the state is still that run's. See stop.ts releaseStopped (returns, throws).
   */
  releaseStopped(id: string, init?: InitInstance): Promise<boolean> {
    return releaseStopped(this.ctx, id, init);
  }

  /**
   * Removes a stopped container and all it held: extensions' resources (network, image),
   * cgroups, poststop hooks, state (runtime spec "delete"). `force` kills a live one first
   * (waiting up to 10 s) and makes an unknown id no error (`sweep`: still releasing what the
   * id alone gives: cgroup capsule/<id>, network leases and ports, the image's mount). Throws
   * StateTransitionError if live without `force`; CapsuleError, after removing everything it
   * could, if a cleanup step failed.
   */
  delete(id: string, opts: DeleteOptions = {}): Promise<void> {
    return deleteContainer(this.ctx, id, opts);
  }
}

export { NotFoundError };
