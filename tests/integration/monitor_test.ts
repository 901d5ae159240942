// The monitor (runtime/native/monitor.c): one process per state root and caller context waits for
// every detached container and writes every detached log. What a command it runs would have had
// from its caller (namespaces, cgroup, fds) is the caller's, not the first caller's.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  capsuleCommand,
  exists,
  makeBundle,
  monitorLeaves,
  monitorsOf,
  removeAll,
  REPO,
  rootTest,
  state,
  withImage,
} from "../helpers.ts";

/** Every name in the root, the monitor's files too. */
const rootNamesAll = (root: string) => [...Deno.readDirSync(root)].map((e) => e.name);

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

const run = async (cmd: string[]) => {
  const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdin: "null" }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
};

rootTest(
  "monitor: a process of the same uid without its capabilities cannot make it run anything",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    const out = await Deno.makeTempDir({ prefix: "capsule-monitor-req-" });
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "m1"])).code, 0);
      const sock = rootNamesAll(root).find((n) => /^\.monitor-[0-9a-f]{16}\.sock$/.test(n));
      assert(sock, "no monitor socket");
      const req = [
        "python3",
        `${REPO}/tests/fixtures/monitor_request.py`,
        `${root}/${sock}`,
        `${out}/caps`,
      ];
      // uid 0 with no capability left (as a hardened service's root can be): refused.
      const stripped = await run([
        "setpriv",
        "--no-new-privs",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--",
        ...req,
      ]);
      assertEquals(stripped.stdout.trim(), "refused", stripped.stderr);
      assert(!exists(`${out}/caps`), "the monitor ran a stripped caller's command");
      // The same request from a caller alike the monitor's first: taken (the test can fail).
      const alike = await run(req);
      assertMatch(alike.stdout, /^accepted 0\n$/, alike.stderr);
      assertMatch(Deno.readTextFileSync(`${out}/caps`), /CapEff:\s+0*1?f+/);
      assertEquals((await capsule(root, ["delete", "-f", "m1"])).code, 0);
    } finally {
      await removeAll(b, out);
    }
  },
);

rootTest(
  "monitor: a client sends nothing to a process posing as the monitor that is not in its context",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    const out = await Deno.makeTempDir({ prefix: "capsule-monitor-fake-" });
    let fake: Deno.ChildProcess | undefined;
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "f1"])).code, 0);
      const sock = rootNamesAll(root).find((n) => /^\.monitor-[0-9a-f]{16}\.sock$/.test(n));
      assert(sock, "no monitor socket");
      // A root process without capabilities owns the root as much as capsule does: it replaces
      // the monitor's socket with its own.
      fake = new Deno.Command("setpriv", {
        args: [
          "--no-new-privs",
          "--bounding-set=-all",
          "--inh-caps=-all",
          "--",
          "python3",
          `${REPO}/tests/fixtures/monitor_impostor.py`,
          `${root}/${sock}`,
          `${out}/got`,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      for (let i = 0; i < 100 && !exists(`${out}/got.ready`); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert(exists(`${out}/got.ready`), "the impostor did not start");
      const r = await capsule(root, ["run", "-d", "-b", b, "f2"]);
      assert(r.code !== 0, "run -d went on with an impostor for a monitor");
      assertMatch(r.stderr, /monitor/);
      await fake.status;
      fake = undefined;
      assertEquals(Deno.readTextFileSync(`${out}/got`), "0 bytes 0 fds\n");
      assertEquals((await capsule(root, ["delete", "-f", "f1"])).code, 0);
    } finally {
      if (fake) {
        try {
          fake.kill("SIGKILL");
        } catch { /* gone */ }
        await fake.status;
      }
      await removeAll(b, out);
    }
  },
);

rootTest(
  "monitor: a caller's nice value and oom_score_adj are its container's, not the first caller's",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    try {
      const [cmd, ...pre] = capsuleCommand();
      const first = await run([
        "nice",
        "-n",
        "15",
        "choom",
        "-n",
        "700",
        "--",
        cmd,
        ...pre,
        "--root",
        root,
        "run",
        "-d",
        "-b",
        b,
        "a1",
      ]);
      assertEquals(first.code, 0, first.stderr);
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "a2"])).code, 0);
      const attrs = async (id: string) => {
        const pid = (await state(root, id)).pid as number;
        const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
        const nice = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16];
        return `nice=${nice} oom=${Deno.readTextFileSync(`/proc/${pid}/oom_score_adj`).trim()}`;
      };
      assertEquals(await attrs("a1"), "nice=15 oom=700");
      assertEquals(
        await attrs("a2"),
        `nice=0 oom=${Deno.readTextFileSync("/proc/self/oom_score_adj").trim()}`,
      );
      assertEquals(monitorsOf(root).length, 2, "one monitor for callers of two contexts");
      for (const id of ["a1", "a2"]) {
        assertEquals((await capsule(root, ["delete", "-f", id])).code, 0);
      }
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "image run -d --rm: removed even when its program ends before run -d returns (4 x 8 at once)",
  async (root) => {
    await withImage(async (c, store) => {
      const lane = async (l: number) => {
        for (let i = 0; i < 8; i++) {
          const r = await c("image", "run", "-d", "--rm", "--name", `q${l}-${i}`, "bb", "true");
          assertEquals(r.code, 0, r.stderr);
        }
      };
      await Promise.all([0, 1, 2, 3].map(lane));
      const left = () => {
        try {
          return [...Deno.readDirSync(`${store}/containers`)].map((e) => e.name);
        } catch {
          return [];
        }
      };
      for (let i = 0; i < 100 && left().length; i++) await new Promise((r) => setTimeout(r, 100));
      assertEquals(left(), [], "--rm containers left behind");
      assert(await monitorLeaves(root), "the monitor stayed");
    }, root);
  },
);
