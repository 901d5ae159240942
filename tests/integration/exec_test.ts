// exec, ps, log and kill --all against a running busybox container.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  makeBundle,
  removeAll,
  REPO,
  rootTest,
  state,
  waitFor,
} from "../helpers.ts";

rootTest("exec: same hostname and PID namespace; ps lists both; exit status", async (root) => {
  const b = await makeBundle("sleep 1000", (s) => (s.hostname = "exec-host"));
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "x1"])).code, 0);
    const r = await capsule(root, [
      "exec",
      "x1",
      "sh",
      "-c",
      "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$",
    ]);
    assertEquals(r.code, 0, r.stderr);
    const [host, init, mypid] = r.stdout.trim().split("\n");
    assertEquals(host, "exec-host");
    assertEquals(init.trim(), "sleep 1000");
    assert(
      Number(mypid) > 1 && Number(mypid) < 100,
      `pid ${mypid} is not from the container's namespace`,
    );
    assertEquals((await capsule(root, ["exec", "x1", "sh", "-c", "exit 42"])).code, 42);
    // Flags after the command belong to the command.
    const ls = await capsule(root, ["exec", "x1", "ls", "-d", "/bin"]);
    assertEquals(ls.stdout.trim(), "/bin");
    // ps while an exec runs: both processes, pids inside and outside.
    const sleeper = await capsule(root, ["exec", "-d", "x1", "sleep", "77"]);
    assertEquals(sleeper.code, 0, sleeper.stderr);
    await waitFor(
      async () => (await capsule(root, ["ps", "x1"])).stdout.includes("sleep 77"),
      5000,
      "ps",
    );
    // runc's ps: ps(1) -ef lines of the container's processes; options after the id.
    const initPid = (await state(root, "x1")).pid;
    const table = (await capsule(root, ["ps", "x1"])).stdout.trim().split("\n");
    assertMatch(table[0], /^UID\s+PID\s+PPID\s+C\s+STIME\s+TTY\s+TIME\s+CMD$/);
    assertEquals(table.length, 3, table.join("\n"));
    assertMatch(table[1], new RegExp(`^root\\s+${initPid}\\s.*sleep 1000$`));
    assertMatch(table[2], /sleep 77$/);
    const ex = (await capsule(root, ["ps", "x1", "-e", "-x"])).stdout.trim().split("\n");
    assertMatch(ex[0], /^\s*PID\s+TTY\s+STAT\s+TIME\s+COMMAND$/);
    assertEquals(ex.length, 3);
    // --format json: the host pids, as engines (go-runc) read them.
    const ps = JSON.parse((await capsule(root, ["ps", "--format", "json", "x1"])).stdout);
    assertEquals(ps.length, 2);
    assertEquals(ps[0], initPid);
    assertEquals(typeof ps[1], "number");
    // kill --all reaches the exec'd process too.
    assertEquals((await capsule(root, ["kill", "--all", "x1", "KILL"])).code, 0);
    await waitFor(async () => (await state(root, "x1")).status === "stopped", 5000, "stopped");
    // exec's own failures exit 255 (runc's), apart from the program's statuses.
    const dead = await capsule(root, ["exec", "x1", "true"]);
    assertEquals(dead.code, 255);
    assertMatch(
      dead.stderr,
      /Cannot exec in container "x1": it is stopped, not created or running/,
    );
    assertEquals((await capsule(root, ["delete", "x1"])).code, 0);
  } finally {
    await removeAll(b);
  }
});

