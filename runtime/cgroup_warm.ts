// The cgroup lock's warm-up, for exec and create: started by main.ts before the command tree is
// evaluated (in the bundle, once the hot path's chunk has loaded: main.ts), and by exec and create
// themselves (once per process).

/**
 * The first cgroup migration after a quiet while waits for an RCU grace period (5-18 ms here:
 * the kernel's cgroup_threadgroup_rwsem, one for every hierarchy), and exec's own (the helper
 * moved into the container's cgroup, create's init joining its new cgroup) would wait for it in
 * series. Moving this process into the cgroup it is already in takes the same lock: started at
 * once on a pool thread, the wait overlaps the module loading, the planning and the helper's start.
 * The kernel's write takes cgroup_mutex before it waits, so a cgroup mkdir meanwhile waits as
 * well: the earlier it starts, the less of the grace period is left for anyone. Only a
 * cgroup.procs file under the usual mount points that names this process's own cgroup is written
 * (a no-op move); best effort; once per process.
 */
export function warmMigration(): void {
  if (warmed) return;
  warmed = true;
  try {
    for (const line of Deno.readTextFileSync("/proc/self/cgroup").split("\n")) {
      const [num, controllers, path] = line.split(":", 3);
      if (path === undefined || !path.startsWith("/")) continue;
      const dirs = num === "0" && controllers === ""
        ? [`/sys/fs/cgroup${path}`, `/sys/fs/cgroup/unified${path}`]
        : controllers.split(",").includes("pids")
        ? [`/sys/fs/cgroup/${controllers}${path}`]
        : [];
      for (const dir of dirs) {
        // Opened straight away (no stat first: Deno's first stat costs ~0.3 ms, and every
        // millisecond here delays the grace period); a path that is no cgroup.procs fails.
        const file = `${dir.replace(/\/$/, "")}/cgroup.procs`;
        let f: Deno.FsFile;
        try {
          f = Deno.openSync(file, { write: true });
        } catch {
          continue; // not mounted there
        }
        writePid(f, file, Deno.pid).catch(() => {});
        return;
      }
    }
  } catch { /* no /proc/self/cgroup: nothing to warm */ }
}

let warmed = false;

/**
 * Writes `pid` into the cgroup.procs file `file` on a pool thread (the JS thread does not wait for
 * the kernel's cgroup lock): opened here, written by the pool, closed when the write is done.
 * Not Deno.writeTextFile: its first call in a process costs 2.7 ms of the JS thread, 4.4-4.7 ms
 * under the launcher's --single-threaded (a fresh `deno run` each), against 0.5-0.7 ms for
 * these; A/B n=40: run true 51.0 -> 49.3 ms, exec true 33.0 -> 31.8. Opening it asynchronously
 * instead delays the write to after the module loading (run 51.5 -> 63.1). Rejects with the
 * system's error (a Deno.errors class).
 */
export function writeCgroupProcs(file: string, pid: number): Promise<void> {
  let f: Deno.FsFile;
  try {
    f = Deno.openSync(file, { write: true });
  } catch (e) {
    return Promise.reject(e);
  }
  return writePid(f, file, pid);
}

/** Writes `pid` to the open cgroup.procs `f` (named `file`) on a pool thread, then closes it. */
function writePid(f: Deno.FsFile, file: string, pid: number): Promise<void> {
  const data = new TextEncoder().encode(String(pid));
  return f.write(data).then((n) => {
    if (n !== data.length) throw new Error(`short write to ${file}`);
  }).finally(() => f.close());
}
