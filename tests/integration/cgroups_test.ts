// Resource limits on this host's cgroups (v1 here; the v2 run is cgroup_v2_vm_test.ts):
// OOM kill, pids limit, cpu files, update, pause/resume, events --stats, cleanup.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  cgroupDirsNamed,
  makeBundle,
  removeAll,
  rootTest,
  sleep,
  state,
  waitFor,
} from "../helpers.ts";
import { exists } from "../../runtime/state.ts";

const MiB = 1024 * 1024;

function cgFile(paths: Record<string, string>, controller: string, file: string): string {
  const dir = paths[controller] ?? paths[""];
  return Deno.readTextFileSync(`${dir}/${file}`).trim();
}

rootTest(
  "memory limit: 64 MiB in a 32 MiB container is OOM-killed (137); 128 MiB is fine",
  async (root) => {
    const alloc = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"];
    const small = await makeBundle(
      alloc,
      (s) => (s.linux!.resources = { memory: { limit: 32 * MiB } }),
    );
    const big = await makeBundle(
      alloc,
      (s) => (s.linux!.resources = { memory: { limit: 128 * MiB } }),
    );
    try {
      const r1 = await capsule(root, ["run", "-b", small, "oom1"]);
      assertEquals(r1.code, 137, r1.stderr);
      const r2 = await capsule(root, ["run", "-b", big, "oom2"]);
      assertEquals(r2.code, 0, r2.stderr);
    } finally {
      await removeAll(small, big);
    }
  },
);

/** `bundle`'s config.json with every `placeholder` number made the literal `literal`. */
function withLiteral(bundle: string, placeholder: number, literal: string): void {
  const text = Deno.readTextFileSync(`${bundle}/config.json`);
  assert(text.includes(String(placeholder)));
  Deno.writeTextFileSync(
    `${bundle}/config.json`,
    text.replaceAll(String(placeholder), literal),
  );
}

