// Bridge networks, as root, entirely inside network namespaces the tests make: a "host"
// namespace where capsule runs (its bridges, iptables rules and sysctls never touch the real
// host's) and an "outside" namespace joined to it by a veth pair, which stands for another
// machine (reaching published ports) and for the internet (seeing NATed traffic). Traffic only
// goes to addresses inside these namespaces.
import {
  assert,
  assertEquals,
  assertMatch,
  buildBusyboxRootfs,
  makeBundle,
  removeAll,
  REPO,
  type Result,
  rootNames,
  rootTest,
  waitFor,
} from "../helpers.ts";
import type { Spec } from "../../runtime/spec.ts";

const HOST_OUT = "198.51.100.1"; // the test host's address towards "outside"
const OUTSIDE = "198.51.100.2";
const dec = new TextDecoder();

function capsuleArgv(): string[] {
  const bin = Deno.env.get("CAPSULE");
  if (bin) return bin.split(" ");
  return [Deno.execPath(), "run", "-A", "--quiet", `${REPO}/main.ts`];
}

async function sh(argv: string[], stdin?: string): Promise<Result> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const o = await child.output();
  return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
}

async function must(argv: string[]): Promise<string> {
  const r = await sh(argv);
  if (r.code !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** A namespace "host" with lo up and an "outside" namespace wired to it. */
class Lab {
  readonly ns: string;
  readonly out: string;
  readonly procs: Deno.ChildProcess[] = [];
  /** --store: network definitions (a lab's own, so that tests never share or keep one). */
  readonly store: string;
  constructor(readonly root: string, store?: string) {
    const tag = crypto.randomUUID().slice(0, 6);
    this.ns = `capt-${tag}`;
    this.out = `capo-${tag}`;
    this.store = store ?? Deno.makeTempDirSync({ prefix: "capsule-store-" });
  }

  async up(): Promise<void> {
    await must(["ip", "netns", "add", this.ns]);
    await must(["ip", "netns", "add", this.out]);
    await sh(
      ["ip", "-n", this.ns, "-batch", "-"],
      [
        "link set lo up",
        `link add o0 type veth peer name o1 netns ${this.out}`,
        `addr add ${HOST_OUT}/24 dev o0`,
        "link set o0 up",
      ].join("\n") + "\n",
    );
    await sh(
      ["ip", "-n", this.out, "-batch", "-"],
      [
        "link set lo up",
        `addr add ${OUTSIDE}/24 dev o1`,
        "link set o1 up",
      ].join("\n") + "\n",
    );
  }

  /**
   * capsule in the host namespace (nsenter keeps the mounts, /sys/fs/cgroup included). Output
   * goes through files: a created container keeps create's stdout and stderr open.
   */
  async cap(args: string[], root = this.root): Promise<Result> {
    const argv = [
      "nsenter",
      `--net=/run/netns/${this.ns}`,
      ...capsuleArgv(),
      "--root",
      root,
      "--store",
      this.store,
    ];
    const out = await Deno.makeTempFile(), err = await Deno.makeTempFile();
    const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
    const st = await new Deno.Command("sh", {
      args: ["-c", [...argv, ...args].map(q).join(" ") + ` >${out} 2>${err}`],
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

  spawnCap(args: string[]): Deno.ChildProcess {
    const argv = [
      "nsenter",
      `--net=/run/netns/${this.ns}`,
      ...capsuleArgv(),
      "--root",
      this.root,
      "--store",
      this.store,
      ...args,
    ];
    return new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  }

  /** A command in the host namespace (or `where`). */
  in(argv: string[], where = this.ns): Promise<Result> {
    return sh(["ip", "netns", "exec", where, ...argv]);
  }

  async down(keepStore = false): Promise<void> {
    for (const id of rootNames(this.root)) {
      if (!id.startsWith("_")) await this.cap(["delete", "-f", id]);
    }
    if (!keepStore) await this.cap(["network", "prune"]);
    for (const p of this.procs) {
      try {
        p.kill("SIGKILL");
        await p.status;
      } catch { /* gone */ }
    }
    await sh(["ip", "netns", "del", this.ns]);
    await sh(["ip", "netns", "del", this.out]);
    await removeAll(`${this.root}/_networks`);
    if (!keepStore) await removeAll(this.store);
  }
}

/** Runs `fn` in a fresh lab; with `store`, that --store, kept afterwards if `keepStore`. */
async function lab(
  root: string,
  fn: (l: Lab) => Promise<void>,
  opts: { store?: string; keepStore?: boolean } = {},
): Promise<void> {
  const l = new Lab(root, opts.store);
  try {
    await l.up();
    await fn(l);
  } finally {
    await l.down(opts.keepStore);
  }
}

const netRaw = (s: Spec) => {
  const c = s.process!.capabilities!;
  for (const k of ["bounding", "effective", "permitted"] as const) {
    c[k] = [...(c[k] ?? []), "CAP_NET_RAW"];
  }
};

/** What iptables and the links of the namespace hold of capsule's containers. */
async function leftovers(l: Lab): Promise<string[]> {
  const save = (await l.in(["iptables-save"])).stdout;
  const links = (await l.in(["ip", "-o", "link"])).stdout;
  return [
    ...save.split("\n").filter((x) => x.includes("CAPSULE-C-")),
    ...links.split("\n").filter((x) => /^\d+: cap[0-9a-f]{12}/.test(x)),
  ];
}

rootTest(
  "network: ping/TCP between containers, host, published ports, hairpin, NAT out",
  async (root) => {
    const server = await makeBundle("nc -ll -p 80 -e echo hi", netRaw);
    const client = await makeBundle("sleep 1000", netRaw);
    const www = await Deno.makeTempDir({ prefix: "capsule-www-" });
    try {
      await lab(root, async (l) => {
        let r = await l.cap(["network", "create", "tnet", "--subnet", "10.123.0.0/24"]);
        assertEquals(r.code, 0, r.stderr);
        r = await l.cap(["network", "create", "tnet2", "--subnet", "10.123.0.128/25"]);
        assertEquals(r.code, 1);
        assertMatch(r.stderr, /overlaps network "tnet" \(10\.123\.0\.0\/24\)/);
        r = await l.cap(["network", "create", "bad/name", "--subnet", "10.124.0.0/24"]);
        assertMatch(r.stderr, /Invalid network name "bad\/name"/);

        r = await l.cap(["run", "-d", "-b", server, "--network", "tnet", "-p", "8080:80", "srv"]);
        assertEquals(r.code, 0, r.stderr);
        r = await l.cap(["state", "srv"]);
        assertEquals(JSON.parse(r.stdout).ip, "10.123.0.2");
        r = await l.cap(["run", "-d", "-b", client, "--network", "tnet", "-p", "8080:81", "dup"]);
        assertMatch(r.stderr, /port 8080\/tcp .*container "srv" already publishes it/);
        r = await l.cap(["run", "-d", "-b", client, "--network", "nonet", "x"]);
        assertMatch(r.stderr, /Network "nonet" does not exist/);
        assertEquals(rootNames(root).sort(), ["_networks", "srv"]);

        // The host namespace reaches the container, and the published port on 127.0.0.1.
        await waitFor(
          async () => (await l.in(["busybox", "nc", "10.123.0.2", "80"])).stdout === "hi\n",
          5000,
          "server up",
        );
        r = await l.in(["busybox", "nc", "127.0.0.1", "8080"]);
        assertEquals(r.stdout, "hi\n", `127.0.0.1:8080 ${r.stderr}`);
        r = await l.in(["busybox", "nc", HOST_OUT, "8080"]);
        assertEquals(r.stdout, "hi\n", `host address:8080 ${r.stderr}`);
        // Another machine reaches the published port at the host's address.
        r = await l.in(["busybox", "nc", "-w", "3", HOST_OUT, "8080"], l.out);
        assertEquals(r.stdout, "hi\n", `from outside ${r.stderr}`);

        // Container to container: by link alias, ping and TCP; and through the published port
        // at the host's address (hairpin), including a container reaching its own.
        const probe = await makeBundle(
          "cat /etc/hosts | grep web; ping -c1 -W2 web >/dev/null && echo ping-ok; nc web 80; " +
            `nc ${HOST_OUT} 8080; nc -ll -p 80 -e echo self & sleep 0.3; nc ${HOST_OUT} 8081; ` +
            `wget -qO- http://${OUTSIDE}:9000/cgi-bin/ip`,
          netRaw,
        );
        // The outside world: an HTTP server that answers with the client's address.
        await Deno.mkdir(`${www}/cgi-bin`);
        await Deno.writeTextFile(
          `${www}/cgi-bin/ip`,
          '#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "from $REMOTE_ADDR"\n',
          { mode: 0o755 },
        );
        l.procs.push(
          new Deno.Command("ip", {
            args: ["netns", "exec", l.out, "busybox", "httpd", "-f", "-p", "9000", "-h", www],
            stdout: "null",
            stderr: "null",
          }).spawn(),
        );
        try {
          r = await l.cap([
            "run",
            "-b",
            probe,
            "--network",
            "tnet",
            "--link",
            "srv:web",
            "-p",
            "8081:80",
            "probe",
          ]);
          assertEquals(r.code, 0, r.stderr + r.stdout);
          const lines = r.stdout.trim().split("\n");
          assertEquals(lines[0], "10.123.0.2\tweb srv");
          // httpd in "outside" listens on IPv6 too: the client shows as a v4-mapped address.
          assertEquals(lines.slice(1, 5), ["ping-ok", "hi", "hi", "self"]);
          assertMatch(
            lines[5],
            new RegExp(`^from (\\[::ffff:)?${HOST_OUT.replaceAll(".", "\\.")}\\]?$`),
          );
        } finally {
          await removeAll(probe);
        }

        r = await l.cap(["network", "show", "tnet"]);
        assertEquals(JSON.parse(r.stdout).containers, [{ id: "srv", ip: "10.123.0.2" }]);
        r = await l.cap(["network", "list"]);
        assertMatch(
          r.stdout,
          /^NAME\s+GATEWAY\s+SUBNET\s+DRIVER\s+CONTAINERS\s+STATUS\ntnet\s+10\.123\.0\.1\s+10\.123\.0\.0\/24\s+bridge\s+1\s+up\n$/,
        );
        r = await l.cap(["network", "delete", "tnet"]);
        assertMatch(r.stderr, /Cannot delete network "tnet": containers "srv" are attached/);
        r = await l.cap(["delete", "-f", "srv"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(await leftovers(l), []);
        r = await l.cap(["network", "delete", "tnet"]);
        assertEquals(r.code, 0, r.stderr);
        const save = (await l.in(["iptables-save"])).stdout;
        assert(!save.includes("CAPSULE"), save);
        assert(!(await l.in(["ip", "link"])).stdout.includes("tnet"));
      });
    } finally {
      await removeAll(server, client, www);
    }
  },
);

rootTest(
  "network: parallel creates get distinct addresses; delete leaves nothing",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    const N = Number(Deno.env.get("CAPSULE_NET_PARALLEL") ?? 50);
    try {
      await lab(root, async (l) => {
        const t0 = performance.now();
        const rs = await Promise.all(
          Array.from(
            { length: N },
            (_, i) => l.cap(["create", "-b", b, "-p", `${10000 + i}:80`, `p${i}`]),
          ),
        );
        const ms = Math.round(performance.now() - t0);
        for (const r of rs) {
          assertEquals(r.code, 0, r.stderr);
        }
        const states = await Promise.all(
          Array.from({ length: N }, (_, i) => l.cap(["state", "--detail", `p${i}`])),
        );
        const ips = states.map((s) => JSON.parse(s.stdout).ip);
        assertEquals(new Set(ips).size, N, ips.join(" "));
        const t = states.map((s) => JSON.parse(s.stdout).detail.ext.network.timing);
        const avg = (k: "prepare" | "created") => Math.round(t.reduce((a, x) => a + x[k], 0) / N);
        console.log(
          `  ${N} parallel creates on the default network: ${ms} ms; network part per create ` +
            `(avg) prepare ${avg("prepare")} ms, created ${avg("created")} ms`,
        );
        assertEquals(
          (await l.in(["iptables-save", "-t", "nat"])).stdout.split("\n").filter((x) =>
            x.startsWith("-A CAPSULE-PORTS")
          ).length,
          N,
        );
        const ds = await Promise.all(
          Array.from({ length: N }, (_, i) => l.cap(["delete", "-f", `p${i}`])),
        );
        for (const r of ds) assertEquals(r.code, 0, r.stderr);
        assertEquals(await leftovers(l), []);
        const r = await l.cap(["network", "show", "capsule_bridge0"]);
        assertEquals(JSON.parse(r.stdout).containers, []);
        // The deleted containers' ports are free again.
        const again = await l.cap(["create", "-b", b, "-p", "10000:80", "again"]);
        assertEquals(again.code, 0, again.stderr);
        assertEquals((await l.cap(["delete", "-f", "again"])).code, 0);
        // The bridge drops what a container sends to the host's loopback addresses.
        const raw = (await l.in(["iptables-save", "-t", "raw"])).stdout;
        assertMatch(raw, /-A CAPSULE-N-[0-9a-f]{8} -d 127\.0\.0\.0\/8 -i \S+ -j DROP/);
      });
    } finally {
      await removeAll(b);
    }
  },
);

rootTest("network: kill -9 of capsule mid-create, then delete -f leaves nothing", async (root) => {
  // A createRuntime hook that sleeps holds create after the network part is done.
  const b = await makeBundle("sleep 1000", (s) => {
    s.hooks = { createRuntime: [{ path: "/bin/sleep", args: ["sleep", "3"] }] };
  });
  try {
    await lab(root, async (l) => {
      const child = l.spawnCap(["create", "-b", b, "-p", "8080:80", "k1"]);
      await waitFor(
        async () => {
          const left = await leftovers(l);
          return left.some((x) => x.includes("DNAT")) && left.some((x) => x.includes(": cap"));
        },
        10_000,
        "veth and DNAT rule",
      );
      child.kill("SIGKILL");
      await child.status;
      const r = await l.cap(["delete", "-f", "k1"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await leftovers(l), []);
      assertEquals(
        JSON.parse((await l.cap(["network", "show", "capsule_bridge0"])).stdout).containers,
        [],
      );
    });
  } finally {
    await removeAll(b);
  }
});

rootTest(
  "network: a port a host process listens on is refused, naming the process",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    try {
      await lab(root, async (l) => {
        const host = new Deno.Command("ip", {
          args: ["netns", "exec", l.ns, "busybox", "nc", "-ll", "-p", "8090", "-e", "echo", "host"],
          stdout: "null",
          stderr: "null",
        }).spawn();
        l.procs.push(host);
        await waitFor(
          async () => (await l.in(["busybox", "nc", "127.0.0.1", "8090"])).stdout === "host\n",
          5000,
          "host listener",
        );
        const r = await l.cap(["create", "-b", b, "-p", "8090:80", "c1"]);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(
          r.stderr,
          new RegExp(
            `Cannot publish port 8090/tcp for container "c1": a host process listens on ` +
              `0\\.0\\.0\\.0:8090 \\(busybox \\(pid ${host.pid}\\)\\)`,
          ),
        );
        assertEquals(rootNames(root), ["_networks"]);
        // The host service still answers: nothing hijacked it.
        assertEquals((await l.in(["busybox", "nc", "127.0.0.1", "8090"])).stdout, "host\n");
      });
    } finally {
      await removeAll(b);
    }
  },
);

rootTest("network: -p CTR takes a free host port, shown by state and list", async (root) => {
  const b = await makeBundle("nc -ll -p 80 -e echo auto");
  try {
    await lab(root, async (l) => {
      const r = await l.cap(["run", "-d", "-b", b, "-p", "80", "auto"]);
      assertEquals(r.code, 0, r.stderr);
      const st = JSON.parse((await l.cap(["state", "auto"])).stdout);
      assertEquals(st.ports.length, 1);
      const m = /^0\.0\.0\.0:(\d+)->80\/tcp$/.exec(st.ports[0]);
      assert(m, st.ports[0]);
      const [lo, hi] = (await l.in(["cat", "/proc/sys/net/ipv4/ip_local_port_range"])).stdout
        .trim().split(/\s+/).map(Number);
      assert(Number(m[1]) >= lo && Number(m[1]) <= hi, `${m[1]} in ${lo}-${hi}`);
      const list = JSON.parse((await l.cap(["list", "--format", "json"])).stdout);
      assertEquals(list[0].ports, st.ports);
      await waitFor(
        async () => (await l.in(["busybox", "nc", "127.0.0.1", m[1]])).stdout === "auto\n",
        5000,
        "published on the chosen port",
      );
      assertEquals((await l.cap(["delete", "-f", "auto"])).code, 0);
    });
  } finally {
    await removeAll(b);
  }
});

rootTest(
  "network: UDP flows go to the new publisher, not to the old one's address",
  async (root) => {
    // busybox has no UDP server: what reaches a container is counted by its kernel (Udp
    // InDatagrams + NoPorts of /proc/net/snmp in its namespace).
    const b = await makeBundle("sleep 1000");
    // A client in "outside" sending from one source port, so that its flow is one conntrack entry.
    const send = (l: Lab) =>
      l.in([
        "python3",
        "-c",
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); " +
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('', 40000)); " +
        `s.sendto(b'x', ('${HOST_OUT}', 5353))`,
      ], l.out);
    try {
      await lab(root, async (l) => {
        const received = async (id: string) => {
          const snmp = (await l.cap(["exec", id, "cat", "/proc/net/snmp"])).stdout.split("\n")
            .filter((x) => x.startsWith("Udp: "));
          const [head, vals] = snmp.map((x) => x.split(/\s+/));
          return Number(vals[head.indexOf("InDatagrams")]) + Number(vals[head.indexOf("NoPorts")]);
        };
        await l.cap(["network", "create", "unet", "--subnet", "10.124.0.0/24"]);
        let r = await l.cap(["run", "-d", "-b", b, "--network", "unet", "-p", "5353:53/udp", "u1"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals((await send(l)).code, 0);
        await waitFor(async () => (await received("u1")) >= 1, 3000, "first publisher receives");
        assertEquals((await l.cap(["delete", "-f", "u1"])).code, 0);
        // u1's address goes to a container that publishes nothing; the port to another one.
        r = await l.cap(["run", "-d", "-b", b, "--network", "unet", "same-ip"]);
        assertEquals(JSON.parse((await l.cap(["state", "same-ip"])).stdout).ip, "10.124.0.2");
        r = await l.cap(["run", "-d", "-b", b, "--network", "unet", "-p", "5353:53/udp", "u2"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals((await send(l)).code, 0);
        await waitFor(async () => (await received("u2")) >= 1, 3000, "new publisher receives");
        assertEquals(await received("same-ip"), 0);
      });
    } finally {
      await removeAll(b);
    }
  },
);

rootTest("network: a freed address comes back with the same MAC", async (root) => {
  const b = await makeBundle("sleep 1000");
  try {
    await lab(root, async (l) => {
      const mac = async (id: string) =>
        (await l.cap(["exec", id, "cat", "/sys/class/net/eth0/address"])).stdout.trim();
      let r = await l.cap(["run", "-d", "-b", b, "--network", "default", "m1"]);
      assertEquals(r.code, 0, r.stderr);
      const ip = JSON.parse((await l.cap(["state", "m1"])).stdout).ip;
      const first = await mac("m1");
      const hex = ip.split(".").map((x: string) => Number(x).toString(16).padStart(2, "0"));
      assertEquals(first, `02:42:${hex.join(":")}`);
      assertEquals((await l.cap(["delete", "-f", "m1"])).code, 0);
      r = await l.cap(["run", "-d", "-b", b, "--network", "default", "m2"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(JSON.parse((await l.cap(["state", "m2"])).stdout).ip, ip);
      assertEquals(await mac("m2"), first);
    });
  } finally {
    await removeAll(b);
  }
});

rootTest("network: containers on a user network resolve each other's names", async (root) => {
  const srv = (text: string) => makeBundle(`nc -ll -p 80 -e echo ${text}`);
  const a = await srv("from-a"), c = await srv("from-c");
  const b = await makeBundle("sleep 1000");
  try {
    await lab(root, async (l) => {
      await l.cap(["network", "create", "names", "--subnet", "10.125.0.0/24"]);
      for (const [id, bundle] of [["web-a", a], ["b", b]]) {
        const r = await l.cap(["run", "-d", "-b", bundle, "--network", "names", id]);
        assertEquals(r.code, 0, r.stderr);
      }
      await waitFor(
        async () => (await l.cap(["exec", "b", "nc", "web-a", "80"])).stdout === "from-a\n",
        5000,
        "b reaches web-a by name",
      );
      // A container created later is known to those already running.
      let r = await l.cap(["run", "-d", "-b", c, "--network", "names", "late"]);
      assertEquals(r.code, 0, r.stderr);
      await waitFor(
        async () => (await l.cap(["exec", "b", "nc", "late", "80"])).stdout === "from-c\n",
        5000,
        "b reaches late by name",
      );
      // docker's NAME.NETWORK too, for the others and for itself.
      await waitFor(
        async () => (await l.cap(["exec", "b", "nc", "late.names", "80"])).stdout === "from-c\n",
        5000,
        "b reaches late.names",
      );
      r = await l.cap(["exec", "web-a", "cat", "/etc/hosts"]);
      assertMatch(r.stdout, /10\.125\.0\.3\tb b\.names\n/);
      assertMatch(r.stdout, /10\.125\.0\.2\t(capsule )?web-a web-a\.names\n/);
      assertEquals((await l.cap(["delete", "-f", "b"])).code, 0);
      r = await l.cap(["exec", "web-a", "cat", "/etc/hosts"]);
      assert(!/\tb[ \n]/.test(r.stdout), r.stdout);
      assertMatch(r.stdout, /10\.125\.0\.4\tlate late\.names\n/);
    });
  } finally {
    await removeAll(a, b, c);
  }
});

rootTest(
  "network: networks and kept image containers outlive a reboot (empty --root, bridge gone)",
  async (root) => {
    const b = await makeBundle("nc -ll -p 80 -e echo back");
    const store = await Deno.makeTempDir({ prefix: "capsule-store-" });
    const img = await Deno.makeTempDir({ prefix: "capsule-img-" });
    try {
      Deno.mkdirSync(`${img}/rootfs`);
      await buildBusyboxRootfs(`${img}/rootfs`);
      const tar = await sh(["tar", "-C", `${img}/rootfs`, "-cf", `${img}/bb.tar`, "."]);
      assertEquals(tar.code, 0, tar.stderr);
      await lab(root, async (l) => {
        let r = await l.cap(["network", "create", "keep", "--subnet", "10.126.0.0/24"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals((await l.cap(["run", "-d", "-b", b, "--network", "keep", "k1"])).code, 0);
        assertEquals((await l.cap(["image", "create", "bb", `${img}/bb.tar`])).code, 0);
        r = await l.cap([
          "image",
          "run",
          "-d",
          "--name",
          "web",
          "--network",
          "keep",
          "-p",
          "8086:80",
          "bb",
          "nc",
          "-ll",
          "-p",
          "80",
          "-e",
          "echo",
          "img",
        ]);
        assertEquals(r.code, 0, r.stderr);
        await waitFor(
          async () => (await l.in(["busybox", "nc", "127.0.0.1", "8086"])).stdout === "img\n",
          5000,
          "the image container's published port",
        );
        r = await l.cap(["list"]);
        assertMatch(r.stdout, /\sPORTS\s/);
        assertMatch(r.stdout, /\nweb\s.*\s0\.0\.0\.0:8086->80\/tcp(\s|\n)/);
      }, { store, keepStore: true }); // the namespace (bridge, rules) and --root's state go
      // "After the reboot": a new namespace, the same (now empty) --root, the same store.
      assertEquals(rootNames(root), []);
      await lab(root, async (l) => {
        let r = await l.cap(["network", "list"]);
        assertMatch(r.stdout, /\nkeep\s+10\.126\.0\.1\s+10\.126\.0\.0\/24\s+bridge\s+0\s+down\n/);
        // The kept image container is listed, stopped, with its image (docker ps -a).
        r = await l.cap(["list"]);
        assertMatch(r.stdout, /\nweb\s+0\s+stopped\s.*\sbb(:latest)?\n/);
        assertEquals(JSON.parse((await l.cap(["state", "web"])).stdout).status, "stopped");
        r = await l.cap(["run", "-d", "-b", b, "--network", "keep", "-p", "8085:80", "k2"]);
        assertEquals(r.code, 0, r.stderr);
        await waitFor(
          async () => (await l.in(["busybox", "nc", "127.0.0.1", "8085"])).stdout === "back\n",
          5000,
          "container on the network made again",
        );
        // image start brings it back on its network, with its published port.
        r = await l.cap(["image", "start", "web"]);
        assertEquals([r.code, r.stdout], [0, "web\n"], r.stderr);
        await waitFor(
          async () => (await l.in(["busybox", "nc", "127.0.0.1", "8086"])).stdout === "img\n",
          5000,
          "the image container's port after image start",
        );
        assertMatch((await l.cap(["network", "list"])).stdout, /\nkeep\s.*\s2\s+up\n/);
        assertEquals((await l.cap(["delete", "-f", "k2"])).code, 0);
        assertEquals((await l.cap(["image", "destroyc", "-f", "web"])).code, 0);
        assertEquals((await l.cap(["network", "delete", "keep"])).code, 0);
      }, { store });
    } finally {
      await removeAll(b, store, img);
    }
  },
);

rootTest(
  "network: SIGKILL of network delete at 20 points, then prune, leaves nothing",
  async (root) => {
    await lab(root, async (l) => {
      const chainsAndBridges = async () => {
        const save = (await l.in(["iptables-save"])).stdout;
        const links = (await l.in(["ip", "-o", "link"])).stdout;
        return [
          ...save.split("\n").filter((x) => x.includes("CAPSULE")),
          ...links.split("\n").filter((x) => /^\d+: kill\d*:/.test(x)),
        ];
      };
      // How long an uninterrupted delete takes here.
      await l.cap(["network", "create", "kill", "--subnet", "10.127.0.0/24"]);
      const t0 = performance.now();
      await l.cap(["network", "delete", "kill"]);
      const full = performance.now() - t0;
      const listed = async () =>
        (await l.cap(["network", "list", "-q"])).stdout.split("\n").filter(Boolean);
      let interrupted = 0;
      for (let i = 1; i <= 20; i++) {
        const r = await l.cap(["network", "create", "kill", "--subnet", "10.127.0.0/24"]);
        if (r.code !== 0) {
          // The previous kill left it defined (and perhaps half-deleted): finish it first.
          assertMatch(r.stderr, /already exists/);
          assertEquals((await l.cap(["network", "delete", "kill"])).code, 0);
          assertEquals(
            (await l.cap(["network", "create", "kill", "--subnet", "10.127.0.0/24"])).code,
            0,
          );
        }
        const child = l.spawnCap(["network", "delete", "kill"]);
        await new Promise((res) => setTimeout(res, (full * i) / 20));
        try {
          child.kill("SIGKILL");
        } catch { /* finished */ }
        const st = await child.status;
        if (st.signal) interrupted++;
        await new Promise((res) => setTimeout(res, 100)); // its iptables-restore, if any, ends
        // Whatever is left of the network is listed (so that delete/prune can finish it).
        if (!(await listed()).includes("kill")) assertEquals(await chainsAndBridges(), []);
      }
      console.log(
        `  ${interrupted}/20 deletes killed midway (a full delete: ${Math.round(full)} ms)`,
      );
      assert(interrupted >= 10, `only ${interrupted} kills landed mid-delete`);
      const r = await l.cap(["network", "prune"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await chainsAndBridges(), []);
      assertEquals(await listed(), []);
    });
  },
);

rootTest("network: capsule under ip netns exec says why cgroups are missing", async (root) => {
  const b = await makeBundle("true");
  const s = await makeBundle("sleep 1000");
  try {
    await lab(root, async (l) => {
      const r = await sh([
        "ip",
        "netns",
        "exec",
        l.ns,
        ...capsuleArgv(),
        "--root",
        root,
        "--store",
        l.store,
        "run",
        "-b",
        b,
        "nx",
      ]);
      assertEquals(r.code, 1, r.stderr);
      assertMatch(r.stderr, /`ip netns exec` does\); enter only the network namespace instead/);
      assertEquals(rootNames(root), []);
      // With containers (two: never a line for each): every command that reads cgroups says it
      // once, and fails.
      for (const id of ["n1", "n2"]) {
        assertEquals((await l.cap(["run", "-d", "-b", s, id])).code, 0);
      }
      for (
        const args of [
          ["list"],
          ["list", "-q"],
          ["state", "n1"],
          ["ps", "n1"],
          ["stop", "n1"],
          [
            "kill",
            "n1",
          ],
          ["events", "--stats", "n1"],
          ["pause", "n1"],
          ["delete", "-f", "n1"],
        ]
      ) {
        const x = await sh([
          "ip",
          "netns",
          "exec",
          l.ns,
          ...capsuleArgv(),
          "--root",
          root,
          "--store",
          l.store,
          ...args,
        ]);
        assertEquals(x.code, 1, `${args.join(" ")}: ${x.stdout}${x.stderr}`);
        const lines = x.stderr.trim().split("\n");
        assertEquals(lines.length, 1, `${args.join(" ")}: ${x.stderr}`);
        assertMatch(lines[0], /^capsule: No cgroup hierarchy is mounted .*nsenter --net=/);
      }
      assertEquals(JSON.parse((await l.cap(["state", "n1"])).stdout).status, "running");
    });
  } finally {
    await removeAll(b, s);
  }
});

rootTest(
  "network: releaseAllFor(id) frees a container's network side without its state",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    try {
      await lab(root, async (l) => {
        await l.cap(["network", "create", "rel", "--subnet", "10.128.0.0/24"]);
        let r = await l.cap(["run", "-d", "-b", b, "--network", "rel", "-p", "8070:80", "gone"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals((await l.cap(["run", "-d", "-b", b, "--network", "rel", "stay"])).code, 0);
        assertEquals((await l.cap(["kill", "gone", "KILL"])).code, 0);
        const state = Deno.readTextFileSync(`${root}/gone/state.json`);
        Deno.writeTextFileSync(`${root}/gone/state.json`, "{damaged");
        const code = `import { releaseAllFor } from "${REPO}/network/mod.ts";\n` +
          `await releaseAllFor({ root: ${JSON.stringify(root)}, store: ${
            JSON.stringify(l.store)
          } }, "gone");`;
        r = await sh([
          "nsenter",
          `--net=/run/netns/${l.ns}`,
          Deno.execPath(),
          "eval",
          "--quiet",
          code,
        ]);
        assertEquals(r.code, 0, r.stderr);
        const stay = JSON.parse((await l.cap(["state", "-d", "stay"])).stdout).detail.ext.network;
        assertEquals((await leftovers(l)).filter((x) => !x.includes(`${stay.veth}@`)), []);
        const show = JSON.parse((await l.cap(["network", "show", "rel"])).stdout);
        assertEquals(show.containers.map((c: { id: string }) => c.id), ["stay"]);
        r = await l.cap(["exec", "stay", "cat", "/etc/hosts"]);
        assert(!r.stdout.includes("gone"), r.stdout);
        // Its port is free again.
        r = await l.cap(["create", "-b", b, "--network", "rel", "-p", "8070:80", "next"]);
        assertEquals(r.code, 0, r.stderr);
        // Its state back, so that delete removes its cgroups (not known without it).
        Deno.writeTextFileSync(`${root}/gone/state.json`, state);
        assertEquals((await l.cap(["delete", "-f", "gone"])).code, 0);
      });
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "network: -p HOSTIP:HOST:CTR with an address the host lacks is refused at create",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    try {
      await lab(root, async (l) => {
        for (const spec of ["203.0.113.9:8080:80", "203.0.113.9::80", "203.0.113.9:53:53/udp"]) {
          const r = await l.cap(["run", "-d", "-b", b, "-p", spec, "far"]);
          assertEquals(r.code, 1, r.stderr);
          assertMatch(
            r.stderr,
            new RegExp(
              `203\\.0\\.113\\.9 is not an address of this host \\(cannot assign requested ` +
                `address\\); it has 127\\.0\\.0\\.1, ${HOST_OUT.replaceAll(".", "\\.")}`,
            ),
          );
          assertEquals(
            rootNames(root).filter((n) => n[0] !== "_"),
            [],
          );
          assertEquals(await leftovers(l), []);
        }
        // The host's own addresses are taken (loopback's whole /8 is the host's).
        for (const [id, ip] of [["near", HOST_OUT], ["lo", "127.0.0.2"]]) {
          const r = await l.cap(["run", "-d", "-b", b, "-p", `${ip}:8080:80`, id]);
          assertEquals(r.code, 0, r.stderr);
          assertEquals(JSON.parse((await l.cap(["state", id])).stdout).ports, [
            `${ip}:8080->80/tcp`,
          ]);
          assertEquals((await l.cap(["delete", "-f", id])).code, 0);
        }
      });
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "network: a bridge up under one --root is refused to another; taken over once unused",
  async (rootA) => {
    const srv = await makeBundle("nc -ll -p 80 -e echo hi");
    const rootB = await Deno.makeTempDir({ prefix: "capsule-rootb-" });
    const img = await Deno.makeTempDir({ prefix: "capsule-img-" });
    try {
      Deno.mkdirSync(`${img}/rootfs`);
      await buildBusyboxRootfs(`${img}/rootfs`);
      const tar = await sh(["tar", "-C", `${img}/rootfs`, "-cf", `${img}/bb.tar`, "."]);
      assertEquals(tar.code, 0, tar.stderr);
      await lab(rootA, async (l) => {
        const B = (args: string[]) => l.cap(args, rootB);
        try {
          let r = await l.cap(["network", "create", "shared", "--subnet", "10.129.0.0/24"]);
          assertEquals(r.code, 0, r.stderr);
          assertEquals((await l.cap(["image", "create", "bb", `${img}/bb.tar`])).code, 0);
          r = await l.cap(["run", "-d", "-b", srv, "--network", "shared", "a1"]);
          assertEquals(r.code, 0, r.stderr);
          const hi = async () => (await l.in(["busybox", "nc", "10.129.0.2", "80"])).stdout;
          await waitFor(async () => (await hi()) === "hi\n", 5000, "a1 serves");
          const owner = (await l.in(["ip", "-j", "link", "show", "dev", "shared"])).stdout;
          assertEquals(JSON.parse(owner)[0].ifalias, `capsule-root:${rootA}`);
          const refused = new RegExp(
            `Network "shared" is up under --root ${rootA}: containers "a1" there use it; use ` +
              `"capsule --root ${rootA} \\.\\.\\." for this network, or stop and delete`,
          );

          // Root B: image run and run on the network are refused, naming root A; nothing kept.
          r = await B([
            "image",
            "run",
            "-d",
            "--name",
            "b1",
            "--network",
            "shared",
            "bb",
            "sleep",
            "60",
          ]);
          assertEquals(r.code, 1, r.stdout);
          assertMatch(r.stderr, refused);
          r = await B(["run", "-d", "-b", srv, "--network", "shared", "b2"]);
          assertEquals(r.code, 1, r.stdout);
          assertMatch(r.stderr, refused);
          assertEquals((await B(["list", "-q"])).stdout, "");
          assertEquals((await l.cap(["list", "-q"])).stdout, "a1\n");
          assertEquals(
            rootNames(rootB).filter((n) => n[0] !== "_"),
            [],
          );
          assertEquals([...Deno.readDirSync(`${rootB}/_networks/shared/ips`)], []);
          const veths = (await leftovers(l)).filter((x) => !x.includes("CAPSULE-C-"));
          assertEquals(veths.length, 1, veths.join("\n")); // a1's only
          assertMatch(veths[0], / master shared /);
          // Delete and prune under B: refused / skipped; the bridge and a1 keep working.
          r = await B(["network", "delete", "shared"]);
          assertEquals(r.code, 1);
          assertMatch(r.stderr, refused);
          r = await B(["network", "prune"]);
          assertEquals([r.code, r.stdout], [0, ""], r.stderr);
          assertMatch((await l.cap(["network", "list"])).stdout, /\nshared\s.*\s1\s+up\n/);
          assertEquals(await hi(), "hi\n");
          assertEquals(JSON.parse((await l.cap(["state", "a1"])).stdout).ip, "10.129.0.2");
          // Under A nothing changes: another container joins.
          r = await l.cap([
            "image",
            "run",
            "-d",
            "--name",
            "a2",
            "--network",
            "shared",
            "bb",
            "sleep",
            "60",
          ]);
          assertEquals(r.code, 0, r.stderr);
          assertEquals(JSON.parse((await l.cap(["state", "a2"])).stdout).ip, "10.129.0.3");

          // A's containers gone: B takes the bridge over; then A is refused, naming B.
          assertEquals((await l.cap(["delete", "-f", "a1"])).code, 0);
          assertEquals((await l.cap(["image", "destroyc", "-f", "a2"])).code, 0);
          r = await B(["run", "-d", "-b", srv, "--network", "shared", "b3"]);
          assertEquals(r.code, 0, r.stderr);
          assertEquals(JSON.parse((await B(["state", "b3"])).stdout).ip, "10.129.0.2");
          await waitFor(async () => (await hi()) === "hi\n", 5000, "b3 serves");
          r = await l.cap(["run", "-d", "-b", srv, "--network", "shared", "a3"]);
          assertEquals(r.code, 1);
          assertMatch(r.stderr, new RegExp(`Network "shared" is up under --root ${rootB}: `));
          assertEquals((await B(["delete", "-f", "b3"])).code, 0);
          // Unused by either: A deletes it.
          r = await l.cap(["network", "delete", "shared"]);
          assertEquals(r.code, 0, r.stderr);
          assertEquals(await leftovers(l), []);
        } finally {
          for (const id of rootNames(rootB)) {
            if (!id.startsWith("_")) await B(["delete", "-f", id]);
          }
          for (const id of ["b1", "a2"]) await l.cap(["image", "destroyc", "-f", id]);
        }
      });
    } finally {
      await removeAll(srv, rootB, img);
    }
  },
);

rootTest(
  "network: a host interface with a network's bridge name is never adopted, changed or deleted",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    try {
      await lab(root, async (l) => {
        const ip = async (...a: string[]) => {
          const r = await l.in(["ip", ...a]);
          assertEquals(r.code, 0, `ip ${a.join(" ")}: ${r.stderr}`);
          return r.stdout;
        };
        /** What capsule might change of an interface (no timers, no counters). */
        const link = async (dev: string) => {
          const l = JSON.parse(await ip("-j", "-d", "addr", "show", "dev", dev))[0];
          return {
            kind: l.linkinfo?.info_kind,
            alias: l.ifalias,
            flags: l.flags,
            mtu: l.mtu,
            mac: l.address,
            master: l.master,
            addrs: l.addr_info.map((a: { local: string; prefixlen: number }) =>
              `${a.local}/${a.prefixlen}`
            ),
          };
        };
        /** What iptables holds that names `dev`. */
        const rulesOn = async (dev: string) =>
          (await l.in(["iptables-save"])).stdout.split("\n").filter((x) =>
            new RegExp(`-[io] ${dev}( |$)`).test(x)
          );
        const status = async (name: string) =>
          new RegExp(`\\n${name}\\s.*\\s(\\S+)\\n`).exec((await l.cap(["network", "list"])).stdout)
            ?.[1];

        // v9: the bridge gone (a reboot), a veth of that name in its place, with an address.
        let r = await l.cap(["network", "create", "v9", "--subnet", "10.72.0.0/24"]);
        assertEquals(r.code, 0, r.stderr);
        await ip("link", "del", "v9");
        await ip("link", "add", "v9", "type", "veth", "peer", "name", "v9p");
        await ip("addr", "add", "192.168.77.1/24", "dev", "v9");
        const before = await link("v9");
        assertEquals(await status("v9"), "conflict");
        r = await l.cap(["run", "-d", "--network", "v9", "-b", b, "x1"]);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, /interface "v9" .*not a bridge capsule made/);
        assertMatch(r.stderr, /ip link del v9/);
        assertMatch(r.stderr, /capsule network rm v9/);
        assertEquals(rootNames(root).filter((n) => n[0] !== "_"), []);
        assertEquals(await leftovers(l), []);
        assertEquals(await link("v9"), before, "v9 unchanged: no alias, same addresses, down");
        assertEquals(await rulesOn("v9"), []);
        // rm: capsule's record and rules go, the host's interface stays as it was.
        r = await l.cap(["network", "rm", "v9"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(await link("v9"), before);
        assertEquals(await status("v9"), undefined);

        // b7: a bridge someone else made (no capsule alias), up, with an address.
        r = await l.cap(["network", "create", "b7", "--subnet", "10.73.0.0/24"]);
        assertEquals(r.code, 0, r.stderr);
        await ip("link", "del", "b7");
        await ip("link", "add", "b7", "type", "bridge");
        await ip("addr", "add", "192.168.78.1/24", "dev", "b7");
        await ip("link", "set", "b7", "up");
        const bridge = await link("b7");
        assertEquals(await status("b7"), "conflict");
        r = await l.cap(["run", "-d", "--network", "b7", "-b", b, "x2"]);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, /interface "b7" .*not a bridge capsule made/);
        assertEquals(await ip("link", "show", "master", "b7"), "", "nothing was put on it");
        assertEquals(await link("b7"), bridge);
        assertEquals(await rulesOn("b7"), []);
        assertEquals(await leftovers(l), []);
        // Once the host's bridge is gone, capsule makes its own again and the run works.
        await ip("link", "del", "b7");
        r = await l.cap(["run", "-d", "--network", "b7", "-b", b, "x3"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(await status("b7"), "up");
        assertEquals((await link("b7")).alias, `capsule-root:${root}`);
        assertEquals((await l.cap(["delete", "-f", "x3"])).code, 0);
        r = await l.cap(["network", "rm", "b7"]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals((await l.in(["ip", "link", "show", "dev", "b7"])).code, 1, "its own: deleted");
        await ip("link", "del", "v9");
      });
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "network: create refuses reserved subnets and a repeated --subnet or --gateway",
  async (root) => {
    await lab(root, async (l) => {
      for (
        const [subnet, range] of [
          ["224.0.0.0/24", "224.0.0.0/4"],
          ["127.0.0.0/24", "127.0.0.0/8"],
          ["169.254.0.0/16", "169.254.0.0/16"],
          ["240.0.0.0/24", "240.0.0.0/4"],
          ["0.0.0.0/16", "0.0.0.0/8"],
        ]
      ) {
        const r = await l.cap(["network", "create", "n17", "--subnet", subnet]);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, new RegExp(`subnet ${subnet} is in ${range}`));
      }
      let r = await l.cap([
        "network",
        "create",
        "h7",
        "--subnet",
        "10.64.0.0/24",
        "--subnet",
        "10.65.0.0/24",
      ]);
      assertEquals(r.code, 2, r.stderr);
      assertMatch(r.stderr, /--subnet is given twice/);
      r = await l.cap([
        "network",
        "create",
        "h7",
        "--subnet",
        "10.64.0.0/24",
        "--gateway",
        "10.64.0.1",
        "--gateway",
        "10.64.0.2",
      ]);
      assertEquals(r.code, 2, r.stderr);
      assertMatch(r.stderr, /--gateway is given twice/);
      assertEquals((await l.cap(["network", "list", "-q"])).stdout, "");
      assertEquals((await l.in(["ip", "-o", "link", "show", "type", "bridge"])).stdout, "");
    });
  },
);
