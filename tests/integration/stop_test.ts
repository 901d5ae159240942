// stop: the stop signal, the grace period, then SIGKILL; for bundles (image containers in
// image_test.ts).
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  inUserNamespace,
  makeBundle,
  removeAll,
  rootTest,
  state,
} from "../helpers.ts";

/** A container's exit status once `state` shows one (polled for 6 s), else undefined. */
async function exitCodeOf(root: string, id: string): Promise<number | undefined> {
  for (let i = 0; i < 60; i++) {
    const s = await state(root, id);
    if (s.exitCode !== undefined) return s.exitCode;
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

rootTest(
  "stop: a PID 1 that ignores SIGTERM is killed when the grace period ends",
  async (root) => {
    // sleep as PID 1 has no handler: the kernel drops SIGTERM for a namespace's init.
    const b = await makeBundle(["sleep", "1000"]);
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "s1"])).code, 0);
      assertEquals((await state(root, "s1")).status, "running");
      const t0 = Date.now();
      const r = await capsule(root, ["stop", "-t", "1", "s1"]);
      const took = Date.now() - t0;
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "s1\n");
      assertEquals((await state(root, "s1")).status, "stopped");
      assert(took >= 1000 && took < 4000, `stop -t 1 took ${took} ms`);
      // Stopping a stopped container is no error (docker's).
      assertEquals((await capsule(root, ["stop", "s1"])).code, 0);
      assertEquals((await capsule(root, ["delete", "s1"])).code, 0);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "stop: a program that handles SIGTERM exits without waiting the grace period",
  async (root) => {
    const b = await makeBundle("trap 'exit 3' TERM; while :; do sleep 0.05; done");
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "s2"])).code, 0);
      const t0 = Date.now();
      const r = await capsule(root, ["stop", "s2"]);
      assertEquals(r.code, 0, r.stderr);
      const took = Date.now() - t0;
      assert(took < 5000, `stop of a TERM handler took ${took} ms (the grace period is 10 s)`);
      assertEquals((await state(root, "s2")).status, "stopped");
      assertEquals((await capsule(root, ["delete", "s2"])).code, 0);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest("stop: -s, several ids, errors", async (root) => {
  const b = await makeBundle("trap 'exit 0' USR1; while :; do sleep 0.05; done");
  try {
    for (const id of ["s3", "s4"]) {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, id])).code, 0);
    }
    const r = await capsule(root, ["stop", "-t", "30", "-s", "USR1", "s3", "s4"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout, "s3\ns4\n");
    const none = await capsule(root, ["stop", "nosuch"]);
    assertEquals(none.code, 1);
    assertMatch(none.stderr, /nosuch/);
    const bad = await capsule(root, ["stop", "-t", "soon", "s3"]);
    assertEquals(bad.code, 2);
    assertMatch(bad.stderr, /Invalid --time "soon"/);
    for (const id of ["s3", "s4"]) assertEquals((await capsule(root, ["delete", id])).code, 0);
  } finally {
    await removeAll(b);
  }
});

rootTest(
  "run -d: a bundle's exit status is kept (exit, stop), shown by state and list",
  async (root) => {
    const code = (id: string) => exitCodeOf(root, id);
    const quick = await makeBundle("exit 3");
    const slow = await makeBundle("sleep 0.5; exit 5");
    const long = await makeBundle(["sleep", "1000"]);
    try {
      // One that exits before run -d returns, one after it, one stopped (SIGKILL: 137).
      for (const [b, id] of [[quick, "x3"], [slow, "x5"], [long, "x9"]]) {
        const r = await capsule(root, ["run", "-d", "-b", b, id]);
        assertEquals([r.code, r.stdout], [0, ""], r.stderr);
      }
      assertEquals((await capsule(root, ["stop", "-t", "0", "x9"])).code, 0);
      assertEquals(await code("x3"), 3);
      assertEquals(await code("x5"), 5);
      assertEquals(await code("x9"), 137);
      const list = (await capsule(root, ["list"])).stdout;
      assertMatch(list, /\nx3\s+0\s+stopped \(exit 3\)\s/);
      assertMatch(list, /\nx5\s+0\s+stopped \(exit 5\)\s/);
      assertMatch(list, /\nx9\s+0\s+stopped \(exit 137\)\s/);
      // A new container of the same id starts without the old one's status.
      assertEquals((await capsule(root, ["delete", "x9"])).code, 0);
      assertEquals((await capsule(root, ["run", "-d", "-b", long, "x9"])).code, 0);
      assertEquals((await state(root, "x9")).exitCode, undefined);
      assertEquals((await capsule(root, ["delete", "-f", "x9"])).code, 0);
      for (const id of ["x3", "x5"]) assertEquals((await capsule(root, ["delete", id])).code, 0);
    } finally {
      await removeAll(quick, slow, long);
    }
  },
);

rootTest(
  "run -d in a user namespace: the exit status is kept, by the waiter (util-linux's unshare above the init)",
  async (root) => {
    const slow = await makeBundle("sleep 0.5; exit 5", inUserNamespace);
    const long = await makeBundle(["sleep", "1000"], inUserNamespace);
    try {
      // One that exits once run -d has returned (the waiter reaps unshare, which exits with the
      // init's status), one stopped (SIGKILL).
      for (const [b, id] of [[slow, "u5"], [long, "u9"]]) {
        const r = await capsule(root, ["run", "-d", "-b", b, id]);
        assertEquals([r.code, r.stdout], [0, ""], r.stderr);
      }
      assertEquals((await capsule(root, ["stop", "-t", "0", "u9"])).code, 0);
      const code = (id: string) => exitCodeOf(root, id);
      assertEquals(await code("u5"), 5);
      // SIGKILL: util-linux 2.38's unshare cannot re-raise it and exits 1, which is no status
      // (a wrong "exit 1" is worse than none). The waiter looks once a second.
      for (let i = 0; i < 50 && (await state(root, "u9")).status !== "stopped"; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 2500));
      assertEquals((await state(root, "u9")).exitCode, undefined);
    } finally {
      for (const id of ["u5", "u9"]) await capsule(root, ["delete", "-f", id]);
      await removeAll(slow, long);
    }
  },
);

rootTest(
  "run -d: the waiter reads the record's own pids, not a hook's keys of the same names",
  async (root) => {
    // A hook's unknown keys are kept in the record (after its own pid fields): the waiter's
    // first match of "waitPid" used to be this hook's, and no exit status was kept.
    const b = await makeBundle("sleep 0.3; exit 6", (s) => {
      s.hooks = {
        poststart: [{ path: "/bin/true", waitPid: 1, pid: 1 } as unknown as { path: string }],
      };
    });
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "xw"])).code, 0);
      const rec = Deno.readTextFileSync(`${root}/xw/state.json`);
      assert(/"waitPid": 1/.test(rec), `the hook's keys were not kept: ${rec}`);
      assertEquals(await exitCodeOf(root, "xw"), 6);
      assertEquals((await capsule(root, ["delete", "xw"])).code, 0);
    } finally {
      await removeAll(b);
    }
  },
);
