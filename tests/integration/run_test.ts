// `capsule run`: what the program sees from inside the container, and its exit status.
import {
  assert,
  assertEquals,
  assertMatch,
  busyboxRootfs,
  capsule,
  makeBundle,
  removeAll,
  REPO,
  rootNames,
  rootTest,
  sleep,
  spawnCapsule,
  waitFor,
} from "../helpers.ts";
import { SYSCALLS_X86_64 } from "../../runtime/syscalls_x86_64.ts";

rootTest("run: hostname, PID 1 is the program, only fds 0 1 2", async (root) => {
  const b = await makeBundle(
    "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo",
    (s) => {
      s.hostname = "box1";
    },
  );
  const quiet = await makeBundle(["sleep", "30"]);
  try {
    const r = await capsule(root, ["run", "-b", b, "c1"]);
    assertEquals(r.code, 0, r.stderr);
    const [host, cmdline] = r.stdout.split("\n");
    assertEquals(host, "box1");
    assertMatch(cmdline, /^sh -c hostname/);
    // Seen from the host, with no shell pipeline of its own in the way: only 0, 1 and 2.
    assertEquals((await capsule(root, ["run", "-d", "-b", quiet, "c1q"])).code, 0);
    const pid = JSON.parse((await capsule(root, ["state", "c1q"])).stdout).pid;
    await waitFor(
      () => Deno.readTextFileSync(`/proc/${pid}/cmdline`).startsWith("sleep"),
      5000,
      "exec",
    );
    const fds = [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) => Number(e.name)).sort();
    assertEquals(fds, [0, 1, 2]);
    assertEquals((await capsule(root, ["delete", "-f", "c1q"])).code, 0);
  } finally {
    await removeAll(b, quiet);
  }
});

rootTest("run: mounts, devices and /dev links are there", async (root) => {
  const b = await makeBundle(
    "cat /proc/mounts | cut -d' ' -f2,3 | sort | tr '\\n' ';'; echo; ls /dev | tr '\\n' ' '; echo; readlink /dev/ptmx; readlink /dev/fd; echo x > /dev/null && head -c 4 /dev/zero | wc -c",
  );
  try {
    const r = await capsule(root, ["run", "-b", b, "c2"]);
    assertEquals(r.code, 0, r.stderr + r.stdout);
    const [mounts, devs, ptmx, fd, zero] = r.stdout.trim().split("\n");
    for (
      const m of [
        "/ ",
        "/proc proc",
        "/dev tmpfs",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/dev/mqueue mqueue",
        "/sys sysfs",
      ]
    ) {
      assert(mounts.includes(m), `mount "${m}" missing in ${mounts}`);
    }
    for (
      const d of [
        "null",
        "zero",
        "full",
        "random",
        "urandom",
        "tty",
        "ptmx",
        "pts",
        "shm",
        "fd",
        "stdin",
        "stdout",
        "stderr",
      ]
    ) {
      assert(devs.split(" ").includes(d), `/dev/${d} missing in ${devs}`);
    }
    assertEquals(ptmx, "pts/ptmx");
    assertEquals(fd, "/proc/self/fd");
    assertEquals(zero.trim(), "4");
  } finally {
    await removeAll(b);
  }
});

rootTest("run: exit status, and 128+N when killed by signal N", async (root) => {
  const b3 = await makeBundle("exit 3");
  // PID 1 of a PID namespace cannot be killed from inside it: share the host's for this one.
  const b9 = await makeBundle("kill -9 $$", (s) => {
    s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== "pid");
  });
  try {
    assertEquals((await capsule(root, ["run", "-b", b3, "e3"])).code, 3);
    assertEquals((await capsule(root, ["run", "-b", b9, "e9"])).code, 137);
  } finally {
    await removeAll(b3, b9);
  }
});

