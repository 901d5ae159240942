// The monitor (runtime/native/monitor.c): one process per state root and caller context waits for
// every detached container and writes every detached log. What a command it runs would have had
// from its caller (namespaces, cgroup, fds) is the caller's, not the first caller's.
import {
  assert,
  assertEquals,
  capsule,
  capsuleCommand,
  makeBundle,
  monitorLeaves,
  monitorsOf,
  removeAll,
  rootTest,
  state,
} from "../helpers.ts";

const netns = (pid: number | string) => Deno.readLinkSync(`/proc/${pid}/ns/net`);

rootTest(
  "run -d: one monitor for the root's containers; a caller in another network namespace " +
    "gets its own, and its container that namespace",
  async (root) => {
    // No network namespace of its own: the container is in its caller's.
    const b = await makeBundle("sleep 1000", (spec) => {
      spec.linux!.namespaces = spec.linux!.namespaces!.filter((n) => n.type !== "network");
    });
    try {
      for (const id of ["h1", "h2"]) {
        const r = await capsule(root, ["run", "-d", "-b", b, id]);
        assertEquals(r.code, 0, r.stderr);
      }
      const host = monitorsOf(root);
      assertEquals(host.length, 1, "not one monitor for two containers of one caller");
      const [cmd, ...pre] = capsuleCommand();
      const other = await new Deno.Command("unshare", {
        args: ["-n", cmd, ...pre, "--root", root, "run", "-d", "-b", b, "u1"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      assertEquals(other.code, 0, new TextDecoder().decode(other.stderr));
      const all = monitorsOf(root);
      assertEquals(all.length, 2, "the other namespace's caller shares the first monitor");
      const second = all.find((p) => !host.includes(p))!;
      const h1 = (await state(root, "h1")).pid as number;
      const u1 = (await state(root, "u1")).pid as number;
      assertEquals(netns(h1), netns("self"), "h1 is not in its caller's network namespace");
      assert(netns(u1) !== netns("self"), "u1 runs in the first caller's network namespace");
      assertEquals(netns(second), netns(u1));
      assertEquals(netns(host[0]), netns("self"));
      // Nothing per container: no process names a container's state directory.
      for (const e of Deno.readDirSync("/proc")) {
        if (!/^\d+$/.test(e.name)) continue;
        try {
          const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
          assert(!/\/(h1|h2|u1)(\0|\/)/.test(argv), `a process of a container: ${argv}`);
        } catch { /* gone */ }
      }
      for (const id of ["h1", "h2", "u1"]) {
        assertEquals((await capsule(root, ["delete", "-f", id])).code, 0);
      }
      assert(await monitorLeaves(root), "a monitor stayed after the root's last container");
    } finally {
      await removeAll(b);
    }
  },
);
