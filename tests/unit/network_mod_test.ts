// Unit tests of network/mod.ts with a fake runner: which ip batches, iptables-restore texts and
// sysctls a network and a container produce, errors for bad input, and cleanup of partial
// state. No root needed.
import { DEFAULT_NETWORK, networkExtension, Networks, releaseAllFor } from "../../network/mod.ts";
import { FakeRunner } from "../../network/runner.ts";
import { containerChain, networkChain, vethName } from "../../network/rules.ts";
import { MS } from "../../runtime/consts.ts";
import type { CreateContext } from "../../runtime/container.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { defaultSpec, type Spec } from "../../runtime/spec.ts";
import type { ContainerRecord } from "../../runtime/state.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
  withTempDir,
} from "./helpers.ts";

function ctxFor(root: string, id: string, network: unknown, mutate?: (s: Spec) => void) {
  const spec = defaultSpec();
  spec.hostname = "box";
  mutate?.(spec);
  const dir = `${root}/${id}`;
  Deno.mkdirSync(dir, { recursive: true });
  const saved: unknown[] = [];
  return {
    id,
    bundle: "/b",
    spec,
    dir,
    options: { network },
    saved,
    save: (d: unknown) => saved.push(d),
  };
}

function recordOf(id: string, pid: number, ext: Record<string, unknown>): ContainerRecord {
  return {
    ociVersion: "1.2.0",
    id,
    pid,
    pidStartTime: "1",
    bundle: "/b",
    rootfs: "/r",
    created: "",
    annotations: {},
    ext,
  };
}

/** prepare + created as the runtime calls them; returns the stored data. */
async function createOne(
  root: string,
  fake: FakeRunner,
  id: string,
  network: unknown,
  pid = 4242,
): Promise<Record<string, unknown>> {
  const x = networkExtension({ root, runner: fake });
  const ctx = ctxFor(root, id, network);
  const p = await x.prepare!(ctx);
  assert(p && p.data, "prepare returned data");
  const record = recordOf(id, pid, { network: p.data });
  Deno.writeTextFileSync(`${ctx.dir}/state.json`, JSON.stringify(record));
  const data = await x.created!({ ...ctx, pid, record } as CreateContext);
  record.ext!.network = data;
  Deno.writeTextFileSync(`${ctx.dir}/state.json`, JSON.stringify(record));
  return data as Record<string, unknown>;
}

Deno.test("network mod: create makes the bridge, sysctls and rules; list/show/delete", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    const nets = new Networks(root, fake);
    const n = await nets.create("web", { subnet: "10.5.0.0/24" });
    assertEquals([n.name, n.gateway, n.subnet, n.bridge], [
      "web",
      "10.5.0.1",
      "10.5.0.0/24",
      "web",
    ]);
    // Made, marked as this root's (before anything else), then its address and up.
    const ip = fake.of("ip");
    assertEquals(ip.map((c) => c.argv.join(" ")), [
      "ip link add name web type bridge",
      `ip link set dev web alias capsule-root:${root}`,
      "ip -batch -",
    ]);
    assertEquals(ip[2].stdin, "addr replace 10.5.0.1/24 dev web\nlink set dev web up\n");
    assertEquals(fake.sysctls, [
      ["net/ipv4/ip_forward", "1"],
      ["net/ipv4/conf/web/route_localnet", "1"],
    ]);
    const restore = fake.of("iptables-restore");
    assertEquals(restore.length, 1);
    assertEquals(restore[0].argv, ["iptables-restore", "-w", "5", "--noflush"]);
    assertStringIncludes(restore[0].stdin!, "-A CAPSULE-FORWARD -j " + networkChain("web"));
    assertEquals((await nets.list()).map((x) => [x.name, x.containers]), [["web", 0]]);
    assertEquals((await nets.show("web")).containers, []);

    fake.calls = [];
    await nets.delete("web");
    assertEquals(fake.of("ip")[0].argv, ["ip", "link", "del", "dev", "web"]);
    assertEquals(fake.of("iptables-save").length, 1);
    assertEquals(await nets.list(), []);
    await assertRejects(() => nets.delete("web"), CapsuleError, 'Network "web" does not exist');
  });
});

Deno.test("network mod: bad input is refused before anything is made", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    fake.hostRoutes = [
      { dest: "0.0.0.0", prefix: 0, dev: "eth0" },
      { dest: "192.168.1.0", prefix: 24, dev: "eth0" },
    ];
    const nets = new Networks(root, fake);
    await assertRejects(
      () => nets.create("../x", { subnet: "10.5.0.0/24" }),
      CapsuleError,
      'Invalid network name "../x"',
    );
    await assertRejects(
      () => nets.create("lan", { subnet: "192.168.0.0/16" }),
      CapsuleError,
      "overlaps the host route 192.168.1.0/24 on eth0",
    );
    await nets.create("a", { subnet: "10.5.0.0/24" });
    await assertRejects(
      () => nets.create("b", { subnet: "10.5.0.128/25" }),
      CapsuleError,
      'overlaps network "a" (10.5.0.0/24)',
    );
    await assertRejects(
      () => nets.create("a", { subnet: "10.6.0.0/24" }),
      CapsuleError,
      'Network "a" already exists',
    );
    await assertRejects(
      () => nets.create("c", { subnet: "10.7.0.0/24", driver: "macvlan" }),
      CapsuleError,
      'Invalid driver "macvlan"',
    );
    await assertRejects(
      () => nets.create("c", { subnet: "10.7.0.0/24", gateway: "10.8.0.1" }),
      CapsuleError,
      'Invalid gateway "10.8.0.1"',
    );
    assertEquals((await nets.list()).map((n) => n.name), ["a"]);
    const x = networkExtension({ root, runner: fake });
    await assertRejects(
      async () => await x.prepare!(ctxFor(root, "c1", { name: "nope", ports: [], links: [] })),
      CapsuleError,
      'Network "nope" does not exist',
    );
    await assertRejects(
      async () => await x.prepare!(ctxFor(root, "c1", { name: "a", ports: ["99999:80"] })),
      CapsuleError,
      'port "99999"',
    );
    await assertRejects(
      async () =>
        await x.prepare!(
          ctxFor(root, "c1", { name: "a", ports: [] }, (s) => {
            s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== "network");
          }),
        ),
      CapsuleError,
      "has no network namespace",
    );
    await assertRejects(
      async () => await x.prepare!(ctxFor(root, "c1", { name: "a", links: ["ghost:db"] })),
      CapsuleError,
      'container "ghost" does not exist',
    );
    assertEquals((await nets.show("a")).containers, []);
  });
});

