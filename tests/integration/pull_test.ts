// `capsule image pull` against a real registry (Debian's docker-registry) on 127.0.0.1 in a
// private network namespace: by tag and digest, layers shared between images, a multi-arch
// index, token auth and login/logout, a corrupted blob, an interrupted pull, bad input, and
// `image run` of what was pulled. Images are OCI layouts written here and pushed with skopeo.
import {
  assert,
  assertEquals,
  assertMatch,
  buildBusyboxRootfs,
  capsule,
  REPO,
  type Result,
  rootTest,
  waitFor,
} from "../helpers.ts";
import { HOST, RegistryLab, setIndex, which, writeImage, writeIndex } from "./registry_lab.ts";

const have = ["docker-registry", "skopeo", "nsenter", "ip", "zstd", "openssl"].every((c) =>
  which(c)
);
const labTest = have ? rootTest : (name: string, _fn: unknown) =>
  Deno.test({
    name: `${name} (docker-registry or skopeo not installed: bash tests/setup.sh)`,
    ignore: true,
    fn() {},
  });

function capsuleArgv(): string[] {
  const bin = Deno.env.get("CAPSULE");
  if (bin) return bin.split(" ");
  return [Deno.execPath(), "run", "-A", "--quiet", `${REPO}/main.ts`];
}

interface Env {
  lab: RegistryLab;
  tmp: string;
  store: string;
  base: string;
  /** capsule in the lab's network namespace (for pull, login). */
  net: (...args: string[]) => Promise<Result>;
  /** capsule on the host (run, list, delete). */
  c: (...args: string[]) => Promise<Result>;
}

async function withLab(
  root: string,
  fn: (e: Env) => Promise<void>,
  opts: { token?: { user: string; pass: string } } = {},
): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "capsule-pull-" });
  const store = `${tmp}/store`;
  let lab: RegistryLab | undefined;
  try {
    const base = `${tmp}/busybox`;
    Deno.mkdirSync(base);
    await buildBusyboxRootfs(base);
    lab = await RegistryLab.start(tmp, opts);
    const l = lab;
    const net = async (...args: string[]) => {
      const [cmd, ...pre] = [...l.enter, ...capsuleArgv()];
      const o = await new Deno.Command(cmd, {
        args: [...pre, "--root", root, "--store", store, ...args],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const d = new TextDecoder();
      return { code: o.code, stdout: d.decode(o.stdout), stderr: d.decode(o.stderr) };
    };
    const c = (...args: string[]) => capsule(root, ["--store", store, ...args]);
    await fn({ lab, tmp, store, base, net, c });
  } finally {
    await lab?.stop();
    for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
      const mp = line.split(" ")[4];
      if (mp?.startsWith(tmp)) await new Deno.Command("umount", { args: ["-l", mp] }).output();
    }
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

const ls = (dir: string) => {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n !== ".lock").sort();
  } catch {
    return [];
  }
};

