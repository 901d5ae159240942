// Image containers as a docker user lives them (issue 15): stop, --name, --ulimit and the
// default nofile, -m's minimum, `image runc`'s trailing options, /sys/fs/cgroup inside.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  capsuleCommand,
  exists,
  makeBundle,
  removeAll,
  type Result,
  rootTest,
  waitFor,
  withImage,
} from "../helpers.ts";

const containers = (store: string) => {
  try {
    return [...Deno.readDirSync(`${store}/containers`)].map((e) => e.name);
  } catch {
    return [];
  }
};

rootTest(
  "image stop: sleep as PID 1 ignores SIGTERM and is killed in the grace period",
  async (root) => {
    await withImage(async (c) => {
      const r = await c("image", "run", "-d", "--name", "sl", "bb", "sleep", "1000");
      assertEquals([r.code, r.stdout], [0, "sl\n"], r.stderr);
      const busy = await c("image", "destroyc", "sl");
      assertEquals(busy.code, 1);
      assertMatch(busy.stderr, /is running; stop it first \("capsule stop sl"\)/);
      const t0 = Date.now();
      const s = await c("stop", "-t", "1", "sl");
      const took = Date.now() - t0;
      assertEquals(s.code, 0, s.stderr);
      assert(took >= 1000 && took < 4000, `stop -t 1 took ${took} ms`);
      assertEquals(JSON.parse((await c("state", "sl")).stdout).status, "stopped");
      assertEquals((await c("image", "destroyc", "sl")).code, 0);
    }, root);
  },
);

rootTest("image run: --name and --id, a random id shown with -d", async (root) => {
  await withImage(async (c, store) => {
    const d = await c("image", "run", "-d", "bb", "true");
    assertEquals(d.code, 0, d.stderr);
    assertMatch(d.stdout, /^[0-9a-f]{12}\n$/);
    assertEquals(containers(store), [d.stdout.trim()]);
    const both = await c("image", "run", "--id", "a", "--name", "b", "bb", "true");
    assertEquals(both.code, 2);
    assertMatch(both.stderr, /--id "a" and --name "b" differ/);
    const n = await c("image", "run", "--rm", "--name", "nm", "bb", "hostname");
    assertEquals([n.code, n.stdout], [0, "nm\n"], n.stderr);
    await c("delete", "-f", d.stdout.trim());
    assertEquals((await c("image", "destroyc", d.stdout.trim())).code, 0);
  }, root);
});

/** "Max open files  SOFT  HARD  files" of a /proc/PID/limits text. */
const nofile = (limits: string) => /^Max open files\s+(\d+)\s+(\d+)/m.exec(limits)?.slice(1, 3);

rootTest(
  "image run: --ulimit, and the default nofile is capsule's own hard limit",
  async (root) => {
    await withImage(async (c, store) => {
      const u = await c(
        "image",
        "run",
        "--rm",
        "--ulimit",
        "nofile=4096:8192",
        "--ulimit",
        "nproc=300",
        "bb",
        "cat",
        "/proc/self/limits",
      );
      assertEquals(u.code, 0, u.stderr);
      assertEquals(nofile(u.stdout), ["4096", "8192"]);
      assertMatch(u.stdout, /^Max processes\s+300\s+300/m);
      // capsule inherits this process's limits: its hard one is the container's default.
      const hard = Math.min(
        Number(nofile(Deno.readTextFileSync("/proc/self/limits"))![1]),
        1048576,
      );
      const d = await c("image", "run", "--rm", "bb", "cat", "/proc/self/limits");
      assertEquals(nofile(d.stdout), [String(hard), String(hard)], d.stderr);
      assert(hard > 1024, `this host's hard nofile is ${hard}: the test proves nothing`);
      const bad = await c("image", "run", "--rm", "--ulimit", "nofile=9:1", "bb", "true");
      assertEquals(bad.code, 1);
      assertMatch(bad.stderr, /Invalid --ulimit "nofile=9:1": the soft limit 9 is above/);
      // Unlimited (-1, docker's): RLIM_INFINITY, in config.json as Go writes ^uint64(0).
      const inf = await c(
        "image",
        "run",
        "--name",
        "ulim",
        "--ulimit",
        "core=-1",
        "bb",
        "cat",
        "/proc/self/limits",
      );
      assertEquals(inf.code, 0, inf.stderr);
      assertMatch(inf.stdout, /^Max core file size\s+unlimited\s+unlimited/m);
      const config = Deno.readTextFileSync(`${store}/containers/ulim/config.json`);
      assertMatch(config, /"type": "RLIMIT_CORE",\s+"soft": 18446744073709551615,/);
    }, root);
  },
);

rootTest(
  "image run: -m below 6m is refused naming the minimum; 6m starts, 10 of 10",
  async (root) => {
    await withImage(async (c, store) => {
      for (const m of ["512", String(6 * 1024 * 1024 - 1)]) {
        const r = await c("image", "run", "-m", m, "--name", "tiny", "bb", "true");
        assertEquals(r.code, 1);
        assertMatch(
          r.stderr,
          new RegExp(`Invalid memory limit ${m} bytes: minimum memory limit allowed is 6MB`),
        );
        assertEquals(containers(store), []);
      }
      // At the minimum, capsule's init and the program always start (never "init was killed").
      for (let i = 0; i < 10; i++) {
        const ok = await c("image", "run", "--rm", "-m", "6m", "bb", "echo", "fits");
        assertEquals([ok.code, ok.stdout], [0, "fits\n"], `run ${i + 1}: ${ok.stderr}`);
      }
    }, root);
  },
);