rootTest(
  "int64 limits past 2^53-1 are read exactly: memory.limit 9223372036854775807 runs and the cgroup holds the kernel's value for it, as with runc; update --resources takes it too; pids.limit 9223372036854775807 is the kernel's refusal, named",
  async (root) => {
    const PLACEHOLDER = 123454321;
    const big = await makeBundle("true", (s) => {
      s.linux!.resources = { memory: { limit: PLACEHOLDER, swap: PLACEHOLDER } };
    });
    const sleeper = await makeBundle("sleep 30", (s) => {
      s.linux!.resources = { memory: { limit: PLACEHOLDER, swap: PLACEHOLDER } };
    });
    const pids = await makeBundle("true", (s) => {
      s.linux!.resources = { pids: { limit: PLACEHOLDER } };
    });
    for (const b of [big, sleeper, pids]) withLiteral(b, PLACEHOLDER, "9223372036854775807");
    const file = await Deno.makeTempFile();
    try {
      const r = await capsule(root, ["run", "-b", big, "bigmem1"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals((await capsule(root, ["run", "-d", "-b", sleeper, "bigmem2"])).code, 0);
      const paths = (await state(root, "bigmem2", true)).detail.cgroupPaths;
      // The kernel keeps whole pages: v1 reads back 2^63-1 rounded down to a page (what runc's
      // container shows), v2 "max".
      const page = 4096n; // x86_64's
      const kernels = (2n ** 63n - 1n) / page * page;
      const limitFile = paths.memory ? "memory.limit_in_bytes" : "memory.max";
      const want = paths.memory ? String(kernels) : "max";
      assertEquals(cgFile(paths, "memory", limitFile), want);
      // update: back to 64 MiB, then 2^63-1 again from a --resources file (as podman sends it).
      const u = await capsule(root, [
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "64m",
        "bigmem2",
      ]);
      assertEquals(u.code, 0, u.stderr);
      assertEquals(cgFile(paths, "memory", limitFile), String(64 * MiB));
      await Deno.writeTextFile(
        file,
        '{"memory": {"limit": 9223372036854775807, "swap": 9223372036854775807}}',
      );
      const f = await capsule(root, ["update", "--resources", file, "bigmem2"]);
      assertEquals(f.code, 0, f.stderr);
      assertEquals(cgFile(paths, "memory", limitFile), want);
      assertEquals((await capsule(root, ["delete", "-f", "bigmem2"])).code, 0);
      // runc: "failed to write "9223372036854775807": write .../pids.max: invalid argument".
      const p = await capsule(root, ["run", "-b", pids, "bigpids"]);
      assertEquals(p.code, 1, p.stderr);
      assertMatch(
        p.stderr,
        /Cannot set pids limit 9223372036854775807 in \S+\/pids\.max: invalid argument/,
      );
      assert(!/^\s+at /m.test(p.stderr), p.stderr);
      assertEquals(cgroupDirsNamed("bigpids"), []);
    } finally {
      await capsule(root, ["delete", "-f", "bigmem2"]);
      await removeAll(big, sleeper, pids, file);
    }
  },
);

rootTest("pids limit 20 stops a fork loop at 20", async (root) => {
  // ash gives up on the first failed fork: the loop runs in an inner shell, and PID 1 then
  // reports without forking (echo is built in, exec replaces the shell).
  const b = await makeBundle(
    "sh -c 'for i in $(seq 1 40); do sleep 30 & done'; echo forked; exec sleep 30",
    (s) => {
      s.linux!.resources = { pids: { limit: 20 } };
    },
  );
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "pids1"])).code, 0);
    const paths = (await state(root, "pids1", true)).detail.cgroupPaths;
    await waitFor(
      () => Deno.readTextFileSync(`${root}/pids1/container.log`).includes("forked"),
      10_000,
      "loop",
    );
    assertEquals(cgFile(paths, "pids", "pids.max"), "20");
    const current = Number(cgFile(paths, "pids", "pids.current"));
    assert(current >= 18 && current <= 20, `pids.current ${current}`);
    assertMatch(Deno.readTextFileSync(`${root}/pids1/container.log`), /fork/i);
    const out = (await capsule(root, ["events", "--stats", "pids1"])).stdout;
    const st = JSON.parse(out);
    assertEquals(st.type, "stats");
    // No memory limit: the kernel's own value, exactly as runc prints it (a uint64 past 2^53-1:
    // v1's 9223372036854771712, v2's "max" as 18446744073709551615).
    const v2 = paths[""] !== undefined;
    const memLimit = v2 ? "18446744073709551615" : cgFile(paths, "memory", "memory.limit_in_bytes");
    assert(out.includes(`"usage":{"limit":${memLimit},`), `memory limit ${memLimit}: ${out}`);
    assertEquals(st.data.pids.current, current);
    assertEquals(st.data.pids.limit, 20);
    assertEquals((await capsule(root, ["delete", "-f", "pids1"])).code, 0);
  } finally {
    await removeAll(b);
  }
});