Deno.test("network mod: a container gets veth, eth0, lo, route, hosts mounts, DNAT", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    await new Networks(root, fake).create("web", { subnet: "10.5.0.0/24" });
    fake.calls = [];
    const x = networkExtension({ root, runner: fake });
    const ctx = ctxFor(root, "c1", { name: "web", ports: ["8080:80"], links: [] });
    const p = (await x.prepare!(ctx))!;
    const d = p.data as Record<string, unknown>;
    assertEquals(d.summary, { ip: "10.5.0.2", network: "web", ports: ["0.0.0.0:8080->80/tcp"] });
    assertEquals(p.mounts!.map((m) => [m.destination, m.source, m.bind]), [
      ["/etc/hosts", `${root}/c1/hosts`, true],
      ["/etc/resolv.conf", `${root}/c1/resolv.conf`, true],
    ]);
    assert(p.mounts![0].flags & MS.RDONLY);
    assertStringIncludes(Deno.readTextFileSync(`${root}/c1/hosts`), "10.5.0.2\tbox c1 c1.web\n");
    assertEquals(fake.calls, [], "prepare runs no command but the bridge's read");
    assertEquals(fake.linkReads, 1, "whose the bridge is: read while the container is made");
    // Saved before anything else was made: the address, then the ports.
    assertEquals(ctx.saved.map((x) => (x as { ports: unknown[] }).ports.length), [0, 1]);

    const record = recordOf("c1", 777, { network: d });
    const data = await x.created!({ ...ctx, pid: 777, record } as CreateContext);
    const veth = d.veth as string;
    assert(veth.length <= 15 && veth.startsWith("cap"));
    assertEquals(fake.calls.map((c) => c.argv[0]), ["ip", "nsenter", "iptables-restore"]);
    assertEquals([fake.bridgeReads, fake.linkReads], [0, 1], "plug used prepare's read");
    assertEquals(fake.calls[0].argv, ["ip", "-j", "-d", "-batch", "-"]);
    assertEquals(
      fake.calls[0].stdin,
      `link show dev web\n` +
        `link add name ${veth} master web up type veth peer name eth0 address 02:42:0a:05:00:02 ` +
        `netns 777\n` +
        `link set dev ${veth} type bridge_slave hairpin on\n`,
    );
    assertEquals(fake.calls[1].argv, ["nsenter", "--net=/proc/777/ns/net", "ip", "-batch", "-"]);
    assertEquals(
      fake.calls[1].stdin,
      "link set lo up\naddr add 10.5.0.2/24 dev eth0\nlink set eth0 up\n" +
        "route add default via 10.5.0.1 dev eth0\n",
    );
    assertStringIncludes(
      fake.calls[2].stdin!,
      "--dport 8080 -j DNAT --to-destination 10.5.0.2:80",
    );
    assert((data as { timing: unknown }).timing);

    // Another container may not publish the same host port; nothing of it is kept.
    await assertRejects(
      async () => await x.prepare!(ctxFor(root, "c2", { name: "web", ports: ["8080:81"] })),
      CapsuleError,
      'container "c1" already publishes it',
    );
    assertEquals((await new Networks(root, fake).show("web")).containers, [{
      id: "c1",
      ip: "10.5.0.2",
    }]);
    await assertRejects(
      () => new Networks(root, fake).delete("web"),
      CapsuleError,
      'containers "c1" are attached',
    );

    fake.calls = [];
    await x.deleted!(record, data);
    assertEquals(fake.calls.map((c) => c.argv.join(" ")), [
      `ip link del dev ${veth}`,
      "iptables-restore -w 5 --noflush",
    ]);
    assertStringIncludes(fake.calls[1].stdin!, `-X ${containerChain("c1")}`);
    assertEquals((await new Networks(root, fake).show("web")).containers, []);
    // Idempotent: a second delete finds nothing to remove and does not fail.
    fake.respond = (argv) =>
      argv[0] === "iptables-restore" ? { code: 1, stdout: "", stderr: "no chain" } : undefined;
    await x.deleted!(record, data);
    await new Networks(root, fake).delete("web");
  });
});

Deno.test("network mod: default network avoids host routes; --link adds the alias", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    fake.hostRoutes = [{ dest: "172.30.0.0", prefix: 16, dev: "eth0" }];
    const a = await createOne(root, fake, "c1", { ports: [], links: [] });
    const n = await new Networks(root, fake).show(DEFAULT_NETWORK);
    assertEquals([n.subnet, n.gateway, n.bridge], ["172.31.0.0/16", "172.31.0.1", DEFAULT_NETWORK]);
    assertEquals(a.ip, "172.31.0.2");
    await createOne(root, fake, "c2", { name: "default", links: ["c1:db"] });
    assertStringIncludes(Deno.readTextFileSync(`${root}/c2/hosts`), "172.31.0.2\tdb c1\n");
  });
});

