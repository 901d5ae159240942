// What the init sets up in the container, checked from inside it: sysctls (only namespaced
// ones, written before /proc/sys turns read-only), hostname refusals, rlimits set last,
// HOME, tmpfs modes, /dev/console, and mount targets made without following a swapped link.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  makeBundle,
  removeAll,
  REPO,
  rootTest,
} from "../helpers.ts";
import type { Spec } from "../../runtime/spec.ts";

const capsuleCmd = Deno.env.get("CAPSULE") ?? `${Deno.execPath()} run -A --quiet ${REPO}/main.ts`;

async function sh(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command("sh", { args: ["-c", script], stdin: "null" }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;

rootTest(
  "sysctl/hostname refusals: under unshare -u -n -i as the host, nothing of the host changes",
  async (root) => {
    const only = (types: string[]) => (s: Spec) => {
      s.linux!.namespaces = s.linux!.namespaces!.filter((n) => types.includes(n.type));
      delete s.hostname;
    };
    const corePattern = Deno.readTextFileSync("/proc/sys/kernel/core_pattern").trim();
    const cases: [string, (s: Spec) => void, RegExp][] = [
      ["hostname", (s) => {
        only(["pid", "mount", "network", "ipc"])(s);
        s.hostname = "renamed";
      }, /hostname: setting it needs a private UTS namespace/],
      ["domainname", (s) => {
        only(["pid", "mount", "network", "ipc"])(s);
        s.domainname = "renamed.example";
      }, /domainname: setting it needs a private UTS namespace/],
      ["net", (s) => {
        only(["pid", "mount", "ipc", "uts"])(s);
        s.linux!.sysctl = { "net.ipv4.ip_forward": "1" };
      }, /"net.ipv4.ip_forward" needs a private network namespace/],
      ["ipc", (s) => {
        only(["pid", "mount", "network", "uts"])(s);
        s.linux!.sysctl = { "kernel.shmmni": "1234" };
      }, /"kernel.shmmni" needs a private IPC namespace/],
      ["uts-sysctl", (s) => {
        only(["pid", "mount", "network", "ipc"])(s);
        s.linux!.sysctl = { "kernel.domainname": "renamed.example" };
      }, /"kernel.domainname" needs a private UTS namespace/],
      // Host-global: refused whatever the namespaces (the value is the host's own, so even a
      // runtime that wrote it would change nothing here).
      ["global", (s) => {
        s.linux!.sysctl = { "kernel.core_pattern": corePattern };
        s.root!.readonly = false;
        s.linux!.readonlyPaths = [];
      }, /"kernel.core_pattern" is not in a separate kernel namespace/],
    ];
    for (const [name, mutate, message] of cases) {
      const b = await makeBundle("true", mutate);
      try {
        const probe =
          "echo $(hostname) $(cat /proc/sys/kernel/domainname) $(cat /proc/sys/net/ipv4/ip_forward) $(cat /proc/sys/kernel/shmmni)";
        const wrapped = await sh(`unshare -u -n -i sh -c ${
          q(`
          hostname before; echo before.example > /proc/sys/kernel/domainname; ${probe};
          ${capsuleCmd} --root ${q(root)} create -b ${q(b)} ref-${name} >/dev/null 2>${
            q(`${b}/err`)
          }; echo "rc=$?"; ${probe};
          ${capsuleCmd} --root ${q(root)} delete -f ref-${name} >/dev/null 2>&1; true`)
        }`);
        const lines = wrapped.stdout.trim().split("\n");
        const err = Deno.readTextFileSync(`${b}/err`);
        assertEquals(lines[1], "rc=1", `${name}: create must be refused (${err})`);
        assertMatch(err, message, name);
        assertEquals(lines[2], lines[0], `${name}: the host's values are unchanged`);
        assert(!err.includes("    at "), `${name}: no stack trace: ${err}`);
      } finally {
        await removeAll(b);
      }
    }
    assertEquals(Deno.readTextFileSync("/proc/sys/kernel/core_pattern").trim(), corePattern);
  },
);

rootTest("sysctl: net.ipv4.ip_forward=1 with the default spec reads 1 inside", async (root) => {
  const b = await makeBundle(
    "cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/net/ipv4/ping_group_range",
    (s) => {
      s.linux!.sysctl = { "net.ipv4.ip_forward": "1", "net.ipv4.ping_group_range": "0 2147483647" };
    },
  );
  try {
    const r = await capsule(root, ["run", "-b", b, "sysctl1"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout.split(/\s+/).filter(Boolean), ["1", "0", "2147483647"]);
  } finally {
    await removeAll(b);
  }
});

rootTest(
  "rlimits: a small RLIMIT_AS and NOFILE and an unlimited RLIMIT_CORE (18446744073709551615) reach the program (run and exec), not the init's Deno",
  async (root) => {
    const limits = (s: Spec) => {
      s.process!.rlimits = [
        { type: "RLIMIT_AS", soft: 64 << 20, hard: 64 << 20 },
        { type: "RLIMIT_NOFILE", soft: 32, hard: 32 },
        // Made 18446744073709551615 below (RLIM_INFINITY as Go writes it; runc takes it).
        { type: "RLIMIT_CORE", soft: 0, hard: 123456789 },
      ];
    };
    const b = await makeBundle(
      "echo as=$(ulimit -v) nofile=$(ulimit -n) core=$(ulimit -Hc)",
      limits,
    );
    const d = await makeBundle("sleep 30", limits);
    for (const bundle of [b, d]) {
      const text = Deno.readTextFileSync(`${bundle}/config.json`);
      assert(text.includes("123456789"));
      Deno.writeTextFileSync(
        `${bundle}/config.json`,
        text.replace("123456789", "18446744073709551615"),
      );
    }
    try {
      const r = await capsule(root, ["run", "-b", b, "rl1"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout.trim(), "as=65536 nofile=32 core=unlimited");
      assertEquals((await capsule(root, ["run", "-d", "-b", d, "rl2"])).code, 0);
      const e = await capsule(root, ["exec", "rl2", "sh", "-c", "echo as=$(ulimit -v)"]);
      assertEquals(e.code, 0, e.stderr);
      assertEquals(e.stdout.trim(), "as=65536");
    } finally {
      await capsule(root, ["delete", "-f", "rl2"]);
      await removeAll(b, d);
    }
  },
);

rootTest(
  "rlimits are uint64s read exactly: 18446744073709551614 reaches the program as itself (run, and exec --process), as with runc; 18446744073709551615 is unlimited",
  async (root) => {
    const limits = (s: Spec) => {
      s.process!.rlimits = [
        // Made 18446744073709551614 and 18446744073709551615 below (past 2^53-1).
        { type: "RLIMIT_CPU", soft: 123454321, hard: 123454321 },
        { type: "RLIMIT_CORE", soft: 0, hard: 987656789 },
      ];
    };
    const script = "echo cpu=$(ulimit -St):$(ulimit -Ht) core=$(ulimit -Hc)";
    const b = await makeBundle(script, limits);
    const d = await makeBundle("sleep 30", limits);
    const literal = (text: string) =>
      text.replaceAll("123454321", "18446744073709551614").replace(
        "987656789",
        "18446744073709551615",
      );
    for (const bundle of [b, d]) {
      const text = Deno.readTextFileSync(`${bundle}/config.json`);
      assert(text.includes("123454321") && text.includes("987656789"));
      Deno.writeTextFileSync(`${bundle}/config.json`, literal(text));
    }
    const file = await Deno.makeTempFile({ suffix: ".json" });
    try {
      // runc prints "cpu=18446744073709551614:18446744073709551614 core=unlimited" here.
      const r = await capsule(root, ["run", "-b", b, "rlbig1"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout.trim(), "cpu=18446744073709551614:18446744073709551614 core=unlimited");
      assertEquals((await capsule(root, ["run", "-d", "-b", d, "rlbig2"])).code, 0);
      const e = await capsule(root, ["exec", "rlbig2", "sh", "-c", script]);
      assertEquals(e.code, 0, e.stderr);
      assertEquals(e.stdout.trim(), "cpu=18446744073709551614:18446744073709551614 core=unlimited");
      // A --process file of its own (the native front end leaves 16-digit numbers to the CLI).
      Deno.writeTextFileSync(
        file,
        literal(JSON.stringify({
          args: ["sh", "-c", script],
          cwd: "/",
          rlimits: [
            { type: "RLIMIT_CPU", soft: 123454321, hard: 123454321 },
            { type: "RLIMIT_CORE", soft: 0, hard: 987656789 },
          ],
        })).replace('"soft":18446744073709551614', '"soft":9007199254740993'),
      );
      for (let i = 0; i < 2; i++) { // the second: a kept verdict, if the first was kept
        const p = await capsule(root, ["exec", "--process", file, "rlbig2"]);
        assertEquals(p.code, 0, p.stderr);
        assertEquals(p.stdout.trim(), "cpu=9007199254740993:18446744073709551614 core=unlimited");
      }
    } finally {
      await capsule(root, ["delete", "-f", "rlbig2"]);
      await removeAll(b, d, file);
    }
  },
);

rootTest(
  "HOME: from the container's /etc/passwd when process.env has none (run and exec)",
  async (root) => {
    const noHome = (uid: number, env: string[] = []) => (s: Spec) => {
      s.process!.env = ["PATH=/bin", ...env];
      s.process!.user = { uid, gid: uid };
    };
    const cases: [number, string[], string][] = [
      [0, [], "/root"],
      [65534, [], "/"], // nobody:...:/:...
      [4321, [], "/"], // no entry
      [0, ["HOME=/custom"], "/custom"],
      [0, ["HOME="], "/root"], // empty counts as unset, as with runc
    ];
    for (const [uid, env, want] of cases) {
      const b = await makeBundle("echo home=$HOME", noHome(uid, env));
      try {
        const r = await capsule(root, ["run", "-b", b, `home${uid}`]);
        assertEquals(r.code, 0, r.stderr);
        assertEquals(r.stdout.trim(), `home=${want}`, `uid ${uid} env ${env}`);
      } finally {
        await removeAll(b);
      }
    }
    const d = await makeBundle("sleep 30", noHome(0));
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", d, "homeexec"])).code, 0);
      const e = await capsule(root, ["exec", "homeexec", "sh", "-c", "echo home=$HOME"]);
      assertEquals(e.stdout.trim(), "home=/root", e.stderr);
    } finally {
      await capsule(root, ["delete", "-f", "homeexec"]);
      await removeAll(d);
    }
  },
);

rootTest(
  "tmpfs: an existing directory keeps its mode, mode= wins, a new one is 1777 on a 0755 dir",
  async (root) => {
    const b = await makeBundle(
      "stat -c '%a %n' /private /withmode /newtmp",
      (s) => {
        s.mounts!.push(
          { destination: "/private", type: "tmpfs", source: "tmpfs", options: ["nosuid"] },
          { destination: "/withmode", type: "tmpfs", source: "tmpfs", options: ["mode=750"] },
          { destination: "/newtmp", type: "tmpfs", source: "tmpfs", options: ["nosuid"] },
        );
      },
      { ownRootfs: true },
    );
    try {
      Deno.mkdirSync(`${b}/rootfs/private`, { mode: 0o700 });
      Deno.chmodSync(`${b}/rootfs/private`, 0o700);
      Deno.mkdirSync(`${b}/rootfs/withmode`);
      const r = await capsule(root, ["run", "-b", b, "tmpfs1"]);
      assertEquals(r.code, 0, r.stderr);
      // The same as runc 1.1.5 prints for this bundle.
      assertEquals(r.stdout.trim().split("\n"), ["700 /private", "750 /withmode", "1777 /newtmp"]);
      assertEquals(Deno.statSync(`${b}/rootfs/newtmp`).mode! & 0o7777, 0o755);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest("terminal: /dev/console in the container is the pty", async (root) => {
  const b = await makeBundle(["sh"]);
  try {
    const line = `${capsuleCmd} --root ${root} run -t -b ${b} console1; echo "rc=$?"`;
    const child = new Deno.Command("script", {
      args: ["-qec", line, "/dev/null"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(
      new TextEncoder().encode(
        "echo console=$(stat -c '%t:%T' /dev/console) tty=$(stat -L -c '%t:%T' $(tty)); " +
          "echo via-console >/dev/console; exit 3\n",
      ),
    );
    const out = new TextDecoder().decode((await Promise.all([child.output(), w.close()]))[0].stdout)
      .replaceAll("\r", "");
    const m = out.match(/console=(\S+) tty=(\S+)/);
    assert(m, `no answer: ${out}`);
    assertEquals(m[1], m[2], "/dev/console is the same device as the tty");
    assertMatch(out, /via-console/);
    assertMatch(out, /rc=3/);
  } finally {
    await removeAll(b);
  }
});

rootTest(
  "mount targets: a directory shared with another container and swapped for a symlink never makes capsule write outside the rootfs",
  async (root) => {
    const shared = await Deno.makeTempDir({ prefix: "capsule-shared-" });
    const target = await Deno.makeTempDir({ prefix: "capsule-target-" }); // host dir
    Deno.mkdirSync(`${shared}/a`);
    const file = await Deno.makeTempFile({ prefix: "capsule-src-" });
    // The attacker: a container that swaps shared/a for a link to the host directory and
    // back (rename: the directory stays whole), as fast as it can.
    const swap = (tmp: string) =>
      `while :; do mv /shared/a /shared/${tmp} && ln -s ${target} /shared/a; ` +
      `rm -f /shared/a; mv /shared/${tmp} /shared/a; done`;
    const attacker = await makeBundle(`${swap("x1")} & ${swap("x2")}`, (s) => {
      s.mounts!.push({ destination: "/shared", type: "bind", source: shared, options: ["rbind"] });
    }, { ownRootfs: true });
    // The victim: binds the same directory and mounts a tmpfs (and a file) below a/.
    const victim = await makeBundle("true", (s) => {
      s.mounts!.push(
        { destination: "/shared", type: "bind", source: shared, options: ["rbind"] },
        // Deep, so that many components are made while shared/a may be swapped.
        { destination: "/shared/a/1/2/3/4/5/6/7/8", type: "tmpfs", source: "tmpfs", options: [] },
        { destination: "/shared/a/f", type: "bind", source: file, options: ["bind"] },
      );
    }, { ownRootfs: true });
    // And one outside any container, faster than busybox's forks (it stands for a third
    // container sharing the directory).
    const flipper = new Deno.Command("python3", {
      args: [
        "-c",
        `import os, time
a = ${JSON.stringify(shared + "/a")}
while True:
    try:
        os.rename(a, a + ".p")
        os.symlink(${JSON.stringify(target)}, a)
        time.sleep(0.0002)
        os.unlink(a)
        os.rename(a + ".p", a)
        time.sleep(0.0002)
    except OSError:
        pass
`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    let created = 0, refused = 0;
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", attacker, "attacker"])).code, 0);
      for (let i = 0; i < Number(Deno.env.get("RACE_CREATES") ?? 24); i++) {
        const r = await capsule(root, ["create", "-b", victim, `victim${i}`]);
        if (r.code === 0) created++;
        else {
          refused++;
          assert(!r.stderr.includes("    at "), `a message, not a stack trace: ${r.stderr}`);
          if (Deno.env.get("RACE_DEBUG")) console.log(r.stderr.trim());
        }
        await capsule(root, ["delete", "-f", `victim${i}`]);
      }
      assertEquals(
        [...Deno.readDirSync(target)].map((e) => e.name),
        [],
        "the host dir is untouched",
      );
      console.log(`  ${created} created, ${refused} refused`);
    } finally {
      flipper.kill("SIGKILL");
      await flipper.status;
      await capsule(root, ["delete", "-f", "attacker"]);
      await removeAll(attacker, victim, shared, target, file);
    }
  },
);