rootTest("cpu shares and quota land in the cgroup; update changes them live", async (root) => {
  const b = await makeBundle("sleep 60", (s) => {
    s.linux!.resources = {
      cpu: { shares: 512, quota: 50000, period: 100000 },
      memory: { limit: 64 * MiB },
    };
  });
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "cpu1"])).code, 0);
    const paths = (await state(root, "cpu1", true)).detail.cgroupPaths;
    if (paths.cpu) {
      assertEquals(cgFile(paths, "cpu", "cpu.shares"), "512");
      assertEquals(cgFile(paths, "cpu", "cpu.cfs_quota_us"), "50000");
      assertEquals(cgFile(paths, "cpu", "cpu.cfs_period_us"), "100000");
      assertEquals(cgFile(paths, "memory", "memory.limit_in_bytes"), String(64 * MiB));
    } else {
      assertEquals(cgFile(paths, "", "cpu.max"), "50000 100000");
    }
    const u = await capsule(root, [
      "update",
      "--cpu-shares",
      "256",
      "--cpu-quota",
      "20000",
      "--memory",
      "96m",
      "--pids-limit",
      "50",
      "cpu1",
    ]);
    assertEquals(u.code, 0, u.stderr);
    if (paths.cpu) {
      assertEquals(cgFile(paths, "cpu", "cpu.shares"), "256");
      assertEquals(cgFile(paths, "cpu", "cpu.cfs_quota_us"), "20000");
      assertEquals(cgFile(paths, "memory", "memory.limit_in_bytes"), String(96 * MiB));
      assertEquals(cgFile(paths, "pids", "pids.max"), "50");
    }
    // --resources FILE, as podman sends it.
    const file = await Deno.makeTempFile();
    await Deno.writeTextFile(file, JSON.stringify({ memory: { limit: 80 * MiB } }));
    assertEquals((await capsule(root, ["update", "--resources", file, "cpu1"])).code, 0);
    if (paths.memory) {
      assertEquals(cgFile(paths, "memory", "memory.limit_in_bytes"), String(80 * MiB));
    }
    // Bad input names the value; the old limit stays.
    const bad = await capsule(root, ["update", "--memory", "lots", "cpu1"]);
    assertEquals(bad.code, 1);
    assertMatch(bad.stderr, /Invalid --memory value "lots"/);
    // A cpuset outside the host's cpus: the kernel refuses, the message names value and file.
    const cpus = await capsule(root, ["update", "--cpuset-cpus", "64-65", "cpu1"]);
    assertEquals(cpus.code, 1);
    assertMatch(cpus.stderr, /64-65.*cpuset\.cpus/);
    const detail = (await state(root, "cpu1", true)).detail;
    assert(detail.stats.memory.usage.usage > 0, "state -d has no memory usage");
    await Deno.writeTextFile(file, "{ nope");
    const badFile = await capsule(root, ["update", "--resources", file, "cpu1"]);
    assertEquals(badFile.code, 1);
    assertMatch(badFile.stderr, /Invalid resources file/);
    if (paths.memory) {
      assertEquals(cgFile(paths, "memory", "memory.limit_in_bytes"), String(80 * MiB));
    }
    await removeAll(file);
    assertEquals((await capsule(root, ["delete", "-f", "cpu1"])).code, 0);
    for (const dir of new Set(Object.values(paths) as string[])) {
      let gone = false;
      try {
        Deno.statSync(dir);
      } catch {
        gone = true;
      }
      assert(gone, `cgroup ${dir} left after delete`);
    }
  } finally {
    await removeAll(b);
  }
});

rootTest(
  "a cgroupsPath that holds host processes is refused; they are never killed",
  async (root) => {
    const name = `capsule-busy-${crypto.randomUUID().slice(0, 8)}`;
    const pidsRoot = "/sys/fs/cgroup/pids";
    let hasV1Pids = false;
    try {
      hasV1Pids = Deno.statSync(`${pidsRoot}/cgroup.procs`).isFile;
    } catch { /* not a v1 host */ }
    if (!hasV1Pids) return;
    const host = new Deno.Command("sleep", { args: ["60"] }).spawn();
    const b = await makeBundle("true", (s) => (s.linux!.cgroupsPath = `/${name}`));
    try {
      Deno.mkdirSync(`${pidsRoot}/${name}`);
      Deno.writeTextFileSync(`${pidsRoot}/${name}/cgroup.procs`, String(host.pid));
      const r = await capsule(root, ["run", "-b", b, "busy1"]);
      assertEquals(r.code, 1);
      assertMatch(r.stderr, new RegExp(`cgroup .*${name} already has processes \\(${host.pid}`));
      assert(Deno.readTextFileSync(`/proc/${host.pid}/stat`).length > 0, "the host process died");
      assert(Deno.statSync(`${pidsRoot}/${name}`).isDirectory, "the host's cgroup was removed");
    } finally {
      host.kill("SIGKILL");
      await host.status;
      await sleep(50);
      for (const d of cgroupDirsNamed(name).sort().reverse()) await Deno.remove(d).catch(() => {});
      await removeAll(b);
    }
  },
);

