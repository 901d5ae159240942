// `capsule exec` through capsule-nsexec, against what runc 1.1.5 does on this machine: a
// --process file without capabilities gets the container's (never capsule's own), a seccomp
// profile never reaches capsule's own process (signals still pass, a kill still shows), capsule's
// own process stays out of the container's cgroup (pids.max, ps, kill --all), a terminal in a
// user namespace belongs to a uid mapped there and starts at the caller's size, and any number
// of arguments the kernel takes is passed on. Root only.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  capsuleCommand,
  makeBundle,
  removeAll,
  rootTest,
  sleep,
  spawnCapsule,
  state,
  USERNS_MAP,
  waitFor,
} from "../helpers.ts";

const capsuleLine = (root: string) =>
  [...capsuleCommand(), "--root", root].map((a) => `'${a}'`).join(" ");

/** The program's host pid, once `capsule exec --pid-file` has written it. */
async function execPid(pidFile: string): Promise<number> {
  const read = () => {
    try {
      return Number(Deno.readTextFileSync(pidFile));
    } catch {
      return 0;
    }
  };
  await waitFor(() => read() > 0, 5000, "the exec's pid file");
  return read();
}

/** A CapEff line's mask of /proc/PID/status text. */
const capEff = (status: string) => /CapEff:\s*([0-9a-f]+)/.exec(status)![1];

rootTest("exec --process without capabilities: the container's, not capsule's", async (root) => {
  const b = await makeBundle("sleep 1000", (s) => {
    s.process!.noNewPrivileges = true;
  });
  const proc = await Deno.makeTempFile({ suffix: ".json" });
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "xp1"])).code, 0);
    const initCaps = capEff(
      Deno.readTextFileSync(`/proc/${(await state(root, "xp1")).pid}/status`),
    );
    await Deno.writeTextFile(
      proc,
      JSON.stringify({
        args: ["grep", "CapEff", "/proc/self/status"],
        cwd: "/",
        user: { uid: 0, gid: 0 },
        env: ["PATH=/bin"],
      }),
    );
    const r = await capsule(root, ["exec", "--process", proc, "xp1"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(capEff(r.stdout), initCaps, "the exec's capabilities are the container's");
  } finally {
    await capsule(root, ["delete", "-f", "xp1"]);
    await removeAll(b, proc);
  }
});