labTest("image pull: by tag and by digest, layers with whiteouts, image run", async (root) => {
  await withLab(root, async ({ lab, tmp, store, base, net, c }) => {
    const layout = `${tmp}/oci`;
    const img = await writeImage(layout, {
      layers: [
        { base, files: { "etc/motd": "old\n", "data/keep": "k\n", "data/drop": "d\n" } },
        {
          files: { "etc/motd": null, "app/hello.txt": "hello from layer two\n" },
          opaque: ["data"],
          compression: "zstd",
        },
        { files: { "data/new": "n\n" }, compression: "none" },
      ],
      config: {
        Env: ["GREETING=pulled", "PATH=/bin"],
        Cmd: ["sh", "-c", "echo $GREETING; pwd; cat hello.txt; ls /data; ls /etc/motd || true"],
        WorkingDir: "/app",
        StopSignal: "SIGQUIT",
      },
    });
    setIndex(layout, "1", img.manifestDigest, img.manifest.length);
    const pushed = await lab.push(layout, "1", "test/app");

    const pull = await net("image", "pull", "--tls-verify=false", `${HOST}/test/app:1`);
    assertEquals(pull.code, 0, pull.stderr);
    assertEquals(pull.stdout.trim(), img.configDigest);
    assertMatch(pull.stderr, /Pulling 127\.0\.0\.1:5000\/test\/app:1 \(linux\/amd64\)/);
    assertEquals(ls(`${store}/layers`), img.layers.map((l) => l.diffId.slice(7)).sort());

    const list = await c("image", "list");
    assertMatch(
      list.stdout,
      /^REPOSITORY\s+TAG\s+ID\s+SIZE\s+CREATED\n127\.0\.0\.1:5000\/test\/app\s+1\s+[0-9a-f]{12}\s+[\d.]+ MB\s+/,
    );
    const rec = JSON.parse((await c("image", "get", `${HOST}/test/app:1`)).stdout);
    assertEquals(
      [rec.name, rec.format, rec.digest, rec.platform],
      [`${HOST}/test/app:1`, "registry", pushed, "linux/amd64"],
    );
    assertEquals(rec.config.StopSignal, "SIGQUIT");

    const run = await c("image", "run", "--rm", `${HOST}/test/app:1`);
    assertEquals(run.code, 0, run.stderr);
    // The opaque /data hides the base's keep and drop; the whiteout removes /etc/motd.
    assertEquals(
      run.stdout,
      "pulled\n/app\nhello from layer two\nnew\n",
      run.stderr,
    );
    assertMatch(run.stderr, /motd: No such file/);

    // By digest: every layer is already there; a second name for the same image.
    const byDigest = await net(
      "image",
      "pull",
      "--tls-verify=false",
      `${HOST}/test/app@${pushed}`,
    );
    assertEquals(byDigest.code, 0, byDigest.stderr);
    assertEquals(byDigest.stderr.match(/already present/g)?.length, 3, byDigest.stderr);
    assertEquals(ls(`${store}/layers`).length, 3);
    const names = (await c("image", "list")).stdout;
    assertMatch(names, /127\.0\.0\.1:5000\/test\/app\s+<none>/);

    // Pulled by tag, found by its repository digest too.
    assertEquals((await c("image", "delete", `${HOST}/test/app@${pushed}`)).code, 0);
    const viaDigest = await c(
      "image",
      "run",
      "--rm",
      `${HOST}/test/app@${pushed}`,
      "cat",
      "/app/hello.txt",
    );
    assertEquals(viaDigest.stdout, "hello from layer two\n", viaDigest.stderr);
    assertEquals(
      (await net("image", "pull", "--tls-verify=false", `${HOST}/test/app@${pushed}`)).code,
      0,
    );

    // tag, then delete: layers stay while any name uses them.
    assertEquals((await c("image", "tag", `${HOST}/test/app:1`, "app:stable")).code, 0);
    const tagged = await c("image", "run", "--rm", "app:stable", "cat", "/app/hello.txt");
    assertEquals(tagged.stdout, "hello from layer two\n", tagged.stderr);
    for (const n of [`${HOST}/test/app:1`, `${HOST}/test/app@${pushed}`]) {
      const d = await c("image", "delete", n);
      assertEquals(d.code, 0, d.stderr);
      assertEquals(ls(`${store}/layers`).length, 3);
    }
    assertEquals((await c("image", "delete", "app:stable")).code, 0);
    assertEquals(ls(`${store}/layers`), []);
    assertEquals(ls(`${store}/images`), []);
  });
});