rootTest("pause freezes the container (no progress), resume thaws it", async (root) => {
  const b = await makeBundle(
    "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done",
    undefined,
    { ownRootfs: true },
  );
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "p1"])).code, 0);
    const count = () => Number(Deno.readTextFileSync(`${b}/rootfs/tmp/count`).trim() || 0);
    await waitFor(
      () => {
        try {
          return count() > 2;
        } catch {
          return false;
        }
      },
      5000,
      "counter",
    );
    assertEquals((await capsule(root, ["pause", "p1"])).code, 0);
    assertEquals((await state(root, "p1")).status, "paused");
    const frozen = count();
    await sleep(300);
    assertEquals(count(), frozen, "the counter moved while paused");
    const again = await capsule(root, ["pause", "p1"]);
    assertEquals(again.code, 1);
    assertMatch(again.stderr, /Cannot pause container "p1": it is paused, not running/);
    assertEquals((await capsule(root, ["resume", "p1"])).code, 0);
    assertEquals((await state(root, "p1")).status, "running");
    await waitFor(() => count() > frozen + 2, 5000, "progress after resume");
    // A paused container can still be force-deleted.
    assertEquals((await capsule(root, ["pause", "p1"])).code, 0);
    assertEquals((await capsule(root, ["delete", "-f", "p1"])).code, 0);
  } finally {
    await removeAll(b);
  }
});

/** The cgroup path (after the second ":") of /proc/PID/cgroup lines, by hierarchy name. */
function procCgroups(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.trim().split("\n")) {
    const m = line.match(/^\d+:([^:]*):(.*)$/);
    if (m) { for (const c of m[1].split(",")) out.set(c, m[2]); }
  }
  return out;
}

