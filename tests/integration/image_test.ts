// `capsule image ...` and `capsule volume ...` as root: import a busybox rootfs tarball, run
// containers from it on an overlay, keep the image unchanged, clean up everything.
import { assert, assertEquals, assertMatch, capsule, rootTest, withImage } from "../helpers.ts";

const enc = new TextEncoder();

function mounted(prefix: string): string[] {
  return Deno.readTextFileSync("/proc/self/mountinfo").split("\n").map((l) => l.split(" ")[4])
    .filter((m) => m?.startsWith(prefix));
}

/** A checksum of a tree: names, types, modes, owners, sizes, mtimes, link targets, contents. */
async function treeSum(dir: string): Promise<string> {
  const lines: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of [...Deno.readDirSync(d)].sort((a, b) => a.name < b.name ? -1 : 1)) {
      const p = `${d}/${e.name}`, r = `${rel}/${e.name}`;
      const st = Deno.lstatSync(p);
      let extra = "";
      if (e.isSymlink) extra = Deno.readLinkSync(p);
      else if (e.isFile) {
        extra = String(Deno.readFileSync(p).reduce((a, b) => (a * 31 + b) >>> 0, 7));
      }
      lines.push(`${r} ${st.mode} ${st.uid} ${st.gid} ${st.size} ${st.mtime?.getTime()} ${extra}`);
      if (e.isDirectory) walk(p, r);
    }
  };
  walk(dir, "");
  const d = await crypto.subtle.digest("SHA-256", enc.encode(lines.join("\n")));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

rootTest("image: import a rootfs tarball, list, get, run echo hi", async (root) => {
  await withImage(async (c, store) => {
    const list = await c("image", "list");
    assertMatch(
      list.stdout,
      /^REPOSITORY\s+TAG\s+ID\s+SIZE\s+CREATED\nbb\s+latest\s+[0-9a-f]{12}\s+[\d.]+ MB\s+\d+ seconds? ago\n$/,
    );
    const json = JSON.parse((await c("image", "list", "--format", "json")).stdout);
    assertEquals(json.length, 1);
    const rec = JSON.parse((await c("image", "get", "bb")).stdout);
    assertEquals([rec.name, rec.format], ["bb", "rootfs"]);
    assert(rec.size > 1_000_000 && rec.size < 5_000_000, `size ${rec.size}`);
    const r = await c("image", "run", "--rm", "bb", "echo", "hi");
    assertEquals([r.code, r.stdout, r.stderr], [0, "hi\n", ""]);
    assertEquals([...Deno.readDirSync(`${store}/containers`)].length, 0, "--rm left a layer");
    const e = await c("image", "run", "bb", "sh", "-c", "exit 7");
    assertEquals(e.code, 7);
    const missing = await c("image", "run", "nope", "true");
    assertEquals(missing.code, 1);
    assertMatch(missing.stderr, /Image "nope" does not exist.*capsule image create nope/);
    const nocmd = await c("image", "run", "bb");
    assertEquals(nocmd.code, 1);
    assertMatch(nocmd.stderr, /has no command/);
    // Failed runs leave no container behind; the one that exited 7 keeps its layer.
    assertEquals([...Deno.readDirSync(`${store}/containers`)].length, 1);
    const id = [...Deno.readDirSync(`${store}/containers`)][0].name;
    assertMatch(id, /^[0-9a-f]{12}$/);
    assertEquals((await c("image", "destroyc", id)).code, 0);
    assertEquals([...Deno.readDirSync(`${store}/containers`)].length, 0);
  }, root);
});

rootTest("image run: -e, --id, -h, -w; options after the image go to the command", async (root) => {
  await withImage(async (c) => {
    const r = await c(
      "image",
      "run",
      "--id",
      "app",
      "-e",
      "FOO=bar",
      "-h",
      "web1",
      "-w",
      "/tmp",
      "--rm",
      "bb",
      "sh",
      "-c",
      'echo $FOO; hostname; pwd; echo "$@"',
      "_",
      "-h",
      "--id",
      "x",
      "-e",
      "--rm",
    );
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout, "bar\nweb1\n/tmp\n-h --id x -e --rm\n");
    const help = await c("image", "run", "--help");
    assertMatch(help.stdout, /-h, --hostname NAME/);
  }, root);
});

