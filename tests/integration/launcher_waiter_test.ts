// The launcher (dist/capsule) runs Deno with V8_FLAGS; `run -d` runs capsule again as a child of
// the root's monitor (runtime/waiter.ts selfCommand). That second run must get the same V8 flags:
// Deno's code cache is only valid for the flags it was made with, so a run without them
// recompiles everything and rewrites the cache, and the next command with the launcher's flags
// recompiles again. Measured on s7-v8flags (busybox `sleep 30`, 10 cycles of run -d; exec true;
// delete -f): 214-231 ms a cycle against 179-194 on e24ae1f, 151-157 with the waiter given the
// flags; `list` right after a run -d: median 56 ms against 21 steady.
import { V8_FLAGS } from "../../runtime/v8_flags.ts";
import { assert, makeBundle, removeAll, REPO, rootTest } from "../helpers.ts";

rootTest("run -d: the monitor runs capsule with the launcher's V8 flags", async (root) => {
  const seen = await Deno.makeTempFile({ prefix: "capsule-argv-" });
  // A createRuntime hook runs as a child of that second capsule: it keeps its parent's argv.
  const bundle = await makeBundle("sleep 30", (spec) => {
    spec.hooks = {
      createRuntime: [{ path: "/bin/sh", args: ["sh", "-c", `cat /proc/$PPID/cmdline > ${seen}`] }],
    };
  });
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
    const argv = Deno.readTextFileSync(seen).split("\0");
    assert(argv.includes(`run`) && argv.includes(id), `not the second run: ${argv.join(" ")}`);
    assert(
      argv.includes(`--v8-flags=${V8_FLAGS}`),
      `the monitor's capsule runs without --v8-flags=${V8_FLAGS}: ${argv.join(" ")}`,
    );
  } finally {
    await cmd(["delete", "-f", id]);
    await removeAll(bundle);
    await Deno.remove(seen);
  }
});