Deno.test("network mod: create without a subnet takes the first free one, as docker", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    fake.hostRoutes = [{ dest: "172.30.0.0", prefix: 16, dev: "eth0" }];
    const nets = new Networks(root, fake);
    const a = await nets.create("a", {});
    assertEquals([a.subnet, a.gateway], ["172.31.0.0/16", "172.31.0.1"]);
    // The next one avoids the route and network "a"; a given gateway needs a given subnet.
    const b = await nets.create("b", {});
    assertEquals([b.subnet, b.gateway], ["10.88.0.0/16", "10.88.0.1"]);
    await assertRejects(
      () => nets.create("c", { gateway: "10.89.0.1" }),
      CapsuleError,
      "--gateway needs --subnet",
    );
    assertEquals((await nets.list()).map((n) => n.name).sort(), ["a", "b"]);
  });
});

Deno.test("network mod: a joined namespace (path) is left alone", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    const x = networkExtension({ root, runner: fake });
    const r = await x.prepare!(ctxFor(root, "p1", { ports: ["80:80"] }, (s) => {
      s.linux!.namespaces = [
        ...s.linux!.namespaces!.filter((n) => n.type !== "network"),
        { type: "network", path: "/run/netns/x" },
      ];
    }));
    assertEquals(r, undefined);
    assertEquals(fake.calls, []);
    assertEquals(await new Networks(root, fake).list(), []);
  });
});

Deno.test("network mod: a vanished bridge is made again at the next create", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    await new Networks(root, fake).create("web", { subnet: "10.5.0.0/24" });
    fake.ifaces.delete("web"); // a reboot
    fake.calls = [];
    await createOne(root, fake, "c1", { name: "web" });
    assertEquals(fake.calls[0].argv.join(" "), "ip link add name web type bridge");
    assertEquals(fake.of("iptables-restore").length, 1, "network rules again; no ports");
  });
});

Deno.test("network mod: deleted copes with data of a prepare that stopped halfway", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    const x = networkExtension({ root, runner: fake });
    await x.deleted!(recordOf("z", 1, {}), undefined);
    await x.deleted!(recordOf("z", 1, {}), { network: "web", ip: "10.5.0.9", ports: [] });
    assertEquals(fake.calls, []);
  });
});

Deno.test("network mod: a host port a host process listens on is refused, naming it", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    fake.hostSockets.tcp = [{ ip: "0.0.0.0", port: 8080, inode: "4711" }];
    fake.hostSockets.udp = [{ ip: "127.0.0.1", port: 53, inode: "4712" }];
    fake.owners.set("4711", "nginx (pid 321)");
    const x = networkExtension({ root, runner: fake });
    await assertRejects(
      async () => await x.prepare!(ctxFor(root, "c1", { ports: ["8080:80"] })),
      CapsuleError,
      'port 8080/tcp for container "c1": a host process listens on 0.0.0.0:8080 ' +
        "(nginx (pid 321))",
    );
    await assertRejects(
      async () => await x.prepare!(ctxFor(root, "c1", { ports: ["53:53/udp"] })),
      CapsuleError,
      'find it with "ss -ulnp sport = :53"',
    );
    // Nothing kept: no address, no port reservation.
    assertEquals((await new Networks(root, fake).show(DEFAULT_NETWORK)).containers, []);
    assertEquals([...Deno.readDirSync(`${root}/_networks/_ports`)], []);
    // Another address than the listener's, another protocol, another port: allowed; so is a
    // port that only a client's connection holds (the quick bind fails, no listener has it).
    fake.boundTcp.add(8082);
    fake.hostAddrs.push("10.9.9.9");
    await createOne(root, fake, "c2", {
      ports: ["10.9.9.9:53:53/udp", "8080:80/udp", "8081:80", "8082:80"],
    });
  });
});

Deno.test("network mod: -p on an address the host lacks is refused, naming its own", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    fake.hostAddrs.push("192.0.2.1");
    const x = networkExtension({ root, runner: fake });
    await assertRejects(
      async () => await x.prepare!(ctxFor(root, "c1", { ports: ["8080:80", "10.9.9.9::80"] })),
      CapsuleError,
      "10.9.9.9 is not an address of this host (cannot assign requested address); it has " +
        "127.0.0.1, 192.0.2.1",
    );
    // Refused before anything is made: no network, address or port reservation.
    assertEquals([...Deno.readDirSync(root)].map((e) => e.name).filter((n) => n !== "c1"), []);
    await createOne(root, fake, "c2", { ports: ["192.0.2.1:8080:80", "127.0.0.9:8081:80"] });
  });
});

Deno.test("network mod: -p CTR and a host range take free host ports, shown in summary", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    const d1 = await createOne(root, fake, "c1", { ports: ["80"] });
    const p1 = (d1.ports as { hostPort: number }[])[0].hostPort;
    const [lo, hi] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim()
      .split(/\s+/).map(Number);
    assert(p1 >= lo && p1 <= hi, `${p1} in ${lo}-${hi}`);
    assertEquals((d1.summary as { ports: string[] }).ports, [`0.0.0.0:${p1}->80/tcp`]);
    // A range of three host ports: one taken by c2's fixed port, one by a host listener.
    fake.hostSockets.tcp = [{ ip: "0.0.0.0", port: 9001, inode: "1" }];
    await createOne(root, fake, "c2", { ports: ["9000:80"] });
    const d3 = await createOne(root, fake, "c3", { ports: ["9000-9002:80"] });
    assertEquals((d3.ports as { hostPort: number }[])[0].hostPort, 9002);
    await assertRejects(
      async () => await createOne(root, fake, "c4", { ports: ["9000-9002:80"] }),
      CapsuleError,
      "no free host port in 9000-9002",
    );
  });
});

