// stop: the stop signal, the grace period, then SIGKILL; for bundles (image containers in
// image_test.ts).
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  makeBundle,
  removeAll,
  rootTest,
  state,
} from "../helpers.ts";

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
