// Unit tests of runtime/kill.ts and runtime/delete.ts against the fake cgroup driver, without
// root: the "container" processes are real children of this test (sleep), put in a fake
// cgroup. What engines rely on (issue 13): kill --all of a stopped container signals whatever
// is left in its cgroup and succeeds, as runc does; delete kills what a stopped container left
// behind (freezing its cgroup meanwhile) and never removes the state while the cgroup stays;
// delete of a created container needs no -f (runc); delete -f of a damaged state finds the
// cgroup and the extensions' resources from the id alone (issue 10 item 6).
import { FakeCgroupDriver } from "../../runtime/cgroups/fake.ts";
import type { CgroupPaths } from "../../runtime/cgroups/types.ts";
import { createContext, type RuntimeContext } from "../../runtime/context.ts";
import { deleteContainer } from "../../runtime/delete.ts";
import { CapsuleError, StateTransitionError } from "../../runtime/errors.ts";
import type { Extension } from "../../runtime/extension.ts";
import { kill } from "../../runtime/kill.ts";
import { releaseStopped } from "../../runtime/stop.ts";
import { list } from "../../runtime/query.ts";
import { type ContainerRecord, EXEC_FIFO, procStat, STATE_FILE } from "../../runtime/state.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
  withTempDir,
} from "./helpers.ts";

/** The fake driver, but a pid that has exited (or is a zombie) leaves its cgroup, as in the kernel. */
class LiveFakeCgroups extends FakeCgroupDriver {
  override pids(paths: CgroupPaths): number[] {
    const g = this.groups.get(Object.values(paths)[0]);
    for (const p of g?.pids ?? []) {
      const st = procStat(p);
      if (!st || st.state === "Z") g!.pids.delete(p);
    }
    return super.pids(paths);
  }
}

interface Setup {
  ctx: RuntimeContext;
  cg: LiveFakeCgroups;
  paths: CgroupPaths;
  rec: ContainerRecord;
  spawn(): Deno.ChildProcess;
}

const children: Deno.ChildProcess[] = [];

async function withContainer(
  opts: { id?: string; init?: "dead" | "alive"; extensions?: Extension[] },
  fn: (s: Setup) => Promise<void> | void,
): Promise<void> {
  await withTempDir(async (root) => {
    const cg = new LiveFakeCgroups(2);
    const ctx = createContext({ root, cgroups: () => cg, extensions: opts.extensions });
    const id = opts.id ?? "c1";
    const paths = cg.paths(undefined, id);
    cg.create(paths);
    const spawn = () => {
      const c = new Deno.Command("sleep", { args: ["100"], stdout: "null", stderr: "null" })
        .spawn();
      children.push(c);
      cg.addProcess(paths, c.pid);
      return c;
    };
    let pid = 0, pidStartTime = "0";
    if (opts.init === "alive") {
      const c = spawn();
      pid = c.pid;
      pidStartTime = procStat(pid)!.startTime;
    }
    const rec: ContainerRecord = {
      ociVersion: "1.2.0",
      id,
      pid,
      pidStartTime,
      bundle: "/nonexistent",
      rootfs: "/nonexistent/rootfs",
      created: new Date(0).toISOString(),
      annotations: {},
      cgroupPaths: paths,
    };
    Deno.mkdirSync(ctx.store.dir(id));
    ctx.store.write(rec);
    try {
      await fn({ ctx, cg, paths, rec, spawn });
    } finally {
      for (const c of children.splice(0)) {
        try {
          c.kill("SIGKILL");
        } catch { /* gone */ }
        await c.status;
      }
    }
  });
}

async function exited(c: Deno.ChildProcess): Promise<Deno.CommandStatus> {
  const t = setTimeout(() => c.kill("SIGKILL"), 3000);
  try {
    return await c.status;
  } finally {
    clearTimeout(t);
  }
}

Deno.test("kill --all of a stopped container signals what is left in its cgroup (runc)", () =>
  withContainer({ init: "dead" }, async ({ ctx, cg, paths, spawn }) => {
    const leftover = spawn();
    kill(ctx, "c1", 9, true);
    assertEquals((await exited(leftover)).signal, "SIGKILL");
    const dir = Object.values(paths)[0];
    const calls = cg.calls.filter((c) => /^(freeze|thaw)/.test(c));
    assertEquals(calls, [`freeze ${dir}`, `thaw ${dir}`], "frozen while signalled, then thawed");
    // Nothing left: still success.
    kill(ctx, "c1", 9, true);
  }));

