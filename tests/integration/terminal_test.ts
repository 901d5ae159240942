// Terminals: run -t relayed through the caller's terminal (driven with script(1)), and
// --console-socket handing the pty master to a receiver, as podman's conmon does.
import {
  assertEquals,
  assertMatch,
  buildBusyboxRootfs,
  capsule,
  makeBundle,
  removeAll,
  REPO,
  rootTest,
} from "../helpers.ts";

const capsuleCmd = `${Deno.execPath()} run -A --quiet ${REPO}/main.ts`;

rootTest(
  "run -t: an interactive shell with a tty, its window size, and its exit status",
  async (root) => {
    const b = await makeBundle(["sh"]);
    try {
      const line =
        `stty rows 33 cols 77; ${capsuleCmd} --root ${root} run -t -b ${b} tty1; echo "rc=$?"`;
      const child = new Deno.Command("script", {
        args: ["-qec", line, "/dev/null"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode("tty; echo pid=$$; stty size; exit 4\n"));
      const out = new TextDecoder().decode(
        (await Promise.all([child.output(), w.close()]))[0].stdout,
      );
      const text = out.replaceAll("\r", "");
      assertMatch(text, /\/dev\/pts\/0\n/);
      assertMatch(text, /pid=1\n/);
      assertMatch(text, /33 77\n/);
      assertMatch(text, /rc=4/);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "spec writes runc's starter: run in a terminal gives sh a tty of group 5 and ro cgroups",
  async (root) => {
    // As a runc user does it (and runc's own test suite): spec, a rootfs, run, no edits.
    const b = await Deno.makeTempDir({ prefix: "capsule-bundle-" });
    try {
      await Deno.mkdir(`${b}/rootfs`);
      await buildBusyboxRootfs(`${b}/rootfs`);
      assertEquals((await capsule(root, ["spec", "-b", b])).code, 0);
      const line = `${capsuleCmd} --root ${root} run -b ${b} starter1; echo "rc=$?"`;
      const child = new Deno.Command("script", {
        args: ["-qec", line, "/dev/null"],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(
        new TextEncoder().encode(
          "echo tty=$(tty) group=$(stat -c %g $(tty)); " +
            "grep -q ' /sys/fs/cgroup [a-z0-9]* ro,' /proc/mounts && echo cgroup=ro; exit 3\n",
        ),
      );
      const out = new TextDecoder().decode(
        (await Promise.all([child.output(), w.close()]))[0].stdout,
      );
      const text = out.replaceAll("\r", "");
      assertMatch(text, /tty=\/dev\/pts\/0 group=5\n/);
      assertMatch(text, /cgroup=ro\n/);
      assertMatch(text, /rc=3/);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "--console-socket: create sends the pty master; the receiver drives the shell",
  async (root) => {
    const b = await makeBundle(["sh"], (s) => (s.process!.terminal = true));
    const dir = await Deno.makeTempDir();
    try {
      const sock = `${dir}/console.sock`, ready = `${dir}/ready`;
      const receiver = new Deno.Command("python3", {
        args: [`${REPO}/tests/fixtures/console_receiver.py`, sock, ready],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      for (let i = 0; i < 100; i++) {
        try {
          Deno.statSync(ready);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      // As engines call it: create's stdout and stderr are pipes, read to the end. With a
      // terminal the init holds none of them, so create's output ends when create does.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const c = await Promise.race([
        capsule(root, ["create", "--console-socket", sock, "-b", b, "con1"], { stdio: "pipe" }),
        new Promise<never>((_, reject) =>
          timer = setTimeout(() => reject(new Error("create's output stayed open")), 10_000)
        ),
      ]).finally(() => clearTimeout(timer));
      assertEquals(c.code, 0, c.stderr);
      assertEquals((await capsule(root, ["start", "con1"])).code, 0);
      const out = await receiver.output();
      const text = new TextDecoder().decode(out.stdout).replaceAll("\r", "");
      assertMatch(text, /console-5\n/);
      assertMatch(text, /\/dev\/pts\/0\n/);
      assertEquals((await capsule(root, ["delete", "-f", "con1"])).code, 0);
      // Without a console socket, a terminal container cannot be created.
      const no = await capsule(root, ["create", "-b", b, "con2"]);
      assertEquals(no.code, 1);
      assertMatch(no.stderr, /process\.terminal is true, so give --console-socket/);
    } finally {
      await removeAll(b, dir);
    }
  },
);

rootTest("exec -t: a terminal for an exec'd shell", async (root) => {
  const b = await makeBundle("sleep 1000");
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "et1"])).code, 0);
    const line = `${capsuleCmd} --root ${root} exec -t et1 sh -c 'tty; exit 6'; echo "rc=$?"`;
    const out = await new Deno.Command("script", {
      args: ["-qec", line, "/dev/null"],
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout).replaceAll("\r", "");
    assertMatch(text, /\/dev\/pts\/\d+\n/);
    assertMatch(text, /rc=6/);
    assertEquals((await capsule(root, ["delete", "-f", "et1"])).code, 0);
  } finally {
    await removeAll(b);
  }
});

rootTest(
  "a terminal belongs to process.user's uid (run -t and exec -t), its group stays devpts' gid=5",
  async (root) => {
    // As runc does: the pty slave is chowned to the process's uid before the user switch, so
    // that a non-root program can use (and chmod) its own terminal.
    const b = await makeBundle("sleep 1000", (s) => {
      s.process!.user = { uid: 1000, gid: 100 };
      for (const m of s.mounts ?? []) {
        if (m.type === "devpts") m.options = [...(m.options ?? []), "gid=5"];
      }
    });
    try {
      const stat = `sh -c 'echo owner=$(stat -c %u:%g $(tty))'`;
      const config = JSON.parse(await Deno.readTextFile(`${b}/config.json`));
      config.process.args = ["sh", "-c", "echo owner=$(stat -c %u:%g $(tty))"];
      const b2 = `${b}/run`;
      await Deno.mkdir(b2);
      await Deno.writeTextFile(`${b2}/config.json`, JSON.stringify(config));
      const inScript = async (line: string) => {
        const out = await new Deno.Command("script", {
          args: ["-qec", line, "/dev/null"],
          stdin: "null",
        }).output();
        return new TextDecoder().decode(out.stdout).replaceAll("\r", "");
      };
      const ran = await inScript(`${capsuleCmd} --root ${root} run -t -b ${b2} ttyown1`);
      assertMatch(ran, /owner=1000:5\n/);
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "ttyown2"])).code, 0);
      const execd = await inScript(`${capsuleCmd} --root ${root} exec -t ttyown2 ${stat}`);
      assertMatch(execd, /owner=1000:5\n/);
      // exec -u names another user: the terminal is that user's.
      const other = await inScript(`${capsuleCmd} --root ${root} exec -t -u 1234 ttyown2 ${stat}`);
      assertMatch(other, /owner=1234:5\n/);
      assertEquals((await capsule(root, ["delete", "-f", "ttyown2"])).code, 0);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "run -t and exec -t: the terminal shows the program's output and capsule's errors, nothing else",
  async (root) => {
    // The init is a Deno process: anything Deno itself prints at start-up (a warning about its
    // caches, which the init runs without) must not reach the user's terminal.
    const b = await makeBundle(["sleep", "30"]);
    const hi = await makeBundle(["echo", "hi"]);
    const inPty = async (args: string) => {
      const out = await new Deno.Command("script", {
        args: ["-qec", `${capsuleCmd} --root ${root} ${args}; echo "rc=$?"`, "/dev/null"],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      // script(1) itself echoes its stdin's end as "^@": not the container's.
      return new TextDecoder().decode(out.stdout).replaceAll("\r", "").replaceAll("^@", "");
    };
    try {
      assertEquals(await inPty(`run -t -b ${hi} ttyq1`), "hi\nrc=0\n");
      // Without a terminal of its own, the program shares capsule's (the caller's) stdio.
      assertEquals(await inPty(`run -b ${hi} ttyq0`), "hi\nrc=0\n");
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "ttyq2"])).code, 0);
      assertEquals(await inPty(`exec -t ttyq2 echo there`), "there\nrc=0\n");
      const missing = await inPty(`exec -t ttyq2 /no/such/program`);
      assertMatch(missing, /^capsule: .*\/no\/such\/program.*\nrc=(1|127|255)\n$/);
    } finally {
      await capsule(root, ["delete", "-f", "ttyq2"]);
      await removeAll(b, hi);
    }
  },
);
