// End to end, as a user runs the original project's demo: a real Debian rootfs with redis
// (debootstrap, cached by tests/e2e/rootfs.sh under tests/e2e/.cache/) imported as an image,
// a redis server with a named volume and a published port on a bridge network, clients in other
// containers reaching it through --link, a client outside the containers reaching the published
// port on 127.0.0.1, and the data surviving the server's container. Root only. Everything runs
// inside a network namespace the test makes ("the host" of capsule): its bridge, iptables rules
// and sysctls never touch the real host's, and traffic only goes to addresses inside it.
import {
  assert,
  assertEquals,
  assertMatch,
  e2eTeardown,
  REPO,
  type Result,
  rootNames,
} from "../helpers.ts";

const HERE = new URL(".", import.meta.url).pathname;
const BUILD = [`${HERE}rootfs.sh`, "redis", "redis-server,redis-tools"];
const SUBNET = "10.231.7.0/24";
const PORT = 16379;
const dec = new TextDecoder();

function has(cmd: string): boolean {
  return ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"].some(
    (d) => {
      try {
        return Deno.statSync(`${d}/${cmd}`).isFile;
      } catch {
        return false;
      }
    },
  );
}

/** Why the test cannot run here (or undefined): root, ip, nsenter, a tarball or debootstrap. */
function unavailable(): string | undefined {
  if (Deno.uid() !== 0) return "not root";
  if (!has("ip") || !has("nsenter")) return "ip (iproute2) or nsenter (util-linux) missing";
  const out = new Deno.Command("bash", { args: [BUILD[0], "--print-path", ...BUILD.slice(1)] })
    .outputSync();
  const tar = dec.decode(out.stdout).trim();
  let cached = false;
  try {
    cached = Deno.statSync(tar).size > 0;
  } catch { /* not built yet */ }
  if (!cached && !has("debootstrap")) {
    return "no cached rootfs tarball and debootstrap is not installed";
  }
  return undefined;
}

const why = unavailable();
if (why && Deno.uid() === 0) console.error(`tests/e2e/redis_test.ts ignored: ${why}`);

function capsuleArgv(): string[] {
  const bin = Deno.env.get("CAPSULE");
  if (bin) return bin.split(" ");
  return [Deno.execPath(), "run", "-A", "--quiet", `${REPO}/main.ts`];
}

/**
 * Runs argv with output through files (a detached container keeps its creator's stdout and
 * stderr open, so pipes would never close).
 */
async function run(argv: string[]): Promise<Result> {
  const out = await Deno.makeTempFile(), err = await Deno.makeTempFile();
  const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
  try {
    const st = await new Deno.Command("sh", {
      args: ["-c", argv.map(q).join(" ") + ` >${out} 2>${err}`],
      stdin: "null",
    }).output();
    return {
      code: st.code,
      stdout: Deno.readTextFileSync(out),
      stderr: Deno.readTextFileSync(err),
    };
  } finally {
    await Deno.remove(out).catch(() => {});
    await Deno.remove(err).catch(() => {});
  }
}

/** A RESP client for the test namespace's loopback (Deno, run under nsenter). */
const RESP_CLIENT = `
const [host, port, ...cmd] = Deno.args;
const enc = new TextEncoder();
const conn = await Deno.connect({ hostname: host, port: Number(port) });
const req = "*" + cmd.length + "\\r\\n" +
  cmd.map((a) => "$" + enc.encode(a).length + "\\r\\n" + a + "\\r\\n").join("");
await conn.write(enc.encode(req));
const buf = new Uint8Array(4096);
let got = "";
while (!got.endsWith("\\r\\n")) {
  const n = await conn.read(buf);
  if (n === null) break;
  got += new TextDecoder().decode(buf.subarray(0, n));
}
conn.close();
console.log(JSON.stringify(got));
`;

class Lab {
  readonly ns = `cape-${crypto.randomUUID().slice(0, 6)}`;
  nsMade = false;
  constructor(readonly root: string, readonly store: string) {}

  async up(): Promise<void> {
    const r = await run(["ip", "netns", "add", this.ns]);
    assertEquals(r.code, 0, `ip netns add: ${r.stderr}`);
    this.nsMade = true;
    const lo = await run(["ip", "-n", this.ns, "link", "set", "lo", "up"]);
    assertEquals(lo.code, 0, lo.stderr);
  }