rootTest(
  "run --keep: the stopped container, its state and cgroup stay for delete",
  async (root) => {
    const b = await makeBundle("exit 3");
    try {
      const r = await capsule(root, ["run", "--keep", "-b", b, "keep1"]);
      assertEquals(r.code, 3, r.stderr);
      const st = JSON.parse((await capsule(root, ["state", "-d", "keep1"])).stdout);
      assertEquals([st.status, st.pid], ["stopped", 0]);
      const dirs = Object.values(st.detail.cgroupPaths as Record<string, string>);
      assert(dirs.length > 0, "no cgroup recorded");
      for (const d of dirs) assert(Deno.statSync(d).isDirectory, `cgroup ${d} is gone`);
      assertEquals((await capsule(root, ["delete", "keep1"])).code, 0);
      assertEquals((await capsule(root, ["state", "keep1"])).code, 1);
      for (const d of dirs) assert(!isDir(d), `cgroup ${d} was left`);
    } finally {
      await capsule(root, ["delete", "-f", "keep1"]);
      await removeAll(b);
    }
  },
);

function isDir(dir: string): boolean {
  try {
    return Deno.statSync(dir).isDirectory;
  } catch {
    return false;
  }
}

rootTest("run: env, cwd, user, groups, umask, signal dispositions", async (root) => {
  const b = await makeBundle(
    "echo $FOO; pwd; id -u; id -g; id -G; umask; grep -E '^Sig(Blk|Ign)' /proc/self/status | tr -s '\\t ' ' '",
    (s) => {
      s.process!.env!.push("FOO=bar baz");
      s.process!.cwd = "/tmp/work";
      s.process!.user = { uid: 1000, gid: 1001, additionalGids: [20, 30], umask: 0o077 };
    },
  );
  try {
    const r = await capsule(root, ["run", "-b", b, "u1"]);
    assertEquals(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assertEquals(lines.slice(0, 6), ["bar baz", "/tmp/work", "1000", "1001", "1001 20 30", "0077"]);
    assertEquals(lines.slice(6), ["SigBlk: 0000000000000000", "SigIgn: 0000000000000000"]);
  } finally {
    await removeAll(b);
  }
});

rootTest("run: a read-only root refuses writes; a writable one accepts them", async (root) => {
  const ro = await makeBundle("touch /newfile 2>&1; echo rc=$?");
  const rw = await makeBundle("touch /newfile && echo ok", undefined, { ownRootfs: true });
  try {
    const r1 = await capsule(root, ["run", "-b", ro, "ro1"]);
    assertMatch(r1.stdout, /Read-only file system[\s\S]*rc=1/);
    const r2 = await capsule(root, ["run", "-b", rw, "rw1"]);
    assertEquals(r2.stdout.trim(), "ok", r2.stderr);
    assert(Deno.statSync(`${rw}/rootfs/newfile`).isFile);
  } finally {
    await removeAll(ro, rw);
  }
});

rootTest(
  "run: a mount whose target is a symlink out of the rootfs lands inside it",
  async (root) => {
    const outside = await Deno.makeTempDir({ prefix: "capsule-outside-" });
    const b = await makeBundle(
      `ls -d /escape/sub && grep -c ' ${outside}/sub tmpfs' /proc/mounts`,
      (s) => {
        s.mounts!.push({
          destination: "/escape/sub",
          type: "tmpfs",
          source: "tmpfs",
          options: ["size=1m"],
        });
      },
      { ownRootfs: true },
    );
    try {
      // An absolute link pointing at a host directory: in the container it means <rootfs>/<that path>.
      await Deno.symlink(outside, `${b}/rootfs/escape`);
      const r = await capsule(root, ["run", "-b", b, "esc"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      assertEquals(r.stdout.trim().split("\n")[1], "1", "the tmpfs is not mounted");
      assertEquals(
        [...Deno.readDirSync(outside)].length,
        0,
        "something was created outside the rootfs",
      );
      assert(
        Deno.statSync(`${b}/rootfs${outside}/sub`).isDirectory,
        "target not created inside the rootfs",
      );
    } finally {
      await removeAll(b, outside);
    }
  },
);

rootTest("run: bind mounts (ro and rw) from the bundle", async (root) => {
  const data = await Deno.makeTempDir({ prefix: "capsule-data-" });
  await Deno.writeTextFile(`${data}/in.txt`, "hello");
  const b = await makeBundle(
    "cat /data/in.txt; echo; touch /data/x 2>/dev/null && echo writable || echo readonly; echo w > /rw/out.txt",
    (s) => {
      s.mounts!.push({
        destination: "/data",
        type: "bind",
        source: data,
        options: ["rbind", "ro"],
      });
      s.mounts!.push({ destination: "/rw", type: "bind", source: data, options: ["bind"] });
    },
  );
  try {
    const r = await capsule(root, ["run", "-b", b, "bind1"]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(r.stdout.trim().split("\n"), ["hello", "readonly"]);
    assertEquals(Deno.readTextFileSync(`${data}/out.txt`), "w\n");
  } finally {
    await removeAll(b, data);
  }
});

rootTest("run: a missing program is named, and nothing is left", async (root) => {
  const b = await makeBundle(["no-such-program", "x"]);
  try {
    const r = await capsule(root, ["run", "-b", b, "missing"]);
    assertEquals(r.code, 1);
    assertMatch(r.stderr, /exec: "no-such-program": executable file not found in \$PATH/);
    assertEquals(rootNames(root).length, 0);
  } finally {
    await removeAll(b);
  }
});

rootTest("run: SIGTERM sent to capsule reaches the program", async (root) => {
  const b = await makeBundle(
    "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
  );
  try {
    const child = spawnCapsule(root, ["run", "-b", b, "sig1"]);
    const reader = child.stdout.getReader();
    const first = await reader.read();
    assertMatch(new TextDecoder().decode(first.value), /ready/);
    child.kill("SIGTERM");
    const st = await child.status;
    let rest = "";
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      rest += new TextDecoder().decode(r.value);
    }
    await child.stderr.cancel();
    assertEquals(st.code, 7);
    assertMatch(rest, /got-term/);
  } finally {
    await removeAll(b);
  }
});

rootTest("run -d: returns at once, output goes to container.log", async (root) => {
  const b = await makeBundle("echo out; echo err >&2; sleep 30");
  try {
    const t0 = Date.now();
    const r = await capsule(root, ["run", "-d", "-b", b, "det1"]);
    assertEquals(r.code, 0, r.stderr);
    assert(Date.now() - t0 < 10_000);
    const st = JSON.parse((await capsule(root, ["state", "det1"])).stdout);
    assertEquals(st.status, "running");
    await waitFor(
      () => {
        try {
          return Deno.readTextFileSync(`${root}/det1/container.log`).includes("err");
        } catch {
          return false;
        }
      },
      5000,
      "log",
    );
    assertEquals(
      Deno.readTextFileSync(`${root}/det1/container.log`).split("\n").sort().join(" ").trim(),
      "err out",
    );
    assertEquals((await capsule(root, ["delete", "-f", "det1"])).code, 0);
  } finally {
    await removeAll(b);
  }
});

rootTest("run: --no-pivot works too", async (root) => {
  const b = await makeBundle("ls /bin/busybox && cat /proc/1/cmdline | head -c 2");
  try {
    const r = await capsule(root, ["run", "--no-pivot", "-b", b, "np"]);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stdout, /\/bin\/busybox\nsh/);
  } finally {
    await removeAll(b);
  }
});

void busyboxRootfs;
void sleep;

rootTest("run: linux.seccomp is enforced (and holds for exec'd processes too)", async (root) => {
  const b = await makeBundle(
    "grep '^Seccomp:' /proc/self/status; mkdir /tmp/x 2>&1; echo mkdir=$?; touch /tmp/f && echo touch=0; sleep 30",
    (s) => {
      s.linux!.seccomp = {
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_ERRNO" }],
      };
    },
    { ownRootfs: true },
  );
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "sc1"])).code, 0);
    await waitFor(
      () => {
        try {
          return Deno.readTextFileSync(`${root}/sc1/container.log`).includes("touch=0");
        } catch {
          return false;
        }
      },
      5000,
      "output",
    );
    const out = Deno.readTextFileSync(`${root}/sc1/container.log`);
    assertMatch(out, /Seccomp:\s+2/);
    assertMatch(out, /Operation not permitted\nmkdir=1/);
    const ex = await capsule(root, ["exec", "sc1", "mkdir", "/tmp/y"]);
    assertEquals(ex.code, 1);
    assertMatch(ex.stderr, /Operation not permitted/);
    assertEquals((await capsule(root, ["delete", "-f", "sc1"])).code, 0);
  } finally {
    await removeAll(b);
  }
});

