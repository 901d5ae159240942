// state, list, kill and delete against running, created and stopped containers.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  makeBundle,
  pidAlive,
  removeAll,
  rootTest,
  state,
  waitFor,
} from "../helpers.ts";

rootTest("list: table, json and -q", async (root) => {
  const b = await makeBundle("sleep 30");
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "l1"])).code, 0);
    assertEquals((await capsule(root, ["create", "-b", b, "l2"])).code, 0);
    const t = await capsule(root, ["list"]);
    const lines = t.stdout.trim().split("\n");
    // runc's columns (no IP column: no container here has an address).
    assertMatch(lines[0], /^ID\s+PID\s+STATUS\s+BUNDLE\s+CREATED\s+OWNER$/);
    assertMatch(lines[1], new RegExp(`^l1\\s+\\d+\\s+running\\s+${b}\\s+\\d{4}-`));
    assertMatch(lines[2], /^l2\s+\d+\s+created\s+/);
    // OWNER: the user who owns the container's state directory, by name (runc's).
    assertMatch(lines[1], /\sroot$/);
    assertMatch(lines[2], /\sroot$/);
    // --format json: one line, runc's keys in runc's order (scripts match it as text).
    const jl = (await capsule(root, ["list", "--format", "json"])).stdout;
    assertEquals(jl.trim().split("\n").length, 1);
    assertMatch(jl, /^\[\{"ociVersion":"[0-9.]+","id":"l1","pid":\d+,"status":"running","bundle":/);
    const j = JSON.parse(jl);
    assertEquals(j.map((s: { id: string; status: string }) => [s.id, s.status]), [
      ["l1", "running"],
      ["l2", "created"],
    ]);
    assertEquals(j.map((s: { owner: string }) => s.owner), ["root", "root"]);
    // state's owner is empty, as runc's.
    assertEquals((await state(root, "l1")).owner, "");
    assertEquals((await capsule(root, ["list", "-q"])).stdout, "l1\nl2\n");
    // A directory a crash left half-made does not break list.
    Deno.mkdirSync(`${root}/half`);
    const withHalf = await capsule(root, ["list", "--format", "json"]);
    assertEquals(withHalf.code, 0);
    assert(
      JSON.parse(withHalf.stdout).some((s: { id: string; status: string }) =>
        s.id === "half" && s.status === "stopped"
      ),
    );
    assertEquals((await capsule(root, ["delete", "half"])).code, 1);
    for (const id of ["half", "l1", "l2"]) {
      assertEquals((await capsule(root, ["delete", "-f", id])).code, 0, id);
    }
  } finally {
    await removeAll(b);
  }
});

rootTest("kill: by name, with or without SIG, by number; --all; errors", async (root) => {
  const b = await makeBundle(
    "trap 'echo term >> /tmp/sig' TERM; trap 'echo usr1 >> /tmp/sig' USR1; sleep 1000 & while :; do sleep 0.05; done",
    undefined,
    { ownRootfs: true },
  );
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "k1"])).code, 0);
    const sigFile = `${b}/rootfs/tmp/sig`;
    assertEquals((await capsule(root, ["kill", "k1"])).code, 0);
    await waitFor(
      () => {
        try {
          return Deno.readTextFileSync(sigFile).includes("term");
        } catch {
          return false;
        }
      },
      5000,
      "TERM",
    );
    // One at a time: two pending USR1 would merge into one.
    assertEquals((await capsule(root, ["kill", "k1", "SIGUSR1"])).code, 0);
    await waitFor(() => Deno.readTextFileSync(sigFile).split("usr1").length === 2, 5000, "USR1");
    assertEquals((await capsule(root, ["kill", "k1", "usr1"])).code, 0);
    await waitFor(() => Deno.readTextFileSync(sigFile).split("usr1").length === 3, 5000, "usr1");
    assertEquals((await capsule(root, ["kill", "k1", "10"])).code, 0);
    await waitFor(() => Deno.readTextFileSync(sigFile).split("usr1").length === 4, 5000, "10");
    const bad = await capsule(root, ["kill", "k1", "FOO"]);
    assertEquals(bad.code, 1);
    assertMatch(bad.stderr, /Invalid signal "FOO"/);
    const s = await state(root, "k1");
    assertEquals((await capsule(root, ["kill", "--all", "k1", "9"])).code, 0);
    await waitFor(async () => (await state(root, "k1")).status === "stopped", 5000, "stopped");
    assert(!pidAlive(s.pid));
    const dead = await capsule(root, ["kill", "k1", "KILL"]);
    assertEquals(dead.code, 1);
    assertMatch(dead.stderr, /Cannot kill container "k1": it is stopped/);
    // --all of a stopped container signals what is left in its cgroup (none here): success,
    // as runc (containerd's shim sends it after the init exited).
    assertEquals((await capsule(root, ["kill", "--all", "k1", "0"])).code, 0);
    assertEquals((await capsule(root, ["kill", "-a", "k1", "KILL"])).code, 0);
    const unknown = await capsule(root, ["kill", "nope"]);
    assertEquals(unknown.code, 1);
    assertMatch(unknown.stderr, /container "nope" does not exist/);
    assertEquals((await capsule(root, ["delete", "k1"])).code, 0);
  } finally {
    await removeAll(b);
  }
});