  /** `capsule --root R --store S ARGS` in the test's network namespace. */
  cap(...args: string[]): Promise<Result> {
    return run([
      "nsenter",
      `--net=/run/netns/${this.ns}`,
      ...capsuleArgv(),
      "--root",
      this.root,
      "--store",
      this.store,
      ...args,
    ]);
  }

  async mustCap(...args: string[]): Promise<string> {
    const r = await this.cap(...args);
    if (r.code !== 0) {
      throw new Error(`capsule ${args.join(" ")}: status ${r.code}\n${r.stderr}${r.stdout}`);
    }
    return r.stdout;
  }

  /** A command sent to 127.0.0.1:PORT of the test namespace (not from a container). */
  async resp(...cmd: string[]): Promise<Result> {
    return await run([
      "nsenter",
      `--net=/run/netns/${this.ns}`,
      Deno.execPath(),
      "eval",
      RESP_CLIENT,
      "--",
      "127.0.0.1",
      String(PORT),
      ...cmd,
    ]);
  }

  /** redis-server detached in container `id`, data in the named volume, maybe -p PORT:6379. */
  server(id: string, opts: { publish: boolean }): Promise<string> {
    const publish = opts.publish ? ["-p", `${PORT}:6379`] : [];
    const net = ["--network", "enet", ...publish, "-v", "redisdata:/data"];
    const redis = ["redis-server", "--port", "6379", "--protected-mode", "no", "--dir", "/data"];
    return this.mustCap("image", "run", "-d", "--id", id, ...net, "redis", ...redis);
  }

  /** redis-cli in a throwaway container linked to `server` as "db". */
  cli(server: string, ...cmd: string[]): Promise<Result> {
    return this.cap(
      "image",
      "run",
      "--rm",
      "--network",
      "enet",
      "--link",
      `${server}:db`,
      "redis",
      "redis-cli",
      "-h",
      "db",
      ...cmd,
    );
  }

  async waitReady(server: string): Promise<void> {
    let last: Result | undefined;
    for (let i = 0; i < 50; i++) {
      last = await this.cli(server, "ping");
      if (last.code === 0 && last.stdout.trim() === "PONG") return;
      await new Promise((r) => setTimeout(r, 100));
    }
    const log = await this.cap("log", server);
    throw new Error(
      `redis in "${server}" never answered PING: ${JSON.stringify(last)}\nlog:\n${log.stdout}`,
    );
  }

  /** Removes everything the test made, whatever state it stopped in; returns what failed. */
  async down(): Promise<string[]> {
    const errors: string[] = [];
    const note = (what: string, r: Result) => {
      if (r.code !== 0) errors.push(`${what}: ${r.stderr.trim()}`);
    };
    let ids: string[] = [];
    try {
      ids = rootNames(this.root).filter((n) => !n.startsWith("_"));
    } catch { /* no root */ }
    try {
      for (const e of Deno.readDirSync(`${this.store}/containers`)) {
        if (!ids.includes(e.name)) ids.push(e.name);
      }
    } catch { /* no containers */ }
    if (this.nsMade) {
      for (const id of ids) {
        note(`image destroyc -f ${id}`, await this.cap("image", "destroyc", "-f", id));
      }
      const vols = await this.cap("volume", "list");
      if (vols.stdout.includes("redisdata")) {
        note("volume rm", await this.cap("volume", "rm", "redisdata"));
      }
      const nets = await this.cap("network", "list");
      if (nets.stdout.includes("enet")) {
        note("network delete", await this.cap("network", "delete", "enet"));
      }
      const imgs = await this.cap("image", "list");
      if (imgs.stdout.includes("redis")) {
        note("image delete", await this.cap("image", "delete", "redis"));
      }
      note("ip netns del", await run(["ip", "netns", "del", this.ns]));
    }
    return errors;
  }
}