rootTest("image: the image never changes; containers are isolated", async (root) => {
  await withImage(async (c, store) => {
    const dir = `${store}/images/bb`;
    const before = await treeSum(dir);
    const w = await c(
      "image",
      "run",
      "--id",
      "w1",
      "bb",
      "sh",
      "-c",
      "echo x > /bin/new && echo y >> /etc/passwd && rm /bin/ls && chmod 700 /tmp && " +
        "touch /etc/group && mkdir -p /var/z/q && rm -r /home && echo mine > /etc/marker",
    );
    assertEquals(w.code, 0, w.stderr);
    const r = await c(
      "image",
      "run",
      "--id",
      "r1",
      "bb",
      "sh",
      "-c",
      "cat /etc/marker 2>/dev/null || echo none; ls /bin/ls; test -d /home && echo home",
    );
    assertEquals([r.code, r.stdout], [0, "none\n/bin/ls\nhome\n"]);
    assertEquals(await treeSum(dir), before, "the image directory changed");
    // The writer's layer holds its changes until destroyc.
    assertEquals(Deno.readTextFileSync(`${store}/containers/w1/upper/etc/marker`), "mine\n");
    for (const id of ["w1", "r1"]) assertEquals((await c("image", "destroyc", id)).code, 0);
    assertEquals(await treeSum(dir), before);
  }, root);
});

rootTest("image destroyc: no mount, no directory, no anonymous volume left", async (root) => {
  await withImage(async (c, store, tmp) => {
    const r = await c("image", "run", "-d", "--id", "bg", "-v", "/data", "bb", "sleep", "100");
    assertEquals([r.code, r.stdout], [0, "bg\n"], r.stderr);
    assertEquals(mounted(`${store}/containers/bg/merged`).length, 1);
    assert(Deno.statSync(`${store}/volumes/_anon/bg`).isDirectory);
    const st = JSON.parse((await capsule(root, ["state", "bg"])).stdout);
    assertEquals([st.status, st.image], ["running", "bb"]);
    // In use: the image cannot go, and destroyc wants -f for a running container.
    const del = await c("image", "delete", "bb");
    assertEquals(del.code, 1);
    assertMatch(del.stderr, /used by container "bg"/);
    const refused = await c("image", "destroyc", "bg");
    assertEquals(refused.code, 1);
    assertMatch(refused.stderr, /is running.*-f/);
    assertEquals((await c("image", "destroyc", "-f", "bg")).code, 0);
    assertEquals(mounted(tmp), []);
    assert(!exists(`${store}/containers/bg`) && !exists(`${store}/volumes/_anon/bg`));
    assertEquals((await capsule(root, ["list", "-q"])).stdout, "");
    // Plain delete keeps the writable layer (unmounted); destroyc removes it.
    assertEquals((await c("image", "run", "-d", "--id", "k", "bb", "sleep", "100")).code, 0);
    assertEquals((await capsule(root, ["delete", "-f", "k"])).code, 0);
    assertEquals(mounted(tmp), []);
    assert(exists(`${store}/containers/k/upper`));
    const kept = await c("image", "delete", "bb");
    assertMatch(kept.stderr, /writable layer of container "k"/);
    assertEquals((await c("image", "destroyc", "k")).code, 0);
    assertEquals((await c("image", "delete", "bb")).code, 0);
    assertEquals((await c("image", "list", "-q")).stdout, "");
  }, root);
});

rootTest("image run: host, named and anonymous volumes", async (root) => {
  await withImage(async (c, store, tmp) => {
    Deno.mkdirSync(`${tmp}/host`);
    Deno.writeTextFileSync(`${tmp}/host/in`, "from host\n");
    const r = await c(
      "image",
      "run",
      "--rm",
      "-v",
      `${tmp}/host:/h:ro`,
      "-v",
      "data:/d",
      "-v",
      "/anon",
      "bb",
      "sh",
      "-c",
      "cat /h/in; echo x > /h/no 2>/dev/null || echo ro; echo kept > /d/f; echo a > /anon/a",
    );
    assertEquals([r.code, r.stdout], [0, "from host\nro\n"], r.stderr);
    assertEquals(Deno.readTextFileSync(`${store}/volumes/data/f`), "kept\n");
    assert(
      !exists(`${store}/volumes/_anon`) ||
        [...Deno.readDirSync(`${store}/volumes/_anon`)].length === 0,
    );
    // The named volume outlives the container; rm is refused while a container has it.
    assertEquals(
      (await c("image", "run", "--id", "v2", "-v", "data:/d", "bb", "cat", "/d/f")).stdout,
      "kept\n",
    );
    const vl = await c("volume", "list");
    assertMatch(vl.stdout, /data\s+\S+\s+v2/);
    const rm1 = await c("volume", "rm", "data");
    assertEquals(rm1.code, 1);
    assertMatch(rm1.stderr, /used by container "v2"/);
    assertEquals((await c("image", "destroyc", "v2")).code, 0);
    assertEquals(Deno.readTextFileSync(`${store}/volumes/data/f`), "kept\n");
    assertEquals((await c("volume", "rm", "data")).code, 0);
    assertEquals(Deno.readTextFileSync(`${tmp}/host/in`), "from host\n");
    // A missing host path is made (docker's -v); when the container never runs, it goes again
    // with the container (image_docker_test has the made directory's mode and owner).
    const bad = await c("image", "run", "--id", "m", "-v", `${tmp}/nope/deep:/x`, "bb", "/no/such");
    assertEquals(bad.code, 127, bad.stderr);
    assert(!exists(`${tmp}/nope`), "the host directory made for a container that never ran");
    assert(!exists(`${store}/containers/m`));
    assertEquals(mounted(tmp), []);
  }, root);
});

