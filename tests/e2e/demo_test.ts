// The original project's demo, end to end, as a docker user runs it: three images made from
// Debian with debootstrap (tests/e2e/rootfs.sh, cached under tests/e2e/.cache/) and imported
// with `image create`: Redis, MariaDB and a Python web app (tests/e2e/demo/app.py, a stdlib
// http.server with python3-pymysql and python3-redis). They run detached with names on a user
// network where they find each other by name, MariaDB's data in a host directory, the app's port
// published. The test drives POST/GET through the published port, then replaces MariaDB (stop,
// destroyc, run again on the same directory): the data is kept and the app serves it again
// within 2 s of the new server listening.
//
// The commands are README.md's ("The three-service demo"), run as written by sh (the test
// checks that the README still has each of them): `capsule` is a wrapper adding the test's
// --root and --store, $DEMO a temp directory. Everything runs inside a network namespace the
// test makes (capsule's bridge, iptables rules and the published port live there; traffic only
// goes to its loopback and to its containers). Root only. Images, containers, the network and
// the data directory are removed at the end, also when a step fails (the tarballs stay cached).
//
// The three debootstraps take about 3 minutes the first time (34, 67 and 58 s on the 2-core VM),
// then the tarballs are cached.
import {
  assert,
  assertEquals,
  assertMatch,
  e2eTeardown,
  REPO,
  type Result,
  sleep,
} from "../helpers.ts";

const HERE = new URL(".", import.meta.url).pathname;
const dec = new TextDecoder();

/** The images: name in the store, builder name, package list (README's first commands). */
const IMAGES = [
  ["demo-redis", "redis", "redis-server,redis-tools"],
  ["demo-mariadb", "mariadb", "mariadb-server"],
  ["demo-web", "webapp", "python3,python3-pymysql,python3-redis"],
] as const;

/** README.md's walkthrough, line by line, as the test runs it (cwd: the checkout). */
const CMD = {
  images: IMAGES.map(([img, name, pkgs]) =>
    `capsule image create ${img} "$(bash tests/e2e/rootfs.sh ${name} ${pkgs})"`
  ),
  network: "capsule network create demo",
  mkdir: 'mkdir -p "$DEMO/db"',
  cache: "capsule image run -d --name cache --network demo demo-redis redis-server " +
    "--protected-mode no",
  db: 'capsule image run -d --name db --network demo -v "$DEMO/db:/var/lib/mysql" ' +
    '-v "$PWD/tests/e2e/demo:/demo:ro" demo-mariadb sh /demo/mariadb.sh',
  web: "capsule image run -d --name web --network demo -p 8080:8080 " +
    '-v "$PWD/tests/e2e/demo:/demo:ro" demo-web python3 /demo/app.py',
  list: "capsule list",
  post: "curl -fsS -d hello http://127.0.0.1:8080/kv/greeting",
  get: "curl -fsS http://127.0.0.1:8080/kv/greeting",
  stop: "capsule stop db",
  destroy: "capsule image destroyc db",
  cleanup: [
    "capsule image destroyc -f web",
    "capsule image destroyc -f db",
    "capsule image destroyc -f cache",
    "capsule network delete demo",
    ...IMAGES.map(([img]) => `capsule image delete ${img}`),
    'rm -rf "$DEMO"',
  ],
};

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

function tarballPath(name: string, pkgs: string): string {
  const out = new Deno.Command("bash", {
    args: [`${HERE}rootfs.sh`, "--print-path", name, pkgs],
  }).outputSync();
  return dec.decode(out.stdout).trim();
}

function cached(name: string, pkgs: string): boolean {
  try {
    return Deno.statSync(tarballPath(name, pkgs)).size > 0;
  } catch {
    return false;
  }
}

