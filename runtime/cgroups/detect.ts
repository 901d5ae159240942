// Which cgroup driver this host needs, and loading only that one: the start path of a v1 host
// never loads the v2 driver and its eBPF device filter, nor a v2 host the v1 driver (~18 KB of
// the bundle, ~0.8 ms of module loading per CLI call). mod.ts's detectCgroups is the same
// decision with both drivers at hand (for the library and tests).
import { CapsuleError } from "../errors.ts";
import type { CgroupDriver } from "./types.ts";
import { type CgroupMount, parseMountinfo, parseProcCgroup, readFile, UNIFIED } from "./util.ts";

/** What detectCgroups reads instead of the host's files (for tests). */
export interface DetectOptions {
  /** mountinfo text; default: /proc/self/mountinfo. */
  mountinfo?: string;
  /** /proc/self/cgroup text; default: read it. */
  procSelfCgroup?: string;
  /** Prefix for every mount point (tests point it at a fake tree). */
  fsRoot?: string;
  /**
   * mountinfo of PID 1's mount namespace, read only when no hierarchy is found; default:
   * /proc/1/mountinfo, or none when `mountinfo` is given.
   */
  initMountinfo?: string;
}

/**
 * The host's hierarchies as a driver takes them: `v1` by controller (a hybrid host's cgroup2
 * mount under UNIFIED) when any v1 controller is mounted, else `v2`, the unified mount; `own`
 * is /proc/self/cgroup by controller ("" for cgroup2). Throws a CapsuleError when neither is
 * mounted (saying so when only this mount namespace lacks them).
 */
export function hostHierarchies(opts: DetectOptions = {}): {
  v1?: Map<string, CgroupMount>;
  v2?: CgroupMount;
  own: Map<string, string>;
  fake: boolean;
} {
  const fsRoot = (opts.fsRoot ?? "").replace(/\/+$/, "");
  const mountinfo = opts.mountinfo ?? readFile("/proc/self/mountinfo") ?? "";
  const own = parseProcCgroup(opts.procSelfCgroup ?? readFile("/proc/self/cgroup") ?? "");
  const mounts = parseMountinfo(mountinfo, fsRoot);
  const v1 = new Map<string, CgroupMount>();
  for (const m of mounts) {
    if (m.fsType !== "cgroup") continue;
    for (const c of m.controllers) if (!v1.has(c)) v1.set(c, m);
  }
  const fake = fsRoot !== "";
  const unified = mounts.find((m) => m.fsType === "cgroup2");
  if ([...v1.keys()].some((c) => !c.startsWith("name="))) {
    // Hybrid (systemd's /sys/fs/cgroup/unified): one more hierarchy, without controllers.
    if (unified) v1.set(UNIFIED, unified);
    return { v1, own, fake };
  }
  if (unified) return { v2: unified, own, fake };
  // The host has them, this mount namespace not: `ip netns exec` remounts /sys (DESIGN.md).
  // (A caller that passes its own mountinfo is not asked about the real host's.)
  const init = opts.initMountinfo ??
    (opts.mountinfo === undefined ? readFile("/proc/1/mountinfo") ?? "" : "");
  if (parseMountinfo(init, fsRoot).some((m) => m.fsType === "cgroup" || m.fsType === "cgroup2")) {
    throw new CapsuleError(
      "No cgroup hierarchy is mounted in capsule's mount namespace (/proc/self/mountinfo), " +
        "though the host has them: something remounted /sys without /sys/fs/cgroup " +
        "(`ip netns exec` does); enter only the network namespace instead: " +
        "nsenter --net=/run/netns/NAME capsule ...",
    );
  }
  throw new CapsuleError(
    "No cgroup hierarchy is mounted: /proc/self/mountinfo has no cgroup or cgroup2 mount",
  );
}

/**
 * The driver this host needs, its module loaded now and the driver made on the first call of
 * the function returned (which throws what hostHierarchies throws: a command that never looks at
 * cgroups never fails for their absence). For the CLI and openRuntime.
 */
export async function loadCgroupDriver(): Promise<() => CgroupDriver> {
  let h: ReturnType<typeof hostHierarchies>;
  try {
    h = hostHierarchies();
  } catch (e) {
    return () => {
      throw e;
    };
  }
  if (h.v1) {
    const { CgroupV1Driver } = await import("./v1.ts");
    return () => new CgroupV1Driver(h.v1!, h.own, h.fake);
  }
  const { CgroupV2Driver } = await import("./v2.ts");
  return () => new CgroupV2Driver(h.v2!, h.own, h.fake);
}
