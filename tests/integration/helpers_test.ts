// The test harness itself: a root test that fails half-way leaves no container, process or
// cgroup behind (a failed run once left capsule/<id> cgroups that broke the next run).
import {
  assert,
  assertEquals,
  capsule,
  cgroupDirsNamed,
  makeBundle,
  needsRoot,
  pidAlive,
  removeAll,
  waitFor,
  withStateRoot,
} from "../helpers.ts";
import { assertRejects } from "../assert.ts";
import { exists } from "../../runtime/state.ts";

Deno.test({
  name: "withStateRoot: a failing test's container, its cgroups and a stray cgroup are removed",
  ignore: needsRoot,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const b = await makeBundle("sleep 60");
    const id = `harness-${Deno.pid}`;
    const stray = `harness-stray-${Deno.pid}`;
    // A cgroup a crashed create could leave without a state directory, with a process in it.
    const v1 = "/sys/fs/cgroup/pids";
    const pidsRoot = exists(v1) ? v1 : "/sys/fs/cgroup";
    const strayDir = `${pidsRoot}/capsule/${stray}`;
    let root = "", pid = 0, sleeper: Deno.ChildProcess | undefined;
    try {
      await assertRejects(
        () =>
          withStateRoot(async (r) => {
            root = r;
            const run = await capsule(r, ["run", "-d", "-b", b, id]);
            assertEquals(run.code, 0, run.stderr);
            pid = JSON.parse((await capsule(r, ["state", id])).stdout).pid;
            Deno.mkdirSync(strayDir, { recursive: true });
            sleeper = new Deno.Command("sleep", { args: ["60"] }).spawn();
            Deno.writeTextFileSync(`${strayDir}/cgroup.procs`, String(sleeper.pid));
            throw new Error("the test failed half-way");
          }),
        Error,
        "the test failed half-way",
      );
      assert(pid > 0, "the container ran");
      await waitFor(() => !pidAlive(pid), 5000, "the container's process to be killed");
      await waitFor(() => !pidAlive(sleeper!.pid), 5000, "the stray cgroup's process to be killed");
      assertEquals(cgroupDirsNamed(id), []);
      assertEquals(cgroupDirsNamed(stray), []);
      assertEquals(exists(root), false, "the state root is removed");
    } finally {
      try {
        sleeper?.kill("SIGKILL");
      } catch { /* gone */ }
      await Deno.remove(strayDir).catch(() => {});
      await removeAll(b);
    }
  },
});