/** Why the test cannot run here (or undefined). */
function unavailable(): string | undefined {
  if (Deno.uid() !== 0) return "not root";
  for (const c of ["ip", "nsenter", "curl", "perl"]) {
    if (!has(c)) return `${c} is not installed`;
  }
  const missing = IMAGES.filter(([, name, pkgs]) => !cached(name, pkgs));
  if (missing.length > 0 && !has("debootstrap")) {
    return `no cached ${missing.map(([, n]) => n).join(", ")} tarball and no debootstrap`;
  }
  return undefined;
}

const why = unavailable();
if (why && Deno.uid() === 0) console.error(`tests/e2e/demo_test.ts ignored: ${why}`);

function capsuleArgv(): string[] {
  const bin = Deno.env.get("CAPSULE");
  if (bin) return bin.split(" ");
  return [Deno.execPath(), "run", "-A", "--quiet", `${REPO}/main.ts`];
}

const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;

/** The test's "host": a private network namespace, and sh in it with the README's setting. */
class Lab {
  readonly ns = `capdemo-${crypto.randomUUID().slice(0, 6)}`;
  nsMade = false;
  readonly root: string;
  readonly store: string;
  readonly demo: string;
  readonly bin: string;
  constructor(readonly tmp: string) {
    this.root = `${tmp}/root`;
    this.store = `${tmp}/store`;
    this.demo = `${tmp}/demo`;
    this.bin = `${tmp}/bin`;
  }

  async up(): Promise<void> {
    // `capsule` for the README's lines: this checkout's, on the test's own root and store.
    Deno.mkdirSync(this.bin);
    Deno.writeTextFileSync(
      `${this.bin}/capsule`,
      `#!/bin/sh\nexec ${capsuleArgv().map(q).join(" ")} --root ${q(this.root)} ` +
        `--store ${q(this.store)} "$@"\n`,
      { mode: 0o755 },
    );
    const r = await this.raw(["ip", "netns", "add", this.ns]);
    assertEquals(r.code, 0, `ip netns add: ${r.stderr}`);
    this.nsMade = true;
    const lo = await this.raw(["ip", "-n", this.ns, "link", "set", "lo", "up"]);
    assertEquals(lo.code, 0, lo.stderr);
  }