rootTest(
  "create: a memory limit too small to start is named, never a bare SIGKILL",
  async (root) => {
    // 128 KiB: the kernel refuses the limit (EBUSY) or the OOM killer kills the init.
    const b = await makeBundle(["true"], (s) => {
      s.linux!.resources = { ...s.linux!.resources, memory: { limit: 128 * 1024 } };
    });
    try {
      for (let i = 0; i < 3; i++) {
        const r = await capsule(root, ["run", "-b", b, `tiny${i}`]);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(
          r.stderr,
          /out of memory: the memory limit of 131072 bytes|uses more memory already .*minimum memory limit allowed is 6MB/,
        );
      }
    } finally {
      await removeAll(b);
    }
  },
);

rootTest("image run: /sys/fs/cgroup shows the container's own limit, read-only", async (root) => {
  await withImage(async (c) => {
    const r = await c(
      "image",
      "run",
      "--rm",
      "-m",
      "64m",
      "bb",
      "sh",
      "-c",
      "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes;" +
        " mkdir /sys/fs/cgroup/x 2>/dev/null && echo rw || echo ro",
    );
    assertEquals([r.code, r.stdout], [0, "67108864\nro\n"], r.stderr);
  }, root);
});

rootTest("image runc: the original's trailing options, a quoted command", async (root) => {
  await withImage(async (c, store) => {
    const r = await c("image", "runc", "bb", "echo hi there", "-id", "rc1", "-rm");
    assertEquals([r.code, r.stdout], [0, "hi there\n"], r.stderr);
    // Options taken after the command are said, with the spellings that take none.
    assertMatch(
      r.stderr,
      /^capsule image runc: taking "-id rc1 -rm" as capsule's options, .*"capsule image runc IMAGE -- CMD ARGS\.\.\."/,
    );
    // The reviewer's case: echo's -e was taken silently as an environment variable.
    const e = await c("image", "runc", "bb", "echo", "-e", "abc", "-rm");
    assertEquals([e.code, e.stdout], [0, "\n"], e.stderr);
    assertMatch(e.stderr, /taking "-e abc -rm" as capsule's options/);
    // A -- after the command, before any option: dropped, the rest is the program's.
    const dd = await c("image", "runc", "--rm", "bb", "echo", "--", "-p", "80");
    assertEquals([dd.code, dd.stdout], [0, "-p 80\n"], dd.stderr);
    assertMatch(dd.stderr, /^capsule image runc: dropping the "--" after "echo"/);
    const d = await c("image", "runc", "bb", "sleep", "1000", "-name", "rc2", "-d");
    assertEquals([d.code, d.stdout], [0, "rc2\n"], d.stderr);
    // Said once, though -d runs the command line again under its waiter.
    assertEquals(d.stderr.match(/taking "-name rc2 -d"/g)?.length, 1, d.stderr);
    assertEquals((await c("stop", "-t", "0", "rc2")).code, 0);
    assertEquals((await c("image", "destroyc", "rc2")).code, 0);
    const w = await c("image", "runc", "bb", "echo", "-d", "stray");
    assertEquals(w.code, 2);
    assertMatch(w.stderr, /"stray" comes after the options/);
    const whole = await c("image", "runc", "--rm", "bb", "--", "echo", "-d", "x");
    assertEquals([whole.code, whole.stdout], [0, "-d x\n"], whole.stderr);
    // The brief's case: -p 80 for the program, not a published port (no network is made).
    const p = await c("image", "runc", "bb", "--", "echo", "-p", "80", "-rm");
    assertEquals([p.code, p.stdout], [0, "-p 80 -rm\n"], p.stderr);
    assertEquals((await c("network", "list", "-q")).stdout, "");
    assertEquals((await c("image", "destroyc", ...containers(store))).code, 0);
    assertEquals(containers(store), []);
  }, root);
});

rootTest(
  "image start: a stopped container runs again with its layer's files and volume",
  async (root) => {
    await withImage(async (c, store, tmp) => {
      Deno.mkdirSync(`${tmp}/vol`);
      const prog = "echo run >> /f; echo run >> /data/v; echo $(wc -l < /f) $(wc -l < /data/v)";
      const r = await c(
        "image",
        "run",
        "--name",
        "st",
        "-v",
        `${tmp}/vol:/data`,
        "bb",
        "sh",
        "-c",
        prog,
      );
      assertEquals([r.code, r.stdout], [0, "1 1\n"], r.stderr);
      const a = await c("image", "start", "-a", "st");
      assertEquals([a.code, a.stdout], [0, "2 2\n"], a.stderr);
      // Detached: the id, then the program runs to its end; once stopped it starts again.
      const d = await c("image", "start", "st");
      assertEquals([d.code, d.stdout], [0, "st\n"], d.stderr);
      for (let i = 0; i < 100; i++) {
        if (JSON.parse((await c("state", "st")).stdout).status === "stopped") break;
        await new Promise((res) => setTimeout(res, 50));
      }
      const again = await c("image", "start", "-a", "st");
      assertEquals([again.code, again.stdout], [0, "4 4\n"], again.stderr);
      assertEquals(Deno.readTextFileSync(`${tmp}/vol/v`), "run\nrun\nrun\nrun\n");
      // A running one is refused; an unknown id too; neither changes anything.
      const s2 = await c("image", "run", "-d", "--name", "busy", "bb", "sleep", "1000");
      assertEquals(s2.code, 0, s2.stderr);
      const list = await c("list");
      assertMatch(list.stdout, /^ID\s+PID\s+STATUS\s+BUNDLE\s+CREATED\s+OWNER\s+IMAGE\n/);
      assertMatch(list.stdout, /\nbusy\s+\d+\s+running\s+.*\sbb(:latest)?\n/);
      const running = await c("image", "start", "busy");
      assertEquals(running.code, 1);
      assertMatch(running.stderr, /"busy" is running; .*capsule stop busy/);
      const none = await c("image", "start", "nosuch");
      assertEquals(none.code, 1);
      assertMatch(none.stderr, /No container "nosuch"/);
      assertEquals((await c("stop", "-t", "0", "busy")).code, 0);
      for (const id of ["st", "busy"]) assertEquals((await c("image", "destroyc", id)).code, 0);
      assertEquals(containers(store), []);
    }, root);
  },
);

/** The state's exitCode once the waiter has written it (it reaps within about a second). */
async function exitCode(c: (...a: string[]) => Promise<Result>, id: string): Promise<unknown> {
  for (let i = 0; i < 60; i++) {
    const s = JSON.parse((await c("state", id)).stdout);
    if (s.exitCode !== undefined) return s.exitCode;
    await new Promise((res) => setTimeout(res, 100));
  }
  return undefined;
}

/** Pids of processes whose command line mentions `text`. */
function processesWith(text: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${e.name}/cmdline`).includes(text)) out.push(Number(e.name));
    } catch { /* gone */ }
  }
  return out;
}

rootTest(
  "image run -d: the exit status is kept (exit, stop, OOM) by one monitor for the root, which goes",
  async (root) => {
    await withImage(async (c, store) => {
      const a = await c("image", "run", "-d", "--name", "e3", "bb", "sh", "-c", "exit 3");
      assertEquals([a.code, a.stdout], [0, "e3\n"], a.stderr);
      assertEquals(await exitCode(c, "e3"), 3);
      const b = await c("image", "run", "-d", "--name", "ek", "bb", "sleep", "1000");
      assertEquals(b.code, 0, b.stderr);
      // Nothing per container: the root's one monitor waits for both and writes both logs.
      const monitor = `capsule-nsexec\0monitor\0serve\0${root}\0`;
      assertEquals(processesWith(monitor).length, 1, "not one monitor for the root");
      assertEquals(processesWith(`${root}/ek`), [], "a process of ek's own");
      assertEquals(processesWith("capsule-log"), [], "a log writer of ek's own");
      assertEquals((await c("stop", "-t", "0", "ek")).code, 0);
      assertEquals(await exitCode(c, "ek"), 137);
      const list = await c("list");
      assertMatch(list.stdout, /\nek\s+0\s+stopped \(exit 137\)\s/);
      assertMatch(list.stdout, /\ne3\s+0\s+stopped \(exit 3\)\s/);
      for (let i = 0; i < 30 && processesWith(`${root}/ek`).length; i++) {
        await new Promise((res) => setTimeout(res, 100));
      }
      assertEquals(processesWith(`${root}/ek`), [], "the waiter or log writer outlived ek");
      // Out of memory: the kernel's SIGKILL, 137 as docker shows it.
      const o = await c(
        "image",
        "run",
        "-d",
        "-m",
        "32m",
        "--name",
        "oom",
        "bb",
        "tail",
        "/dev/zero",
      );
      assertEquals(o.code, 0, o.stderr);
      assertEquals(await exitCode(c, "oom"), 137);
      for (const id of ["e3", "ek", "oom"]) {
        assertEquals((await c("image", "destroyc", id)).code, 0);
      }
      // --rm -d: removed once it has exited (by its waiter), layer and state.
      const rm = await c("image", "run", "-d", "--rm", "--name", "rmd", "bb", "sleep", "0.2");
      assertEquals([rm.code, rm.stdout], [0, "rmd\n"], rm.stderr);
      for (let i = 0; i < 50 && containers(store).length; i++) {
        await new Promise((res) => setTimeout(res, 100));
      }
      assertEquals(containers(store), [], "--rm -d left its layer");
      assertEquals((await c("state", "rmd")).code, 1);
      // With no detached container left, the monitor has gone too.
      for (let i = 0; i < 50 && processesWith(monitor).length; i++) {
        await new Promise((res) => setTimeout(res, 100));
      }
      assertEquals(processesWith(monitor), [], "the monitor outlived the root's last container");
    }, root);
  },
);

rootTest("image run -d: the log is rotated past --log-max-size", async (root) => {
  await withImage(async (c) => {
    const line = "0123456789".repeat(10);
    const r = await c(
      "image",
      "run",
      "-d",
      "--name",
      "lg",
      "--log-max-size",
      "2k",
      "--log-max-files",
      "2",
      "bb",
      "sh",
      "-c",
      `while :; do echo ${line}; sleep 0.01; done`,
    );
    assertEquals(r.code, 0, r.stderr);
    const log = `${root}/lg/container.log`;
    let rotated = false;
    for (let i = 0; i < 50 && !rotated; i++) {
      await new Promise((res) => setTimeout(res, 100));
      try {
        rotated = Deno.statSync(`${log}.1`).size > 0;
      } catch { /* not yet */ }
    }
    // Rotated before a write would pass 2k (tests/integration/log_test.ts: at a fast rate).
    assert(Deno.statSync(`${log}.1`).size <= 2048, `${log}.1 is past 2k`);
    assert(rotated, "container.log.1 never appeared");
    await new Promise((res) => setTimeout(res, 2500));
    // About 10 KB a second are written: without rotation the log would hold 20 KB or more.
    assert(
      Deno.statSync(log).size <= 2048,
      `container.log is ${Deno.statSync(log).size} bytes`,
    );
    assert(!Deno.statSync(`${root}/lg`).isFile);
    let two = true;
    try {
      Deno.statSync(`${log}.2`);
    } catch {
      two = false;
    }
    assert(!two, "--log-max-files 2 kept a third file");
    assertMatch(Deno.readTextFileSync(`${log}.1`), new RegExp(`^(${line}\n)+$`));
    const bad = await c("image", "run", "-d", "--log-max-files", "0", "bb", "true");
    assertEquals(bad.code, 1);
    assertMatch(bad.stderr, /Invalid --log-max-files "0"/);
    assertEquals((await c("stop", "-t", "0", "lg")).code, 0);
    assertEquals((await c("image", "destroyc", "lg")).code, 0);
  }, root);
});

rootTest(
  "image start: every option given at image run is still in force (limits, env, user, log)",
  async (root) => {
    await withImage(async (c) => {
      const line = "0123456789".repeat(10);
      const r = await c(
        "image",
        "run",
        "-d",
        "--name",
        "opts",
        "--log-max-size",
        "2k",
        "--log-max-files",
        "2",
        "--ulimit",
        "nofile=300:400",
        "-m",
        "40m",
        "-c",
        "512",
        "-e",
        "FOO=bar baz",
        "-w",
        "/tmp",
        "-u",
        "65534",
        "-h",
        "hst",
        "--read-only",
        "-l",
        "k=v",
        "bb",
        "sh",
        "-c",
        `while :; do echo ${line}; sleep 0.01; done`,
      );
      assertEquals([r.code, r.stdout], [0, "opts\n"], r.stderr);
      // What PID 1 itself runs with, read through exec (never the config).
      const probe = async () => {
        const x = await c(
          "exec",
          "opts",
          "sh",
          "-c",
          "grep 'open files' /proc/1/limits | tr -s ' '; tr '\\0' '\\n' </proc/1/environ | " +
            "grep ^FOO=; readlink /proc/1/cwd; grep ^Uid: /proc/1/status | tr -s '\\t' ' '; " +
            "hostname; (cat /sys/fs/cgroup/memory.max 2>/dev/null || " +
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes); " +
            "(cat /sys/fs/cgroup/cpu.weight 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.shares); " +
            "touch /x 2>/dev/null && echo rw || echo ro",
        );
        assertEquals(x.code, 0, x.stderr);
        return x.stdout;
      };
      const want = await probe();
      assertMatch(
        want,
        /^Max open files 300 400 files \nFOO=bar baz\n\/tmp\nUid: 65534 65534 65534 65534\nhst\n41943040\n\d+\nro\n$/,
      );
      assertEquals(JSON.parse((await c("state", "opts")).stdout).annotations, { k: "v" });
      assertEquals((await c("stop", "-t", "0", "opts")).code, 0);
      const s = await c("image", "start", "opts");
      assertEquals([s.code, s.stdout], [0, "opts\n"], s.stderr);
      assertEquals(await probe(), want);
      assertEquals(JSON.parse((await c("state", "opts")).stdout).annotations, { k: "v" });
      // The log limits of image run, not the defaults (10m would never rotate here).
      const log = `${root}/opts/container.log`;
      let rotated = false;
      for (let i = 0; i < 50 && !rotated; i++) {
        await new Promise((res) => setTimeout(res, 100));
        try {
          rotated = Deno.statSync(`${log}.1`).size > 0;
        } catch { /* not yet */ }
      }
      assert(rotated, "image start: container.log.1 never appeared (log limits not kept)");
      assert(Deno.statSync(`${log}.1`).size <= 2048, "image start: not the limits of image run");
      assertEquals((await c("stop", "-t", "0", "opts")).code, 0);
      assertEquals((await c("image", "destroyc", "opts")).code, 0);
    }, root);
  },
);

rootTest(
  "list: kept image containers without run-time state are stopped, with their image",
  async (root) => {
    await withImage(async (c, store) => {
      // A foreground run without --rm: its state goes when it exits, its layer is kept.
      const f = await c(
        "image",
        "run",
        "--name",
        "fg",
        "bb",
        "sh",
        "-c",
        "echo 1 >> /n; wc -l </n; exit 4",
      );
      assertEquals([f.code, f.stdout], [4, "1\n"], f.stderr);
      // A detached one whose state directory is deleted (what a reboot does to --root).
      const d = await c("image", "run", "-d", "--name", "gone", "bb", "sleep", "1000");
      assertEquals(d.code, 0, d.stderr);
      assertEquals((await c("stop", "-t", "0", "gone")).code, 0);
      Deno.removeSync(`${root}/gone`, { recursive: true });
      let list = await c("list");
      assertEquals(list.code, 0, list.stderr);
      // Its exit status is kept with it (docker ps -a: Exited (4)).
      assertMatch(
        list.stdout,
        /\nfg\s+0\s+stopped \(exit 4\)\s+\S+\/containers\/fg\s.*\sbb(:latest)?\n/,
      );
      assertMatch(list.stdout, /\ngone\s+0\s+stopped\s+\S+\/containers\/gone\s.*\sbb(:latest)?\n/);
      const json = JSON.parse((await c("list", "--format", "json")).stdout);
      const fg = json.find((s: { id: string }) => s.id === "fg");
      assertEquals(Object.keys(fg).slice(0, 9), [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "annotations",
        "owner",
      ]);
      assertEquals([fg.status, fg.pid, fg.image.replace(/:latest$/, "")], ["stopped", 0, "bb"]);
      assertEquals(JSON.parse((await c("state", "gone")).stdout).status, "stopped");
      // Both start again from their kept layer.
      const a = await c("image", "start", "-a", "fg");
      assertEquals([a.code, a.stdout], [4, "2\n"], a.stderr);
      const s = await c("image", "start", "gone");
      assertEquals([s.code, s.stdout], [0, "gone\n"], s.stderr);
      list = await c("list");
      assertMatch(list.stdout, /\ngone\s+\d+\s+running\s/);
      assertEquals((await c("stop", "-t", "0", "gone")).code, 0);
      for (const id of ["fg", "gone"]) assertEquals((await c("image", "destroyc", id)).code, 0);
      // A state deleted while the container ran: start refuses (never kills it unasked),
      // destroyc -f finds its processes from the id and removes everything.
      const live = await c("image", "run", "-d", "--name", "alive", "bb", "sleep", "1000");
      assertEquals(live.code, 0, live.stderr);
      Deno.removeSync(`${root}/alive`, { recursive: true });
      const refused = await c("image", "start", "alive");
      assertEquals(refused.code, 1);
      assertMatch(refused.stderr, /"alive" has no state .* but processes in its cgroup/);
      assertEquals((await c("image", "destroyc", "-f", "alive")).code, 0);
      assertEquals(containers(store), []);
      assertEquals((await c("list", "-q")).stdout, "");
    }, root);
  },
);

rootTest(
  "image run: a missing program exits 127, one not executable 126 (docker's); a bundle 1 (runc's)",
  async (root) => {
    await withImage(async (c, store, tmp) => {
      for (
        const [prog, code, why] of [
          ["/no/such/binary", 127, /exec: "\/no\/such\/binary": no such file or directory/],
          ["nosuchprogram", 127, /exec: "nosuchprogram": executable file not found in \$PATH/],
          ["/etc/passwd", 126, /exec: "\/etc\/passwd": permission denied/],
        ] as const
      ) {
        for (const form of [[], ["-d"], ["--rm"], ["-d", "--rm"]]) {
          const r = await c("image", "run", ...form, "bb", prog);
          assertEquals(r.code, code, `image run ${form.join(" ")} bb ${prog}: ${r.stderr}`);
          assertMatch(r.stderr, why);
          assertEquals(r.stdout, "");
        }
        const t = await c("image", "runc", "bb", prog, "-d");
        assertEquals(t.code, code, t.stderr);
        assertEquals(containers(store), []);
      }
      // The x bit but no format the kernel runs (ENOEXEC, at execve after start): cannot
      // execute, 126 as for EACCES (it was 127, "not found").
      Deno.mkdirSync(`${tmp}/fx`);
      Deno.writeFileSync(`${tmp}/fx/bad`, new Uint8Array([1, 2, 3, 0, 4]), { mode: 0o755 });
      for (const form of [[], ["--rm"]]) {
        const r = await c("image", "run", ...form, "-v", `${tmp}/fx:/fx`, "bb", "/fx/bad");
        assertEquals(r.code, 126, `image run ${form.join(" ")}: ${r.stderr}`);
        assertMatch(r.stderr, /exec format error/);
      }
      assertEquals((await c("image", "destroyc", ...containers(store))).code, 0);
      // A bundle keeps runc's status for it (runc run of a missing binary exits 1).
      const b = await makeBundle(["/no/such/binary"]);
      try {
        for (const form of [[], ["-d"]]) {
          const r = await capsule(root, ["run", ...form, "-b", b, "nb"]);
          assertEquals(r.code, 1, r.stderr);
          assertMatch(r.stderr, /exec: "\/no\/such\/binary": no such file or directory/);
        }
      } finally {
        await removeAll(b);
      }
    }, root);
  },
);

rootTest(
  "a kept image container (stopped, no run-time state): stop succeeds, the others say what to do",
  async (root) => {
    await withImage(async (c) => {
      const f = await c("image", "run", "--name", "kp", "bb", "echo", "out");
      assertEquals([f.code, f.stdout], [0, "out\n"], f.stderr);
      // docker stop of a stopped container succeeds; several: each one, failures reported.
      const s = await c("stop", "kp");
      assertEquals([s.code, s.stdout, s.stderr], [0, "kp\n", ""]);
      const two = await c("stop", "-t", "0", "kp", "nosuch");
      assertEquals([two.code, two.stdout], [1, "kp\n"], two.stderr);
      assertMatch(two.stderr, /"nosuch" does not exist/);
      assert(!/"kp"/.test(two.stderr), two.stderr);
      // The log: a foreground run's output went to the terminal; the message says so.
      const l = await c("log", "kp");
      assertEquals(l.code, 1);
      assertMatch(l.stderr, /"kp" has no log: it ran in the foreground/);
      assertMatch(l.stderr, /capsule image start kp/);
      for (
        const args of [
          ["kill", "kp"],
          ["kill", "kp", "KILL"],
          ["exec", "kp", "true"],
          [
            "ps",
            "kp",
          ],
          ["pause", "kp"],
          ["resume", "kp"],
          ["update", "kp", "--pids-limit", "9"],
          [
            "events",
            "--stats",
            "kp",
          ],
          ["start", "kp"],
        ]
      ) {
        const r = await c(...args);
        assert(r.code !== 0, `${args.join(" ")} succeeded`);
        assertMatch(
          r.stderr,
          /"kp" is stopped \(kept, from image "bb(:latest)?"\).*"capsule image start kp"/,
          args.join(" "),
        );
        assert(!/does not exist/.test(r.stderr), `${args.join(" ")}: ${r.stderr}`);
      }
      const d = await c("delete", "kp");
      assertEquals(d.code, 1);
      assertMatch(d.stderr, /"kp" .*"capsule image destroyc kp"/);
      // A detached one, stopped: its log is printed, as docker logs does.
      const r = await c("image", "run", "-d", "--name", "dl", "bb", "echo", "hello");
      assertEquals(r.code, 0, r.stderr);
      assertEquals(await exitCode(c, "dl"), 0);
      const dl = await c("log", "dl");
      assertEquals([dl.code, dl.stdout], [0, "hello\n"], dl.stderr);
      assertEquals((await c("stop", "dl")).code, 0);
      for (const id of ["kp", "dl"]) assertEquals((await c("image", "destroyc", id)).code, 0);
    }, root);
  },
);

rootTest(
  "image destroyc: several ids, each reported; one failure does not stop the rest",
  async (root) => {
    await withImage(async (c, store) => {
      for (const id of ["ra", "rb", "rc"]) {
        assertEquals((await c("image", "run", "--name", id, "bb", "true")).code, 0);
      }
      const live = await c("image", "run", "-d", "--name", "rl", "bb", "sleep", "1000");
      assertEquals(live.code, 0, live.stderr);
      const r = await c("image", "destroyc", "ra", "nosuch", "rb", "rl", "rc");
      assertEquals([r.code, r.stdout], [1, "ra\nrb\nrc\n"], r.stderr);
      assertMatch(r.stderr, /No container "nosuch"/);
      assertMatch(r.stderr, /"rl" is running; stop it first/);
      assertEquals(containers(store), ["rl"]);
      const f = await c("image", "destroyc", "-f", "rl");
      assertEquals([f.code, f.stdout], [0, "rl\n"], f.stderr);
      assertEquals(containers(store), []);
    }, root);
  },
);

rootTest(
  "image start/destroyc: the --root saved at image run is used; another one given is refused",
  async (root) => {
    await withImage(async (c, store) => {
      const r = await c("image", "run", "--name", "sr", "bb", "true");
      assertEquals(r.code, 0, r.stderr);
      const other = await Deno.makeTempDir({ prefix: "capsule-other-root-" });
      try {
        const elsewhere = (...a: string[]) => capsule(other, ["--store", store, ...a]);
        for (
          const args of [["image", "start", "sr"], ["image", "start", "-a", "sr"], [
            "image",
            "destroyc",
            "sr",
          ]]
        ) {
          const x = await elsewhere(...args);
          assertEquals(x.code, 1, `${args.join(" ")}: ${x.stderr}`);
          assertMatch(
            x.stderr,
            new RegExp(
              `"sr" keeps its state under --root ${root}.*not ${other}.*give "--root ${root}"`,
            ),
          );
          assertEquals([...Deno.readDirSync(other)], [], `${args.join(" ")} wrote in ${other}`);
        }
        assertEquals(containers(store), ["sr"]);
        // The runtime's commands keep runc's "does not exist" (engines match on it), then why.
        const k = await elsewhere("kill", "sr");
        assertEquals(k.code, 1);
        assertMatch(
          k.stderr,
          new RegExp(`"sr" does not exist under --root ${other}: .*under --root ${root}`),
        );
        // Not given: the saved one (the default root is not this test's root).
        const [cmd, ...pre] = capsuleCommand();
        const out = await new Deno.Command(cmd, {
          args: [...pre, "--store", store, "image", "start", "-a", "sr"],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
        assertEquals((await c("image", "destroyc", "sr")).code, 0);
      } finally {
        await removeAll(other);
      }
    }, root);
  },
);

rootTest(
  "image run -v /missing:/x makes the host directory (0755, the caller's), never in the store",
  async (root) => {
    await withImage(async (c, store, tmp) => {
      const host = `${tmp}/made/deeper`;
      const r = await c(
        "image",
        "run",
        "--name",
        "mk",
        "-v",
        `${host}:/data`,
        "bb",
        "sh",
        "-c",
        "echo hi > /data/f",
      );
      assertEquals(r.code, 0, r.stderr);
      for (const d of [`${tmp}/made`, host]) {
        const st = Deno.statSync(d);
        assert(st.isDirectory, d);
        assertEquals([st.mode! & 0o7777, st.uid, st.gid], [0o755, Deno.uid(), Deno.gid()], d);
      }
      assertEquals(Deno.readTextFileSync(`${host}/f`), "hi\n");
      // image start makes it again when it was removed meanwhile (docker start does).
      Deno.removeSync(`${tmp}/made`, { recursive: true });
      const s = await c("image", "start", "-a", "mk");
      assertEquals(s.code, 0, s.stderr);
      assertEquals(Deno.readTextFileSync(`${host}/f`), "hi\n");
      assertEquals((await c("image", "destroyc", "mk")).code, 0);
      // Never inside the store (an image's rootfs or layers, a container's layer), also
      // through a symlink.
      Deno.symlinkSync(`${store}/images`, `${tmp}/link`);
      for (const bad of [`${store}/images/bb/rootfs/newdir`, `${tmp}/link/x/y`]) {
        const b = await c("image", "run", "--rm", "-v", `${bad}:/x`, "bb", "true");
        assertEquals(b.code, 1, b.stderr);
        assertMatch(b.stderr, /is inside capsule's store/);
      }
      for (const p of [`${store}/images/bb/rootfs/newdir`, `${store}/images/x`]) {
        let made = true;
        try {
          Deno.statSync(p);
        } catch {
          made = false;
        }
        assert(!made, `${p} was made`);
      }
      assertEquals(containers(store), []);
    }, root);
  },
);

rootTest("image restart: stop then image start, several ids, from the kept layer", async (root) => {
  await withImage(async (c, store) => {
    const prog = "echo run >> /f; sleep 1000";
    const r = await c("image", "run", "-d", "--name", "rs", "bb", "sh", "-c", prog);
    assertEquals(r.code, 0, r.stderr);
    const pid = JSON.parse((await c("state", "rs")).stdout).pid;
    // A kept container that ran in the foreground is started too (docker restart does).
    assertEquals((await c("image", "run", "--name", "fg", "bb", "sh", "-c", "echo x")).code, 0);
    const t0 = Date.now();
    const x = await c("image", "restart", "-t", "1", "rs", "nosuch", "fg");
    assertEquals([x.code, x.stdout], [1, "rs\nfg\n"], x.stderr);
    assertMatch(x.stderr, /No container "nosuch"/);
    assert(Date.now() - t0 < 8000, `restart took ${Date.now() - t0} ms`);
    const st = JSON.parse((await c("state", "rs")).stdout);
    assertEquals(st.status, "running");
    assert(st.pid !== pid, "the same process");
    assertEquals((await c("exec", "rs", "cat", "/f")).stdout, "run\nrun\n");
    assertEquals(await exitCode(c, "fg"), 0);
    assertEquals((await c("stop", "-t", "0", "rs")).code, 0);
    assertEquals((await c("image", "destroyc", "rs", "fg")).code, 0);
    assertEquals(containers(store), []);
    // One run with --rm is removed when it stops: restart refuses it before stopping anything.
    assertEquals(
      (await c("image", "run", "-d", "--rm", "--name", "rr", "bb", "sleep", "1000")).code,
      0,
    );
    const rpid = JSON.parse((await c("state", "rr")).stdout).pid;
    const rr = await c("image", "restart", "-t", "0", "rr");
    assertEquals(rr.code, 1, rr.stdout);
    assertMatch(rr.stderr, /"rr" was run with --rm/);
    assertEquals(JSON.parse((await c("state", "rr")).stdout).pid, rpid);
    assertEquals((await c("stop", "-t", "0", "rr")).code, 0);
    await waitFor(() => containers(store).length === 0, 5000, "--rm's removal of rr");
  }, root);
});

rootTest("image delete and volume rm: several names, as docker rmi and volume rm", async (root) => {
  await withImage(async (c) => {
    for (const t of ["t1", "t2"]) assertEquals((await c("image", "tag", "bb", t)).code, 0);
    const d = await c("image", "delete", "t1", "nosuch", "t2");
    assertEquals([d.code, d.stdout], [1, "t1\nt2\n"], d.stderr);
    assertMatch(d.stderr, /Image "nosuch" does not exist/);
    const names = (await c("image", "list", "--format", "json")).stdout;
    assert(!/"t[12]/.test(names), names);
    // -f: a missing one is no error, and is not printed as removed.
    assertEquals((await c("image", "tag", "bb", "t3")).code, 0);
    const f = await c("image", "delete", "-f", "nosuch", "t3");
    assertEquals([f.code, f.stdout, f.stderr], [0, "t3\n", ""]);
    for (const v of ["v1", "v2"]) assertEquals((await c("volume", "create", v)).code, 0);
    const r = await c("volume", "rm", "v1", "nosuch", "v2");
    assertEquals([r.code, r.stdout], [1, "v1\nv2\n"], r.stderr);
    assertMatch(r.stderr, /Volume "nosuch" does not exist/);
    assertEquals((await c("volume", "list", "--format", "json")).stdout.trim(), "[]");
  }, root);
});

rootTest(
  "--root: a relative one is saved absolute; a symlink or // to the same one is accepted",
  async (root) => {
    await withImage(async (_c, store, tmp) => {
      Deno.mkdirSync(`${tmp}/a`);
      Deno.mkdirSync(`${tmp}/b`);
      const at = (cwd: string, ...args: string[]) =>
        capsule(root, ["--store", store, ...args], { cwd });
      const r = await at(
        `${tmp}/a`,
        "--root",
        "relroot",
        "image",
        "run",
        "--id",
        "rr",
        "bb",
        "true",
      );
      assertEquals(r.code, 0, r.stderr);
      const info = JSON.parse(Deno.readTextFileSync(`${store}/containers/rr/container.json`));
      assertEquals(info.root, `${tmp}/a/relroot`);
      Deno.symlinkSync(`${tmp}/a/relroot`, `${tmp}/link`);
      // From another directory, no --root: the saved one, not ./relroot of that directory.
      const [cmd, ...pre] = capsuleCommand();
      const s = await new Deno.Command(cmd, {
        args: [...pre, "--store", store, "image", "start", "-a", "rr"],
        cwd: `${tmp}/b`,
        stdin: "null",
        stderr: "piped",
        stdout: "null",
      }).output();
      assertEquals(s.code, 0, new TextDecoder().decode(s.stderr));
      assertEquals([...Deno.readDirSync(`${tmp}/b`)], []);
      // The same root spelled through a symlink, or with //: accepted.
      for (const spelled of [`${tmp}/link`, `${tmp}/a//relroot/`]) {
        const t = await at(`${tmp}/b`, "--root", spelled, "image", "start", "-a", "rr");
        assertEquals(t.code, 0, `${spelled}: ${t.stderr}`);
      }
      const other = await at(`${tmp}/b`, "--root", "relroot", "image", "start", "-a", "rr");
      assertEquals(other.code, 1);
      assertMatch(
        other.stderr,
        /keeps its state under --root \S+\/a\/relroot \(given at image run\)/,
      );
      const d = await at(`${tmp}/b`, "--root", `${tmp}/link`, "image", "destroyc", "rr");
      assertEquals(d.code, 0, d.stderr);
      assertEquals(containers(store), []);
    }, root);
  },
);

