// A damaged state.json never orphans a live container (issue 10 item 6): `list` shows it as
// unknown (with the file and what is wrong), every command but `delete -f` refuses it, and
// `delete -f` removes what the id owns: the processes in its cgroup capsule/<id>, the cgroup,
// the state; on a network (inside private network namespaces), its veth, address and published
// port, which the next container can take again.
import {
  assert,
  assertEquals,
  assertMatch,
  cgroupDirsNamed,
  makeBundle,
  removeAll,
  REPO,
  type Result,
  rootNames,
  rootTest,
  sleep,
} from "../helpers.ts";

const DAMAGE: Record<string, string> = {
  truncated: `{\n  "ociVersion": "1.2.0",\n  "id": "x",\n  "pid": 4`,
  garbage: "\u0000\u00ff\u0010 this is not JSON",
};

function capsuleArgv(): string[] {
  const bin = Deno.env.get("CAPSULE");
  if (bin) return bin.split(" ");
  return [Deno.execPath(), "run", "-A", "--quiet", `${REPO}/main.ts`];
}

/** capsule with stdio in files (a detached container keeps create's stdio open). */
async function cap(pre: string[], args: string[]): Promise<Result> {
  const out = await Deno.makeTempFile(), err = await Deno.makeTempFile();
  const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
  const st = await new Deno.Command("sh", {
    args: ["-c", [...pre, ...capsuleArgv(), ...args].map(q).join(" ") + ` >${out} 2>${err}`],
    stdin: "null",
  }).output();
  const res = {
    code: st.code,
    stdout: Deno.readTextFileSync(out),
    stderr: Deno.readTextFileSync(err),
  };
  await removeAll(out, err);
  return res;
}

/** Pids whose command line is exactly `args`. */
function running(args: string[]): number[] {
  const want = args.join("\0") + "\0";
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${e.name}/cmdline`) === want) out.push(Number(e.name));
    } catch { /* exited meanwhile */ }
  }
  return out;
}

for (const [kind, text] of Object.entries(DAMAGE)) {
  rootTest(
    `damaged (${kind}) state.json of a running container: listed, delete -f leaves nothing`,
    async () => {
      const root = await Deno.makeTempDir({ prefix: "capsule-dmg-" });
      const marker = ["sleep", kind === "truncated" ? "1301" : "1302"];
      const bundle = await makeBundle(`${marker.join(" ")} & exec sleep 1000`);
      const id = `dmg-${kind}-${Deno.pid}`;
      const c = (...a: string[]) => cap([], ["--root", root, ...a]);
      try {
        assertEquals((await c("run", "-d", "-b", bundle, id)).code, 0);
        for (let i = 0; i < 100 && !running(marker).length; i++) await sleep(20);
        assertEquals(running(marker).length, 1, "the container's child runs");
        const file = `${root}/${id}/state.json`;
        Deno.writeTextFileSync(file, text);

        const ls = await c("list");
        assertEquals(ls.code, 0, ls.stderr);
        assertMatch(ls.stdout, new RegExp(`${id}\\s+0\\s+unknown`));
        assert(ls.stderr.includes(file) && ls.stderr.includes("damaged"), ls.stderr);
        const js = JSON.parse((await c("list", "--format", "json")).stdout);
        assertEquals(js.map((s: { status: string }) => s.status), ["unknown"]);
        assert(String(js[0].error).includes(file), js[0].error);

        for (const cmd of [["state", id], ["kill", id, "9"], ["delete", id]]) {
          const r = await c(...cmd);
          assertEquals(r.code, 1, `${cmd[0]}: ${r.stderr}`);
          assertMatch(r.stderr, /is damaged/);
        }
        assertEquals(running(marker).length, 1, "refused commands touched nothing");

        const del = await c("delete", "-f", id);
        assertEquals(del.code, 0, del.stderr);
        for (let i = 0; i < 50 && running(marker).length; i++) await sleep(20);
        assertEquals(running(marker), [], "the container's processes are gone");
        assertEquals(cgroupDirsNamed(id), [], "its cgroups are gone");
        assertEquals(rootNames(root), [], "its state is gone");
      } finally {
        await c("delete", "-f", id);
        for (const p of running(marker)) Deno.kill(p, "SIGKILL");
        await removeAll(root, bundle);
      }
    },
  );
}

rootTest(
  "damaged state.json of a networked container: delete -f frees its veth, IP and port",
  async () => {
    // The network side is released by the network extension's releaseAllFor(id).
    const root = await Deno.makeTempDir({ prefix: "capsule-dmgn-" });
    const store = await Deno.makeTempDir({ prefix: "capsule-dmgn-store-" });
    const ns = `capd-${crypto.randomUUID().slice(0, 6)}`;
    const bundle = await makeBundle("exec sleep 1000");
    const c = (...a: string[]) =>
      cap(["nsenter", `--net=/run/netns/${ns}`], ["--root", root, "--store", store, ...a]);
    const inNs = async (...a: string[]) =>
      await new Deno.Command("ip", { args: ["netns", "exec", ns, ...a], stdout: "piped" }).output();
    try {
      assertEquals((await new Deno.Command("ip", { args: ["netns", "add", ns] }).output()).code, 0);
      await inNs("ip", "link", "set", "lo", "up");
      assertEquals((await c("network", "create", "dnet", "--subnet", "10.131.0.0/24")).code, 0);
      const r1 = await c("run", "-d", "-b", bundle, "--network", "dnet", "-p", "8131:80", "n1");
      assertEquals(r1.code, 0, r1.stderr);
      const ip1 = JSON.parse((await c("state", "n1")).stdout).ip;
      assert(ip1, "n1 has an address");
      const links = async () => new TextDecoder().decode((await inNs("ip", "-o", "link")).stdout);
      const before = await links();
      Deno.writeTextFileSync(`${root}/n1/state.json`, DAMAGE.truncated);

      const del = await c("delete", "-f", "n1");
      assertEquals(del.code, 0, del.stderr);
      assertEquals(cgroupDirsNamed("n1"), [], "cgroups gone");
      assertEquals(rootNames(root).filter((n) => n === "n1"), [], "state gone");
      assert((await links()).split("\n").length < before.split("\n").length, "its veth is gone");
      // Its address and port are free: the next container gets both.
      const r2 = await c("run", "-d", "-b", bundle, "--network", "dnet", "-p", "8131:80", "n2");
      assertEquals(r2.code, 0, r2.stderr);
      assertEquals(JSON.parse((await c("state", "n2")).stdout).ip, ip1, "the address is reused");
    } finally {
      await c("delete", "-f", "n1");
      await c("delete", "-f", "n2");
      await c("network", "delete", "dnet");
      await new Deno.Command("ip", { args: ["netns", "del", ns] }).output();
      await removeAll(root, store, bundle);
    }
  },
);

rootTest(
  "a state directory without state.json (a create that crashed before writing it): delete refuses, delete -f removes the directory and touches nothing of the id outside it",
  async () => {
    const root = await Deno.makeTempDir({ prefix: "capsule-dmgm-" });
    const id = `dmg-bare-${Deno.pid}`;
    const c = (...a: string[]) => cap([], ["--root", root, ...a]);
    try {
      Deno.mkdirSync(`${root}/${id}`, { mode: 0o700 });
      const r = await c("delete", id);
      assertEquals(r.code, 1, r.stderr);
      assertMatch(r.stderr, /delete -f/);
      const bare = await c("delete", "-f", id);
      assertEquals(bare.code, 0, bare.stderr);
      assertEquals(rootNames(root), [], "the bare directory is gone");
    } finally {
      await removeAll(root);
    }
  },
);
