// Volumes and the store give no local user root: a setuid-root file that a container writes
// into a named or an anonymous volume cannot be run by another user (nobody), who cannot list
// the store or the state root either; directories made loose by hand or by an older capsule
// are tightened by the next command that uses them.
import {
  assert,
  assertEquals,
  buildBusyboxRootfs,
  capsule,
  type Result,
  rootTest,
} from "../helpers.ts";

const NOBODY = "65534";

/**
 * Runs argv as nobody (no groups, no capabilities); the exit code and stderr. A shell does the
 * exec: setpriv itself execs with root's capabilities still in effect (seen here: it ran a
 * setuid file that nobody cannot even stat), as no login shell of nobody would.
 */
async function asNobody(...argv: string[]): Promise<{ code: number; stderr: string }> {
  const out = await new Deno.Command("setpriv", {
    args: [
      `--reuid=${NOBODY}`,
      `--regid=${NOBODY}`,
      "--clear-groups",
      "sh",
      "-c",
      '"$@"',
      "sh",
      ...argv,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

const mode = (p: string) => (Deno.statSync(p).mode ?? 0) & 0o7777;

rootTest(
  "store: nobody cannot run a setuid file put in a volume, nor list the store",
  async (root) => {
    // Everything above the store is open to everyone: only capsule's own modes keep nobody out.
    const tmp = await Deno.makeTempDir({ prefix: "capsule-perms-" });
    Deno.chmodSync(tmp, 0o755);
    const store = `${tmp}/store`;
    const c = (...args: string[]): Promise<Result> => capsule(root, ["--store", store, ...args]);
    try {
      // A store and state root left loose (by hand, or by an older capsule that made them 0711).
      Deno.mkdirSync(`${store}/volumes`, { recursive: true });
      Deno.chmodSync(store, 0o755);
      Deno.chmodSync(`${store}/volumes`, 0o711);
      Deno.chmodSync(root, 0o711);
      Deno.mkdirSync(`${tmp}/rootfs`);
      await buildBusyboxRootfs(`${tmp}/rootfs`);
      const tar = await new Deno.Command("tar", {
        args: ["-C", `${tmp}/rootfs`, "-cf", `${tmp}/bb.tar`, "."],
      }).output();
      assert(tar.success, "tar failed");
      let r = await c("image", "create", "bb", `${tmp}/bb.tar`);
      assertEquals(r.code, 0, r.stderr);
      r = await c("volume", "create", "named1");
      assertEquals(r.code, 0, r.stderr);
      const plant = "for d in /named /anon; do cp /bin/busybox $d/sush && chmod 4755 $d/sush; done";
      r = await c(
        "image",
        "run",
        "--id",
        "perms1",
        "-v",
        "named1:/named",
        "-v",
        "/anon",
        "bb",
        "sh",
        "-c",
        plant,
      );
      assertEquals(r.code, 0, r.stderr);
      const named = `${store}/volumes/named1/sush`;
      const anonDir = `${store}/volumes/_anon/perms1`;
      const anon = [...Deno.readDirSync(anonDir)].map((e) => `${anonDir}/${e.name}/sush`);
      assertEquals(anon.length, 1);
      for (const f of [named, anon[0]]) {
        assertEquals(mode(f), 0o4755, `${f} is setuid (the container made it)`);
        const run = await asNobody(f, "true");
        assert(run.code !== 0, `nobody ran the setuid file ${f}`);
        // Before the fix busybox ran as root here ("sush: applet not found", from busybox).
        assert(/Permission denied/.test(run.stderr), `nobody ran ${f}: ${run.stderr.trim()}`);
      }
      for (const d of [store, root]) {
        const ls = await asNobody("ls", d);
        assert(ls.code !== 0 && /Permission denied/.test(ls.stderr), `nobody listed ${d}`);
      }
      for (
        const d of [
          store,
          `${store}/images`,
          `${store}/containers`,
          `${store}/volumes`,
          `${store}/volumes/_anon`,
          anonDir,
          root,
        ]
      ) {
        assertEquals(mode(d) & 0o077, 0, `${d} is ${mode(d).toString(8)}`);
      }
      r = await c("image", "destroyc", "perms1");
      assertEquals(r.code, 0, r.stderr);
      r = await c("volume", "rm", "named1");
      assertEquals(r.code, 0, r.stderr);
    } finally {
      for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
        const mp = line.split(" ")[4];
        if (mp?.startsWith(tmp)) await new Deno.Command("umount", { args: ["-l", mp] }).output();
      }
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
);
