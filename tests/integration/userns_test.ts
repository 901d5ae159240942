// User namespaces: root in the container is an unprivileged uid on the host (0 -> 100000).
import {
  assertEquals,
  assertMatch,
  capsule,
  makeBundle,
  removeAll,
  rootTest,
  waitFor,
} from "../helpers.ts";

const MAP = [{ containerID: 0, hostID: 100000, size: 65536 }];

rootTest("user namespace: root inside is uid 100000 outside; exec, log, delete", async (root) => {
  // The state root stays 0700: the init never reaches it by path.
  const b = await makeBundle(
    "id -u; id -g; cat /proc/self/uid_map | tr -s ' '; hostname; echo ready; sleep 60",
    (s) => {
      s.hostname = "userns";
      s.linux!.namespaces!.push({ type: "user" });
      s.linux!.uidMappings = MAP;
      s.linux!.gidMappings = MAP;
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
    s.linux!.gidMappings = MAP;
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