Deno.test({
  name: "e2e: redis from a debootstrap image: network, --link, -p, named volume",
  ignore: why !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const t0 = performance.now();
    const secs = () => ((performance.now() - t0) / 1000).toFixed(1);
    const build = await new Deno.Command("bash", { args: BUILD, stderr: "inherit" }).output();
    assert(build.success, "tests/e2e/rootfs.sh redis failed");
    const tarball = dec.decode(build.stdout).trim();
    console.log(`  rootfs tarball ready (${secs()} s): ${tarball}`);

    const tmp = await Deno.makeTempDir({ prefix: "capsule-e2e-" });
    const lab = new Lab(`${tmp}/root`, `${tmp}/store`);
    let ok = true;
    // Later steps need what earlier ones made: stop at the first failure.
    const step = async (name: string, fn: () => Promise<void>) => {
      if (!ok) return;
      ok = await t.step(name, fn);
    };
    try {
      await lab.up();

      await step("image create redis <debootstrap tarball>", async () => {
        const s = performance.now();
        const out = await lab.mustCap("image", "create", "redis", tarball);
        assertMatch(out.trim(), /^sha256:[0-9a-f]{64}$/);
        console.log(`    imported in ${Math.round(performance.now() - s)} ms`);
        assertMatch(
          await lab.mustCap("image", "list"),
          /\nredis\s+latest\s+[0-9a-f]{12}\s+\d+(\.\d+)? MB/,
        );
      });

      await step("network create; redis-server detached with -p and a named volume", async () => {
        await lab.mustCap("network", "create", "enet", "--subnet", SUBNET);
        const out = await lab.server("cache", { publish: true });
        assertEquals(out.trim(), "cache");
        const list = await lab.mustCap("list");
        // runc's columns, then IP (a container here has an address) and IMAGE.
        assertMatch(list, /^ID\s+PID\s+STATUS\s+BUNDLE\s+CREATED\s+OWNER\s+IP\b/);
        assertMatch(list, /\ncache\s+\d+\s+running\s+.*10\.231\.7\.\d+\s/);
        await lab.waitReady("cache");
      });

      await step("another container reaches it by its --link alias", async () => {
        let r = await lab.cli("cache", "ping");
        assertEquals([r.code, r.stdout.trim()], [0, "PONG"], r.stderr);
        r = await lab.cli("cache", "set", "k", "v");
        assertEquals([r.code, r.stdout.trim()], [0, "OK"], r.stderr);
        r = await lab.cli("cache", "get", "k");
        assertEquals([r.code, r.stdout.trim()], [0, "v"], r.stderr);
        // --rm left nothing behind: only the server is there.
        const ids = rootNames(lab.root).filter((n) => n[0] !== "_");
        assertEquals(ids, ["cache"]);
      });

      await step("exec redis-cli in the server's container", async () => {
        const r = await lab.cap("exec", "cache", "redis-cli", "get", "k");
        assertEquals([r.code, r.stdout.trim()], [0, "v"], r.stderr);
      });

      await step(`the published port from the namespace's 127.0.0.1:${PORT}`, async () => {
        let r = await lab.resp("PING");
        assertEquals([r.code, r.stdout.trim()], [0, JSON.stringify("+PONG\r\n")], r.stderr);
        r = await lab.resp("GET", "k");
        assertEquals([r.code, r.stdout.trim()], [0, JSON.stringify("$1\r\nv\r\n")], r.stderr);
      });

      await step(
        "the named volume keeps the data across destroyc and a new container",
        async () => {
          const r = await lab.cap("exec", "cache", "redis-cli", "save");
          assertEquals([r.code, r.stdout.trim()], [0, "OK"], r.stderr);
          await lab.mustCap("image", "destroyc", "-f", "cache");
          assertEquals(
            rootNames(lab.root).filter((n) => n[0] !== "_"),
            [],
          );
          assertMatch(await lab.mustCap("volume", "list"), /\nredisdata\s/);
          // The same id again, without -p (the port is checked on its own below).
          await lab.server("cache", { publish: false });
          await lab.waitReady("cache");
          const g = await lab.cli("cache", "get", "k");
          assertEquals([g.code, g.stdout.trim()], [0, "v"], g.stderr);
        },
      );

      await step(`port ${PORT} can be published again after its container is gone`, async () => {
        await lab.mustCap("image", "destroyc", "-f", "cache");
        await lab.server("cache2", { publish: true });
        await lab.waitReady("cache2");
        const r = await lab.resp("GET", "k");
        assertEquals([r.code, r.stdout.trim()], [0, JSON.stringify("$1\r\nv\r\n")], r.stderr);
      });
    } finally {
      const errors = await lab.down();
      await e2eTeardown(tmp, errors, ok, `  e2e done in ${secs()} s`);
    }
  },
});
