// delete (runtime spec "delete"): removes a stopped container and all it held, in reverse of
// create: whatever is still in its cgroup (killed), the extensions' resources (network,
// image), the cgroups, then poststop hooks and the state directory. `force` kills a live
// container first; a created one is killed without it, as runc does. Cleanup errors are
// collected, so one failure never leaves the rest behind; but the state is kept while the
// cgroup is, so that a later delete can finish. A damaged state.json is deleted (-f) from what
// the id alone gives: the default cgroup capsule/<id>, the extensions' releaseAllFor(id).
import type { RuntimeContext } from "./context.ts";
import { CapsuleError, NotFoundError, StateTransitionError } from "./errors.ts";
import { runHooks } from "./hooks.ts";
import { releaseHostMount } from "./host_mount.ts";
import { validateId } from "./ids.ts";
import { killAndWait } from "./kill.ts";
import { reapEnded } from "./helper_process.ts";
import { removeEmptyParents } from "./cgroups/util.ts";
import { ociState, status } from "./query.ts";
import type { ContainerRecord } from "./state.ts";

/** Options of delete. */
export interface DeleteOptions {
  /** Kill a live container first; an unknown id is no error (runc's contract). */
  force?: boolean;
  /**
   * With `force`, an id without state still has released what the id alone gives (as for a
   * damaged state: cgroup capsule/<id>, extensions' releaseAllFor): for a container whose
   * state directory was deleted while it held resources (leases, ports, a mount).
   */
  sweep?: boolean;
  /**
   * The caller reaped the container's init (run, once its program exited): it is stopped, and
   * its pid is not looked up again (a missing /proc entry is a thrown error in Deno).
   */
  reaped?: boolean;
}

/**
 * Removes a container and all it held. Without `force`: a stopped or created container (a
 * created one is killed first, as runc does), else StateTransitionError. With `force`: any
 * status, a gone container (success, runc's contract; with `sweep`, what the id alone gives is
 * released), a damaged state (see deleteDamaged).
 * Processes left in a stopped container's cgroup (a child in a PID namespace it shared) are
 * killed, its cgroup frozen meanwhile. Throws a CapsuleError, keeping the state, when the
 * cgroup could not be removed; one listing what else could not be undone, after removing the
 * state, otherwise.
 */
export async function deleteContainer(
  ctx: RuntimeContext,
  id: string,
  opts: DeleteOptions = {},
): Promise<void> {
  validateId(id);
  if (!opts.force) refuseWhileCreating(ctx, id);
  // Held until the state is gone: a release of the stopped container (stop.ts) waits, and so
  // does this delete for a create of the id (create holds it until it ended or was undone).
  const lock = ctx.store.lock(id);
  try {
    await deleteLocked(ctx, id, opts);
  } finally {
    lock?.close();
    reapEnded(); // an init this process started (the library's create) is no zombie of it
  }
}

/**
 * A plain delete of a container that is being created (its creator lives) is refused at once,
 * where waiting for the create's lock would delete what it just made (runc: "cannot delete
 * container that is not stopped").
 */
function refuseWhileCreating(ctx: RuntimeContext, id: string): void {
  let rec: ContainerRecord | undefined;
  try {
    rec = ctx.store.read(id);
  } catch {
    return; // unknown or damaged: deleteLocked says so
  }
  if (rec?.creating && ctx.store.status(rec) === "creating") {
    throw new StateTransitionError(id, "delete", "creating", ["stopped"]);
  }
}