Deno.test("kill --all of a stopped container whose cgroup is gone succeeds (runc)", () =>
  withContainer({ init: "dead" }, ({ ctx, cg, paths }) => {
    cg.destroy(paths);
    kill(ctx, "c1", 15, true);
  }));

Deno.test("kill (no --all) of a stopped container says runc's 'container not running'", () =>
  withContainer({ init: "dead" }, ({ ctx }) => {
    const e = assertThrows(() => kill(ctx, "c1", 15), StateTransitionError);
    assertStringIncludes(e.message, "container not running");
    assertStringIncludes(e.message, `Cannot kill container "c1": it is stopped`);
  }));

Deno.test("kill --all of a paused container keeps it paused, SIGKILL thaws it", () =>
  withContainer({ init: "alive" }, async ({ ctx, cg, paths, spawn }) => {
    const other = spawn();
    cg.freeze(paths);
    kill(ctx, "c1", 0, true); // signal 0: a probe, nothing dies
    assert(cg.isFrozen(paths), "still paused after a signal that is not SIGKILL");
    kill(ctx, "c1", 9, true);
    assert(!cg.isFrozen(paths), "SIGKILL thaws, so that the processes die");
    assertEquals((await exited(other)).signal, "SIGKILL");
  }));

Deno.test("delete of a stopped container kills what it left in its cgroup, then removes all", () =>
  withContainer({ init: "dead" }, async ({ ctx, cg, paths, spawn }) => {
    const a = spawn(), b = spawn();
    await deleteContainer(ctx, "c1");
    assertEquals((await exited(a)).signal, "SIGKILL");
    assertEquals((await exited(b)).signal, "SIGKILL");
    assert(!cg.groups.has(Object.values(paths)[0]), "cgroup removed");
    assertEquals(ctx.store.ids(), []);
    const dir = Object.values(paths)[0];
    assert(cg.calls.includes(`freeze ${dir}`), "frozen before the kill, so none escapes by fork");
  }));

Deno.test("delete keeps the state when the cgroup cannot be removed, and says so", () =>
  withContainer({ init: "dead" }, async ({ ctx, cg }) => {
    cg.failNext = "destroy";
    const e = await assertRejects(() => deleteContainer(ctx, "c1"), CapsuleError);
    assertStringIncludes(e.message, `Cannot delete container "c1"`);
    assertStringIncludes(e.message, "fake destroy failure");
    assertEquals(ctx.store.ids(), ["c1"], "state kept: a later delete can finish");
    await deleteContainer(ctx, "c1");
    assertEquals(ctx.store.ids(), []);
  }));

Deno.test("delete of a created container needs no -f (runc kills it)", () =>
  withContainer({ init: "alive" }, async ({ ctx, rec }) => {
    Deno.writeTextFileSync(`${ctx.store.dir("c1")}/${EXEC_FIFO}`, "");
    const init = children[0];
    await deleteContainer(ctx, "c1");
    assertEquals((await exited(init)).signal, "SIGKILL");
    assertEquals(ctx.store.ids(), []);
    assert(rec.pid > 0);
  }));

Deno.test("delete of a running container still needs -f", () =>
  withContainer({ init: "alive" }, async ({ ctx }) => {
    const e = await assertRejects(() => deleteContainer(ctx, "c1"), StateTransitionError);
    assertStringIncludes(e.message, "it is running, not stopped");
    assertEquals(ctx.store.ids(), ["c1"]);
  }));

for (
  const [what, text] of [
    ["truncated", `{\n  "ociVersion": "1.2.0",\n  "id": "c1",\n  "pid": 12`],
    ["garbage", "\u0000\u0001 not json at all"],
  ]
) {
  Deno.test(`damaged (${what}) state: list shows it as unknown, delete -f removes all by id`, () => {
    const released: string[] = [];
    const ext: Extension = {
      name: "network",
      deleted: () => {
        throw new Error("deleted() must not be called without a record");
      },
      releaseAllFor: (id: string) => void released.push(id),
    };
    return withContainer(
      { init: "alive", extensions: [ext] },
      async ({ ctx, cg, paths, spawn }) => {
        const init = children[0];
        const child = spawn();
        const file = `${ctx.store.dir("c1")}/${STATE_FILE}`;
        Deno.writeTextFileSync(file, text);
        const shown = list(ctx);
        assertEquals(shown.map((s) => [s.id, s.status]), [["c1", "unknown"]]);
        assertStringIncludes(String(shown[0].error), file);
        assertStringIncludes(String(shown[0].error), "damaged");
        // Without -f, nothing is touched.
        await assertRejects(() => deleteContainer(ctx, "c1"), CapsuleError, "damaged");
        assertEquals(ctx.store.ids(), ["c1"]);
        await deleteContainer(ctx, "c1", { force: true });
        assertEquals((await exited(init)).signal, "SIGKILL");
        assertEquals((await exited(child)).signal, "SIGKILL");
        assert(!cg.groups.has(Object.values(paths)[0]), "cgroup capsule/c1 removed");
        assertEquals(released, ["c1"], "the extension released what the id owns");
        assertEquals(ctx.store.ids(), []);
      },
    );
  });
}

