// Ids a process must never get: 4294967295 is -1 to setresuid(2), which changes nothing, so the
// program would keep the init's (or exec helper's) root. Refused, as runc refuses them ("uids and
// gids must be in range 0-2147483647"). Found by the second review of the native init.
import { assert, assertEquals, capsule, makeBundle, removeAll, rootTest } from "../helpers.ts";

rootTest(
  "process.user uid or gid 4294967295 (-1, 'unchanged' to setresuid) is refused, never left root",
  async (root) => {
    for (const [uid, gid] of [[4294967295, 1000], [1000, 4294967295]]) {
      const b = await makeBundle("echo ids $(id -u) $(id -g)", (s) => {
        s.process!.user = { uid, gid };
      });
      try {
        const r = await capsule(root, ["run", "-b", b, "rv2-id"]);
        // runc: "uids and gids must be in range 0-2147483647", exit 1.
        assert(
          r.code === 1 && !r.stdout.includes("ids "),
          `uid ${uid} gid ${gid}: exit ${r.code}, the program ran as "${r.stdout.trim()}" ` +
            `(setresuid/setresgid(-1) changed nothing: it kept the init's root ids)`,
        );
      } finally {
        await capsule(root, ["delete", "-f", "rv2-id"]);
        await removeAll(b);
      }
    }
  },
);

rootTest("exec -u 4294967295:4294967295 is refused, never run as root", async (root) => {
  const b = await makeBundle(["sleep", "60"]);
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "rv2-ex"])).code, 0);
    const r = await capsule(root, ["exec", "-u", "4294967295:4294967295", "rv2-ex", "id", "-u"]);
    assert(
      r.code !== 0 && r.stdout.trim() !== "0",
      `exec -u 4294967295: exit ${r.code}, ran as uid "${r.stdout.trim()}" (runc refuses: ` +
        `"uids and gids must be in range 0-2147483647")`,
    );
  } finally {
    await capsule(root, ["delete", "-f", "rv2-ex"]);
    await removeAll(b);
  }
});
