// The release artifact (deno task release): untarred into a temp directory and linked into a
// PATH directory, it runs a container with the checkout, Node.js, npm and Deno's caches out of
// sight, no environment and no network (a private mount and network namespace, unshare -mn).
import {
  assert,
  assertEquals,
  assertMatch,
  buildBusyboxRootfs,
  capsuleCgroups,
  needsRoot,
  removeAll,
  REPO,
} from "../helpers.ts";
import { release } from "../../scripts/release.ts";
import { VERSION } from "../../runtime/version.ts";
import { defaultSpec } from "../../runtime/spec.ts";

Deno.test({
  name: "release: the tarball runs a container offline, with no checkout, Node.js or npm",
  ignore: needsRoot,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const tmp = await Deno.makeTempDir({ prefix: "capsule-release-" });
    const before = new Set(capsuleCgroups());
    try {
      const tarball = await release(`${tmp}/out`);
      assertEquals(tarball, `${tmp}/out/capsule-${VERSION}-linux-x86_64.tar.gz`);
      Deno.mkdirSync(`${tmp}/opt`);
      const untar = await new Deno.Command("tar", { args: ["-C", `${tmp}/opt`, "-xzf", tarball] })
        .output();
      assert(untar.success, new TextDecoder().decode(untar.stderr));
      Deno.removeSync(`${tmp}/out`, { recursive: true });
      // Linked into PATH, as /usr/local/bin/capsule would be.
      Deno.mkdirSync(`${tmp}/bin`);
      Deno.symlinkSync(`${tmp}/opt/capsule-${VERSION}-linux-x86_64/capsule`, `${tmp}/bin/capsule`);
      Deno.mkdirSync(`${tmp}/b/rootfs`, { recursive: true });
      await buildBusyboxRootfs(`${tmp}/b/rootfs`);
      const spec = defaultSpec();
      spec.process!.args = ["sh", "-c", "echo released in $(hostname)"];
      spec.hostname = "rel";
      spec.root = { path: "rootfs", readonly: true };
      Deno.writeTextFileSync(`${tmp}/b/config.json`, JSON.stringify(spec));
      Deno.mkdirSync(`${tmp}/home`);
      // What must not be needed: the checkout (its Deno, node_modules, dist), Node.js, npm.
      const hide = [REPO, "/usr/lib/node_modules", "/usr/local/lib/node_modules", "/root/.cache"]
        .filter((p) => {
          try {
            return Deno.statSync(p).isDirectory;
          } catch {
            return false;
          }
        });
      const bins = ["node", "npm", "npx", "deno"].flatMap((b) =>
        ["/usr/bin", "/usr/local/bin", "/bin"].map((d) => `${d}/${b}`)
      ).filter((p) => {
        try {
          Deno.statSync(p);
          return true;
        } catch {
          return false;
        }
      });
      const script = [
        "set -e",
        ...bins.map((b) => `mount --bind /dev/null '${b}'`),
        ...hide.map((d) => `mount -t tmpfs -o size=1m none '${d}'`),
        // Nothing of that is reachable any more, and there is no network.
        `! command -v node && ! command -v npm && ! command -v deno && [ ! -e '${REPO}/main.ts' ]`,
        `[ "$(ip -o link | wc -l)" = 1 ]`,
        `cd '${tmp}/b'`,
        "capsule --version",
        `capsule --root '${tmp}/state' run rel1`,
      ].join("\n");
      const out = await new Deno.Command("unshare", {
        args: ["-m", "-n", "--propagation", "private", "sh", "-c", script],
        clearEnv: true,
        env: { PATH: `${tmp}/bin:/usr/sbin:/usr/bin:/sbin:/bin`, HOME: `${tmp}/home` },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(out.stdout);
      const stderr = new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 0, `stdout: ${stdout}\nstderr: ${stderr}`);
      assertMatch(stdout, new RegExp(`^capsule version ${VERSION.replaceAll(".", "\\.")}\n`));
      assertMatch(stdout, /\nreleased in rel\n$/);
      assertEquals([...Deno.readDirSync(`${tmp}/state`)], [], "run removed its container");
    } finally {
      for (const d of capsuleCgroups().filter((d) => !before.has(d))) {
        await Deno.remove(d).catch(() => {});
      }
      await removeAll(tmp);
    }
  },
});
