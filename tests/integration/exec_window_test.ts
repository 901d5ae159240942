// What a container granted CAP_SYS_PTRACE (a debugger's) can reach of `capsule exec`: no process
// with more capabilities than the container's may ever appear in its PID namespace, since such a
// container passes ptrace_may_access on it (non-dumpable does not stop CAP_SYS_PTRACE) and could
// open its /proc/<pid>/mem read-write and write code into a host root (an escape). A static C
// probe (tests/fixtures/exec_window_probe.c) scans /proc in a tight loop inside the container
// while the host runs `exec true` 20 times. See docs/DESIGN.md "A native helper on the start
// path" (the prototype's seal_check.sh, section 3: git show b7a7756:bench/spike/). Root only.
import {
  assert,
  assertEquals,
  capsule,
  makeBundle,
  removeAll,
  REPO,
  rootTest,
  spawnCapsule,
  waitFor,
} from "../helpers.ts";

/** How many `exec true` run while the probe watches. */
const EXECS = 20;
/** The probe's own limit (s), should the test never tell it to stop. */
const PROBE_MAX_SECONDS = 120;

rootTest(
  "exec: no process with capabilities beyond the container's appears in it (CAP_SYS_PTRACE)",
  async (root) => {
    // capsule spec's caps (AUDIT_WRITE, KILL, NET_BIND_SERVICE) + SYS_PTRACE in every set: far
    // below a host root's, so an exec helper that is host root with every capability shows.
    const b = await makeBundle(["sleep", "100000"], (s) => {
      const caps = s.process!.capabilities as Record<string, string[]>;
      for (const set of Object.keys(caps)) caps[set] = [...caps[set], "CAP_SYS_PTRACE"];
    }, { ownRootfs: true });
    const stopFile = "/tmp/exec_window_stop";
    let probe: Deno.ChildProcess | undefined;
    let reading: Promise<void> | undefined;
    let errText: Promise<string> | undefined;
    const lines: string[] = [];
    try {
      const cc = await new Deno.Command("gcc", {
        args: [
          "-static",
          "-O2",
          "-o",
          `${b}/rootfs/exec_window_probe`,
          `${REPO}/tests/fixtures/exec_window_probe.c`,
        ],
      }).output();
      assert(cc.success, new TextDecoder().decode(cc.stderr));
      const run = await capsule(root, ["run", "-d", "-b", b, "ew1"]);
      assertEquals(run.code, 0, run.stderr);

      probe = spawnCapsule(root, [
        "exec",
        "ew1",
        "/exec_window_probe",
        stopFile,
        `${PROBE_MAX_SECONDS}`,
      ]);
      errText = new Response(probe.stderr).text();
      const out = probe.stdout.pipeThrough(new TextDecoderStream());
      reading = (async () => {
        let rest = "";
        for await (const chunk of out) {
          const parts = (rest + chunk).split("\n");
          rest = parts.pop()!;
          lines.push(...parts);
        }
        if (rest) lines.push(rest);
      })();
      await waitFor(
        () => lines.some((l) => l.startsWith("ready ")),
        10000,
        "the probe's first scan",
      ).catch((e) => {
        throw new Error(`${(e as Error).message}; the probe printed:\n${lines.join("\n")}`);
      });

      for (let i = 0; i < EXECS; i++) {
        const r = await capsule(root, ["exec", "ew1", "true"]);
        assertEquals(r.code, 0, r.stderr);
      }
      assert(
        !lines.some((l) => l.startsWith("done ")),
        `the probe ended before the ${EXECS} execs did:\n${lines.join("\n")}`,
      );
      await Deno.writeTextFile(`${b}/rootfs${stopFile}`, "");
      const st = await probe.status;
      await reading;
      const err = await errText;
      probe = undefined;
      assertEquals(st.code, 0, `the probe's exec failed: ${err}\n${lines.join("\n")}`);

      // A breach: pid, comm, CapEff, CapPrm, uids, and whether its mem opened read-write.
      const breaches = lines.filter((l) => l.startsWith("BREACH "));
      const bnd = lines.find((l) => l.startsWith("ready "))?.split(" ")[1];
      assert(
        breaches.length === 0,
        `${breaches.length} process(es) in the container had capabilities beyond the ` +
          `container's (${bnd}) during ${EXECS} execs; holding CAP_SYS_PTRACE, the container ` +
          `can write the memory of each whose mem opened:\n${breaches.join("\n")}`,
      );
      // The probe must have watched the whole time: stopped by the test, not by its timeout,
      // after scanning, and it saw at least one of the execs' processes (so it sees /proc).
      const done = lines.find((l) => l.startsWith("done "));
      assert(done, `the probe never finished:\n${lines.join("\n")}`);
      const field = (k: string) => Number(new RegExp(`\\b${k}=(\\d+)`).exec(done)?.[1]);
      assert(/ stopped=by-file /.test(done), `the probe was not stopped by the test: ${done}`);
      assert(field("scans") > EXECS, `the probe barely scanned: ${done}`);
      assert(
        field("seen") > 0,
        `the probe saw none of the ${EXECS} execs' processes: it proves nothing: ${done}`,
      );
      console.log(`  probe: ${done}`);
    } finally {
      // After a failure the probe may still run: stopping the container ends it.
      if (probe) await Deno.writeTextFile(`${b}/rootfs${stopFile}`, "").catch(() => {});
      await capsule(root, ["delete", "-f", "ew1"]);
      if (probe) {
        await probe.status;
        await reading?.catch(() => {});
        await errText?.catch(() => "");
      }
      await removeAll(b);
    }
  },
);
