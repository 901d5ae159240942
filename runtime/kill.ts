// kill (runtime spec "kill"): a signal to the init, or to every process of the container;
// and the SIGKILL-until-gone that delete and a failed create use.
import * as libc from "../ffi/libc.ts";
import { type RuntimeContext, sleep } from "./context.ts";
import { CapsuleError, StateTransitionError } from "./errors.ts";
import { pids, status } from "./query.ts";
import { signalName } from "./signals.ts";
import { type ContainerRecord, initAlive, type Status } from "./state.ts";

/**
 * Sends `signal` (a number) to the init; with `all`, to every process in the container's
 * cgroup, in any status, as runc does: a stopped container whose PID namespace is shared
 * (containerd's shim runs `kill --all ID 9` when its init exits) may have left processes
 * there, and a cgroup with none left is success. Throws StateTransitionError ("container not
 * running") for a signal to the init of a creating or stopped container, NotFoundError for an
 * unknown id, CapsuleError when the kernel refuses the signal.
 */
export function kill(ctx: RuntimeContext, id: string, signal: number, all = false): void {
  const rec = ctx.store.load(id);
  const st = status(ctx, rec);
  if (all) return signalAll(ctx, rec, st, signal);
  if (st === "stopped" || st === "creating") {
    throw new StateTransitionError(id, "kill", st, ["created", "running", "paused"]);
  }
  send(id, rec.pid, signal);
  // A frozen container gets the signal when it thaws; SIGKILL must not wait for that.
  if (signal === 9 && st === "paused" && rec.cgroupPaths) ctx.cgroups?.thaw(rec.cgroupPaths);
}

function send(id: string, pid: number, signal: number): void {
  try {
    libc.kill(pid, signal);
  } catch (e) {
    if ((e as libc.SysError).code !== "ESRCH") {
      throw new CapsuleError(
        `Cannot send ${signalName(signal)} to container "${id}": ${(e as Error).message}`,
      );
    }
  }
}

/**
 * Signals every process of the container (its cgroup; without one, its PID namespace). The
 * cgroup is frozen meanwhile, so that no process escapes the signal by forking (runc's
 * signalAllProcesses); a container that was paused stays paused, except for SIGKILL, which
 * thaws it so that the processes die. A cgroup that cannot be frozen (no freezer, already
 * gone) is signalled as it is.
 */
export function signalAll(
  ctx: RuntimeContext,
  rec: ContainerRecord,
  st: Status,
  signal: number,
): void {
  const cg = ctx.cgroups;
  const paths = rec.cgroupPaths && Object.keys(rec.cgroupPaths).length
    ? rec.cgroupPaths
    : undefined;
  let frozeIt = false;
  if (cg && paths && st !== "paused") {
    try {
      cg.freeze(paths);
      frozeIt = true;
    } catch { /* no freezer, or the cgroup is gone: signal what is there */ }
  }
  try {
    for (const pid of pids(ctx, rec)) send(rec.id, pid, signal);
  } finally {
    if (cg && paths && (frozeIt || (signal === 9 && st === "paused"))) {
      try {
        cg.thaw(paths);
      } catch { /* the cgroup went away meanwhile */ }
    }
  }
}

/**
 * SIGKILLs every process of the container (frozen while signalled, thawed to die) and its
 * init until none is left, for up to 10 s; throws a CapsuleError if some survive. `reaped`:
 * the caller reaped the init (run's own delete), so only the cgroup is looked at.
 */
export async function killAndWait(
  ctx: RuntimeContext,
  rec: ContainerRecord,
  reaped = false,
): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const init = !reaped && initAlive(rec);
    const inCgroup = pids(ctx, rec);
    if (!init && inCgroup.length === 0) return;
    signalAll(ctx, rec, status(ctx, rec), 9);
    if (init) {
      try {
        libc.kill(rec.pid, 9);
      } catch { /* gone */ }
    }
    if (Date.now() > deadline) {
      throw new CapsuleError(
        `Container "${rec.id}" did not die within 10 s of SIGKILL ` +
          `(processes left: ${[...new Set([...inCgroup, ...(init ? [rec.pid] : [])])].join(" ")})`,
      );
    }
    await sleep(5);
  }
}
