// Runtime spec conformance of the lifecycle (issue 12): hooks (which fail the operation and
// which only warn, timeouts, createContainer/startContainer run by the init), create failing
// when the init cannot drop to the process's capabilities, the console-socket rules, features.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  makeBundle,
  removeAll,
  rootNames,
  rootTest,
  state,
  waitFor,
} from "../helpers.ts";
import type { Spec } from "../../runtime/spec.ts";
import { exists } from "../../runtime/state.ts";

type Hook = NonNullable<NonNullable<Spec["hooks"]>["prestart"]>[number];
const sh = (script: string, timeout?: number): Hook => ({
  path: "/bin/sh",
  args: ["sh", "-c", script],
  ...(timeout ? { timeout } : {}),
});

rootTest(
  "a failing poststart/poststop hook is a warning: the others run, start and delete succeed",
  async (root) => {
    const out = await Deno.makeTempDir({ prefix: "capsule-hooks-" });
    const b = await makeBundle("sleep 30", (s) => {
      s.hooks = {
        poststart: [sh("echo bad >&2; exit 3"), sh(`cat > ${out}/poststart.json`)],
        poststop: [sh("exit 4"), sh(`cat > ${out}/poststop.json`)],
      };
    });
    try {
      assertEquals((await capsule(root, ["create", "-b", b, "h1"])).code, 0);
      const st = await capsule(root, ["start", "h1"]);
      assertEquals(st.code, 0, st.stderr);
      assertMatch(st.stderr, /warning: poststart hook \/bin\/sh failed \(exit status 3\): bad/);
      assertEquals(JSON.parse(Deno.readTextFileSync(`${out}/poststart.json`)).status, "running");
      // Engines read warnings from --log (runc's level=warning lines).
      const log = `${out}/log.json`;
      const del = await capsule(root, ["--log", log, "--log-format", "json", "delete", "-f", "h1"]);
      assertEquals(del.code, 0, del.stderr);
      assertMatch(del.stderr, /warning: poststop hook \/bin\/sh failed \(exit status 4\)/);
      const lines = Deno.readTextFileSync(log).trim().split("\n").map((l) => JSON.parse(l));
      assert(
        lines.some((l) => l.level === "warning" && /poststop hook/.test(l.msg)),
        "no warning in --log",
      );
      assertEquals(JSON.parse(Deno.readTextFileSync(`${out}/poststop.json`)).id, "h1");
    } finally {
      await removeAll(b, out);
    }
  },
);

rootTest("a failing or timed-out prestart hook fails create and leaves nothing", async (root) => {
  const out = await Deno.makeTempDir({ prefix: "capsule-hooks-" });
  // Runtime spec "Lifecycle": after a failed prestart hook, delete and the poststop hooks.
  const b1 = await makeBundle(
    "true",
    (s) => s.hooks = { prestart: [sh("exit 7")], poststop: [sh(`cat > ${out}/poststop.json`)] },
  );
  const b2 = await makeBundle("true", (s) => s.hooks = { createRuntime: [sh("sleep 20", 1)] });
  try {
    const r1 = await capsule(root, ["create", "-b", b1, "h2"]);
    assertEquals(r1.code, 1);
    assertMatch(r1.stderr, /prestart hook \/bin\/sh failed \(exit status 7\)/);
    assertEquals(JSON.parse(Deno.readTextFileSync(`${out}/poststop.json`)).id, "h2");
    const t0 = Date.now();
    const r2 = await capsule(root, ["create", "-b", b2, "h3"]);
    assertEquals(r2.code, 1);
    assertMatch(r2.stderr, /createRuntime hook \/bin\/sh timed out after 1 s/);
    assert(Date.now() - t0 < 10_000, `the timeout was not honoured (${Date.now() - t0} ms)`);
    assertEquals(rootNames(root), []);
  } finally {
    await removeAll(b1, b2, out);
  }
});

