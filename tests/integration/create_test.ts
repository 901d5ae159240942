// `capsule create` and `capsule start`: the exec.fifo hand-off, pid file, stdio, bad input.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  cgroupDirsNamed,
  makeBundle,
  pidAlive,
  removeAll,
  rootNames,
  rootTest,
  spawnCapsule,
  state,
  waitFor,
} from "../helpers.ts";

rootTest("create waits before the program; start releases it; stdio is create's", async (root) => {
  const b = await makeBundle("echo started-$(hostname); sleep 30");
  try {
    // The container inherits create's stdio (as with runc): no pipe we would wait on.
    const r0 = await capsule(root, ["create", "-b", b, "--pid-file", `${b}/pid`, "cr1"], {
      stdio: "file",
    });
    assertEquals(r0.code, 0, r0.stderr);
    let s = await state(root, "cr1");
    assertEquals(s.status, "created");
    assertEquals(s.id, "cr1");
    assertEquals(s.ociVersion, "1.2.0");
    assertEquals(s.bundle, b);
    assert(s.pid > 0 && pidAlive(s.pid));
    assertEquals(Deno.readTextFileSync(`${b}/pid`), String(s.pid));
    assertMatch(s.created, /^\d{4}-\d\d-\d\dT/);
    // Before start, nothing of the program ran: the init is still waiting (not yet exec'd).
    assert(!Deno.readTextFileSync(`/proc/${s.pid}/cmdline`).includes("sleep"));
    const r = await capsule(root, ["start", "cr1"]);
    assertEquals(r.code, 0, r.stderr);
    await waitFor(
      () => Deno.readTextFileSync(`/proc/${s.pid}/cmdline`).includes("sleep"),
      5000,
      "exec",
    );
    s = await state(root, "cr1");
    assertEquals(s.status, "running");
    // start of a running container is an illegal move, named as such.
    const again = await capsule(root, ["start", "cr1"]);
    assertEquals(again.code, 1);
    assertMatch(again.stderr, /Cannot start container "cr1": it is running, not created/);
    assertEquals((await capsule(root, ["delete", "-f", "cr1"])).code, 0);
    assert(!pidAlive(s.pid), "init survived delete -f");
  } finally {
    await removeAll(b);
  }
});

rootTest("create: the container's output goes where create's stdout went", async (root) => {
  const b = await makeBundle("echo hello-from-inside");
  const log = await Deno.makeTempFile();
  try {
    const main = new URL("../../main.ts", import.meta.url).pathname;
    const sh =
      `"${Deno.execPath()}" run -A --quiet ${main} --root ${root} create -b ${b} out1 >${log} 2>&1`;
    assertEquals((await new Deno.Command("sh", { args: ["-c", sh] }).output()).code, 0);
    assertEquals((await capsule(root, ["start", "out1"])).code, 0);
    await waitFor(async () => (await state(root, "out1")).status === "stopped", 5000, "stop");
    assertEquals(Deno.readTextFileSync(log), "hello-from-inside\n");
    // A stopped container cannot be started again.
    const r = await capsule(root, ["start", "out1"]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /it is stopped, not created/);
    assertEquals((await capsule(root, ["delete", "out1"])).code, 0);
  } finally {
    await removeAll(b, log);
  }
});