rootTest(
  "delete: refuses a running container without -f; -f kills created and running",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "d1"])).code, 0);
      assertEquals((await capsule(root, ["create", "-b", b, "d2"])).code, 0);
      const p1 = (await state(root, "d1")).pid, p2 = (await state(root, "d2")).pid;
      const r = await capsule(root, ["delete", "d1"]);
      assertEquals(r.code, 1);
      assertMatch(r.stderr, /Cannot delete container "d1": it is running, not stopped/);
      assert(pidAlive(p1));
      assertEquals((await capsule(root, ["delete", "--force", "d1"])).code, 0);
      assertEquals((await capsule(root, ["delete", "-f", "d2"])).code, 0);
      assert(!pidAlive(p1) && !pidAlive(p2));
      assertEquals((await capsule(root, ["state", "d1"])).code, 1);
      assertEquals((await capsule(root, ["delete", "d1"])).code, 1);
      // runc's contract that engines rely on: delete --force of a gone container succeeds.
      assertEquals((await capsule(root, ["delete", "--force", "d1"])).code, 0);
      // A damaged state.json is removed by -f (and only by -f).
      Deno.mkdirSync(`${root}/dmg`);
      Deno.writeTextFileSync(`${root}/dmg/state.json`, "{bad");
      const dmg = await capsule(root, ["delete", "dmg"]);
      assertEquals(dmg.code, 1);
      assertMatch(dmg.stderr, /is damaged/);
      assertEquals((await capsule(root, ["delete", "-f", "dmg"])).code, 0);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest("state of a container whose program ended is stopped with pid 0", async (root) => {
  const b = await makeBundle("true");
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "s1"])).code, 0);
    await waitFor(async () => (await state(root, "s1")).status === "stopped", 5000, "stopped");
    const s = await state(root, "s1");
    assertEquals(s.pid, 0);
    const d = JSON.parse((await capsule(root, ["state", "-d", "s1"])).stdout);
    assert(typeof d.detail === "object");
    assertEquals((await capsule(root, ["delete", "s1"])).code, 0);
  } finally {
    await removeAll(b);
  }
});

rootTest("spec writes a config.json and refuses to overwrite it", async (root) => {
  const dir = await Deno.makeTempDir();
  try {
    assertEquals((await capsule(root, ["spec"], { cwd: dir })).code, 0);
    const spec = JSON.parse(Deno.readTextFileSync(`${dir}/config.json`));
    assertEquals(spec.ociVersion, "1.2.0");
    assertEquals(spec.root.path, "rootfs");
    // runc's starter: an interactive sh in a terminal, tty group on /dev/pts, cgroups ro.
    assertEquals(spec.process.args, ["sh"]);
    assertEquals(spec.process.terminal, true);
    const devpts = spec.mounts.find((m: { type: string }) => m.type === "devpts");
    assert(devpts.options.includes("gid=5"), JSON.stringify(devpts));
    const cg = spec.mounts.find((m: { destination: string }) => m.destination === "/sys/fs/cgroup");
    assertEquals(cg?.type, "cgroup");
    assert(cg.options.includes("ro"), JSON.stringify(cg));
    const again = await capsule(root, ["spec"], { cwd: dir });
    assertEquals(again.code, 1);
    assertMatch(again.stderr, /already exists/);
    assertEquals((await capsule(root, ["spec", "-b", `${dir}/missing`])).code, 1);
  } finally {
    await removeAll(dir);
  }
});

rootTest(
  "create/run --pid-file in a missing directory: refused before anything is made",
  async (root) => {
    const b = await makeBundle("sleep 30");
    const bad = ["--pid-file", "/nonexistent/d/pid", "-b", b, "pf1"];
    try {
      for (const argv of [["create", ...bad], ["run", "-d", ...bad]]) {
        const r = await capsule(root, argv);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, /Invalid --pid-file "\/nonexistent\/d\/pid": directory/);
        assertEquals((await capsule(root, ["list", "-q"])).stdout, "");
      }
    } finally {
      await removeAll(b);
    }
  },
);

rootTest("--version, --help and misuse", async (root) => {
  const v = await capsule(root, ["--version"]);
  assertMatch(v.stdout, /^capsule version \d+\.\d+\.\d+\nspec: 1\.2\.0/);
  const h = await capsule(root, ["--help"]);
  assertEquals(h.code, 0);
  for (const c of ["create", "start", "run", "state", "list", "kill", "delete", "spec"]) {
    assertMatch(h.stdout, new RegExp(`\\n  ${c} `));
  }
  const kh = await capsule(root, ["kill", "--help"]);
  assertMatch(kh.stdout, /Usage: capsule kill \[options\] <container-id> \[signal\]/);
  const u = await capsule(root, ["frobnicate"]);
  assertEquals(u.code, 2);
  assertMatch(u.stderr, /unknown command "frobnicate"/);
});

rootTest("--log with --log-format json records errors as JSON lines", async (root) => {
  const log = await Deno.makeTempFile();
  try {
    const r = await capsule(root, ["--log", log, "--log-format", "json", "start", "nope"]);
    assertEquals(r.code, 1);
    const line = JSON.parse(Deno.readTextFileSync(log).trim().split("\n").at(-1)!);
    assertEquals(line.level, "error");
    assertMatch(line.msg, /container "nope" does not exist/);
    assertMatch(line.time, /^\d{4}-/);
  } finally {
    await removeAll(log);
  }
});