Deno.test("network mod: UDP ports flush their conntrack flows at publish and unpublish", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    // conntrack's "nothing to delete" is status 1 with this message: not an error.
    fake.respond = (argv) =>
      argv[0] === "conntrack"
        ? { code: 1, stdout: "", stderr: "0 flow entries have been deleted.\n" }
        : undefined;
    const d = await createOne(root, fake, "c1", { ports: ["5353:53/udp", "8080:80"] });
    const flushes = () => fake.of("conntrack").map((c) => c.argv.join(" "));
    assertEquals(flushes(), ["conntrack -D -p udp --orig-port-dst 5353"]);
    fake.calls = [];
    const x = networkExtension({ root, runner: fake });
    await x.deleted!(recordOf("c1", 1, { network: d }), d);
    assertEquals(flushes(), ["conntrack -D -p udp --orig-port-dst 5353"]);
    // Without the tool, create fails saying what to install.
    fake.respond = (argv) =>
      argv[0] === "conntrack" ? { code: 127, stdout: "", stderr: "not found" } : undefined;
    await assertRejects(
      () => createOne(root, fake, "c2", { ports: ["5353:53/udp"] }),
      CapsuleError,
      "apt-get install conntrack",
    );
  });
});

Deno.test("network mod: members of a user network resolve each other; delete updates", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    await new Networks(root, fake).create("web", { subnet: "10.5.0.0/24" });
    await createOne(root, fake, "a", { name: "web" });
    const inodeA = Deno.statSync(`${root}/a/hosts`).ino;
    const d = await createOne(root, fake, "b", { name: "web" });
    await createOne(root, fake, "c", { name: "web", links: ["a:db"] });
    const hosts = (id: string) => Deno.readTextFileSync(`${root}/${id}/hosts`).split("\n");
    // By id and as docker's NAME.NETWORK.
    assertEquals(hosts("a").slice(2), [
      "10.5.0.2\tbox a a.web",
      "10.5.0.3\tb b.web",
      "10.5.0.4\tc c.web",
      "",
    ]);
    assertEquals(hosts("c").slice(2), [
      "10.5.0.4\tbox c c.web",
      "10.5.0.2\tdb a",
      "10.5.0.2\ta a.web",
      "10.5.0.3\tb b.web",
      "",
    ]);
    // Rewritten in place: the bind mount in the container follows the inode.
    assertEquals(Deno.statSync(`${root}/a/hosts`).ino, inodeA);
    const x = networkExtension({ root, runner: fake });
    await x.deleted!(recordOf("b", 1, { network: d }), d);
    assertEquals(hosts("a").slice(2), ["10.5.0.2\tbox a a.web", "10.5.0.4\tc c.web", ""]);
    // The default network (docker's default bridge) does not.
    await createOne(root, fake, "d1", {});
    await createOne(root, fake, "d2", {});
    assertEquals(hosts("d1").length, 4);
  });
});

Deno.test("network mod: definitions live in the store; run-time state under the root", async () => {
  await withTempDir(async (tmp) => {
    const fake = new FakeRunner();
    const root = `${tmp}/run`, store = `${tmp}/lib`;
    // One an older capsule left under --root moves to the store.
    Deno.mkdirSync(`${root}/_networks`, { recursive: true });
    Deno.writeTextFileSync(
      `${root}/_networks/old.json`,
      JSON.stringify({
        name: "old",
        driver: "bridge",
        subnet: "10.6.0.0/24",
        gateway: "10.6.0.1",
        bridge: "old",
        created: "",
      }),
    );
    const nets = new Networks(root, fake, store);
    await nets.create("web", { subnet: "10.5.0.0/24" });
    assert(Deno.statSync(`${store}/networks/web.json`).isFile);
    assert(Deno.statSync(`${store}/networks/old.json`).isFile);
    // A reboot: --root is empty, the bridges are gone.
    Deno.removeSync(root, { recursive: true });
    fake.ifaces.delete("web");
    const after = new Networks(root, fake, store);
    assertEquals((await after.list()).map((n) => [n.name, n.status]), [["old", "down"], [
      "web",
      "down",
    ]]);
    fake.calls = [];
    const x = networkExtension({ root, store, runner: fake });
    const ctx = ctxFor(root, "c1", { name: "web" });
    const p = (await x.prepare!(ctx))!;
    const record = recordOf("c1", 5, { network: p.data });
    await x.created!({ ...ctx, pid: 5, record } as CreateContext);
    assertEquals(fake.calls[0].argv.join(" "), "ip link add name web type bridge");
    assertEquals((await after.list()).map((n) => [n.name, n.status, n.containers]), [
      ["old", "down", 0],
      ["web", "up", 1],
    ]);
  });
});