labTest("image pull: a second image on the same base fetches only its own layer", async (root) => {
  await withLab(root, async ({ lab, tmp, store, base, net, c }) => {
    const layout = `${tmp}/oci`;
    const baseLayer = { base, files: { "etc/os": "base\n" } };
    const one = await writeImage(layout, {
      layers: [baseLayer, { files: { "one": "1\n" } }],
      config: { Cmd: ["cat", "/one"] },
    });
    setIndex(layout, "v1", one.manifestDigest, one.manifest.length);
    await lab.push(layout, "v1", "shared/one");
    const two = await writeImage(layout, {
      layers: [baseLayer, { files: { "two": "2\n", "etc/os": null, "srv/top": "t\n" } }],
      // A user name: looked up in /etc/passwd of the layers (the base layer's).
      config: { Cmd: ["sh", "-c", "id -u; cat /two"], User: "nobody" },
    });
    assertEquals(two.layers[0].digest, one.layers[0].digest, "same base blob");
    setIndex(layout, "v1", two.manifestDigest, two.manifest.length);
    await lab.push(layout, "v1", "shared/two");

    const p1 = await net("image", "pull", "--tls-verify=false", `${HOST}/shared/one:v1`);
    assertEquals(p1.code, 0, p1.stderr);
    const p2 = await net("image", "pull", "--tls-verify=false", `${HOST}/shared/two:v1`);
    assertEquals(p2.code, 0, p2.stderr);
    // Plain lines (stderr is no terminal): the base is not fetched again.
    assertMatch(p2.stderr, new RegExp(`${one.layers[0].digest.slice(7, 19)}: already present`));
    assertEquals(p2.stderr.match(/: done/g)?.length, 1, p2.stderr);
    assertEquals(ls(`${store}/layers`).length, 3);
    for (const [n, want] of [["one", "1\n"], ["two", "65534\n2\n"]]) {
      const r = await c("image", "run", "--rm", `${HOST}/shared/${n}:v1`);
      assertEquals([r.code, r.stdout], [0, want], r.stderr);
    }
    // Deleting one keeps the shared base for the other.
    assertEquals((await c("image", "delete", `${HOST}/shared/one:v1`)).code, 0);
    assertEquals(ls(`${store}/layers`).sort(), two.layers.map((l) => l.diffId.slice(7)).sort());
    // A new anonymous volume starts with the image's directory as the layers merge it.
    const r = await c(
      "image",
      "run",
      "--rm",
      "-u",
      "0",
      "-v",
      "/etc",
      "-v",
      "/srv",
      `${HOST}/shared/two:v1`,
      "sh",
      "-c",
      "cat /srv/top; cat /etc/passwd | wc -l; ls /etc/os 2>&1 || true",
    );
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stdout, /^t\n2\n.*No such file/s);
    assertEquals(ls(`${store}/volumes/_anon`), [], "anonymous volumes removed with --rm");
    assertEquals((await c("image", "delete", `${HOST}/shared/two:v1`)).code, 0);
    assertEquals(ls(`${store}/layers`), []);
  });
});

