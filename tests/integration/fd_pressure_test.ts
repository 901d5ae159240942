// Near the open-file limit (RLIMIT_NOFILE), a create that fails must still say why on stderr.
// spawnHelper's /dev/null stdio (runtime/helper_process.ts withNullStdio) copies this process's
// fds 0-2 first and takes a copy that failed for an fd that was not open, so it closes that fd
// after the spawn: with EMFILE, `run -d` closed its own stderr and exited 1 saying nothing
// (ulimit -n 32 with dist/capsule on s7-v8flags; e24ae1f names the error at every limit).
import { assert, capsule, capsuleCommand, makeBundle, removeAll, rootTest } from "../helpers.ts";

rootTest("run -d near the fd limit: every failure says why on stderr", async (root) => {
  const bundle = await makeBundle("sleep 30", (s) => {
    delete s.process!.rlimits; // only the fd limit of this test decides
  });
  const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
  const silent: number[] = [];
  try {
    for (let n = 20; n <= 64; n++) {
      const id = `fdp${n}`;
      const line = `ulimit -n ${n}; exec ` +
        [...capsuleCommand(), "--root", root, "run", "-d", id].map(q).join(" ");
      const r = await new Deno.Command("sh", {
        args: ["-c", line],
        cwd: bundle,
        // No waiter: the failure is this process's own (the waiter only passes it on).
        env: { CAPSULE_WAITED: id },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!r.success && new TextDecoder().decode(r.stderr).trim() === "") silent.push(n);
      await capsule(root, ["delete", "-f", id]);
    }
    assert(silent.length === 0, `run -d failed without a word at ulimit -n ${silent.join(", ")}`);
  } finally {
    await removeAll(bundle);
  }
});
