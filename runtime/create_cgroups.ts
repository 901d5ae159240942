// The steps of create that make the container's cgroup, put the init in it and apply
// linux.resources (runtime spec config-linux "Control groups"). See create.ts for the order.
import type { LinuxResources } from "./cgroups/mod.ts";
import type { Creating } from "./create_state.ts";
import { writeCgroupProcs } from "./cgroup_warm.ts";
import { CapsuleError } from "./errors.ts";
import type { Spec } from "./spec.ts";

/**
 * The container's cgroup, made before validation so that joining it overlaps the work after
 * (on pool threads: the first write to cgroup.procs waits for an RCU grace period, ~15 ms on
 * v1). A cgroup that holds processes already is someone else's: delete -f would kill them.
 */
export function makeCgroups(c: Creating): void {
  const cg = c.cg = c.ctx.cgroups;
  const rawCgroupsPath = typeof c.raw?.linux?.cgroupsPath === "string"
    ? c.raw.linux.cgroupsPath
    : undefined;
  const paths = cg?.paths(rawCgroupsPath, c.id);
  if (!cg || !paths) return;
  const busy = cg.pids(paths);
  if (busy.length) {
    throw new CapsuleError(
      `Cannot create container "${c.id}": its cgroup ${Object.values(paths)[0]} already has ` +
        `processes (${busy.slice(0, 5).join(", ")}); choose another linux.cgroupsPath`,
    );
  }
  // A frozen cgroup would freeze the init the moment it joins (and create or start would hang).
  // Refused before anything is made, so the undo leaves that cgroup as it was (runc does too).
  if (cg.isFrozen(paths)) {
    throw new CapsuleError(
      `Cannot create container "${c.id}": container's cgroup unexpectedly frozen ` +
        `(${frozenDir(paths)}): thaw it or choose another linux.cgroupsPath`,
    );
  }
  c.record.cgroupPaths = paths;
  c.record.cgroupParentShared = rawCgroupsPath === undefined;
  c.save();
  c.cgroupPaths = paths;
  try {
    cg.create(paths);
  } catch {
    // A delete may have removed the shared "capsule" parent in between: once more.
    cg.create(paths);
  }
  c.joined = Promise.all(
    [...new Set(Object.values(paths))].map((d) =>
      writeCgroupProcs(`${d}/cgroup.procs`, c.pid).catch((e) => {
        throw new CapsuleError(
          `Cannot add process ${c.pid} to ${d}/cgroup.procs: ${(e as Error).message}`,
        );
      })
    ),
  );
  c.joined.catch(() => {}); // awaited in applyLimits; a failure must not go unhandled meanwhile
}

/** The directory to name in the refusal: the freezer hierarchy's on v1, the one on v2. */
function frozenDir(paths: Record<string, string>): string {
  return paths.freezer ?? Object.values(paths)[0];
}

export function destroyCgroups(c: Creating): void {
  if (c.cg && c.cgroupPaths) c.cg.destroy(c.cgroupPaths);
}

/** linux.resources on the cgroup, once the init is in it. */
export async function applyLimits(c: Creating): Promise<void> {
  await c.joined;
  if (c.cg && c.cgroupPaths) c.cg.apply(c.cgroupPaths, containerResources(c.spec));
}

/**
 * linux.resources behind a deny-all rule, as runc applies them. The devices of linux.devices get
 * no allow rule of their own (runc 1.1 adds none either): a config that denies them keeps them
 * denied, even though the nodes exist.
 */
function containerResources(spec: Spec): LinuxResources {
  const r = spec.linux?.resources as LinuxResources | undefined;
  return {
    ...r,
    devices: [
      // Deny every device first, as runc does, whatever the config says; the driver then adds
      // the defaults (null, zero, tty, pts...) and the config's own rules come after.
      { allow: false, access: "rwm" },
      ...(r?.devices ?? []),
    ],
  };
}