Deno.test("network mod: an interrupted delete is listed and finished by delete/prune", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    const nets = new Networks(root, fake);
    await nets.create("web", { subnet: "10.5.0.0/24" });
    await nets.create("api", { subnet: "10.6.0.0/24" });
    fake.respond = (argv) =>
      argv.join(" ").startsWith("ip link del")
        ? { code: 2, stdout: "", stderr: "busy" }
        : undefined;
    await assertRejects(() => nets.delete("web"), CapsuleError, "left half-deleted");
    await assertRejects(() => nets.delete("api"), CapsuleError, "left half-deleted");
    assertEquals((await nets.list()).map((n) => [n.name, n.status]), [
      ["api", "deleting"],
      ["web", "deleting"],
    ]);
    assertEquals((await nets.show("web")).status, "deleting");
    fake.respond = undefined;
    await nets.delete("web");
    // The chains it removes are found by name from iptables-save.
    fake.respond = (argv) =>
      argv[0] === "iptables-save"
        ? {
          code: 0,
          stderr: "",
          stdout: `*nat\n:${networkChain("api")} - [0:0]\nCOMMIT\n`,
        }
        : undefined;
    fake.calls = [];
    assertEquals(await nets.prune(), ["api"]);
    assertStringIncludes(fake.of("iptables-restore")[0].stdin!, `-X ${networkChain("api")}`);
    assertEquals(await nets.list(), []);
    assertEquals([...Deno.readDirSync(`${root}/_networks`)].map((e) => e.name), []);
  });
});

Deno.test("network mod: releaseAllFor(id) frees what the id holds, without its state", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    await new Networks(root, fake).create("web", { subnet: "10.5.0.0/24" });
    await createOne(root, fake, "a", { name: "web" });
    const d = await createOne(root, fake, "b", { name: "web", ports: ["8080:80", "53/udp"] });
    Deno.writeTextFileSync(`${root}/b/state.json`, "{damaged");
    const chain = containerChain("b");
    fake.respond = (argv) =>
      argv[0] === "iptables-save"
        ? {
          code: 0,
          stderr: "",
          stdout: `*nat\n:${chain} - [0:0]\n-A CAPSULE-PORTS -j ${chain}\nCOMMIT\n`,
        }
        : undefined;
    fake.calls = [];
    await releaseAllFor({ root, runner: fake }, "b");
    const calls = fake.calls.map((c) => c.argv[0]);
    assertEquals(calls, ["ip", "iptables-save", "iptables-restore", "conntrack"]);
    assertEquals(fake.calls[0].argv.join(" "), `ip link del dev ${d.veth}`);
    assertStringIncludes(fake.calls[2].stdin!, `-D CAPSULE-PORTS -j ${chain}`);
    assertEquals([...Deno.readDirSync(`${root}/_networks/_ports`)], []);
    assertEquals((await new Networks(root, fake).show("web")).containers, [{
      id: "a",
      ip: "10.5.0.2",
    }]);
    assertEquals(Deno.readTextFileSync(`${root}/a/hosts`).split("\n").length, 4);
    // Again: nothing left to do, no error.
    fake.respond = undefined;
    await releaseAllFor({ root, runner: fake }, "b");
  });
});

Deno.test(
  "network mod: stopped gives back ports and lease once; what another container took stays",
  async () => {
    await withTempDir(async (root) => {
      const fake = new FakeRunner();
      fake.respond = (argv) =>
        argv[0] === "conntrack"
          ? { code: 1, stdout: "", stderr: "0 flow entries have been deleted.\n" }
          : undefined;
      const x = networkExtension({ root, runner: fake });
      const d = await createOne(root, fake, "s1", { ports: ["5354:53/udp", "8081:80"] });
      const ports = `${root}/_networks/_ports`;
      const ips = `${root}/_networks/${DEFAULT_NETWORK}/ips`;
      const ip = d.ip as string;
      assertEquals(Deno.readTextFileSync(`${ports}/udp-5354`), "s1");
      const rec = recordOf("s1", 4242, { network: d });
      fake.calls = [];
      const released = await x.stopped!(rec, d) as Record<string, unknown>;
      assertEquals(released.summary, { network: DEFAULT_NETWORK });
      assertEquals(typeof released.released, "string");
      assertEquals([...Deno.readDirSync(ports)], []);
      assertEquals([...Deno.readDirSync(ips)].map((e) => e.name).includes(ip), false);
      assertEquals(fake.of("conntrack").length, 1);
      // Meanwhile another container takes the port and the address.
      Deno.mkdirSync(`${root}/other`);
      Deno.writeTextFileSync(`${ports}/udp-5354`, "other");
      Deno.writeTextFileSync(`${ips}/${ip}`, "other");
      fake.calls = [];
      // Released already: stopped again and deleted touch nothing.
      assertEquals(await x.stopped!(rec, released), released);
      await x.deleted!(rec, released);
      assertEquals(fake.calls, []);
      // Even the old endpoint data (a delete of a state not marked released) leaves the
      // other container's port, its UDP flows and its address alone.
      await x.deleted!(rec, d);
      assertEquals(Deno.readTextFileSync(`${ports}/udp-5354`), "other");
      assertEquals(Deno.readTextFileSync(`${ips}/${ip}`), "other");
      assertEquals(fake.of("conntrack"), []);
      // check: a fixed host port another container publishes is refused, naming it; free
      // ones, random ones and its own are not.
      await assertRejects(
        async () => await x.check!("s1", { ports: ["5354:53/udp"] }),
        CapsuleError,
        'port 5354/udp for container "s1": container "other" already publishes it',
      );
      await x.check!("s1", { ports: ["8081:80", "53/udp"] });
      await x.check!("other", { ports: ["5354:53/udp"] });
      // A holder that is gone (no state) holds nothing.
      Deno.removeSync(`${root}/other`);
      await x.check!("s1", { ports: ["5354:53/udp"] });
    });
  },
);

