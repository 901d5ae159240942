// The steps of create that make the container's cgroup, put the init in it and apply
// linux.resources (runtime spec config-linux "Control groups"). See create.ts for the order.
import type { LinuxResources } from "./cgroups/mod.ts";
import type { Creating } from "./create_state.ts";
import { writeCgroupProcs } from "./cgroup_warm.ts";
import { removeEmptyParents } from "./cgroups/util.ts";
import { CapsuleError } from "./errors.ts";
import type { Spec } from "./spec.ts";

/**
 * The container's cgroup, joined on pool threads so that the join overlaps the work after (a
 * first write to cgroup.procs after a quiet while waits for an RCU grace period, 5-15 ms on
 * v1, unless the warm-up of cgroup_warm.ts has started one). A cgroup that was there already and holds processes is someone else's (delete -f would
 * kill them), and a frozen one would freeze the init as it joins: both are refused, and only
 * what this create made is removed (runc refuses them too). A directory this create made is
 * new, so only the ones that were there are looked at (each look at a missing file costs a
 * thrown error: 1.5-2 ms for the ten v1 hierarchies).
 */
export function makeCgroups(c: Creating): void {
  const cg = c.cg;
  const paths = c.record.cgroupPaths; // in the record already (cgroupPaths): a crash is undone
  if (!cg || !paths) return;
  // A parent inside the caller's cgroup goes with its last container (delete): usually absent,
  // so it is made first (the leaf-first mkdir would throw ENOENT for it, a thrown error).
  for (const parent of c.record.cgroupParents ?? []) {
    try {
      Deno.mkdirSync(parent);
    } catch { /* there (other containers), or the create below says why */ }
  }
  let refused = false;
  const refuseInUse = (existing: Record<string, string>) => {
    const busy = cg.pids(existing);
    refused = true;
    if (busy.length) {
      throw new CapsuleError(
        `Cannot create container "${c.id}": its cgroup ${Object.values(existing)[0]} already ` +
          `has processes (${busy.slice(0, 5).join(", ")}); choose another linux.cgroupsPath`,
      );
    }
    if (cg.isFrozen(existing)) {
      throw new CapsuleError(
        `Cannot create container "${c.id}": container's cgroup unexpectedly frozen ` +
          `(${frozenDir(existing)}): thaw it or choose another linux.cgroupsPath`,
      );
    }
    refused = false;
  };
  try {
    cg.create(paths, undefined, refuseInUse);
  } catch (e) {
    if (refused) throw e;
    // Someone removed a parent between two mkdirs (an older capsule's delete removed the
    // shared "capsule" parent with its last container): once more.
    cg.create(paths, undefined, refuseInUse);
  }
  // From here the undo removes the cgroup: it is this container's.
  c.cgroupPaths = paths;
  // Without a user namespace the helper places the init itself (plan.ts InitPlacement).
  if (c.clone) return;
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

/**
 * The container's cgroup directories (linux.cgroupsPath, or capsule/<id> below capsule's own),
 * by controller; undefined without a cgroup driver (rootless). Pure once the driver is found
 * (it is kept in `c.cg`); the record holds them from its first write, before any is made.
 */
export function cgroupPaths(c: Creating): Record<string, string> | undefined {
  const cg = c.cg = c.ctx.cgroups;
  const raw = typeof c.raw?.linux?.cgroupsPath === "string" ? c.raw.linux.cgroupsPath : undefined;
  return cg?.paths(raw, c.id);
}

/**
 * The default parent directories ("capsule", for a config without linux.cgroupsPath) that are
 * inside this process's own cgroup, not at their hierarchy's root (the same path made absolute
 * lands elsewhere): delete removes them when empty, as an empty child would pin the caller's
 * cgroup. [] for an explicit cgroupsPath (its parents are the config's).
 */
export function nestedParents(c: Creating, paths: Record<string, string> | undefined): string[] {
  if (!c.cg || !paths || typeof c.raw?.linux?.cgroupsPath === "string") return [];
  const atRoot = c.cg.paths(`/capsule/${c.id}`, c.id);
  const out = new Set<string>();
  for (const [k, dir] of Object.entries(paths)) {
    if (atRoot[k] !== dir) out.add(dir.slice(0, dir.lastIndexOf("/")));
  }
  return [...out];
}

/** The directory to name in the refusal: the freezer hierarchy's on v1, the one on v2. */
function frozenDir(paths: Record<string, string>): string {
  return paths.freezer ?? Object.values(paths)[0];
}

/** Undo: the cgroup, then the parents this create may have made (gone when empty). */
export function destroyCgroups(c: Creating): void {
  if (c.cg && c.cgroupPaths) c.cg.destroy(c.cgroupPaths);
  const paths = c.record?.cgroupPaths;
  if (paths) removeEmptyParents(paths, c.record.cgroupParents ?? []);
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
