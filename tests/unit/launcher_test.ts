// dist/capsule, the launcher that deno task build writes: it finds main.js beside itself with
// shell builtins (no readlink/dirname processes on each call, and no PATH needed), also when
// called by a relative path or through a symlink to it.
import { build } from "../../scripts/build.ts";
import { assert, assertEquals } from "./fake_rootfs_ops.ts";

async function version(cmd: string, cwd: string, env: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(cmd, { args: ["--version"], cwd, env, clearEnv: true })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert(out.success, `${cmd} --version failed: ${text}`);
  return text.split("\n")[0];
}

Deno.test("launcher: runs main.js beside it by absolute or relative path with no PATH, and through a symlink", async () => {
  const dir = await Deno.makeTempDir({ prefix: "capsule-launcher-" });
  try {
    const launcher = await build(`${dir}/dist`);
    // A PATH where no program is found: the launcher runs none of its own (each costs ms).
    const noPath = { PATH: "/nonexistent" };
    assertEquals(await version(launcher, "/", noPath), "capsule version 0.1.0");
    assertEquals(await version("dist/capsule", dir, noPath), "capsule version 0.1.0");
    await Deno.mkdir(`${dir}/bin`);
    await Deno.symlink(launcher, `${dir}/bin/capsule`);
    assertEquals(
      await version(`${dir}/bin/capsule`, "/", { PATH: "/usr/bin:/bin" }),
      "capsule version 0.1.0",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