  /**
   * Runs argv with output through files (a detached container keeps its creator's stdout and
   * stderr open, so pipes would never close).
   */
  async raw(argv: string[]): Promise<Result> {
    const out = await Deno.makeTempFile(), err = await Deno.makeTempFile();
    try {
      const st = await new Deno.Command("sh", {
        args: ["-c", argv.map(q).join(" ") + ` >${out} 2>${err}`],
        stdin: "null",
        cwd: REPO,
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

  /** argv in the namespace. */
  inNs(argv: string[]): string[] {
    return ["nsenter", `--net=/run/netns/${this.ns}`, ...argv];
  }

  /** One shell line, as a user types it, in the namespace, from the checkout. */
  sh(line: string): Promise<Result> {
    return this.raw([
      "nsenter",
      `--net=/run/netns/${this.ns}`,
      "env",
      `PATH=${this.bin}:${Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin"}`,
      `DEMO=${this.demo}`,
      "sh",
      "-c",
      line,
    ]);
  }

  async must(line: string): Promise<string> {
    const r = await this.sh(line);
    if (r.code !== 0) throw new Error(`${line}: status ${r.code}\n${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /**
   * Polls the app through the published port until GET of a key never stored answers 404:
   * the app, MariaDB (with its table) and Redis all answered. Throws after `ms` with the logs.
   */
  async waitReady(ms: number): Promise<void> {
    let last: Result | undefined;
    const line = "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/kv/not-stored";
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if ((last = await this.sh(line)).stdout === "404") return;
      await sleep(200);
    }
    const logs = await this.sh("capsule log cache; capsule log db; capsule log web");
    throw new Error(`the app was not ready in ${ms} ms: ${JSON.stringify(last)}\n${logs.stdout}`);
  }

  /** Removes whatever the test made, in whatever state it stopped; returns what failed. */
  async down(): Promise<string[]> {
    const errors: string[] = [];
    if (!this.nsMade) return errors;
    const note = async (line: string) => {
      const r = await this.sh(line);
      if (r.code !== 0) errors.push(`${line}: ${r.stderr.trim()}`);
    };
    const ids = new Set<string>();
    for (const dir of [this.root, `${this.store}/containers`]) {
      try {
        for (const e of Deno.readDirSync(dir)) if (!e.name.startsWith("_")) ids.add(e.name);
      } catch { /* not made */ }
    }
    for (const id of ids) await note(`capsule image destroyc -f ${q(id)}`);
    if ((await this.sh("capsule network list")).stdout.includes("\ndemo ")) {
      await note("capsule network delete demo");
    }
    const imgs = (await this.sh("capsule image list")).stdout;
    for (const [img] of IMAGES) {
      if (imgs.includes(`\n${img} `)) await note(`capsule image delete ${img}`);
    }
    const del = await this.raw(["ip", "netns", "del", this.ns]);
    if (del.code !== 0) errors.push(`ip netns del: ${del.stderr.trim()}`);
    return errors;
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The IP column of `capsule list` for container `id`. */
function ipOf(list: string, id: string): string {
  const m = list.match(new RegExp(`^${id}\\s.*?\\s(\\d+\\.\\d+\\.\\d+\\.\\d+)\\s`, "m"));
  assert(m, `no IP for ${id} in:\n${list}`);
  return m[1];
}

Deno.test({
  name: "e2e: the three-service demo (redis, mariadb, web app), MariaDB replaced on its volume",
  ignore: why !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const t0 = performance.now();
    const secs = () => ((performance.now() - t0) / 1000).toFixed(1);
    const readme = Deno.readTextFileSync(`${REPO}/README.md`);
    const tmp = await Deno.makeTempDir({ prefix: "capsule-demo-" });
    const lab = new Lab(tmp);
    let ok = true;
    // Later steps need what earlier ones made: stop at the first failure.
    const step = async (name: string, fn: () => Promise<void>) => {
      if (!ok) return;
      ok = await t.step(name, fn);
    };
    try {
      await step("README.md shows every command the test runs", () => {
        const lines = [
          ...CMD.images,
          CMD.network,
          CMD.mkdir,
          CMD.cache,
          CMD.db,
          CMD.web,
          CMD.list,
          CMD.post,
          CMD.get,
          CMD.stop,
          CMD.destroy,
          ...CMD.cleanup,
        ];
        const shown = new Set(readme.split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()));
        assertEquals(lines.filter((l) => !shown.has(l)), [], "missing from README.md");
        return Promise.resolve();
      });

      // debootstrap needs Debian's mirror: build (or find cached) the tarballs here, in the
      // host's network namespace; the README's lines below then find them in the cache.
      await step("the three rootfs tarballs are built (debootstrap) or cached", async () => {
        for (const [, name, pkgs] of IMAGES) {
          const s = performance.now();
          const out = await new Deno.Command("bash", {
            args: [`${HERE}rootfs.sh`, name, pkgs],
            stdout: "piped",
            stderr: "piped",
          }).output();
          assert(out.success, `rootfs.sh ${name}: ${dec.decode(out.stderr).slice(-2000)}`);
          console.log(`    ${name}: ${Math.round(performance.now() - s)} ms`);
        }
      });

      await lab.up();

      await step("image create: three debootstrapped images", async () => {
        for (const line of CMD.images) {
          const s = performance.now();
          const out = await lab.must(line);
          assertMatch(out.trim(), /^sha256:[0-9a-f]{64}$/);
          console.log(`    ${line.split(" ")[3]}: ${Math.round(performance.now() - s)} ms`);
        }
        const list = await lab.must("capsule image list");
        for (const [img] of IMAGES) assertMatch(list, new RegExp(`\\n${img}\\s+latest\\s`));
      });

      await step("network, then cache, db and web detached with names", async () => {
        assertEquals((await lab.must(CMD.network)).trim(), "demo");
        await lab.must(CMD.mkdir);
        for (const [line, id] of [[CMD.cache, "cache"], [CMD.db, "db"], [CMD.web, "web"]]) {
          assertEquals((await lab.must(line)).trim(), id);
        }
        const list = await lab.must(CMD.list);
        for (const id of ["cache", "db", "web"]) {
          assertMatch(list, new RegExp(`^${id}\\s+\\d+\\s+running\\s`, "m"));
        }
        // MariaDB initializes its empty data directory on the first start (seconds).
        await lab.waitReady(60_000);
      });

      await step("POST stores in MariaDB and Redis; GET reads both back", async () => {
        const post = JSON.parse(await lab.must(CMD.post));
        assertEquals(post, { key: "greeting", stored: "hello" });
        const get = JSON.parse(await lab.must(CMD.get));
        assertEquals(get, { key: "greeting", db: "hello", cache: "hello" });
        // The row is MariaDB's, in the host directory: the same answer from the server itself.
        const sql = await lab.must(
          "capsule exec db mariadb -N -B -e \"SELECT v FROM demo.kv WHERE k='greeting'\"",
        );
        assertEquals(sql.trim(), "hello");
        assert(Deno.statSync(`${lab.demo}/db/demo`).isDirectory, "no demo database on the host");
      });

      await step("MariaDB replaced on its volume: data kept, app back within 2 s", async () => {
        const before = ipOf(await lab.must(CMD.list), "db");
        await lab.must(CMD.stop);
        assertMatch(await lab.must(CMD.list), /^db\s+\S+\s+stopped/m);
        await lab.must(CMD.destroy);
        assert(!(await lab.must(CMD.list)).match(/^db\s/m), "db still listed after destroyc");
        // The app answers 503 while there is no MariaDB (its name is gone from /etc/hosts).
        const down = await lab.sh(CMD.get);
        assertEquals(down.code, 22, `GET without MariaDB: ${JSON.stringify(down)}`);

        const started = performance.now();
        assertEquals((await lab.must(CMD.db)).trim(), "db");
        const ip = ipOf(await lab.must(CMD.list), "db");
        // From here the client asks the app again and again, as a user's browser would, while
        // the new server starts; `listening` is when its port first accepts a connection from
        // the namespace (not through the app), `served` when the app first answers with the data.
        let listening: number | undefined, served: number | undefined, body = "";
        const probe = `exec 3<>/dev/tcp/${ip}/3306`;
        const deadline = started + 60_000;
        while (performance.now() < deadline) {
          if (
            listening === undefined && (await lab.raw(lab.inNs(["bash", "-c", probe]))).code === 0
          ) {
            listening = performance.now();
          }
          const r = await lab.sh(CMD.get);
          if (r.code === 0) {
            served = performance.now();
            body = r.stdout;
            break;
          }
          await sleep(50);
        }
        const logs = async () => (await lab.sh("capsule log db; capsule log web")).stdout;
        assert(served !== undefined, `the app never served again:\n${await logs()}`);
        listening ??= served;
        const gap = served - listening;
        console.log(
          `    db ${before} -> ${ip}; listening ${Math.round(listening - started)} ms after ` +
            `run, app served ${Math.round(gap)} ms later`,
        );
        assertEquals(JSON.parse(body), { key: "greeting", db: "hello", cache: "hello" });
        assert(gap < 2000, `the app took ${Math.round(gap)} ms (> 2 s) to reach the new MariaDB`);
        // The data directory was kept, not made again.
        const log = await lab.must("capsule log db");
        assert(!log.includes("initializing"), `the new MariaDB initialized again:\n${log}`);
      });

      await step("README's clean-up removes everything", async () => {
        for (const line of CMD.cleanup) await lab.must(line);
        assertEquals(await lab.must("capsule list -q"), "");
        assertEquals((await lab.must("capsule image list -q")).trim(), "");
        assert(!(await lab.must("capsule network list")).includes("\ndemo "), "network left");
        assert(!exists(lab.demo), "$DEMO left");
      });
    } finally {
      const errors = await lab.down();
      await e2eTeardown(tmp, errors, ok, `  demo done in ${secs()} s`);
    }
  },
});