labTest("image pull: a multi-arch index picks the platform", async (root) => {
  await withLab(root, async ({ lab, tmp, store, net, c, base }) => {
    const layout = `${tmp}/oci`;
    const amd = await writeImage(layout, {
      layers: [{ base, files: { "arch": "amd64\n" } }],
      config: { Cmd: ["cat", "/arch"] },
    });
    const arm = await writeImage(layout, {
      layers: [{ files: { "arch": "arm64\n" } }],
      architecture: "arm64",
    });
    const idx = await writeIndex(layout, [
      { image: amd, architecture: "amd64" },
      { image: arm, architecture: "arm64" },
    ]);
    setIndex(layout, "multi", idx.digest, idx.size, true);
    const pushedIdx = await lab.push(layout, "multi", "multi/arch", undefined, true);

    const p = await net("image", "pull", "--tls-verify=false", `${HOST}/multi/arch:multi`);
    assertEquals(p.code, 0, p.stderr);
    assertEquals(p.stdout.trim(), amd.configDigest);
    const r = await c("image", "run", "--rm", `${HOST}/multi/arch:multi`);
    assertEquals(r.stdout, "amd64\n", r.stderr);
    const rec = JSON.parse((await c("image", "get", `${HOST}/multi/arch:multi`)).stdout);
    assertEquals(rec.digest, pushedIdx);

    const pa = await net(
      "image",
      "pull",
      "--tls-verify=false",
      "--platform",
      "linux/arm64",
      `${HOST}/multi/arch:multi`,
    );
    assertEquals(pa.code, 0, pa.stderr);
    assertEquals(pa.stdout.trim(), arm.configDigest);
    // The tag moved to the arm64 image: the amd64 layers, used by nothing now, are gone.
    assertEquals(ls(`${store}/layers`), arm.layers.map((l) => l.diffId.slice(7)));
    assertEquals(
      JSON.parse((await c("image", "get", `${HOST}/multi/arch:multi`)).stdout).platform,
      "linux/arm64",
    );

    // The same index as a Docker manifest list of schema 2 manifests.
    await lab.push(layout, "multi", "multi/docker", undefined, true, "v2s2");
    assertEquals(
      (await lab.rawManifest("multi/docker:multi")).mediaType,
      "application/vnd.docker.distribution.manifest.list.v2+json",
    );
    for (const [arch, want] of [["amd64", "amd64\n"], ["arm64", undefined]] as const) {
      const d = await net(
        "image",
        "pull",
        "--tls-verify=false",
        "--platform",
        `linux/${arch}`,
        `${HOST}/multi/docker:multi`,
      );
      assertEquals(d.code, 0, d.stderr);
      if (want) {
        const dr = await c("image", "run", "--rm", `${HOST}/multi/docker:multi`);
        assertEquals(dr.stdout, want, dr.stderr);
      }
    }

    const none = await net(
      "image",
      "pull",
      "--tls-verify=false",
      "--platform",
      "linux/s390x",
      `${HOST}/multi/arch:multi`,
    );
    assertEquals(none.code, 1);
    assertMatch(
      none.stderr,
      /127\.0\.0\.1:5000\/multi\/arch:multi: no image for platform linux\/s390x \(the index has linux\/amd64, linux\/arm64\)/,
    );
  });
});

