// Rootless: capsule run by an unprivileged user (nobody), with `spec --rootless` (a user
// namespace mapping that user to root) and no cgroups. The bundle is built into a directory
// that user can read, with a copy of Deno, so the test does not depend on where the checkout is.
import { assertEquals, assertMatch, buildBusyboxRootfs, isRoot, removeAll } from "../helpers.ts";
import { build } from "../../scripts/build.ts";

const NOBODY = 65534;

Deno.test({
  name: "rootless: an unprivileged user runs, execs into and deletes a container",
  ignore: !isRoot(),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "capsule-rootless-" });
    try {
      // The bundle and a copy of Deno, in a directory the unprivileged user can read.
      Deno.copyFileSync(Deno.execPath(), `${dir}/deno`);
      const launcher = await build(`${dir}/dist`, `${dir}/deno`);
      Deno.mkdirSync(`${dir}/b/rootfs`, { recursive: true });
      await buildBusyboxRootfs(`${dir}/b/rootfs`);
      for (const d of ["b", "home", "state"]) Deno.mkdirSync(`${dir}/${d}`, { recursive: true });
      await new Deno.Command("chmod", { args: ["-R", "a+rX", dir] }).output();
      await new Deno.Command("chown", {
        args: ["-R", `${NOBODY}:${NOBODY}`, `${dir}/b`, `${dir}/home`, `${dir}/state`],
      })
        .output();
      const as = async (args: string[]) => {
        const out = await new Deno.Command("setpriv", {
          args: [
            `--reuid=${NOBODY}`,
            `--regid=${NOBODY}`,
            "--clear-groups",
            launcher,
            "--root",
            `${dir}/state`,
            ...args,
          ],
          cwd: `${dir}/b`,
          env: { HOME: `${dir}/home`, DENO_DIR: `${dir}/home/deno`, PATH: "/usr/bin:/bin" },
          clearEnv: true,
          stdin: "null",
        }).output();
        const dec = new TextDecoder();
        return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
      };
      const spec = await as(["spec", "--rootless"]);
      assertEquals(spec.code, 0, spec.stderr);
      const cfg = JSON.parse(Deno.readTextFileSync(`${dir}/b/config.json`));
      assertEquals(cfg.linux.uidMappings, [{ containerID: 0, hostID: NOBODY, size: 1 }]);
      cfg.process.terminal = false; // runc's starter has an interactive sh; these capture output
      cfg.process.args = ["sh", "-c", "id -u; cat /proc/self/uid_map | tr -s ' '; exit 3"];
      Deno.writeTextFileSync(`${dir}/b/config.json`, JSON.stringify(cfg));
      const run = await as(["run", "r1"]);
      assertEquals(run.code, 3, run.stderr);
      assertEquals(run.stdout, `0\n 0 ${NOBODY} 1\n`);
      cfg.process.args = ["sleep", "60"];
      Deno.writeTextFileSync(`${dir}/b/config.json`, JSON.stringify(cfg));
      const r2 = await as(["run", "-d", "r2"]);
      assertEquals(r2.code, 0, r2.stderr);
      const ex = await as(["exec", "r2", "sh", "-c", "id -u; echo $$"]);
      assertEquals(ex.code, 0, ex.stderr);
      assertMatch(ex.stdout, /^0\n\d+\n$/);
      const pid = JSON.parse((await as(["state", "r2"])).stdout).pid;
      assertMatch(
        Deno.readTextFileSync(`/proc/${pid}/status`),
        new RegExp(`\\nUid:\\t${NOBODY}\\t`),
      );
      assertEquals((await as(["delete", "-f", "r2"])).code, 0);
      assertEquals([...Deno.readDirSync(`${dir}/state`)].map((e) => e.name), []);
    } finally {
      await removeAll(dir);
    }
  },
});
