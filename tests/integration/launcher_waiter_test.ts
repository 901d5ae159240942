// The launcher (dist/capsule) runs Deno with V8_FLAGS; `run -d` runs capsule again under its
// waiter (runtime/waiter.ts selfCommand). That second run must get the same V8 flags: Deno's
// code cache is only valid for the flags it was made with, so a run without them recompiles
// everything and rewrites the cache, and the next command with the launcher's flags recompiles
// again. Measured on s7-v8flags (busybox `sleep 30`, 10 cycles of run -d; exec true; delete -f):
// 214-231 ms a cycle against 179-194 on e24ae1f, 151-157 with the waiter given the flags;
// `list` right after a run -d: median 56 ms against 21 steady.
import { V8_FLAGS } from "../../runtime/v8_flags.ts";
import { assert, makeBundle, removeAll, REPO, rootTest } from "../helpers.ts";

rootTest("run -d: the waiter runs capsule with the launcher's V8 flags", async (root) => {
  const bundle = await makeBundle("sleep 30");
  const launcher = `${REPO}/dist/capsule`;
  const id = "v8waited";
  const cmd = (args: string[]) =>
    new Deno.Command(launcher, {
      args: ["--root", root, ...args],
      cwd: bundle,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  try {
    const r = await cmd(["run", "-d", id]);
    assert(r.success, new TextDecoder().decode(r.stderr));
    // The waiter is the perl process whose arguments name this container's state directory.
    let waiter: string[] | undefined;
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      try {
        const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
        if (argv[0] === "/usr/bin/perl" && argv.includes(`${root}/${id}`)) waiter = argv;
      } catch { /* gone */ }
    }
    assert(waiter, "no waiter found for the detached container");
    const again = waiter.slice(waiter.indexOf(`${root}/${id}`));
    assert(
      again.includes(`--v8-flags=${V8_FLAGS}`),
      `the waiter's capsule runs without --v8-flags=${V8_FLAGS}: ${again.join(" ")}`,
    );
  } finally {
    await cmd(["delete", "-f", id]);
    await removeAll(bundle);
  }
});
