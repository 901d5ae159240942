// capsule as a library (mod.ts) in a long-lived process: the processes the runtime starts
// itself (a detached container's init, an exec -d helper) must not pile up as zombies of the
// program (nor their pidfds as its fds), and a detached container's exit status is kept in its
// exit.json once its init exits, as before the helpers were started through posix_spawn
// (Deno.ChildProcess reaped them at once, and run's status handler wrote exit.json).
import { openRuntime } from "../../mod.ts";
import {
  assert,
  assertEquals,
  makeBundle,
  removeAll,
  rootTest,
  waitFor,
  zombieChildren,
} from "../helpers.ts";

/** The children of this process that are zombies, and this process's pidfds. */
function zombiesAndPidfds(): { zombies: number[]; pidfds: number } {
  const zombies = zombieChildren();
  let pidfds = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`) === "anon_inode:[pidfd]") pidfds++;
    } catch { /* the directory's own fd */ }
  }
  return { zombies, pidfds };
}

rootTest(
  "library: exec -d helpers are reaped without a delete (no zombies, no pidfds left)",
  async (root) => {
    const bundle = await makeBundle("sleep 60");
    const rt = await openRuntime({ root });
    const id = "libreap";
    try {
      await rt.run(id, { bundle, detach: true });
      const before = zombiesAndPidfds();
      for (let i = 0; i < 10; i++) await rt.exec(id, { args: ["true"], detach: true });
      let now = zombiesAndPidfds();
      // Each helper is gone within moments of starting its program: give them 3 s to be reaped.
      await waitFor(
        () => {
          now = zombiesAndPidfds();
          return now.zombies.length <= before.zombies.length;
        },
        3000,
        "the exec helpers to be reaped",
      ).catch(() => {});
      assertEquals(
        now.zombies.length,
        before.zombies.length,
        `zombie children of this process after 10 exec -d: ${now.zombies.join(" ")}`,
      );
      assert(now.pidfds <= before.pidfds, `pidfds: ${before.pidfds} before, ${now.pidfds} after`);
    } finally {
      await rt.delete(id, { force: true }).catch(() => {});
      await removeAll(bundle);
    }
  },
);

rootTest(
  "library: a detached run's exit status is kept in exit.json when its init exits later",
  async (root) => {
    const bundle = await makeBundle("sleep 0.5; exit 3");
    const rt = await openRuntime({ root });
    const id = "libexit";
    try {
      await rt.run(id, { bundle, detach: true });
      await waitFor(() => rt.state(id).status === "stopped", 5000, "the container to stop");
      let exit = "";
      await waitFor(
        () => {
          try {
            exit = Deno.readTextFileSync(`${root}/${id}/exit.json`);
            return true;
          } catch {
            return false;
          }
        },
        2000,
        "exit.json",
      ).catch(() => {});
      assert(exit !== "", `no ${root}/${id}/exit.json once the init exited (status 3)`);
      assertEquals(JSON.parse(exit).exitCode, 3);
      const { zombies } = zombiesAndPidfds();
      const init = rt.state(id).pid;
      assert(!zombies.includes(init), `the stopped init ${init} is a zombie of this process`);
    } finally {
      await rt.delete(id, { force: true }).catch(() => {});
      await removeAll(bundle);
    }
  },
);