rootTest(
  "a closed stdout pipe (log | head -1) ends capsule quietly with 141, as SIGPIPE",
  async (root) => {
    await withImage(async (c, store) => {
      const r = await c("image", "run", "-d", "--id", "lp", "bb", "seq", "1", "200000");
      assertEquals(r.code, 0, r.stderr);
      for (let i = 0; i < 100; i++) {
        if (JSON.parse((await c("state", "lp")).stdout).status === "stopped") break;
        await new Promise((res) => setTimeout(res, 50));
      }
      const [cmd, ...pre] = capsuleCommand();
      const st = await new Deno.Command("bash", {
        args: [
          "-c",
          `"$@" log lp | head -1; exit "\${PIPESTATUS[0]}"`,
          "bash",
          cmd,
          ...pre,
          "--root",
          root,
          "--store",
          store,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(st.stderr);
      assertEquals([st.code, new TextDecoder().decode(st.stdout), err], [141, "1\n", ""]);
      // A full device (ENOSPC) is the operating system's error: its message, no stack, exit 1.
      const full = await new Deno.Command("bash", {
        args: [
          "-c",
          `"$@" log lp >/dev/full`,
          "bash",
          cmd,
          ...pre,
          "--root",
          root,
          "--store",
          store,
        ],
        stdin: "null",
        stderr: "piped",
      }).output();
      const ferr = new TextDecoder().decode(full.stderr);
      assertEquals([full.code, ferr], [1, "capsule: No space left on device (os error 28)\n"]);
      assertEquals((await c("delete", "lp")).code, 0);
      assertEquals((await c("image", "destroyc", "lp")).code, 0);
    }, root);
  },
);

rootTest(
  "capsule delete of a stopped image container: log says it was deleted, list keeps its exit",
  async (root) => {
    await withImage(async (c) => {
      const r = await c("image", "run", "-d", "--name", "dl", "bb", "sh", "-c", "echo hi; exit 3");
      assertEquals(r.code, 0, r.stderr);
      for (let i = 0; i < 100; i++) {
        if (JSON.parse((await c("state", "dl")).stdout).status === "stopped") break;
        await new Promise((res) => setTimeout(res, 50));
      }
      assertEquals((await c("log", "dl")).stdout, "hi\n");
      const d = await c("delete", "dl");
      assertEquals(d.code, 0, d.stderr);
      const l = await c("log", "dl");
      assertEquals(l.code, 1);
      assertMatch(l.stderr, /"dl" has no log: "capsule delete dl" removed its run-time state/);
      assert(!/reboot/.test(l.stderr), l.stderr);
      const list = JSON.parse((await c("list", "--format", "json")).stdout);
      assertEquals(list.map((s: { id: string; exitCode?: number }) => [s.id, s.exitCode]), [
        ["dl", 3],
      ]);
      // Started again, its new run has a log; the marker is gone.
      const s = await c("image", "start", "-a", "dl");
      assertEquals([s.code, s.stdout], [3, "hi\n"], s.stderr);
      assertEquals((await c("image", "destroyc", "dl")).code, 0);
    }, root);
  },
);

rootTest(
  "image run -v: ./dir is the caller's; a path through another container's /proc/PID/root is refused",
  async (root) => {
    await withImage(async (c, store, tmp) => {
      Deno.mkdirSync(`${tmp}/somedir/ex`, { recursive: true });
      Deno.writeTextFileSync(`${tmp}/somedir/ex/mine`, "");
      const rel = (...args: string[]) =>
        capsule(root, ["--store", store, "image", "run", "--rm", ...args], {
          cwd: `${tmp}/somedir`,
        });
      const r = await rel("-v", "./ex:/x", "bb", "ls", "/x");
      assertEquals([r.code, r.stdout], [0, "mine\n"], r.stderr);
      const made = await rel("-v", "./relx:/x", "bb", "true");
      assertEquals(made.code, 0, made.stderr);
      assert(Deno.statSync(`${tmp}/somedir/relx`).isDirectory);
      assertEquals(exists("/relx"), false);
      const d = await c("image", "run", "-d", "--name", "tg", "bb", "sleep", "100");
      assertEquals(d.code, 0, d.stderr);
      try {
        const pid = JSON.parse((await c("state", "tg")).stdout).pid;
        for (const src of [`/proc/${pid}/root/etc`, `/proc/${pid}/root/newdir`]) {
          const m = await c("image", "run", "--rm", "-v", `${src}:/x`, "bb", "ls", "/x");
          assertEquals(m.code, 1, m.stdout);
          assertMatch(m.stderr, /magic link\); give the directory's path on the host instead/);
        }
        assertEquals(exists("/newdir"), false);
        const dangling = `${tmp}/dangle`;
        Deno.symlinkSync(`${tmp}/nowhere`, dangling);
        const g = await c("image", "run", "--rm", "-v", `${dangling}:/x`, "bb", "true");
        assertEquals(g.code, 1);
        assertMatch(g.stderr, /is a symlink to ".*nowhere", which does not exist/);
        assert(!/internal error/.test(g.stderr), g.stderr);
      } finally {
        await c("delete", "-f", "tg");
        await c("image", "destroyc", "tg");
      }
    }, root);
  },
);

rootTest(
  "--store: a relative one is made absolute (its paths are saved in the state)",
  async (root) => {
    await withImage(async (_c, store, tmp) => {
      Deno.mkdirSync(`${tmp}/b`);
      const at = (cwd: string, ...args: string[]) =>
        capsule(root, ["--store", "store", ...args], { cwd });
      const r = await at(tmp, "image", "run", "-d", "--name", "rs", "bb", "sleep", "100");
      assertEquals(r.code, 0, r.stderr);
      try {
        const st = JSON.parse(Deno.readTextFileSync(`${root}/rs/state.json`));
        assertEquals(JSON.stringify(st).includes(`"${store}/containers/rs`), true);
      } finally {
        // From another directory, the store named as it is from there.
        const d = await capsule(root, ["--store", "../store", "delete", "-f", "rs"], {
          cwd: `${tmp}/b`,
        });
        assertEquals(d.code, 0, d.stderr);
        assertEquals(
          Deno.readTextFileSync("/proc/self/mountinfo").includes(`${store}/containers/rs/merged`),
          false,
        );
        assertEquals((await at(tmp, "image", "destroyc", "rs")).code, 0);
      }
    }, root);
  },
);

rootTest(
  "image start: a -v path that a symlink now diverts (into the store) is refused, the container kept as it was",
  async (root) => {
    await withImage(async (c, store, tmp) => {
      Deno.mkdirSync(`${tmp}/sw/containers`, { recursive: true });
      const r = await c(
        "image",
        "run",
        "--name",
        "sw",
        "-v",
        `${tmp}/sw/containers:/d`,
        "bb",
        "ls",
        "/d",
      );
      assertEquals([r.code, r.stdout], [0, ""], r.stderr);
      try {
        const before = (await c("list")).stdout;
        // The directory named at image run is replaced by a symlink to capsule's store.
        Deno.removeSync(`${tmp}/sw`, { recursive: true });
        Deno.symlinkSync(store, `${tmp}/sw`);
        const s = await c("image", "start", "-a", "sw");
        assertEquals(s.code, 1, `image start followed the symlink: ${s.stdout}`);
        assertMatch(s.stderr, /inside capsule's store/);
        assert(!s.stdout.includes("sw"), s.stdout);
        assertEquals((await c("list")).stdout, before);
        // Elsewhere (a directory without "containers" in it): refused, and nothing made there.
        Deno.removeSync(`${tmp}/sw`);
        Deno.mkdirSync(`${tmp}/other`);
        Deno.symlinkSync(`${tmp}/other`, `${tmp}/sw`);
        const o = await c("image", "start", "-a", "sw");
        assertEquals(o.code, 1, `image start followed the symlink: ${o.stdout}`);
        assertMatch(o.stderr, /now leads to .*\/other\/containers: a symlink was put in its way/);
        assertEquals(exists(`${tmp}/other/containers`), false);
        assertEquals((await c("list")).stdout, before);
      } finally {
        await c("image", "destroyc", "-f", "sw");
      }
    }, root);
  },
);