// ---- one bridge, one --root: two roots sharing a store (and a host) ----

/** prepare + created under `root` with the shared `store`; the record written as the runtime does. */
async function createIn(
  root: string,
  store: string,
  fake: FakeRunner,
  id: string,
  network: unknown,
): Promise<Record<string, unknown>> {
  const x = networkExtension({ root, store, runner: fake });
  const ctx = ctxFor(root, id, network);
  const p = await x.prepare!(ctx);
  assert(p && p.data, "prepare returned data");
  const record = recordOf(id, 4242, { network: p.data });
  const data = await x.created!({ ...ctx, pid: 4242, record } as CreateContext);
  record.ext!.network = data;
  Deno.writeTextFileSync(`${ctx.dir}/state.json`, JSON.stringify(record));
  return data as Record<string, unknown>;
}

/**
 * prepare + created under `root`, created expected to throw; then what the runtime does when a
 * create fails: `deleted` with what prepare saved. Returns the error.
 */
async function refusedIn(
  root: string,
  store: string,
  fake: FakeRunner,
  id: string,
  network: unknown,
): Promise<CapsuleError> {
  const x = networkExtension({ root, store, runner: fake });
  const ctx = ctxFor(root, id, network);
  const p = await x.prepare!(ctx);
  assert(p && p.data, "prepare returned data");
  const record = recordOf(id, 4242, { network: p.data });
  const e = await assertRejects(
    () => x.created!({ ...ctx, pid: 4242, record } as CreateContext) as Promise<unknown>,
    CapsuleError,
  );
  await x.deleted!(record, p.data);
  Deno.removeSync(ctx.dir, { recursive: true });
  assert(!fake.ifaces.has(vethName(id)), "its veth is gone");
  return e;
}

Deno.test("network mod: a bridge up under one --root is refused to another", async () => {
  await withTempDir(async (tmp) => {
    const [a, b, store] = [`${tmp}/a`, `${tmp}/b`, `${tmp}/store`];
    for (const d of [a, b, store]) Deno.mkdirSync(d);
    const fake = new FakeRunner();
    await new Networks(a, fake, store).create("web", { subnet: "10.5.0.0/24" });
    assertEquals(fake.aliases.get("web"), `capsule-root:${a}`);
    const d1 = await createIn(a, store, fake, "a1", { name: "web" });
    assertEquals(d1.ip, "10.5.0.2");
    assertEquals(fake.masters.get(d1.veth as string), "web");

    // Root B: attaching is refused naming root A, and leaves no lease or alias change.
    const e = await refusedIn(b, store, fake, "b1", { name: "web" });
    assertStringIncludes(e.message, `Network "web" is up under --root ${a}`);
    assertStringIncludes(e.message, `"a1"`);
    assertStringIncludes(e.message, `--root ${a}`);
    assertEquals([...Deno.readDirSync(`${b}/_networks/web/ips`)], []);
    assertEquals(fake.aliases.get("web"), `capsule-root:${a}`);
    // The check image start makes before it deletes a stopped run's state refuses it too,
    // changing nothing (a refused start keeps the container as it was).
    const xb = networkExtension({ root: b, store, runner: fake });
    const ce = await assertRejects(
      async () => await xb.check!("b1", { name: "web" }),
      CapsuleError,
    );
    assertStringIncludes(ce.message, `Network "web" is up under --root ${a}`);
    assertEquals(fake.aliases.get("web"), `capsule-root:${a}`);
    await networkExtension({ root: a, store, runner: fake }).check!("a9", { name: "web" });
    // Delete and prune under B: refused / skipped; the bridge stays.
    const nb = new Networks(b, fake, store);
    const de = await assertRejects(() => nb.delete("web"), CapsuleError);
    assertStringIncludes(de.message, `Network "web" is up under --root ${a}`);
    assertEquals(await nb.prune(), []);
    assert(fake.ifaces.has("web"), "bridge kept");
    assertEquals((await nb.list()).map((n) => n.name), ["web"]);

    // Under A nothing changes: a second container joins.
    assertEquals((await createIn(a, store, fake, "a2", { name: "web" })).ip, "10.5.0.3");

    // A's containers gone: B takes the bridge over (its alias), and then A is refused.
    const xa = networkExtension({ root: a, store, runner: fake });
    for (const id of ["a1", "a2"]) {
      const rec = JSON.parse(Deno.readTextFileSync(`${a}/${id}/state.json`));
      await xa.deleted!(rec, rec.ext.network);
      Deno.removeSync(`${a}/${id}`, { recursive: true });
    }
    assertEquals((await createIn(b, store, fake, "b1", { name: "web" })).ip, "10.5.0.2");
    assertEquals(fake.aliases.get("web"), `capsule-root:${b}`);
    const ea = await refusedIn(a, store, fake, "a3", { name: "web" });
    assertStringIncludes(ea.message, `is up under --root ${b}`);
    assertEquals([...Deno.readDirSync(`${a}/_networks/web/ips`)], []);
  });
});