rootTest(
  "create: a duplicate id is refused; of two racing creates exactly one wins",
  async (root) => {
    const b = await makeBundle("sleep 30");
    try {
      const results = await Promise.all(
        [0, 1, 2].map(() => capsule(root, ["create", "-b", b, "dup"])),
      );
      assertEquals(results.filter((r) => r.code === 0).length, 1, JSON.stringify(results));
      for (const r of results.filter((r) => r.code !== 0)) {
        assertEquals(r.code, 1);
        assertMatch(r.stderr, /a container with that id already exists/);
      }
      assertEquals((await state(root, "dup")).status, "created");
      assertEquals((await capsule(root, ["delete", "-f", "dup"])).code, 0);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest("create: bad input is refused clearly and leaves nothing", async (root) => {
  const good = await makeBundle("true");
  const badJson = await Deno.makeTempDir();
  const wrongType = await makeBundle("true", (s) => {
    (s.process as unknown as { args: string }).args = "sh -c true";
  });
  const noRootfs = await makeBundle("true", (s) => {
    s.root = { path: "does-not-exist" };
  });
  const noConfig = await Deno.makeTempDir();
  const userNs = await makeBundle("true", (s) => s.linux!.namespaces!.push({ type: "user" }));
  try {
    await Deno.writeTextFile(`${badJson}/config.json`, "{ not json");
    const cases: [string[], number, RegExp][] = [
      [["create", "-b", badJson, "x1"], 1, /config\.json: not valid JSON/],
      [["create", "-b", wrongType, "x2"], 1, /Invalid .*config\.json: process\.args: /],
      [["create", "-b", noRootfs, "x3"], 1, /rootfs ".*does-not-exist".* does not exist/],
      [["create", "-b", noConfig, "x4"], 1, /has no config\.json/],
      [["create", "-b", good, "a/b"], 1, /Invalid container id "a\/b"/],
      [["create", "-b", good, ".."], 1, /Invalid container id "\.\."/],
      [["create", "-b", good], 2, /expects <container-id>/],
      [["create", "--bogus", "-b", good, "x5"], 2, /unknown flag --bogus/],
      [["start", "nope"], 1, /container "nope" does not exist/],
      [["create", "-b", userNs, "x6"], 1, /linux\.uidMappings and linux\.gidMappings are needed/],
    ];
    for (const [args, code, re] of cases) {
      const r = await capsule(root, args);
      assertEquals(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      assertMatch(r.stderr, re, args.join(" "));
      assert(!r.stderr.includes("    at "), `stack trace for ${args.join(" ")}: ${r.stderr}`);
    }
    assertEquals(rootNames(root), []);
    // A create that failed after its cgroup was made removed it again.
    for (const id of ["x1", "x2", "x3", "x4", "x5", "x6"]) {
      assertEquals(cgroupDirsNamed(id), [], id);
    }
  } finally {
    await removeAll(good, badJson, wrongType, noRootfs, noConfig, userNs);
  }
});

rootTest(
  "create: the state is creating while create runs (a createRuntime hook holds it there), never stopped; delete without -f is refused then",
  async (root) => {
    // createRuntime hooks run after the init was cloned and before create saves its pid: the
    // record still names the helper that cloned it, which has exited.
    const flag = await Deno.makeTempFile({ prefix: "capsule-hook-" });
    const b = await makeBundle("true", (s) => {
      s.hooks = {
        createRuntime: [{
          path: "/bin/sh",
          args: ["sh", "-c", `echo in > ${flag}; sleep 3`],
        }],
      };
    });
    try {
      const child = spawnCapsule(root, ["create", "-b", b, "ck1"]);
      try {
        await waitFor(() => Deno.readTextFileSync(flag).includes("in"), 10_000, "the hook");
        const st = await state(root, "ck1");
        assertEquals(st.status, "creating", JSON.stringify(st));
        const del = await capsule(root, ["delete", "ck1"]);
        assertEquals(del.code, 1, del.stderr);
        assertMatch(del.stderr, /creating/);
        // The init keeps create's stdout and stderr (pipes here) until it ends: the status only.
        assertEquals((await child.status).code, 0);
        assertEquals((await state(root, "ck1")).status, "created");
      } finally {
        await capsule(root, ["delete", "-f", "ck1"]);
        await child.status.catch(() => {});
        await child.stdout.cancel().catch(() => {});
        await child.stderr.cancel().catch(() => {});
      }
      // delete -f while create runs waits for it (the id's lock), then removes what it made:
      // before, it removed the directory and cgroups under the create, which went on and left an
      // init in a cgroup that nothing listed, both commands exiting 0.
      Deno.writeTextFileSync(flag, "");
      const second = spawnCapsule(root, ["create", "-b", b, "ck1"]);
      try {
        await waitFor(() => Deno.readTextFileSync(flag).includes("in"), 10_000, "the hook");
        const del = await capsule(root, ["delete", "-f", "ck1"]);
        assertEquals(del.code, 0, del.stderr);
        // The create ran to its end (its undo would have failed it) before delete -f went on.
        assertEquals((await second.status).code, 0, "create ran to its end first");
        assertEquals(cgroupDirsNamed("ck1"), [], "no cgroup of ck1 is left");
        assertEquals(rootNames(root).filter((n) => n === "ck1"), [], "no state of ck1 is left");
        const ps = await new Deno.Command("pgrep", { args: ["-f", "^/proc/self/fd/[0-9]+ init"] })
          .output();
        const inits = new TextDecoder().decode(ps.stdout).trim().split("\n").filter(Boolean);
        for (const pid of inits) {
          const cg = Deno.readTextFileSync(`/proc/${pid}/cgroup`);
          assert(!cg.includes("/ck1\n"), `init ${pid} of ck1 is left: ${cg}`);
        }
      } finally {
        await capsule(root, ["delete", "-f", "ck1"]);
        await second.status.catch(() => {});
        await second.stdout.cancel().catch(() => {});
        await second.stderr.cancel().catch(() => {});
      }
    } finally {
      await removeAll(b, flag);
    }
  },
);