Deno.test("damaged state: delete -f keeps it and fails clearly when the cgroup stays", () =>
  withContainer({ init: "dead" }, async ({ ctx, cg }) => {
    Deno.writeTextFileSync(`${ctx.store.dir("c1")}/${STATE_FILE}`, "{");
    cg.failNext = "destroy";
    const e = await assertRejects(
      () => deleteContainer(ctx, "c1", { force: true }),
      CapsuleError,
    );
    assertStringIncludes(e.message, `Cannot delete container "c1"`);
    assertEquals(ctx.store.ids(), ["c1"]);
    await deleteContainer(ctx, "c1", { force: true });
    assertEquals(ctx.store.ids(), []);
  }));

Deno.test("releaseStopped: only the run whose init exited, under the lock delete takes", async () => {
  const calls: unknown[] = [];
  const net: Extension = {
    name: "net",
    stopped: (_rec, data) => {
      calls.push(data);
      return (data as { released?: boolean }).released ? data : { released: true };
    },
  };
  await withContainer({ init: "dead", extensions: [net] }, async ({ ctx, rec }) => {
    ctx.store.write({ ...rec, ext: { net: { held: 1 } } });
    const run = { pid: rec.pid, startTime: rec.pidStartTime };
    // Another run of the id (another pid or start time): left alone.
    assertEquals(await releaseStopped(ctx, "c1", { pid: 4242, startTime: "7" }), false);
    assertEquals(await releaseStopped(ctx, "c1", { ...run, startTime: "99" }), false);
    assertEquals(calls, []);
    assertEquals(await releaseStopped(ctx, "c1", run), true);
    assertEquals(ctx.store.load("c1").ext, { net: { released: true } });
    // Again: the hook sees the released data; nothing changes.
    assertEquals(await releaseStopped(ctx, "c1", run), false);
    assertEquals(calls, [{ held: 1 }, { released: true }]);
    // While another process holds the lock (a delete, then a new create of the id), the
    // release waits, then finds the new run's state and leaves it alone.
    ctx.store.write({ ...rec, ext: { net: { held: 2 } } });
    const next = JSON.stringify({ ...rec, pid: 4242, ext: { net: { held: 3 } } });
    const dir = ctx.store.dir("c1");
    const holder = new Deno.Command("flock", {
      args: [dir, "sh", "-c", `sleep 0.4; printf '%s' '${next}' > ${dir}/${STATE_FILE}`],
    }).spawn();
    await waitLocked(dir);
    const t0 = Date.now();
    assertEquals(await releaseStopped(ctx, "c1", run), false);
    assert(Date.now() - t0 >= 200, `released after ${Date.now() - t0} ms, lock held`);
    assertEquals((await holder.status).success, true);
    assertEquals(ctx.store.load("c1").ext, { net: { held: 3 } });
    assertEquals(calls.length, 2);
  });
  // A live init is not stopped: nothing given back.
  await withContainer({ init: "alive", extensions: [net] }, async ({ ctx, rec }) => {
    ctx.store.write({ ...rec, ext: { net: { held: 1 } } });
    assertEquals(
      await releaseStopped(ctx, "c1", { pid: rec.pid, startTime: rec.pidStartTime }),
      false,
    );
    assertEquals(calls.length, 2);
  });
});

/** Polls until another process holds the flock of `dir`. */
async function waitLocked(dir: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const f = Deno.openSync(dir, { read: true });
    try {
      if (!f.tryLockSync(true)) return;
      f.unlockSync();
    } finally {
      f.close();
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`nobody took the lock of ${dir}`);
}
