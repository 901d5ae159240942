// What acts on a live container's cgroup: update (new limits), pause/resume (freezer), stats
// (capsule events). Each refuses a container without a cgroup, naming the action.
import type { CgroupDriver, CgroupStats, LinuxResources } from "./cgroups/mod.ts";
import type { RuntimeContext } from "./context.ts";
import { CapsuleError, StateTransitionError } from "./errors.ts";
import { status } from "./query.ts";
import type { ContainerRecord, Status } from "./state.ts";

function cgroupOf(
  ctx: RuntimeContext,
  id: string,
  action: string,
): { rec: ContainerRecord; cg: CgroupDriver; status: Status } {
  const rec = ctx.store.load(id);
  const st = status(ctx, rec);
  const cg = ctx.cgroups;
  if (!cg || !rec.cgroupPaths || !Object.keys(rec.cgroupPaths).length) {
    throw new CapsuleError(`Cannot ${action} container "${id}": it has no cgroup`);
  }
  return { rec, cg, status: st };
}

/**
 * Applies new limits to a live container (`capsule update`); with device rules on cgroup v1,
 * the container is frozen while they are rewritten.
 */
export function update(ctx: RuntimeContext, id: string, resources: LinuxResources): void {
  const { rec, cg, status } = cgroupOf(ctx, id, "update");
  if (status === "stopped") {
    throw new StateTransitionError(id, "update", status, ["created", "running", "paused"]);
  }
  const paths = rec.cgroupPaths!;
  // v1 rewrites device rules as deny-all, then each allow: a process opening /dev/null in
  // between would be refused. Frozen meanwhile, none runs (runc's systemd driver does the
  // same; v2 swaps in a whole eBPF program at once).
  const hold = cg.version === 1 && Array.isArray(resources.devices) && status !== "paused" &&
    paths.freezer !== undefined;
  if (hold) cg.freeze(paths);
  try {
    cg.apply(paths, resources);
  } finally {
    if (hold) cg.thaw(paths);
  }
}

/** Freezes every process of a running (or created, as runc allows) container. */
export function pause(ctx: RuntimeContext, id: string): void {
  const { rec, cg, status } = cgroupOf(ctx, id, "pause");
  if (status !== "running" && status !== "created") {
    throw new StateTransitionError(id, "pause", status, ["running", "created"]);
  }
  cg.freeze(rec.cgroupPaths!);
}

/** Thaws a paused container. */
export function resume(ctx: RuntimeContext, id: string): void {
  const { rec, cg, status } = cgroupOf(ctx, id, "resume");
  if (status !== "paused") throw new StateTransitionError(id, "resume", status, ["paused"]);
  cg.thaw(rec.cgroupPaths!);
}

/** Memory, cpu, pids and OOM counts of the container's cgroup. */
export function stats(ctx: RuntimeContext, id: string): CgroupStats {
  const { rec, cg } = cgroupOf(ctx, id, "read the stats of");
  return cg.stats(rec.cgroupPaths!);
}