rootTest(
  "exec with a seccomp profile and no no_new_privs: a kill of the program and a signal to capsule still work",
  async (root) => {
    // The profile refuses kill(2) and its kin to the container: capsule's own process, which
    // passes signals on and reports a kill, must not be under it.
    const b = await makeBundle("sleep 1000", (s) => {
      s.process!.noNewPrivileges = false;
      s.linux!.seccomp = {
        defaultAction: "SCMP_ACT_ALLOW",
        architectures: ["SCMP_ARCH_X86_64"],
        syscalls: [{ names: ["kill", "tkill", "tgkill"], action: "SCMP_ACT_ERRNO" }],
      };
    });
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "xs1"])).code, 0);
      // Killed from the host by SIGKILL: 137, as runc.
      const pidFile = `${b}/exec.pid`;
      const killed = spawnCapsule(root, ["exec", "--pid-file", pidFile, "xs1", "sleep", "30"]);
      Deno.kill(await execPid(pidFile), "SIGKILL");
      assertEquals((await killed.output()).code, 137);
      // SIGTERM to capsule reaches the program, whose trap answers.
      const term = spawnCapsule(root, [
        "exec",
        "xs1",
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; echo ready; sleep 20 & wait",
      ]);
      const out = term.stdout.getReader();
      const first = new TextDecoder().decode((await out.read()).value);
      assertMatch(first, /ready/);
      await sleep(100);
      term.kill("SIGTERM");
      const st = await term.status;
      await out.cancel();
      await term.stderr.cancel();
      assertEquals(st.code, 7, "the program's trap ran and its status came back");
    } finally {
      await capsule(root, ["delete", "-f", "xs1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "exec: capsule's own process is not in the container's cgroup (pids.max, ps, kill --all)",
  async (root) => {
    const b = await makeBundle("sleep 1000", (s) => {
      s.linux!.resources = { ...s.linux!.resources, pids: { limit: 2 } };
    });
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "xc1"])).code, 0);
      // The init and the program: two, within pids.max 2.
      const r = await capsule(root, ["exec", "xc1", "echo", "pids-ok"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "pids-ok\n");
      const long = spawnCapsule(root, ["exec", "xc1", "sleep", "3"]);
      try {
        await waitFor(
          async () => {
            const ps = await capsule(root, ["ps", "--format", "json", "xc1"]);
            return JSON.parse(ps.stdout).length === 2;
          },
          5000,
          "the exec'd sleep in ps",
        );
        const ps = JSON.parse((await capsule(root, ["ps", "--format", "json", "xc1"])).stdout);
        assertEquals(ps.length, 2, `ps lists only the init and the program: ${ps}`);
        // kill --all reaches only the container's processes; capsule reports the program's end.
        assertEquals((await capsule(root, ["kill", "--all", "xc1", "ALRM"])).code, 0);
        assertEquals((await long.output()).code, 142);
      } finally {
        try {
          long.kill("SIGKILL");
          await long.output();
        } catch { /* ended and read */ }
      }
    } finally {
      await capsule(root, ["delete", "-f", "xc1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "exec -t: the terminal starts at the caller's size and, in a user namespace, can be reopened",
  async (root) => {
    const b = await makeBundle("sleep 1000", (s) => {
      s.linux!.namespaces!.push({ type: "user" });
      s.linux!.uidMappings = USERNS_MAP;
      s.linux!.gidMappings = USERNS_MAP;
    });
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "xt1"])).code, 0);
      const line = `stty rows 33 cols 99; ${capsuleLine(root)} exec -t xt1 sh -c ` +
        `'stty size; echo x > $(tty) && echo y > /dev/tty && echo reopened'; echo "rc=$?"`;
      const out = await new Deno.Command("script", { args: ["-qec", line, "/dev/null"] }).output();
      const text = new TextDecoder().decode(out.stdout).replaceAll("\r", "");
      assertMatch(text, /^33 99$/m);
      assertMatch(text, /reopened/);
      assertMatch(text, /rc=0/);
    } finally {
      await capsule(root, ["delete", "-f", "xt1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "exec: 100000 arguments are passed on (the kernel's limit, not capsule's)",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "xa1"])).code, 0);
      const args = Array.from({ length: 100000 }, (_, i) => String(i + 1));
      const r = await capsule(root, ["exec", "xa1", "sh", "-c", "echo $#", "sh", ...args]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "100000\n");
    } finally {
      await capsule(root, ["delete", "-f", "xa1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "exec: the container's /etc/passwd is read only if it is a regular file (a device node, a FIFO)",
  async (root) => {
    // capsule's process is outside the container's cgroup: a node the container made must not be
    // opened (its device rules do not hold there), nor a FIFO block the exec.
    const img = await Deno.makeTempFile();
    let loop = "";
    const b = await makeBundle("sleep 1000", undefined, { ownRootfs: true });
    try {
      const line = "root:x:0:0:root:/LEAKED-FROM-A-DEVICE:/bin/sh\n";
      await Deno.writeTextFile(img, line.padEnd(1 << 20, "\n"));
      const lo = await new Deno.Command("losetup", { args: ["-f", "--show", img] }).output();
      assertEquals(lo.code, 0, new TextDecoder().decode(lo.stderr));
      loop = new TextDecoder().decode(lo.stdout).trim();
      const st = Deno.statSync(loop);
      const major = Number(BigInt(st.rdev!) >> 8n & 0xfffn);
      const minor = Number(BigInt(st.rdev!) & 0xffn);
      await Deno.remove(`${b}/rootfs/etc/passwd`);
      const mk = await new Deno.Command("mknod", {
        args: [`${b}/rootfs/etc/passwd`, "b", String(major), String(minor)],
      }).output();
      assertEquals(mk.code, 0);
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "xd1"])).code, 0);
      const r = await capsule(root, ["exec", "xd1", "sh", "-c", "echo HOME=$HOME"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "HOME=/\n", "HOME never comes from a device node");
      // A FIFO: nothing blocks, HOME is "/".
      await Deno.remove(`${b}/rootfs/etc/passwd`);
      assertEquals(
        (await new Deno.Command("mkfifo", { args: [`${b}/rootfs/etc/passwd`] }).output()).code,
        0,
      );
      const f = await capsule(root, ["exec", "xd1", "sh", "-c", "echo HOME=$HOME"]);
      assertEquals(f.stdout, "HOME=/\n", f.stderr);
    } finally {
      await capsule(root, ["delete", "-f", "xd1"]);
      if (loop) await new Deno.Command("losetup", { args: ["-d", loop] }).output();
      await removeAll(b, img);
    }
  },
);

rootTest(
  "exec into a container at its pids.max is refused (a fork there would be)",
  async (root) => {
    const b = await makeBundle("sleep 1000", (s) => {
      s.linux!.resources = { ...s.linux!.resources, pids: { limit: 1 } };
    });
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "xl1"])).code, 0);
      const r = await capsule(root, ["exec", "xl1", "echo", "ran"]);
      assertEquals(r.code, 255, r.stdout);
      assertMatch(r.stderr, /at its pids limit \(pids\.max 1\)/);
      assertEquals(r.stdout, "");
      const ps = JSON.parse((await capsule(root, ["ps", "--format", "json", "xl1"])).stdout);
      assertEquals(ps.length, 1, "only the init is left");
    } finally {
      await capsule(root, ["delete", "-f", "xl1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "exec: capsule killed, its helper goes too; the program runs on (runc's way)",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "xk1"])).code, 0);
      const pidFile = `${b}/exec.pid`;
      const cli = spawnCapsule(root, ["exec", "--pid-file", pidFile, "xk1", "sleep", "30"]);
      const program = await execPid(pidFile);
      const helper = Number(
        Deno.readTextFileSync(`/proc/${cli.pid}/task/${cli.pid}/children`).trim().split(/\s+/)[0],
      );
      assert(helper > 0 && helper !== program, "capsule's helper between capsule and the program");
      cli.kill("SIGKILL");
      await cli.status;
      // The program keeps capsule's stdout and stderr (as with runc): not read to their end.
      await cli.stdout.cancel();
      await cli.stderr.cancel();
      await waitFor(
        () => {
          try {
            return Deno.readTextFileSync(`/proc/${helper}/stat`).split(" ")[2] === "Z";
          } catch {
            return true; // gone
          }
        },
        3000,
        "the helper gone with capsule",
      );
      assert(Deno.readTextFileSync(`/proc/${program}/cmdline`).startsWith("sleep"), "program runs");
    } finally {
      await capsule(root, ["delete", "-f", "xk1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "exec: a --pid-file that cannot be written is refused before any program starts",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "xq1"])).code, 0);
      for (const detach of [[], ["-d"]]) {
        const r = await capsule(root, [
          "exec",
          ...detach,
          "--pid-file",
          `${b}/no/such/dir/exec.pid`,
          "xq1",
          "sleep",
          "77",
        ]);
        assertEquals(r.code, 255, r.stdout);
        assertMatch(r.stderr, /Invalid --pid-file ".*exec\.pid": directory .* does not exist/);
        await sleep(200);
        const ps = JSON.parse((await capsule(root, ["ps", "--format", "json", "xq1"])).stdout);
        assertEquals(ps.length, 1, `${detach}: only the init is left: ${ps}`);
      }
    } finally {
      await capsule(root, ["delete", "-f", "xq1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "exec -d into a container without a PID namespace of its own: the program outlives capsule",
  async (root) => {
    // The helper becomes the program there (no fork): capsule's death signal for the helper
    // (PR_SET_PDEATHSIG, kept across execve) killed the program as soon as capsule exited.
    const b = await makeBundle("sleep 1000", (s) => {
      s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== "pid");
    });
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "xn1"])).code, 0);
      const pidFile = `${b}/exec.pid`;
      // (--pid-file: the program keeps the caller's stdio, so they go to files, not pipes.)
      const r = await capsule(root, ["exec", "-d", "--pid-file", pidFile, "xn1", "sleep", "77"], {
        stdio: "file",
      });
      assertEquals(r.code, 0, r.stderr);
      const pid = Number(Deno.readTextFileSync(pidFile));
      await new Promise((ok) => setTimeout(ok, 300));
      let cmd = "";
      try {
        cmd = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
      } catch { /* gone */ }
      assertEquals(cmd, "sleep\u000077\u0000", `the exec'd program (pid ${pid}) is gone`);
      assertEquals((await capsule(root, ["delete", "-f", "xn1"])).code, 0);
    } finally {
      await removeAll(b);
    }
  },
);