rootTest(
  "run: seccomp rules of one syscall are ORed; a syscall above the profile's gets ENOSYS",
  async (root) => {
    // A static program making raw system calls (tests/fixtures/seccomp_probe.c, gcc).
    const tested = ["process_vm_readv", "process_vm_writev", "dup3", "kcmp"];
    const b = await makeBundle(["/probe"], (s) => {
      s.linux!.seccomp = {
        defaultAction: "SCMP_ACT_ERRNO",
        architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        syscalls: [
          {
            names: Object.keys(SYSCALLS_X86_64).filter((n) => !tested.includes(n)),
            action: "SCMP_ACT_ALLOW",
          },
          {
            names: ["process_vm_readv"],
            action: "SCMP_ACT_ALLOW",
            args: [{ index: 0, value: 100, op: "SCMP_CMP_EQ" }, {
              index: 0,
              value: 9001,
              op: "SCMP_CMP_EQ",
            }],
          },
          {
            names: ["dup3"],
            action: "SCMP_ACT_ALLOW",
            args: [{ index: 0, value: 1, op: "SCMP_CMP_EQ" }],
          },
          {
            names: ["dup3"],
            action: "SCMP_ACT_ALLOW",
            args: [{ index: 0, value: 2, op: "SCMP_CMP_GT" }],
          },
        ],
      };
    }, { ownRootfs: true });
    try {
      const cc = await new Deno.Command("gcc", {
        args: [
          "-static",
          "-O",
          "-o",
          `${b}/rootfs/probe`,
          `${REPO}/tests/fixtures/seccomp_probe.c`,
        ],
      }).output();
      assert(cc.success, new TextDecoder().decode(cc.stderr));
      const r = await capsule(root, ["run", "-b", b, "scor1"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout.trim().split("\n"), [
        "nr1000=-38", // ENOSYS, as with runc
        "readv100=-22", // allowed: the kernel's EINVAL
        "readv9001=-22",
        "readv0=-1", // EPERM, the default
        "dup3_1=-22",
        "dup3_3=-22",
        "dup3_0=-1",
        "kcmp=-1",
      ]);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest("run: a startContainer hook runs under the container's seccomp profile", async (root) => {
  // As runc: with no_new_privileges the filter is loaded late, but before startContainer hooks.
  const b = await makeBundle("true", (s) => {
    s.process!.noNewPrivileges = true;
    s.linux!.seccomp = {
      defaultAction: "SCMP_ACT_ALLOW",
      syscalls: [{ names: ["mkdir", "mkdirat"], action: "SCMP_ACT_KILL" }],
    };
    s.hooks = { startContainer: [{ path: "/bin/sh", args: ["sh", "-c", "mkdir /tmp/hook"] }] };
  }, { ownRootfs: true });
  try {
    const r = await capsule(root, ["run", "-b", b, "schook1"]);
    assert(r.code !== 0, "the hook's mkdir was not killed");
    assertMatch(r.stderr, /startContainer hook \/bin\/sh failed \(killed by SIGSYS/);
    assert(!isDir(`${b}/rootfs/tmp/hook`), "the hook's mkdir ran");
  } finally {
    await removeAll(b);
  }
});