rootTest("a pre-existing frozen cgroup is refused and left as it was", async (root) => {
  const id = `frozen-${Deno.pid}`;
  const v2 = (() => {
    try {
      return Deno.statSync("/sys/fs/cgroup/cgroup.controllers").isFile;
    } catch {
      return false;
    }
  })();
  const dir = v2 ? `/sys/fs/cgroup/${id}` : `/sys/fs/cgroup/freezer/${id}`;
  const b = await makeBundle("true", (s) => (s.linux!.cgroupsPath = `/${id}`));
  Deno.mkdirSync(dir);
  try {
    Deno.writeTextFileSync(`${dir}/${v2 ? "cgroup.freeze" : "freezer.state"}`, v2 ? "1" : "FROZEN");
    for (const cmd of [["run", "-d"], ["create"]]) {
      const r = await capsule(root, [...cmd, "-b", b, "fz1"]);
      assertEquals(r.code, 1, `${cmd[0]}: ${r.stdout}${r.stderr}`);
      assertMatch(r.stderr, /container's cgroup unexpectedly frozen/);
      assert(r.stderr.includes(dir), `the message names ${dir}: ${r.stderr}`);
      assert(Deno.statSync(dir).isDirectory, `${dir} was removed`);
      // Nothing was made in the other hierarchies, and no state is left.
      assertEquals(cgroupDirsNamed(id), [dir]);
      assertEquals((await capsule(root, ["list", "-q"])).stdout.trim(), "");
    }
  } finally {
    try {
      Deno.writeTextFileSync(
        `${dir}/${v2 ? "cgroup.freeze" : "freezer.state"}`,
        v2 ? "0" : "THAWED",
      );
    } catch { /* gone */ }
    for (const d of cgroupDirsNamed(id)) await Deno.remove(d).catch(() => {});
    await removeAll(b);
  }
});

rootTest(
  "exec --cgroup joins a sub-cgroup of the container's, never one outside it",
  async (root) => {
    const b = await makeBundle("sleep 60");
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "sub1"])).code, 0);
      const paths: Record<string, string> = (await state(root, "sub1", true)).detail.cgroupPaths;
      const v2 = "" in paths;
      const own = procCgroups(
        (await capsule(root, ["exec", "sub1", "cat", "/proc/self/cgroup"])).stdout,
      );
      // Made by the host here (a container with a writable cgroup mount could make them too).
      const made: string[] = [];
      const ctrl = v2 ? "" : "memory";
      // In every hierarchy of the container's (a plain --cgroup SUB joins them all), apart
      // from a hybrid host's cgroup2 one (joined only when named).
      const dirs = Object.entries(paths).filter(([c]) => c !== "unified").map(([, d]) => d);
      for (const dir of new Set(dirs)) {
        Deno.mkdirSync(`${dir}/s1`);
        made.push(`${dir}/s1`);
        for (const f of ["cpuset.cpus", "cpuset.mems"]) { // v1: a new cpuset starts empty
          try {
            Deno.writeTextFileSync(`${dir}/s1/${f}`, Deno.readTextFileSync(`${dir}/${f}`).trim());
          } catch { /* not a cpuset hierarchy */ }
        }
      }
      try {
        const arg = v2 ? "s1" : "memory:s1";
        const r = await capsule(root, [
          "exec",
          "--cgroup",
          arg,
          "sub1",
          "cat",
          "/proc/self/cgroup",
        ]);
        assertEquals(r.code, 0, r.stderr);
        const got = procCgroups(r.stdout);
        const under = (p: string | undefined) => `${p === "/" ? "" : p}/s1`;
        assertEquals(got.get(ctrl), under(own.get(ctrl)));
        if (!v2) assertEquals(got.get("pids"), own.get("pids")); // not named: the container's
        if (!v2) {
          const a = await capsule(root, [
            "exec",
            "--cgroup",
            "s1",
            "sub1",
            "cat",
            "/proc/self/cgroup",
          ]);
          assertEquals(a.code, 0, a.stderr);
          assertEquals(procCgroups(a.stdout).get("pids"), under(own.get("pids")));
        }
        // Refused: climbing out, a sub-cgroup that does not exist, an unknown controller.
        for (
          const [a, msg] of [
            ["..", /"\.\.": \.\. is not a sub cgroup path/],
            ["../../x", /is not a sub cgroup path/],
            [
              "nonexistent",
              /\(--cgroup nonexistent\): adding pid (\d+ )?to .*\/nonexistent\/cgroup\.procs: no such file /,
            ],
            ...(v2 ? [] : [["whaaat:/", /unknown controller whaaat/]]),
          ] as [string, RegExp][]
        ) {
          const e = await capsule(root, ["exec", "--cgroup", a, "sub1", "echo", "ran"]);
          assertEquals(e.code, 255, `--cgroup ${a}: ${e.stdout}${e.stderr}`);
          assertMatch(e.stderr, msg);
          assert(!e.stdout.includes("ran"), `--cgroup ${a}: the program ran`);
        }
        // Nothing is left running from the refused ones: only the init.
        assertEquals(
          (await capsule(root, ["ps", "--format", "json", "sub1"])).stdout.trim().split(",").length,
          1,
        );
      } finally {
        for (const d of made) await Deno.remove(d).catch(() => {});
      }
    } finally {
      await capsule(root, ["delete", "-f", "sub1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "exec into a paused container: refused, or with --ignore-paused run once resumed",
  async (root) => {
    const b = await makeBundle("sleep 60");
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "ip1"])).code, 0);
      assertEquals((await capsule(root, ["pause", "ip1"])).code, 0);
      const no = await capsule(root, ["exec", "ip1", "echo", "ok"]);
      assertEquals(no.code, 255);
      assertMatch(no.stderr, /cannot exec in a paused container.*--ignore-paused/);
      const started = Date.now();
      const later = capsule(root, ["exec", "--ignore-paused", "ip1", "echo", "ok"]);
      await sleep(1000);
      assertEquals((await state(root, "ip1")).status, "paused");
      assertEquals((await capsule(root, ["resume", "ip1"])).code, 0);
      const r = await later;
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout.trim(), "ok");
      assert(Date.now() - started >= 1000, "the exec ran before the resume");
    } finally {
      await capsule(root, ["delete", "-f", "ip1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "hybrid host: the cgroup2 hierarchy holds the container too, and goes with it",
  async (root) => {
    let hybrid = false;
    try {
      hybrid = Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
        .some((l) => / \/sys\/fs\/cgroup\/unified .* - cgroup2 /.test(l));
    } catch { /* no */ }
    if (!hybrid) return; // a v1-only or a v2 host: nothing to check
    const b = await makeBundle("sleep 60");
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "hy1"])).code, 0);
      const st = await state(root, "hy1", true);
      const dir: string = st.detail.cgroupPaths.unified;
      assert(dir?.startsWith("/sys/fs/cgroup/unified/"), `no unified path: ${JSON.stringify(st)}`);
      const inner = dir.slice("/sys/fs/cgroup/unified".length);
      const line0 = (t: string) => t.trim().split("\n").find((l) => l.startsWith("0::"));
      assertEquals(line0(Deno.readTextFileSync(`/proc/${st.pid}/cgroup`)), `0::${inner}`);
      // Inside, a cgroup namespace may show it as "/": the exec's line must be the init's.
      const e = await capsule(root, [
        "exec",
        "hy1",
        "sh",
        "-c",
        "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup",
      ]);
      assertEquals(e.code, 0, e.stderr);
      const [mine, init] = e.stdout.split("--\n");
      assert(line0(mine) !== undefined && line0(mine) === line0(init), e.stdout);
      assertEquals((await capsule(root, ["delete", "-f", "hy1"])).code, 0);
      let gone = false;
      try {
        Deno.statSync(dir);
      } catch {
        gone = true;
      }
      assert(gone, `${dir} is left after delete`);
    } finally {
      await capsule(root, ["delete", "-f", "hy1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "delete: a default 'capsule' parent inside the caller's own cgroup goes with its last container (it would pin that cgroup); one at a hierarchy's root stays",
  async (root) => {
    // Hierarchies where this process is not in the root cgroup (here: v1 memory under the
    // tool's own cgroup); none on a host where it is everywhere at the root: nothing to check.
    const nested: string[] = [];
    for (const line of Deno.readTextFileSync("/proc/self/cgroup").trim().split("\n")) {
      const [, ctrls, path] = line.split(":", 3);
      if (path === "/" || !ctrls || ctrls.startsWith("name=")) continue;
      const dir = `/sys/fs/cgroup/${ctrls.split(",")[0]}${path}`;
      try {
        if (Deno.statSync(dir).isDirectory) nested.push(`${dir}/capsule`);
      } catch { /* not mounted there */ }
    }
    const b = await makeBundle("true");
    try {
      for (const p of nested) await Deno.remove(p).catch(() => {}); // an older build's, empty
      const r = await capsule(root, ["run", "-b", b, "parent1"]);
      assertEquals(r.code, 0, r.stderr);
      for (const p of nested) {
        assert(!exists(p), `${p} is left in the caller's own cgroup`);
      }
      // Two containers: the first delete keeps the parent the second still uses.
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "parent2"])).code, 0);
      assertEquals((await capsule(root, ["run", "-b", b, "parent3"])).code, 0);
      const rec = JSON.parse(Deno.readTextFileSync(`${root}/parent2/state.json`));
      for (const d of Object.values(rec.cgroupPaths as Record<string, string>)) {
        assert(exists(d) || !nested.some((p) => d.startsWith(`${p}/`)), `${d} went away`);
      }
      assertEquals((await capsule(root, ["delete", "-f", "parent2"])).code, 0);
      for (const p of nested) assert(!exists(p), `${p} is left after the last container`);
      // A create that fails after its cgroup was made (no rootfs: the plan step) undoes the
      // parent it made too.
      const bad = await makeBundle("true", (s) => (s.root = { path: "/nonexistent-rootfs" }));
      try {
        const r = await capsule(root, ["create", "-b", bad, "parent4"]);
        assertEquals(r.code, 1, r.stderr);
        for (const p of nested) assert(!exists(p), `${p} is left by a failed create`);
      } finally {
        await removeAll(bad);
      }
    } finally {
      for (const id of ["parent1", "parent2", "parent3", "parent4"]) {
        await capsule(root, ["delete", "-f", id]);
      }
      await removeAll(b);
    }
  },
);
