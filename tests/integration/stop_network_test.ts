// A stopped image container gives back its published ports and its address (docker's stop
// semantics), and `image start` takes them again: in a private network namespace, as
// network_test.ts does. Traffic only inside that namespace (loopback).
import {
  assert,
  assertEquals,
  assertMatch,
  buildBusyboxRootfs,
  capsuleCommand,
  removeAll,
  type Result,
  rootTest,
  waitFor,
} from "../helpers.ts";

const dec = new TextDecoder();

async function sh(argv: string[]): Promise<Result> {
  const o = await new Deno.Command(argv[0], { args: argv.slice(1), stdin: "null" }).output();
  return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
}

/** A namespace with lo up; capsule runs in it with its own --root and --store. */
class NetLab {
  readonly ns = `capst-${crypto.randomUUID().slice(0, 6)}`;
  constructor(readonly root: string, readonly store: string) {}

  /** capsule in the namespace; output through files (a detached run keeps them open). */
  async cap(...args: string[]): Promise<Result> {
    const argv = [
      "nsenter",
      `--net=/run/netns/${this.ns}`,
      ...capsuleCommand(),
      "--root",
      this.root,
      "--store",
      this.store,
      ...args,
    ];
    const out = await Deno.makeTempFile(), err = await Deno.makeTempFile();
    const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
    const st = await new Deno.Command("sh", {
      args: ["-c", argv.map(q).join(" ") + ` >${out} 2>${err}`],
      stdin: "null",
    }).output();
    const r = {
      code: st.code,
      stdout: Deno.readTextFileSync(out),
      stderr: Deno.readTextFileSync(err),
    };
    await removeAll(out, err);
    return r;
  }

  in(...argv: string[]): Promise<Result> {
    return sh(["ip", "netns", "exec", this.ns, ...argv]);
  }

  /** What one connection to the published port on loopback reads ("" if refused). */
  async get(port: number): Promise<string> {
    return (await this.in("busybox", "nc", "-w", "2", "127.0.0.1", String(port))).stdout;
  }

  /** The NAT rules and links of capsule's containers in the namespace. */
  async leftovers(id: string): Promise<string[]> {
    const nat = (await this.in("iptables", "-t", "nat", "-S")).stdout.split("\n");
    const veth = JSON.parse((await this.cap("state", "-d", id)).stdout || "{}")?.detail?.ext
      ?.network?.veth;
    const links = (await this.in("ip", "-o", "link")).stdout.split("\n");
    return [
      ...nat.filter((x) => /CAPSULE-C-|--dport \d+ /.test(x) && x.startsWith("-A")),
      ...(veth ? links.filter((x) => x.includes(`${veth}@`)) : []),
    ];
  }

  /** The host port claims (proto-port: owner) and leases (ip: owner) under --root. */
  claims(): Record<string, string> {
    const out: Record<string, string> = {};
    const read = (dir: string) => {
      try {
        for (const e of Deno.readDirSync(dir)) {
          if (e.isFile) out[e.name] = Deno.readTextFileSync(`${dir}/${e.name}`).trim();
        }
      } catch { /* none */ }
    };
    read(`${this.root}/_networks/_ports`);
    read(`${this.root}/_networks/snet/ips`);
    return out;
  }
}

/** A lab with network "snet" (10.133.0.0/24) and image "bb"; everything goes afterwards. */
async function withLab(root: string, fn: (l: NetLab) => Promise<void>): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "capsule-stopnet-" });
  const l = new NetLab(root, `${tmp}/store`);
  try {
    assertEquals((await sh(["ip", "netns", "add", l.ns])).code, 0);
    assertEquals((await l.in("ip", "link", "set", "lo", "up")).code, 0);
    Deno.mkdirSync(`${tmp}/rootfs`);
    await buildBusyboxRootfs(`${tmp}/rootfs`);
    assertEquals((await sh(["tar", "-C", `${tmp}/rootfs`, "-cf", `${tmp}/bb.tar`, "."])).code, 0);
    let r = await l.cap("image", "create", "bb", `${tmp}/bb.tar`);
    assertEquals(r.code, 0, r.stderr);
    r = await l.cap("network", "create", "snet", "--subnet", "10.133.0.0/24");
    assertEquals(r.code, 0, r.stderr);
    await fn(l);
  } finally {
    for (const e of [...Deno.readDirSync(root)]) {
      if (!/^[_.]/.test(e.name)) await l.cap("image", "destroyc", "-f", e.name);
    }
    for (const id of (await l.cap("list", "-q")).stdout.split("\n").filter(Boolean)) {
      await l.cap("image", "destroyc", "-f", id);
    }
    await l.cap("network", "prune");
    await sh(["ip", "netns", "del", l.ns]);
    await removeAll(`${root}/_networks`);
    for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
      const mp = line.split(" ")[4];
      if (mp?.startsWith(tmp)) await sh(["umount", "-l", mp]);
    }
    await removeAll(tmp);
  }
}

/** `list` JSON entry of `id`. */
async function listed(l: NetLab, id: string): Promise<Record<string, unknown> | undefined> {
  const r = await l.cap("list", "--format", "json");
  return (JSON.parse(r.stdout) as Record<string, unknown>[]).find((s) => s.id === id);
}