Deno.test("network mod: a root whose state is gone is taken over; foreign ports never", async () => {
  await withTempDir(async (tmp) => {
    const [a, b, store] = [`${tmp}/a`, `${tmp}/b`, `${tmp}/store`];
    for (const d of [a, b, store]) Deno.mkdirSync(d);
    const fake = new FakeRunner();
    await new Networks(a, fake, store).create("web", { subnet: "10.5.0.0/24" });
    await createIn(a, store, fake, "a1", { name: "web" });
    // rm -rf of root A: its containers' state is gone, but a veth of A's is still on the
    // bridge (a live container's endpoint): never taken over.
    Deno.removeSync(a, { recursive: true });
    const nb = new Networks(b, fake, store);
    let e = await assertRejects(() => nb.delete("web"), CapsuleError);
    assertStringIncludes(e.message, `Network "web" is up under --root ${a}: interfaces "`);
    assertStringIncludes(e.message, "enslaved to its bridge");
    assertStringIncludes(e.message, "that --root no longer exists");
    assert(fake.ifaces.has("web"));
    // The endpoint gone too: B takes it over and may delete it.
    for (const [k, v] of fake.masters) if (v === "web") fake.ifaces.delete(k);
    fake.masters.clear();
    await nb.delete("web");
    assert(!fake.ifaces.has("web"), "bridge deleted");

    // A bridge of that name without capsule's alias (made by hand, or by an older capsule),
    // with a port or without: never taken over.
    await nb.create("lan", { subnet: "10.6.0.0/24" });
    fake.aliases.delete("lan");
    fake.ifaces.add("vhand");
    fake.masters.set("vhand", "lan");
    e = await refusedIn(b, store, fake, "b1", { name: "lan" });
    assertStringIncludes(e.message, `the host's interface "lan"`);
    assertEquals(fake.aliases.get("lan") ?? "", "");
    fake.masters.delete("vhand");
    e = await refusedIn(b, store, fake, "b2", { name: "lan" });
    assertStringIncludes(e.message, "not a bridge capsule made (a bridge without capsule's alias)");
    assertEquals(fake.aliases.get("lan") ?? "", "");
  });
});

// ---- an interface capsule did not make, holding a network's bridge name ----

/** Every call that names `dev` otherwise than to read it (ip link show, ip -j link show). */
function touching(fake: FakeRunner, dev: string): string[] {
  const names = new RegExp(`(^|[\\s/])${dev.replaceAll(".", "\\.")}($|[\\s/])`);
  return fake.calls.flatMap((c) => {
    const lines = c.stdin === undefined ? [c.argv.join(" ")] : [
      c.argv.join(" "),
      ...c.stdin.split("\n").filter((l) => !/^link show dev /.test(l)),
    ];
    return lines.filter((l) => names.test(l) && !/^ip( -j)?( -d)? link show/.test(l));
  }).concat(fake.sysctls.filter(([p]) => p.includes(`/${dev}/`)).map(([p]) => p));
}

Deno.test("network mod: a host interface with a bridge's name is never adopted or deleted", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    const nets = new Networks(root, fake);
    await nets.create("v9", { subnet: "10.72.0.0/24" });
    assertEquals(fake.aliases.get("v9"), `capsule-root:${root}`);
    // A reboot (the bridge gone), then the host makes an interface of that name: a veth.
    fake.ifaces.delete("v9");
    fake.aliases.delete("v9");
    await fake.run(["ip", "-batch", "-"], "link add name v9 type veth peer name v9p\n");
    fake.calls = [];
    fake.sysctls = [];
    // The network's rules (they name "v9") are still there.
    const chain = networkChain("v9");
    fake.respond = (argv) =>
      argv[0] === "iptables-save"
        ? {
          code: 0,
          stderr: "",
          stdout: `*filter\n:${chain} - [0:0]\n-A ${chain} -i v9 -j ACCEPT\n` +
            `-A CAPSULE-FORWARD -j ${chain}\nCOMMIT\n`,
        }
        : undefined;
    assertEquals((await nets.list()).map((n) => [n.name, n.status]), [["v9", "conflict"]]);
    assertEquals((await nets.show("v9")).status, "conflict");

    // Joining it is refused, naming the interface and what to do; nothing is left.
    const x = networkExtension({ root, runner: fake });
    const ctx = ctxFor(root, "x1", { name: "v9" });
    let e: CapsuleError | undefined;
    try {
      const p = await x.prepare!(ctx);
      const record = recordOf("x1", 4242, { network: p!.data });
      try {
        await x.created!({ ...ctx, pid: 4242, record } as CreateContext);
      } finally {
        await x.deleted!(record, p!.data); // what the runtime does when create fails
      }
    } catch (err) {
      e = err as CapsuleError;
    }
    assert(e instanceof CapsuleError, `refused: ${e}`);
    // Its rules, which would apply to the host's interface, are removed.
    assertStringIncludes(fake.of("iptables-restore")[0]?.stdin ?? "", `-X ${chain}`);
    assertStringIncludes(e.message, `interface "v9"`);
    assertStringIncludes(e.message, "not a bridge capsule made");
    assertStringIncludes(e.message, "ip link del v9");
    assertStringIncludes(e.message, "capsule network rm v9");
    assertEquals((await nets.show("v9")).containers, []);
    assert(!fake.ifaces.has(vethName("x1")), "no veth");
    assertEquals(touching(fake, "v9"), []);
    assertEquals(fake.aliases.get("v9") ?? "", "");
    // image start's check refuses it too.
    await assertRejects(async () => await x.check!("x1", { name: "v9" }), CapsuleError, '"v9"');

    // Delete: capsule's record and rules go, the host's interface stays.
    fake.calls = [];
    await nets.delete("v9");
    assert(fake.ifaces.has("v9"), "the host's interface is kept");
    assertEquals(touching(fake, "v9"), []);
    assertStringIncludes(fake.of("iptables-restore")[0]?.stdin ?? "", `-X ${chain}`);
    assertEquals(await nets.list(), []);
  });
});