rootTest("image create: crafted escapes are refused, nothing written outside", async (root) => {
  await withImage(async (c, store, tmp) => {
    const { buildTar } = await import("../../image/tar.ts");
    Deno.mkdirSync(`${tmp}/outside`);
    const cases: [string, Parameters<typeof buildTar>[0]][] = [
      ["dotdot", [{ name: "./ok", data: "1" }, { name: "../outside/pwned", data: "x" }]],
      ["symlink", [
        { name: "link", type: "symlink", linkname: "../../outside" },
        { name: "link/pwned", data: "x" },
      ]],
      ["hardlink", [{ name: "h", type: "link", linkname: "../../outside/f" }]],
    ];
    for (const [name, entries] of cases) {
      Deno.writeFileSync(`${tmp}/${name}.tar`, buildTar(entries));
      const r = await c("image", "create", name, `${tmp}/${name}.tar`);
      assertEquals(r.code, 1, `${name}: ${r.stdout}`);
      assertMatch(r.stderr, /Refusing to import/);
    }
    assertEquals([...Deno.readDirSync(`${tmp}/outside`)].length, 0);
    assertEquals([...Deno.readDirSync(`${store}/images`)].map((e) => e.name), ["bb"]);
    const taken = await c("image", "create", "bb", `${tmp}/bb.tar`);
    assertMatch(taken.stderr, /"bb" is taken/);
    const missing = await c("image", "create", "x", `${tmp}/missing.tar`);
    assertMatch(missing.stderr, /no such file/);
  }, root);
});

// podman makes real docker-archive and oci-archive files (a second layer with a whiteout).
const podman = ["/usr/bin/podman", "/usr/local/bin/podman"].find(exists);

const podmanTest = podman
  ? rootTest
  : (name: string, _fn: unknown) =>
    Deno.test({ name: `${name} (podman not installed)`, ignore: true, fn() {} });

podmanTest("image create: podman's docker-archive and oci-archive", async (root: string) => {
  await withImage(async (c, _store, tmp) => {
    const conf = `${tmp}/podman`;
    Deno.mkdirSync(conf);
    Deno.writeTextFileSync(
      `${conf}/containers.conf`,
      '[containers]\ndefault_ulimits = ["nofile=20000:20000"]\n[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n',
    );
    Deno.writeTextFileSync(
      `${conf}/storage.conf`,
      `[storage]\ndriver = "vfs"\nrunroot = "${conf}/run"\ngraphroot = "${conf}/graph"\n`,
    );
    const env = {
      CONTAINERS_CONF: `${conf}/containers.conf`,
      CONTAINERS_STORAGE_CONF: `${conf}/storage.conf`,
    };
    const p = async (...args: string[]) => {
      const o = await new Deno.Command(podman!, { args, env, stdout: "piped", stderr: "piped" })
        .output();
      assert(o.success, `podman ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
    };
    await p(
      "import",
      "--change",
      `CMD ["/bin/sh", "-c", "echo $GREETING"]`,
      "--change",
      "ENV GREETING=hello",
      `${tmp}/bb.tar`,
      "localhost/bb:1",
    );
    Deno.writeTextFileSync(
      `${tmp}/Containerfile`,
      "FROM localhost/bb:1\nRUN rm /etc/group && echo two > /two\n",
    );
    await p(
      "build",
      "--isolation", // RUN steps chrooted: crun refuses this host's hybrid cgroups
      "chroot",
      "-t",
      "localhost/bb:2",
      "-f",
      `${tmp}/Containerfile`,
      tmp,
    );
    await p("save", "--format", "docker-archive", "-o", `${tmp}/d.tar`, "localhost/bb:2");
    await p("save", "--format", "oci-archive", "-o", `${tmp}/o.tar`, "localhost/bb:2");
    for (const [name, file] of [["fromdocker", "d.tar"], ["fromoci", "o.tar"]]) {
      const r = await c("image", "create", name, `${tmp}/${file}`);
      assertEquals(r.code, 0, r.stderr);
      const run = await c("image", "run", "--rm", name);
      assertEquals([run.code, run.stdout], [0, "hello\n"], run.stderr);
      const ls = await c(
        "image",
        "run",
        "--rm",
        name,
        "sh",
        "-c",
        "cat /two; ls /etc/group || true",
      );
      assertEquals(ls.stdout, "two\n", ls.stderr);
    }
  }, root);
});

function exists(p: string): boolean {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