rootTest(
  "createContainer and startContainer hooks (run by the init) honour their timeout",
  async (root) => {
    const b1 = await makeBundle("true", (s) => s.hooks = { createContainer: [sh("sleep 20", 1)] });
    const b2 = await makeBundle("true", (s) => s.hooks = { startContainer: [sh("sleep 20", 1)] });
    const b3 = await makeBundle(
      "true",
      (s) => s.hooks = { createContainer: [sh("echo oops >&2; exit 3", 10)] },
    );
    const b4 = await makeBundle(
      "true",
      (s) => s.hooks = { createContainer: [sh("true", 10)], startContainer: [sh("true", 10)] },
    );
    try {
      let t0 = Date.now();
      const r1 = await capsule(root, ["create", "-b", b1, "h7"]);
      assertEquals(r1.code, 1);
      assertMatch(r1.stderr, /createContainer hook \/bin\/sh timed out after 1 s/);
      assert(Date.now() - t0 < 10_000, `the timeout was not honoured (${Date.now() - t0} ms)`);
      assertEquals(rootNames(root), []);
      t0 = Date.now();
      const r2 = await capsule(root, ["run", "-b", b2, "h8"]);
      assert(r2.code !== 0, "run succeeded though its startContainer hook timed out");
      assertMatch(r2.stderr, /startContainer hook \/bin\/sh timed out after 1 s/);
      assert(Date.now() - t0 < 10_000, `the timeout was not honoured (${Date.now() - t0} ms)`);
      // Within its time, a hook's failure and its stderr are reported as without a timeout,
      // and a hook that succeeds lets the container run.
      const r3 = await capsule(root, ["run", "-b", b3, "h9"]);
      assertEquals(r3.code, 1);
      assertMatch(r3.stderr, /createContainer hook \/bin\/sh failed \(exit status 3\): oops/);
      assertEquals((await capsule(root, ["run", "-b", b4, "h10"])).code, 0);
    } finally {
      for (const id of ["h8", "h9", "h10"]) await capsule(root, ["delete", "-f", id]);
      await removeAll(b1, b2, b3, b4);
    }
  },
);