rootTest("exec: env merged over the container's, cwd, user; --process file", async (root) => {
  const b = await makeBundle("sleep 1000", (s) => s.process!.env!.push("A=from-config", "B=kept"));
  const pfile = await Deno.makeTempFile();
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "x2"])).code, 0);
    const r = await capsule(root, [
      "exec",
      "-e",
      "A=from-exec",
      "--cwd",
      "/tmp",
      "-u",
      "1000:1000",
      "x2",
      "sh",
      "-c",
      "echo $A $B; pwd; id -u; id -g",
    ]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout.trim().split("\n"), ["from-exec kept", "/tmp", "1000", "1000"]);
    await Deno.writeTextFile(
      pfile,
      JSON.stringify({
        args: ["sh", "-c", "echo $P; pwd"],
        env: ["P=process-file", "PATH=/bin"],
        cwd: "/etc",
        user: { uid: 0, gid: 0 },
      }),
    );
    const p = await capsule(root, ["exec", "--process", pfile, "x2"]);
    assertEquals(p.stdout.trim().split("\n"), ["process-file", "/etc"], p.stderr);
    // --additional-gids over -u's user, or over config.json's (runc's -g).
    const g = await capsule(root, [
      "exec",
      "-u",
      "1000:1000",
      "--additional-gids",
      "100",
      "-g",
      "65534",
      "x2",
      "id",
      "-G",
    ]);
    assertEquals([g.code, g.stdout.trim()], [0, "1000 100 65534"], g.stderr);
    const g0 = await capsule(root, ["exec", "-g", "10", "x2", "id", "-G"]);
    assertEquals([g0.code, g0.stdout.trim()], [0, "0 10"], g0.stderr);
    assertEquals((await capsule(root, ["exec", "-g", "x", "x2", "true"])).code, 255);
    // A process file without "user" runs as 0:0, as runc reads it.
    await Deno.writeTextFile(pfile, JSON.stringify({ args: ["id", "-u"], cwd: "/" }));
    const nu = await capsule(root, ["exec", "--process", pfile, "x2"]);
    assertEquals([nu.code, nu.stdout.trim()], [0, "0"], nu.stderr);
    await Deno.writeTextFile(pfile, JSON.stringify({ args: "not-an-array", cwd: "/" }));
    const bad = await capsule(root, ["exec", "--process", pfile, "x2"]);
    assertEquals(bad.code, 255);
    assertMatch(bad.stderr, /Invalid process file .*: process\.(args|user)/);
    const missing = await capsule(root, ["exec", "x2", "no-such-cmd"]);
    assertEquals(missing.code, 255);
    assertMatch(missing.stderr, /exec: "no-such-cmd": executable file not found in \$PATH/);
    const unknown = await capsule(root, ["exec", "nope", "true"]);
    assertEquals(unknown.code, 255);
    const pidDir = await capsule(root, ["exec", "--pid-file", "/nonexistent/d/p", "x2", "true"]);
    assertEquals(pidDir.code, 255, pidDir.stderr);
    const program = await capsule(root, ["exec", "x2", "sh", "-c", "exit 42"]);
    assertEquals(program.code, 42);
    assertEquals((await capsule(root, ["exec", "--frobnicate", "x2", "true"])).code, 2);
    assertMatch(unknown.stderr, /container "nope" does not exist/);
    assertEquals((await capsule(root, ["delete", "-f", "x2"])).code, 0);
  } finally {
    await removeAll(b, pfile);
  }
});

