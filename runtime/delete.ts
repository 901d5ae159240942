// delete (runtime spec "delete"): removes a stopped container and all it held, in reverse of
// create: the extensions' resources (network, image), the cgroups, then poststop hooks and the
// state directory. `force` kills a live container first; cleanup errors are collected, so one
// failure never leaves the rest behind.
import type { RuntimeContext } from "./context.ts";
import { CapsuleError, NotFoundError, StateTransitionError } from "./errors.ts";
import { runHooks } from "./hooks.ts";
import { validateId } from "./ids.ts";
import { killAndWait } from "./kill.ts";
import { ociState, status } from "./query.ts";
import type { ContainerRecord } from "./state.ts";

/** Removes a stopped container and all it held; `force` kills a live one first. */
export async function deleteContainer(
  ctx: RuntimeContext,
  id: string,
  opts: { force?: boolean } = {},
): Promise<void> {
  validateId(id);
  let rec: ContainerRecord | undefined;
  try {
    rec = ctx.store.read(id);
  } catch (e) {
    // runc's contract, which engines rely on: delete --force of a gone container succeeds.
    if (opts.force && e instanceof NotFoundError) return;
    // A damaged state.json: -f removes the directory (its cgroups cannot be known).
    if (!opts.force || e instanceof NotFoundError) throw e;
    ctx.store.remove(id);
    return;
  }
  if (!rec) {
    // A directory a crash left without a state: only -f removes it (nothing else to undo).
    if (!opts.force) {
      throw new CapsuleError(
        `Container "${id}" was never fully created; remove it with "capsule delete -f ${id}"`,
      );
    }
    ctx.store.remove(id);
    return;
  }
  const st = status(ctx, rec);
  if (st !== "stopped") {
    if (!opts.force) throw new StateTransitionError(id, "delete", st, ["stopped"]);
    await killAndWait(ctx, rec);
  }
  const errors: string[] = [];
  for (const x of [...ctx.extensions].reverse()) {
    try {
      await x.deleted?.(rec, rec.ext?.[x.name]);
    } catch (e) {
      errors.push(`${x.name}: ${(e as Error).message}`);
    }
  }
  const cg = ctx.cgroups;
  if (rec.cgroupPaths && cg) {
    try {
      cg.destroy(rec.cgroupPaths);
      // The default parent ("capsule") goes with its last container, like docker's.
      if (rec.cgroupParentShared) {
        for (const dir of new Set(Object.values(rec.cgroupPaths))) {
          try {
            Deno.removeSync(dir.slice(0, dir.lastIndexOf("/")));
          } catch { /* other containers still use it */ }
        }
      }
    } catch (e) {
      errors.push(`cgroups: ${(e as Error).message}`);
    }
  }
  try {
    await runHooks("poststop", rec.hooks?.poststop, ociState(rec, "stopped"));
  } catch (e) {
    errors.push((e as Error).message); // runc: poststop failures are logged, delete goes on
  }
  ctx.store.remove(id);
  if (errors.length) {
    throw new CapsuleError(
      `Container "${id}" deleted, but cleanup reported: ${errors.join("; ")}`,
    );
  }
}
