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

/** Which run of a container: its init's host pid and start time (field 22 of its stat). */
export interface InitInstance {
  /** The init's host pid (ContainerRecord.pid). */
  pid: number;
  /** Field 22 of /proc/<pid>/stat when it started (ContainerRecord.pidStartTime). */
  startTime: string;
}

/**
 * Gives back what a stopped container holds through its extensions while its state stays
 * (docker's stop: the network's published ports and address; `image start` takes them again):
 * each extension's `stopped` hook, with its data in the record replaced by what the hook
 * returns. Under the container's lock (StateStore.lock, which delete takes too), so a delete
 * and a new create of the id cannot come between the check and the release. With `init`, only
 * when the state is still that run's (the waiter saw that init exit): a container of the same
 * id created since is left alone. Returns false when there was nothing to do: no such
 * container, another run, a live init, no extension data. Throws a CapsuleError naming the
 * extensions that could not give back everything (their data stays, for delete to finish).
 */
export async function releaseStopped(
  ctx: RuntimeContext,
  id: string,
  init?: InitInstance,
): Promise<boolean> {
  const lock = ctx.store.lock(id);
  if (!lock) return false;
  try {
    let rec: ContainerRecord | undefined;
    try {
      rec = ctx.store.read(id);
    } catch {
      return false; // damaged: delete -f finds what it holds from the id
    }
    if (!rec || rec.creating || initAlive(rec)) return false;
    if (init && (rec.pid !== init.pid || rec.pidStartTime !== init.startTime)) return false;
    const errors: string[] = [];
    let changed = false;
    const ext = { ...rec.ext };
    for (const x of [...ctx.extensions].reverse()) {
      if (!x.stopped || ext[x.name] === undefined) continue;
      try {
        const data = await x.stopped(rec, ext[x.name]);
        if (data !== ext[x.name]) {
          ext[x.name] = data;
          changed = true;
        }
      } catch (e) {
        errors.push(`${x.name}: ${(e as Error).message}`);
      }
    }
    if (changed) ctx.store.write({ ...rec, ext });
    if (errors.length) {
      throw new CapsuleError(
        `Container "${id}" stopped, but giving back what it held failed: ${errors.join("; ")}; ` +
          `"capsule delete -f ${id}" (or image start) finishes it`,
      );
    }
    return changed;
  } finally {
    lock.close();
  }
}