rootTest(
  "log: a detached container's output, --tail, -f ends when it stops; exec -d log",
  async (root) => {
    const b = await makeBundle("for i in 1 2 3 4 5; do echo line$i; done; sleep 1; echo last");
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "lg"])).code, 0);
      const ex = await capsule(root, [
        "exec",
        "-d",
        "lg",
        "sh",
        "-c",
        "echo from-exec; echo err-exec >&2",
      ]);
      const execId = ex.stdout.trim();
      assertMatch(execId, /^[0-9a-f]{12}$/);
      const t0 = Date.now();
      const f = await capsule(root, ["log", "-f", "lg"]);
      assertEquals(f.code, 0, f.stderr);
      assertEquals(f.stdout, "line1\nline2\nline3\nline4\nline5\nlast\n");
      assert(Date.now() - t0 < 10_000);
      assertEquals((await capsule(root, ["log", "--tail", "2", "lg"])).stdout, "line5\nlast\n");
      const el = await capsule(root, ["log", "--exec", execId, "lg"]);
      assertEquals(el.stdout.split("\n").sort().join(" ").trim(), "err-exec from-exec");
      const bad = await capsule(root, ["log", "--exec", "000000000000", "lg"]);
      assertEquals(bad.code, 1);
      assertEquals((await capsule(root, ["delete", "lg"])).code, 0);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "--preserve-fds N: the caller's fds 3..3+N-1 reach exec'd and run programs",
  async (root) => {
    // As engines and runc's users call it: `capsule exec --preserve-fds 2 ID ... 3<a 4<b`.
    const b = await makeBundle("sleep 1000");
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/a`, "from-a\n");
      await Deno.writeTextFile(`${dir}/b`, "from-b\n");
      const capsuleCmd = `${Deno.execPath()} run -A --quiet ${REPO}/main.ts --root ${root}`;
      const shell = async (line: string) => {
        const out = await new Deno.Command("sh", {
          args: ["-c", line],
          cwd: dir,
          stdin: "null",
        }).output();
        const dec = new TextDecoder();
        return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
      };
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "pf1"])).code, 0);
      const show =
        `sh -c 'cat /proc/self/fd/3 /proc/self/fd/4; [ -e /proc/self/fd/5 ] && echo leaked5; true'`;
      const two = await shell(`${capsuleCmd} exec --preserve-fds 2 pf1 ${show} 3<a 4<b 5<a`);
      assertEquals(two.code, 0, two.stderr);
      assertEquals(two.stdout, "from-a\nfrom-b\n");
      // Without the flag, nothing past stderr gets in.
      const none = await shell(
        `${capsuleCmd} exec pf1 sh -c 'ls /proc/self/fd/3 2>&1 || echo none' 3<a`,
      );
      assertMatch(none.stdout, /none\n$/);
      // An fd that is not open is refused, naming it; exec's own failure is status 255.
      const gap = await shell(`${capsuleCmd} exec --preserve-fds 3 pf1 true 3<a 4<b`);
      assertEquals(gap.code, 255);
      assertMatch(gap.stderr, /--preserve-fds 3: fd 5 is not open/);
      const bad = await shell(`${capsuleCmd} exec --preserve-fds x pf1 true`);
      assertEquals(bad.code, 2);
      assertMatch(bad.stderr, /Invalid --preserve-fds "x"/);
      assertEquals((await capsule(root, ["delete", "-f", "pf1"])).code, 0);
      // run (create + start) keeps them for the container's own program too.
      const b2 = await makeBundle(show);
      try {
        const ran = await shell(`${capsuleCmd} run --preserve-fds 2 -b ${b2} pf2 3<a 4<b 5<a`);
        assertEquals(ran.code, 0, ran.stderr);
        assertEquals(ran.stdout, "from-a\nfrom-b\n");
        // Detached too: the root's monitor runs capsule with the caller's fds at their numbers.
        const det = await shell(`${capsuleCmd} run -d --preserve-fds 2 -b ${b2} pf5 3<a 4<b 5<a`);
        assertEquals(det.code, 0, det.stderr);
        await waitFor(
          async () =>
            JSON.parse((await capsule(root, ["state", "pf5"])).stdout).status === "stopped",
          5000,
          "pf5 to exit",
        );
        const log = await capsule(root, ["log", "-f", "pf5"]);
        assertEquals(log.stdout, "from-a\nfrom-b\n", log.stderr);
        assertEquals((await capsule(root, ["delete", "pf5"])).code, 0);
        // systemd socket activation (LISTEN_PID is capsule's pid): the LISTEN_FDS fds come
        // first, then --preserve-fds's; the program is told, as its own pid (runc's).
        const b3 = await makeBundle(
          `echo "$LISTEN_FDS $LISTEN_PID $$"; cat /proc/self/fd/3 /proc/self/fd/4`,
        );
        try {
          const act = await shell(
            `exec env LISTEN_FDS=1 LISTEN_PID=$$ ${capsuleCmd} run --preserve-fds 1 -b ${b3} ` +
              `pf3 3<a 4<b`,
          );
          assertEquals(act.code, 0, act.stderr);
          assertEquals(act.stdout, "1 1 1\nfrom-a\nfrom-b\n");
          // LISTEN_PID of another process: not for capsule, nothing passed or told.
          const other = await shell(
            `exec env LISTEN_FDS=1 LISTEN_PID=1 ${capsuleCmd} run -b ${b3} pf4 3<a 4<b`,
          );
          assertMatch(other.stdout, /^ {2}1\n/);
          assertMatch(other.stderr, /'\/proc\/self\/fd\/3': No such file/);
        } finally {
          await removeAll(b3);
        }
      } finally {
        await removeAll(b2);
      }
    } finally {
      await capsule(root, ["delete", "-f", "pf1"]);
      await removeAll(b, dir);
    }
  },
);