rootTest(
  "image stop: a kept container's exit gives back its port, DNAT rule and lease; start takes them again",
  async (root) => {
    await withLab(root, async (l) => {
      // Serves one connection, then exits: "the program exits".
      let r = await l.cap(
        "image",
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "snet",
        "-p",
        "8091:80",
        "bb",
        "sh",
        "-c",
        "echo started; nc -l -p 80 -e echo a",
      );
      assertEquals([r.code, r.stdout], [0, "a\n"], r.stderr);
      assertEquals(l.claims()["tcp-8091"], "a");
      await waitFor(async () => (await l.get(8091)) === "a\n", 5000, "a's published port");
      await waitFor(
        async () => (await listed(l, "a"))?.status === "stopped",
        5000,
        "a stopped",
      );
      // Within a couple of seconds: claim, lease and DNAT rule gone; the state kept.
      await waitFor(
        async () => Object.keys(l.claims()).length === 0 && !(await l.leftovers("a")).length,
        3000,
        "a's port claim, lease and rules released",
      );
      const st = await listed(l, "a");
      assertEquals([st?.status, st?.ports, st?.ip], ["stopped", undefined, undefined]);
      assertEquals(st?.exitCode, 0);
      r = await l.cap("list");
      assert(!/PORTS/.test(r.stdout), r.stdout);
      assertEquals((await l.cap("log", "a")).stdout, "started\n");
      const shown = JSON.parse((await l.cap("network", "show", "snet")).stdout);
      assertEquals(shown.containers, []);

      // Another container takes the port meanwhile.
      r = await l.cap(
        "image",
        "run",
        "-d",
        "--name",
        "b",
        "--network",
        "snet",
        "-p",
        "8091:80",
        "bb",
        "nc",
        "-ll",
        "-p",
        "80",
        "-e",
        "echo",
        "b",
      );
      assertEquals(r.code, 0, r.stderr);
      await waitFor(async () => (await l.get(8091)) === "b\n", 5000, "b's published port");
      const held = l.claims();
      // a's start is refused naming the holder, and leaves a as it was.
      r = await l.cap("image", "start", "a");
      assertEquals(r.code, 1, r.stderr);
      assertMatch(r.stderr, /port 8091\/tcp .*container "b" already publishes it/);
      assertEquals(l.claims(), held);
      assertEquals((await listed(l, "a"))?.status, "stopped");
      assertEquals((await l.cap("log", "a")).stdout, "started\n");
      assertEquals(await l.get(8091), "b\n");
      // A delete of a later does not take b's port (the release was recorded).
      assertEquals((await l.cap("image", "destroyc", "-f", "b")).code, 0);
      assertEquals(l.claims(), {});
      r = await l.cap("image", "start", "a");
      assertEquals([r.code, r.stdout], [0, "a\n"], r.stderr);
      await waitFor(async () => (await l.get(8091)) === "a\n", 5000, "a's port after start");
      await waitFor(
        async () => (await listed(l, "a"))?.status === "stopped" && !Object.keys(l.claims()).length,
        5000,
        "a stopped and released again",
      );
      assertEquals((await l.cap("image", "destroyc", "a")).code, 0);
      assertEquals([await l.leftovers("a"), l.claims()], [[], {}]);
    });
  },
);

rootTest(
  "image stop: capsule stop gives back the ports at once; foreground run releases too",
  async (root) => {
    await withLab(root, async (l) => {
      let r = await l.cap(
        "image",
        "run",
        "-d",
        "--name",
        "s",
        "--network",
        "snet",
        "-p",
        "8092:80",
        "-p",
        "80",
        "bb",
        "nc",
        "-ll",
        "-p",
        "80",
        "-e",
        "echo",
        "s",
      );
      assertEquals(r.code, 0, r.stderr);
      await waitFor(async () => (await l.get(8092)) === "s\n", 5000, "s's published port");
      assertEquals(Object.keys(l.claims()).length, 3); // two ports, one lease
      r = await l.cap("stop", "-t", "1", "s");
      assertEquals([r.code, r.stdout], [0, "s\n"], r.stderr);
      // At once, as docker stop: nothing held when stop returns.
      assertEquals(l.claims(), {});
      assertEquals(await l.leftovers("s"), []);
      const st = await listed(l, "s");
      assertEquals([st?.status, st?.ports], ["stopped", undefined]);
      // A stop again, a delete, an image start: no error, nothing released twice.
      assertEquals((await l.cap("stop", "s")).code, 0);
      r = await l.cap("image", "start", "s");
      assertEquals(r.code, 0, r.stderr);
      await waitFor(async () => (await l.get(8092)) === "s\n", 5000, "s's port after start");
      assertEquals((await l.cap("stop", "-t", "0", "s")).code, 0);
      assertEquals(l.claims(), {});
      assertEquals((await l.cap("image", "destroyc", "s")).code, 0);
      // Foreground: its state is deleted at exit, with what it held.
      r = await l.cap(
        "image",
        "run",
        "--name",
        "f",
        "--network",
        "snet",
        "-p",
        "8093:80",
        "bb",
        "true",
      );
      assertEquals(r.code, 0, r.stderr);
      assertEquals([l.claims(), await l.leftovers("f")], [{}, []]);
      assertEquals((await l.cap("image", "destroyc", "f")).code, 0);
    });
  },
);