rootTest(
  "prestart/createRuntime run after the mounts and before pivot_root; createContainer in the rootfs",
  async (root) => {
    // As runc's hooks.bats does it: a createRuntime hook that enters the init's mount namespace
    // and binds a host directory into the rootfs (there are host paths before pivot_root only),
    // and a createContainer hook whose working directory is the rootfs.
    const out = await Deno.makeTempDir({ prefix: "capsule-hooks-" });
    Deno.writeTextFileSync(`${out}/marker`, "from the host\n");
    const pidOf = `sed -n 's/.*"pid": *\\([0-9]*\\).*/\\1/p'`;
    const b = await makeBundle("cat /hooked/marker", (s) => {
      s.mounts = [...(s.mounts ?? []), { destination: "/hooked", type: "tmpfs", source: "tmpfs" }];
      s.hooks = {
        createRuntime: [
          sh(
            `st=$(cat); echo "$st" > ${out}/cr.json; pid=$(echo "$st" | ${pidOf}); nsenter -m -t "$pid" mount --bind ${out} "$(cat ${out}/rootfs)/hooked"`,
          ),
        ],
        createContainer: [sh(`pwd > ${out}/cc.cwd`)],
      };
    }, { ownRootfs: true });
    try {
      Deno.writeTextFileSync(`${out}/rootfs`, Deno.realPathSync(`${b}/rootfs`));
      const r = await capsule(root, ["run", "-b", b, "h11"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "from the host\n");
      const cr = JSON.parse(Deno.readTextFileSync(`${out}/cr.json`));
      assertEquals([cr.id, cr.status], ["h11", "creating"]);
      assertEquals(Deno.readTextFileSync(`${out}/cc.cwd`).trim(), Deno.realPathSync(`${b}/rootfs`));
    } finally {
      await capsule(root, ["delete", "-f", "h11"]);
      await removeAll(b, out);
    }
  },
);

rootTest(
  "createContainer runs before pivot_root and startContainer in the container",
  async (root) => {
    const out = await Deno.makeTempDir({ prefix: "capsule-hooks-" });
    const b = await makeBundle("cat /started; sleep 30", (s) => {
      s.hooks = {
        // In the container's mount namespace before pivot_root: host paths are still there.
        createContainer: [sh(`cat > ${out}/cc.json; readlink /proc/self/ns/mnt > ${out}/cc.mnt`)],
        // Inside the container (its /bin/sh), after start, before the program.
        startContainer: [sh("cat > /started")],
      };
    }, { ownRootfs: true });
    try {
      const c = await capsule(root, ["create", "-b", b, "h4"]);
      assertEquals(c.code, 0, c.stderr);
      const s = await state(root, "h4");
      const cc = JSON.parse(Deno.readTextFileSync(`${out}/cc.json`));
      assertEquals([cc.id, cc.status], ["h4", "creating"]);
      assertEquals(
        Deno.readTextFileSync(`${out}/cc.mnt`).trim(),
        Deno.readLinkSync(`/proc/${s.pid}/ns/mnt`),
        "createContainer ran in the container's mount namespace",
      );
      assertEquals((await capsule(root, ["start", "h4"])).code, 0);
      await waitFor(
        () => {
          try {
            return JSON.parse(Deno.readTextFileSync(`${b}/rootfs/started`)).id === "h4";
          } catch {
            return false;
          }
        },
        5000,
        "startContainer hook",
      );
    } finally {
      await capsule(root, ["delete", "-f", "h4"]);
      await removeAll(b, out);
    }
  },
);

rootTest(
  "create fails, naming the step, when a capability cannot be had; nothing is left",
  async (root) => {
    // This host's bounding set lacks CAP_SYS_RESOURCE (runc and crun fail the same config).
    const bnd = BigInt(
      "0x" + /CapBnd:\s*([0-9a-f]+)/.exec(Deno.readTextFileSync("/proc/self/status"))![1],
    );
    const want = (bnd & (1n << 24n)) === 0n ? "CAP_SYS_RESOURCE" : undefined;
    if (!want) return; // every capability is available here: nothing to refuse
    const b = await makeBundle("true", (s) => {
      const c = s.process!.capabilities!;
      for (const k of ["bounding", "effective", "permitted"] as const) {
        c[k] = [...(c[k] ?? []), want];
      }
    });
    try {
      const r = await capsule(root, ["create", "-b", b, "h5"]);
      assertEquals(r.code, 1, r.stderr);
      assertMatch(r.stderr, /capabilities/);
      assertEquals(rootNames(root), []);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "--console-socket needs a terminal in a detached container (runc's rules)",
  async (root) => {
    const b = await makeBundle("true");
    try {
      const r = await capsule(root, [
        "create",
        "--console-socket",
        "/tmp/none.sock",
        "-b",
        b,
        "h6",
      ]);
      assertEquals(r.code, 1);
      assertMatch(
        r.stderr,
        /--console-socket \/tmp\/none\.sock is used only with process\.terminal/,
      );
      assertEquals(rootNames(root), []);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest("features prints the OCI features document", async (root) => {
  const r = await capsule(root, ["features"]);
  assertEquals(r.code, 0, r.stderr);
  const f = JSON.parse(r.stdout);
  assertEquals(f.ociVersionMin, "1.0.0");
  assert(f.hooks.includes("createContainer") && f.hooks.includes("poststop"));
  assert(f.mountOptions.includes("rbind") && f.mountOptions.includes("rro"));
  assert(f.linux.namespaces.includes("user") && f.linux.capabilities.includes("CAP_SYS_ADMIN"));
  assertEquals(f.linux.seccomp.enabled, true);
  assertEquals(f.linux.cgroup.v2, true);
});

/** The first whole disk of this host ("254:0"), for a throttle rule the kernel accepts. */
function firstDisk(): string | undefined {
  for (const line of Deno.readTextFileSync("/proc/partitions").split("\n").slice(2)) {
    const [major, minor] = line.trim().split(/\s+/);
    if (minor === "0") return `${major}:${minor}`;
  }
  return undefined;
}

rootTest(
  "linux.resources: what the host cannot apply fails create naming the field",
  async (root) => {
    const cg = (ctrl: string) => `/sys/fs/cgroup/${ctrl}`;
    const mounted = (ctrl: string) =>
      Deno.readTextFileSync("/proc/self/mountinfo").includes(` ${cg(ctrl)} `);
    const cases: [string, (s: Spec) => void, RegExp][] = [];
    if (!mounted("net_cls")) {
      cases.push([
        "net_cls",
        (s) => s.linux!.resources = { network: { classID: 1 } } as never,
        /net_cls cgroup controller is not mounted/,
      ]);
    }
    if (!mounted("hugetlb")) {
      cases.push([
        "hugetlb",
        (s) => s.linux!.resources = { hugepageLimits: [{ pageSize: "2MB", limit: 0 }] } as never,
        /hugepageLimits/,
      ]);
    }
    // What capsule never applies, on any host: refused, never ignored.
    cases.push(
      [
        "rdma",
        (s) => s.linux!.resources = { rdma: { mlx5_0: { hcaHandles: 3 } } } as never,
        /linux\.resources\.rdma: capsule sets no RDMA limits/,
      ],
      [
        "intelRdt",
        (s) => (s.linux as unknown as Record<string, unknown>).intelRdt = { closID: "x" },
        /linux\.intelRdt/,
      ],
      [
        "apparmor",
        (s) => (s.process as unknown as Record<string, unknown>).apparmorProfile = "foo",
        /process\.apparmorProfile: capsule applies no AppArmor profile/,
      ],
      [
        "selinuxLabel",
        (s) => s.process!.selinuxLabel = "system_u:system_r:container_t:s0",
        /process\.selinuxLabel: capsule applies no SELinux label/,
      ],
      [
        "mountLabel",
        (s) => s.linux!.mountLabel = "system_u:object_r:container_file_t:s0",
        /linux\.mountLabel: capsule applies no SELinux label/,
      ],
      [
        "apparmor, not a string",
        (s) => (s.process as unknown as Record<string, unknown>).apparmorProfile = ["x"],
        /process\.apparmorProfile: capsule applies no AppArmor profile/,
      ],
      [
        "mountLabel, not a string",
        (s) => (s.linux as unknown as Record<string, unknown>).mountLabel = {},
        /linux\.mountLabel: capsule applies no SELinux label/,
      ],
      [
        "idmap",
        (s) =>
          s.mounts!.push({
            destination: "/mnt",
            type: "bind",
            source: "/tmp",
            options: ["bind", "idmap"],
          }),
        /mounts\[\d+\] \(\/mnt\): option "idmap"/,
      ],
    );
    for (const [what, mutate, re] of cases) {
      const b = await makeBundle("true", mutate);
      try {
        const r = await capsule(root, ["create", "-b", b, "r1"]);
        assertEquals(r.code, 1, `${what}: ${r.stderr}`);
        assertMatch(r.stderr, re);
        assertEquals(
          rootNames(root),
          [],
        );
      } finally {
        await removeAll(b);
      }
    }
  },
);

rootTest(
  "linux.resources: block I/O weight and throttles, kernelTCP reach the cgroup (v1)",
  async (root) => {
    const disk = firstDisk();
    const memory = "/sys/fs/cgroup/memory";
    if (!disk || !exists(`${memory}/memory.kmem.tcp.limit_in_bytes`)) return;
    const [major, minor] = disk.split(":").map(Number);
    const b = await makeBundle("sleep 30", (s) => {
      s.linux!.resources = {
        memory: { kernelTCP: 8 << 20 },
        blockIO: { weight: 500, throttleReadBpsDevice: [{ major, minor, rate: 1048576 }] },
      } as never;
    });
    try {
      const r = await capsule(root, ["run", "-d", "-b", b, "r2"]);
      assertEquals(r.code, 0, r.stderr);
      const paths = (await state(root, "r2", true)).detail.cgroupPaths as Record<string, string>;
      assertMatch(
        Deno.readTextFileSync(`${paths.blkio}/blkio.throttle.read_bps_device`),
        new RegExp(`^${disk} 1048576$`, "m"),
      );
      const weight = ["blkio.bfq.weight", "blkio.weight"].find((f) =>
        exists(`${paths.blkio}/${f}`)
      );
      if (weight) assertMatch(Deno.readTextFileSync(`${paths.blkio}/${weight}`), /\b500\b/);
      assertEquals(
        Deno.readTextFileSync(`${paths.memory}/memory.kmem.tcp.limit_in_bytes`).trim(),
        String(8 << 20),
      );
    } finally {
      await capsule(root, ["delete", "-f", "r2"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "exec takes the container's process and seccomp as created, not the bundle's file now",
  async (root) => {
    const b = await makeBundle("sleep 30", (s) => {
      // A seccomp profile that refuses one harmless call, so that its presence shows.
      s.linux!.seccomp = {
        defaultAction: "SCMP_ACT_ALLOW",
        architectures: ["SCMP_ARCH_X86_64"],
        syscalls: [{ names: ["getpriority"], action: "SCMP_ACT_ERRNO" }],
      } as never;
    });
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "x1e"])).code, 0);
      const pid = (await state(root, "x1e")).pid;
      const initCaps = /CapEff:\s*(\w+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1];
      // The bundle's config goes away (or is replaced by a laxer one): exec is not widened.
      Deno.removeSync(`${b}/config.json`);
      const r = await capsule(root, [
        "exec",
        "x1e",
        "grep",
        "-E",
        "^(CapEff|Seccomp):",
        "/proc/self/status",
      ]);
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, new RegExp(`CapEff:\\s*${initCaps}`));
      assertMatch(r.stdout, /Seccomp:\s*2/);
    } finally {
      await capsule(root, ["delete", "-f", "x1e"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "exec refuses a container whose init is gone, never the host's namespaces",
  async (root) => {
    const b = await makeBundle("sleep 30");
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "x2e"])).code, 0);
      const pid = (await state(root, "x2e")).pid;
      Deno.kill(pid, "SIGKILL");
      await waitFor(
        () => {
          try {
            return !Deno.readTextFileSync(`/proc/${pid}/stat`).includes(") S ");
          } catch {
            return true;
          }
        },
        5000,
        "init gone",
      );
      const r = await capsule(root, ["exec", "x2e", "true"]);
      assert(r.code !== 0, "exec into a gone container succeeded");
    } finally {
      await capsule(root, ["delete", "-f", "x2e"]);
      await removeAll(b);
    }
  },
);
