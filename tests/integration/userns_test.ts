// User namespaces: root in the container is an unprivileged uid on the host (0 -> 100000).
import {
  assertEquals,
  assertMatch,
  capsule,
  makeBundle,
  removeAll,
  rootTest,
  USERNS_MAP,
  waitFor,
} from "../helpers.ts";

rootTest("user namespace: root inside is uid 100000 outside; exec, log, delete", async (root) => {
  // The state root stays 0700: the init never reaches it by path.
  const b = await makeBundle(
    "id -u; id -g; cat /proc/self/uid_map | tr -s ' '; hostname; echo ready; sleep 60",
    (s) => {
      s.hostname = "userns";
      s.linux!.namespaces!.push({ type: "user" });
      s.linux!.uidMappings = USERNS_MAP;
      s.linux!.gidMappings = USERNS_MAP;
    },
  );
  try {
    assertEquals((Deno.statSync(root).mode ?? 0) & 0o777, 0o700);
    const r = await capsule(root, ["run", "-d", "-b", b, "un1"]);
    assertEquals(r.code, 0, r.stderr);
    await waitFor(
      () => Deno.readTextFileSync(`${root}/un1/container.log`).includes("ready"),
      5000,
      "log",
    );
    const lines = Deno.readTextFileSync(`${root}/un1/container.log`).trim().split("\n");
    assertEquals(lines, ["0", "0", " 0 100000 65536", "userns", "ready"]);
    const pid = JSON.parse((await capsule(root, ["state", "un1"])).stdout).pid;
    assertMatch(
      Deno.readTextFileSync(`/proc/${pid}/status`),
      /\nUid:\t100000\t100000\t100000\t100000\n/,
    );
    const ex = await capsule(root, [
      "exec",
      "un1",
      "sh",
      "-c",
      "id -u; cat /proc/1/cmdline | head -c 5",
    ]);
    assertEquals(ex.code, 0, ex.stderr);
    assertEquals(ex.stdout, "0\nsleep");
    assertEquals((await capsule(root, ["delete", "-f", "un1"])).code, 0);
  } finally {
    await removeAll(b);
  }
});

rootTest("user namespace: the mappings must map root, and be given", async (root) => {
  const noMap = await makeBundle("true", (s) => s.linux!.namespaces!.push({ type: "user" }));
  const noRoot = await makeBundle("true", (s) => {
    s.linux!.namespaces!.push({ type: "user" });
    s.linux!.uidMappings = [{ containerID: 1, hostID: 100001, size: 10 }];
    s.linux!.gidMappings = USERNS_MAP;
  });
  try {
    const a = await capsule(root, ["run", "-b", noMap, "un2"]);
    assertEquals(a.code, 1);
    assertMatch(a.stderr, /linux\.uidMappings and linux\.gidMappings are needed/);
    const c = await capsule(root, ["run", "-b", noRoot, "un3"]);
    assertEquals(c.code, 1);
    assertMatch(c.stderr, /must map the container's uid 0/);
  } finally {
    await removeAll(noMap, noRoot);
  }
});

rootTest(
  "user namespace: bind sources its root cannot reach (0700, host root's) are mounted; exec sees them",
  async (root) => {
    // runc opens the sources before the init is in the user namespace and passes the fds.
    const src = await Deno.makeTempDir({ prefix: "capsule-src-" });
    const b = await makeBundle("cat /m1/foo.txt /m2/foo.txt; sleep 60", (s) => {
      s.linux!.namespaces!.push({ type: "user" });
      s.linux!.uidMappings = USERNS_MAP;
      s.linux!.gidMappings = USERNS_MAP;
      s.mounts!.push(
        { destination: "/m1", type: "bind", source: `${src}/in1/dir`, options: ["bind"] },
        { destination: "/m2", type: "bind", source: `${src}/in2/dir`, options: ["bind", "ro"] },
      );
    }, { ownRootfs: true });
    try {
      Deno.chmodSync(b, 0o755); // the rootfs itself is reachable; the sources are not
      for (const m of ["m1", "m2"]) Deno.mkdirSync(`${b}/rootfs/${m}`);
      for (const d of ["in1", "in2"]) {
        Deno.mkdirSync(`${src}/${d}/dir`, { recursive: true });
        Deno.writeTextFileSync(`${src}/${d}/dir/foo.txt`, `${d}\n`);
        Deno.chmodSync(`${src}/${d}`, 0o700); // only the host's root may enter
      }
      const r = await capsule(root, ["run", "-d", "-b", b, "un3"]);
      assertEquals(r.code, 0, r.stderr);
      await waitFor(
        () => Deno.readTextFileSync(`${root}/un3/container.log`).includes("in2"),
        5000,
        "log",
      );
      assertEquals(Deno.readTextFileSync(`${root}/un3/container.log`), "in1\nin2\n");
      const ex = await capsule(root, ["exec", "un3", "cat", "/m1/foo.txt"]);
      assertEquals(ex.code, 0, ex.stderr);
      assertEquals(ex.stdout, "in1\n");
      const ro = await capsule(root, ["exec", "un3", "sh", "-c", "touch /m2/x 2>&1; echo $?"]);
      assertMatch(ro.stdout, /Read-only file system\n1\n$/);
      assertEquals((await capsule(root, ["delete", "-f", "un3"])).code, 0);
    } finally {
      await capsule(root, ["delete", "-f", "un3"]);
      await removeAll(b, src);
    }
  },
);