labTest("image pull: token auth, --creds, login/logout with an auth file", async (root) => {
  const user = "puller", pass = "s3cret-pw";
  await withLab(root, async ({ lab, tmp, store, base, net }) => {
    const layout = `${tmp}/oci`;
    const img = await writeImage(layout, {
      layers: [{ base, files: { "secret": "s\n" } }],
      config: { Cmd: ["cat", "/secret"] },
    });
    setIndex(layout, "1", img.manifestDigest, img.manifest.length);
    await lab.push(layout, "1", "private/app", `${user}:${pass}`);
    const ref = `${HOST}/private/app:1`;
    const authfile = `${tmp}/auth.json`;

    const anon = await net("image", "pull", "--tls-verify=false", "--authfile", authfile, ref);
    assertEquals(anon.code, 1);
    assertMatch(
      anon.stderr,
      /Cannot pull 127\.0\.0\.1:5000\/private\/app:1: authentication refused/,
    );
    assertMatch(anon.stderr, /capsule image login 127\.0\.0\.1:5000/);

    const wrong = await net("image", "pull", "--tls-verify=false", "--creds", `${user}:nope`, ref);
    assertEquals(wrong.code, 1);
    assertMatch(wrong.stderr, /authentication refused .* for user "puller"/);
    assertEquals(ls(`${store}/images`), []);

    const ok = await net("image", "pull", "--tls-verify=false", "--creds", `${user}:${pass}`, ref);
    assertEquals(ok.code, 0, ok.stderr);
    assertEquals((await net("image", "delete", ref)).code, 0);

    // login: the password from stdin, checked against the registry, stored 0600.
    const loginCmd = (pw: string) => {
      const [cmd, ...pre] = [...lab.enter, ...capsuleArgv()];
      const child = new Deno.Command(cmd, {
        args: [
          ...pre,
          "--store",
          store,
          "image",
          "login",
          "--tls-verify=false",
          "--authfile",
          authfile,
          "-u",
          user,
          HOST,
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      return w.write(new TextEncoder().encode(pw + "\n")).then(() => w.close()).then(() =>
        child.output()
      );
    };
    const bad = await loginCmd("wrong");
    assertEquals(bad.code, 1);
    assertMatch(new TextDecoder().decode(bad.stderr), /user "puller" was refused/);
    let exists = true;
    try {
      Deno.statSync(authfile);
    } catch {
      exists = false;
    }
    assertEquals(exists, false, "a refused login stores nothing");
    const good = await loginCmd(pass);
    assertEquals(good.code, 0, new TextDecoder().decode(good.stderr));
    assertEquals(Deno.statSync(authfile).mode! & 0o777, 0o600);
    const saved = JSON.parse(Deno.readTextFileSync(authfile));
    assertEquals(saved.auths[HOST].auth, btoa(`${user}:${pass}`));

    const withFile = await net("image", "pull", "--tls-verify=false", "--authfile", authfile, ref);
    assertEquals(withFile.code, 0, withFile.stderr);
    assertEquals(
      (await net("image", "logout", "--authfile", authfile, HOST)).code,
      0,
    );
    assertEquals(JSON.parse(Deno.readTextFileSync(authfile)).auths, {});
    const again = await net("image", "logout", "--authfile", authfile, HOST);
    assertEquals(again.code, 1);
    assertMatch(again.stderr, /Not logged in to 127\.0\.0\.1:5000/);
  }, { token: { user, pass } });
});

labTest(
  "image pull: a corrupted blob is refused, bad input is named, nothing is kept",
  async (root) => {
    await withLab(root, async ({ lab, tmp, store, base, net, c }) => {
      const layout = `${tmp}/oci`;
      const img = await writeImage(layout, {
        layers: [{ base, files: {} }, { files: { "x": "x\n" }, compression: "none" }],
      });
      setIndex(layout, "1", img.manifestDigest, img.manifest.length);
      await lab.push(layout, "1", "bad/app");
      // Same length, different bytes: only the digest check can tell.
      const blob = lab.blobPath(img.layers[1].digest);
      const bytes = Deno.readFileSync(blob);
      bytes[600] ^= 0x55;
      Deno.writeFileSync(blob, bytes);

      const r = await net("image", "pull", "--tls-verify=false", `${HOST}/bad/app:1`);
      assertEquals(r.code, 1);
      assertMatch(
        r.stderr,
        new RegExp(
          `Cannot pull 127\\.0\\.0\\.1:5000/bad/app:1: layer ${
            img.layers[1].digest
          } does not match its digest .*nothing was kept`,
        ),
      );
      assert(!/\n\s+at /.test(r.stderr), `no stack trace: ${r.stderr}`);
      assertEquals(ls(`${store}/images`), []);
      // The intact base layer may stay (complete and verified); nothing half-written does.
      for (const d of ls(`${store}/layers`)) {
        assert(!d.startsWith(".tmp-"), `temporary ${d} left`);
        assertEquals(d, img.layers[0].diffId.slice(7));
      }

      // overlayfs reads trusted.overlay.* of a lower layer as its own (opaque, redirect,
      // metacopy): a layer must not set them through its tar's xattrs.
      const sneaky = await writeImage(layout, {
        layers: [
          { base, files: { "shown/file": "still here\n" } },
          { files: {}, xattrs: { "shown": { "trusted.overlay.opaque": "y" } } },
        ],
        config: { Cmd: ["cat", "/shown/file"] },
      });
      setIndex(layout, "1", sneaky.manifestDigest, sneaky.manifest.length);
      await lab.push(layout, "1", "sneaky/app");
      const sp = await net("image", "pull", "--tls-verify=false", `${HOST}/sneaky/app:1`);
      assertEquals(sp.code, 0, sp.stderr);
      const sr = await c("image", "run", "--rm", `${HOST}/sneaky/app:1`);
      assertEquals([sr.code, sr.stdout], [0, "still here\n"], sr.stderr);
      assertEquals((await c("image", "delete", `${HOST}/sneaky/app:1`)).code, 0);

      const cases: [string[], RegExp][] = [
        [
          [`${HOST}/bad/app:nope`],
          /Cannot pull 127\.0\.0\.1:5000\/bad\/app:nope: .*no tag "nope" \(404\)|tag "nope"/,
        ],
        [[`${HOST}/no/such:1`], /Cannot pull 127\.0\.0\.1:5000\/no\/such:1: .*404/],
        [
          ["127.0.0.1:5999/x:1"],
          /Cannot pull 127\.0\.0\.1:5999\/x:1: registry 127\.0\.0\.1:5999 is unreachable/,
        ],
        [["Bad/Name"], /Invalid image reference "Bad\/Name"/],
        [[`${HOST}/bad/app:1`, "--platform", "linux"], /Invalid --platform "linux"/],
      ];
      for (const [args, re] of cases) {
        const o = await net("image", "pull", "--tls-verify=false", ...args);
        assertEquals(o.code, 1, `${args}: ${o.stderr}`);
        assertMatch(o.stderr, re);
      }
      assertEquals(ls(`${store}/images`), []);
    });
  },
);

labTest("image pull: an interrupted pull keeps no image and no partial layer", async (root) => {
  await withLab(root, async ({ lab, tmp, store, base, net, c }) => {
    const layout = `${tmp}/oci`;
    // A large uncompressed layer, so that the pull is still running when it is interrupted.
    const big = new Uint8Array(64 << 20);
    for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
    Deno.mkdirSync(`${tmp}/bigtree`);
    Deno.writeFileSync(`${tmp}/bigtree/big.bin`, big);
    const img = await writeImage(layout, {
      layers: [{ base, files: {} }, { base: `${tmp}/bigtree`, files: {}, compression: "none" }],
      config: { Cmd: ["ls", "-l", "/big.bin"] },
    });
    setIndex(layout, "1", img.manifestDigest, img.manifest.length);
    await lab.push(layout, "1", "big/app");
    const ref = `${HOST}/big/app:1`;

    for (const signal of ["SIGINT", "SIGKILL"] as const) {
      const [cmd, ...pre] = [...lab.enter, ...capsuleArgv()];
      const child = new Deno.Command(cmd, {
        args: [
          ...pre,
          "--root",
          root,
          "--store",
          store,
          "image",
          "pull",
          "--tls-verify=false",
          ref,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      // Interrupt once the big layer is being written.
      await waitFor(
        () => ls(`${store}/layers`).some((d) => d.startsWith(".tmp-")),
        20000,
        "a layer download",
      );
      // nsenter execs capsule (no fork without --fork): the child pid is capsule's.
      Deno.kill(child.pid, signal);
      const o = await child.output();
      assert(!o.success, "the pull was interrupted");
      if (signal === "SIGINT") {
        assertMatch(
          new TextDecoder().decode(o.stderr),
          /Pull of .* interrupted; no image was kept/,
        );
        assert(!ls(`${store}/layers`).some((d) => d.startsWith(".tmp-")), "no temp layer left");
      }
      assertEquals(ls(`${store}/images`).filter((d) => !d.startsWith(".tmp-")), []);
      for (const d of ls(`${store}/layers`)) {
        if (d.startsWith(".tmp-")) continue; // a SIGKILLed pull's: swept by the next one
        assert(img.layers.some((l) => l.diffId.slice(7) === d), `unknown layer ${d}`);
        Deno.statSync(`${store}/layers/${d}/layer.json`); // complete ones only
      }
    }
    const p = await net("image", "pull", "--tls-verify=false", ref);
    assertEquals(p.code, 0, p.stderr);
    assert(!ls(`${store}/layers`).some((d) => d.startsWith(".tmp-")), "swept");
    const r = await c("image", "run", "--rm", ref);
    assertMatch(r.stdout, /67108864/, r.stderr);
  });
});