Deno.test("network mod: a bridge of that name without capsule's mark is foreign too", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    const nets = new Networks(root, fake);
    await nets.create("b7", { subnet: "10.73.0.0/24" });
    await nets.create("b8", { subnet: "10.74.0.0/24" });
    for (const b of ["b7", "b8"]) {
      fake.ifaces.delete(b);
      fake.aliases.delete(b);
      await fake.run(["ip", "-batch", "-"], `link add name ${b} type bridge\n`);
    }
    fake.aliases.set("b8", "libvirt"); // someone else's alias
    fake.calls = [];
    fake.sysctls = [];
    assertEquals((await nets.list()).map((n) => n.status), ["conflict", "conflict"]);
    for (const b of ["b7", "b8"]) {
      const x = networkExtension({ root, runner: fake });
      const ctx = ctxFor(root, `c${b}`, { name: b });
      const p = await x.prepare!(ctx);
      const record = recordOf(`c${b}`, 4242, { network: p!.data });
      await assertRejects(
        () => x.created!({ ...ctx, pid: 4242, record } as CreateContext) as Promise<unknown>,
        CapsuleError,
        `interface "${b}"`,
      );
      await x.deleted!(record, p!.data);
      assertEquals(touching(fake, b), [], "no veth put on it, no alias, no rule");
    }
    assertEquals(fake.aliases.get("b7") ?? "", "");
    assertEquals(fake.aliases.get("b8"), "libvirt");
    // prune removes both networks, and leaves both bridges.
    assertEquals((await nets.prune()).sort(), ["b7", "b8"]);
    assert(fake.ifaces.has("b7") && fake.ifaces.has("b8"));
    assertEquals(touching(fake, "b7").concat(touching(fake, "b8")), []);
  });
});

Deno.test("network mod: a failed create never deletes an interface that appeared meanwhile", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    // The name is free when capsule picks it; the host makes it just before capsule does.
    fake.respond = (argv, stdin) => {
      if (argv[0] === "ip" && /link add name web\b/.test(`${argv.join(" ")} ${stdin ?? ""}`)) {
        fake.ifaces.add("web");
        return { code: 2, stdout: "", stderr: "RTNETLINK answers: File exists" };
      }
      return undefined;
    };
    const nets = new Networks(root, fake);
    await assertRejects(
      () => nets.create("web", { subnet: "10.5.0.0/24" }),
      CapsuleError,
      "File exists",
    );
    assert(fake.ifaces.has("web"), "the host's interface is kept");
    assertEquals(touching(fake, "web").filter((l) => !/link add name web/.test(l)), []);
    assertEquals(await nets.list(), []);
  });
});

Deno.test("network mod: routes of a host interface with a bridge's name count as host routes", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    const nets = new Networks(root, fake);
    await nets.create("v9", { subnet: "10.72.0.0/24" });
    fake.hostRoutes = [
      { dest: "10.72.0.0", prefix: 24, dev: "v9" }, // its own bridge's: not a host route
      { dest: "192.168.77.0", prefix: 24, dev: "v9" }, // another interface named v9 now
    ];
    await assertRejects(
      () => nets.create("x", { subnet: "192.168.77.0/24" }),
      CapsuleError,
      "overlaps the host route 192.168.77.0/24 on v9",
    );
    await assertRejects(
      () => nets.create("y", { subnet: "10.72.0.0/16" }),
      CapsuleError,
      'overlaps network "v9"',
    );
  });
});

Deno.test("network mod: reserved subnets are refused at create, naming the range", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    const nets = new Networks(root, fake);
    for (
      const [subnet, range] of [
        ["0.1.0.0/16", "0.0.0.0/8"],
        ["127.0.0.0/24", "127.0.0.0/8"],
        ["127.200.0.0/16", "127.0.0.0/8"],
        ["169.254.0.0/16", "169.254.0.0/16"],
        ["169.254.7.0/24", "169.254.0.0/16"],
        ["224.0.0.0/24", "224.0.0.0/4"],
        ["239.255.0.0/16", "224.0.0.0/4"],
        ["240.0.0.0/24", "240.0.0.0/4"],
        ["255.255.255.0/24", "240.0.0.0/4"],
      ]
    ) {
      await assertRejects(
        () => nets.create("r", { subnet }),
        CapsuleError,
        `Cannot create network "r": subnet ${subnet} is in ${range}`,
      );
    }
    assertEquals(fake.calls, []);
    assertEquals(await nets.list(), []);
    // Their neighbours are fine.
    await nets.create("ok1", { subnet: "1.0.0.0/24" });
    await nets.create("ok2", { subnet: "223.255.255.0/24" });
    await nets.create("ok3", { subnet: "169.253.0.0/16" });
  });
});

Deno.test("network mod: -p on a multicast or reserved address is refused", async () => {
  await withTempDir(async (root) => {
    const fake = new FakeRunner();
    fake.hostAddrs.push("224.0.0.1"); // as a bridge with 224.0.0.1/24 shows in fib_trie
    // A bind to a multicast address works: the kernel does not refuse it.
    fake.localAddress = (ip: string) =>
      ip.startsWith("127.") || ip.startsWith("224.") || fake.hostAddrs.includes(ip);
    const x = networkExtension({ root, runner: fake });
    for (const ip of ["224.0.0.1", "239.1.2.3", "240.0.0.1", "0.1.2.3"]) {
      await assertRejects(
        async () => await x.prepare!(ctxFor(root, "c1", { ports: [`${ip}:8080:80`] })),
        CapsuleError,
        `${ip} is not an address of this host`,
      );
    }
    assertEquals([...Deno.readDirSync(root)].map((e) => e.name), ["c1"]);
  });
});
