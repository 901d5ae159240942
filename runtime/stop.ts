// stop (docker's and podman's, not in the runtime spec): the stop signal to the init, a grace
// period, then SIGKILL to every process of the container. For bundles and image containers.
import { type RuntimeContext, sleep } from "./context.ts";
import { CapsuleError } from "./errors.ts";
import { kill, killAndWait } from "./kill.ts";
import { pids, status } from "./query.ts";
import { parseSignal } from "./signals.ts";
import { type ContainerRecord, initAlive } from "./state.ts";

/** The annotation an image's StopSignal becomes (image-spec "conversion"). */
export const STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal";

/** Options of stop. */
export interface StopOptions {
  /** Grace period in seconds between the stop signal and SIGKILL (default 10; 0: SIGKILL now). */
  timeout?: number;
  /** Signal number; default: the config's org.opencontainers.image.stopSignal, else SIGTERM. */
  signal?: number;
}

/** The signal a container stops with: its image's StopSignal annotation, else SIGTERM (15). */
export function stopSignal(rec: Pick<ContainerRecord, "id" | "annotations">): number {
  const a = rec.annotations?.[STOP_SIGNAL_ANNOTATION];
  if (!a) return 15;
  try {
    return parseSignal(a);
  } catch {
    throw new CapsuleError(
      `Container "${rec.id}" has an invalid ${STOP_SIGNAL_ANNOTATION} "${a}"; ` +
        `give one with "capsule stop --signal SIG ${rec.id}"`,
    );
  }
}

/**
 * Stops a container: sends its stop signal to the init (a paused container is thawed by the
 * SIGKILL), waits up to `timeout` seconds for the init to exit, then SIGKILLs every process
 * of the container until none is left. A PID 1 without a handler ignores SIGTERM (a shell
 * script, `sleep`): it is killed when the grace period ends. A stopped container is no error
 * (as docker). Returns true when the SIGKILL was needed. Throws NotFoundError for an unknown
 * id, CapsuleError when processes survive SIGKILL for 10 s.
 */
export async function stop(
  ctx: RuntimeContext,
  id: string,
  opts: StopOptions = {},
): Promise<boolean> {
  const timeout = opts.timeout ?? 10;
  if (!Number.isFinite(timeout) || timeout < 0) {
    throw new CapsuleError(`Invalid stop timeout ${timeout}: expected seconds >= 0`);
  }
  const rec = ctx.store.load(id);
  const st = status(ctx, rec);
  if (st === "stopped") {
    // A child left in a shared PID namespace still goes.
    if (pids(ctx, rec).length) await killAndWait(ctx, rec);
    return false;
  }
  const signal = opts.signal ?? stopSignal(rec);
  if (timeout > 0 && st !== "paused" && signal !== 9) {
    try {
      kill(ctx, id, signal);
    } catch { /* exited meanwhile: the wait below sees it */ }
    const deadline = Date.now() + timeout * 1000;
    let wait = 5;
    while (Date.now() < deadline && initAlive(rec)) {
      await sleep(Math.min(wait, Math.max(1, deadline - Date.now())));
      wait = Math.min(wait * 2, 100);
    }
    if (!initAlive(rec) && pids(ctx, rec).length === 0) return false;
  }
  await killAndWait(ctx, rec);
  return true;
}
