// kill (runtime spec "kill"): a signal to the init, or to every process of the container;
// and the SIGKILL-until-gone that delete -f and a failed create use.
import * as libc from "../ffi/libc.ts";
import { type RuntimeContext, sleep } from "./context.ts";
import { CapsuleError, StateTransitionError } from "./errors.ts";
import { pids, status } from "./query.ts";
import { signalName } from "./signals.ts";
import { type ContainerRecord, initAlive } from "./state.ts";

/** Sends a signal to the init (or, with `all`, to every process of the container). */
export function kill(ctx: RuntimeContext, id: string, signal: number, all = false): void {
  const rec = ctx.store.load(id);
  const st = status(ctx, rec);
  if (st === "stopped") {
    throw new StateTransitionError(id, "kill", st, ["created", "running", "paused"]);
  }
  const targets = all ? pids(ctx, rec) : [rec.pid];
  for (const pid of targets) {
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
  // A frozen container gets the signal when it thaws; SIGKILL must not wait for that.
  if (signal === 9 && st === "paused" && rec.cgroupPaths) ctx.cgroups?.thaw(rec.cgroupPaths);
}

/** SIGKILLs every process of the container (thawed first) until none is left, for up to 10 s. */
export async function killAndWait(ctx: RuntimeContext, rec: ContainerRecord): Promise<void> {
  const deadline = Date.now() + 10_000;
  const cg = ctx.cgroups;
  if (cg && rec.cgroupPaths && status(ctx, rec) === "paused") cg.thaw(rec.cgroupPaths);
  for (;;) {
    const live = new Set([...pids(ctx, rec), ...(initAlive(rec) ? [rec.pid] : [])]);
    if (live.size === 0) return;
    for (const p of live) {
      try {
        libc.kill(p, 9);
      } catch { /* gone */ }
    }
    if (Date.now() > deadline) {
      throw new CapsuleError(`Container "${rec.id}" did not die within 10 s of SIGKILL`);
    }
    await sleep(5);
  }
}