async function deleteLocked(ctx: RuntimeContext, id: string, opts: DeleteOptions): Promise<void> {
  let rec: ContainerRecord | undefined;
  try {
    rec = ctx.store.read(id);
  } catch (e) {
    // runc's contract, which engines rely on: delete --force of a gone container succeeds.
    if (opts.force && e instanceof NotFoundError) {
      if (opts.sweep) await deleteDamaged(ctx, id);
      return;
    }
    if (!opts.force || e instanceof NotFoundError) throw e;
    return await deleteDamaged(ctx, id);
  }
  if (!rec) {
    // A directory without a state: a create that crashed before writing it, which is before it
    // made cgroups or joined a network, so nothing of the id outside the directory is this
    // root's (the default cgroup capsule/<id> and the id's veth may be another root's container
    // by now: not touched). Only -f removes it.
    if (!opts.force) {
      throw new CapsuleError(
        `Container "${id}" was never fully created; remove it with "capsule delete -f ${id}"`,
      );
    }
    releaseHostMount(ctx.store.dir(id)); // a crash between the bind and the record
    ctx.store.remove(id);
    return;
  }
  const st = opts.reaped ? "stopped" : status(ctx, rec);
  if (st !== "stopped" && st !== "created" && !opts.force) {
    throw new StateTransitionError(id, "delete", st, ["stopped"]);
  }
  // The init if it lives, and whatever a stopped container left in its cgroup.
  await killAndWait(ctx, rec, opts.reaped);
  const errors: string[] = [];
  // No mount namespace: the rootfs bind on the host (before the image's overlay below it goes).
  try {
    releaseHostMount(ctx.store.dir(id));
  } catch (e) {
    throw new CapsuleError(
      `Cannot delete container "${id}": ${(e as Error).message}; its state is kept: run ` +
        `"capsule delete -f ${id}" again once that is resolved`,
      { cause: e },
    );
  }
  for (const x of [...ctx.extensions].reverse()) {
    try {
      await x.deleted?.(rec, rec.ext?.[x.name]);
    } catch (e) {
      errors.push(`${x.name}: ${(e as Error).message}`);
    }
  }
  try {
    removeCgroups(ctx, rec);
  } catch (e) {
    throw new CapsuleError(
      `Cannot delete container "${id}": ${[(e as Error).message, ...errors].join("; ")}; ` +
        `its state is kept: run "capsule delete -f ${id}" again once that is resolved`,
      { cause: e },
    );
  }
  // Runtime spec: a failed poststop hook is a warning; the other hooks and delete go on.
  await runHooks("poststop", rec.hooks?.poststop, ociState(rec, "stopped"), (m) => ctx.warn(m));
  ctx.store.remove(id);
  if (errors.length) {
    throw new CapsuleError(
      `Container "${id}" deleted, but cleanup reported: ${errors.join("; ")}`,
    );
  }
}

/**
 * Removes the container's cgroups; throws if not. A shared default parent ("capsule") at a
 * hierarchy's root stays, as docker's "docker" parent does (removing it with the last container
 * cost every `run` ten mkdirs and ten rmdirs more on v1, and the cpuset copy); one inside the
 * caller's own cgroup (record.cgroupParents) goes with its last container: an empty child would
 * keep that cgroup (a session's scope) from being removed.
 */
function removeCgroups(ctx: RuntimeContext, rec: ContainerRecord): void {
  const cg = ctx.cgroups;
  if (!rec.cgroupPaths || !cg) return;
  cg.destroy(rec.cgroupPaths);
  removeEmptyParents(rec.cgroupPaths, rec.cgroupParents ?? []);
}

/**
 * `delete -f` of a container whose state.json cannot be read: everything the id owns, found
 * from the id alone. Processes: those in the default cgroup capsule/<id> (SIGKILL, frozen
 * meanwhile); the cgroup itself; each extension's releaseAllFor(id) (network: veth, chain,
 * leases and ports keyed by the id), or its deleted() with a record of the id and no data
 * (image: unmounts the overlay at the path the id gives). The state directory goes only when
 * all of that succeeded; otherwise it stays (listed as unknown) and a CapsuleError says what
 * is left. A container created with an explicit cgroupsPath cannot be found this way: its
 * cgroup is not touched (the message says so when the default one does not exist).
 */
async function deleteDamaged(ctx: RuntimeContext, id: string): Promise<void> {
  const cg = ctx.cgroups;
  const rec: ContainerRecord = {
    ociVersion: "",
    id,
    pid: 0,
    pidStartTime: "",
    bundle: "",
    rootfs: "",
    created: "",
    annotations: {},
    cgroupPaths: cg?.paths(undefined, id),
  };
  const errors: string[] = [];
  try {
    await killAndWait(ctx, rec);
    removeCgroups(ctx, rec);
  } catch (e) {
    errors.push((e as Error).message);
  }
  try {
    releaseHostMount(ctx.store.dir(id));
  } catch (e) {
    errors.push((e as Error).message);
  }
  for (const x of [...ctx.extensions].reverse()) {
    try {
      if (x.releaseAllFor) await x.releaseAllFor(id);
      else await x.deleted?.(rec, undefined);
    } catch (e) {
      errors.push(`${x.name}: ${(e as Error).message}`);
    }
  }
  if (errors.length) {
    throw new CapsuleError(
      `Cannot delete container "${id}" (its state is damaged): ${errors.join("; ")}; ` +
        `its state is kept: run "capsule delete -f ${id}" again once that is resolved`,
    );
  }
  ctx.store.remove(id);
}
