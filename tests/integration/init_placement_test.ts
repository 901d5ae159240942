// Without a user namespace, capsule-nsexec (capsule's child, in the host's PID namespace) joins
// the container's cgroup itself and clones the init into its place (runtime/plan.ts
// InitPlacement): v1 hierarchies by its own `tasks`, the cgroup2 one (v2, or a hybrid host's
// unified) by CLONE_INTO_CGROUP, the PID namespace new or joined by path. What must hold: the
// init is in every hierarchy of the container's cgroup and alone there once create returns (the
// helper that cloned it is gone, and reaped), it is PID 1 of a new PID namespace and a member
// of a joined one, and pids.limit 1 still starts a program (the helper and the init are two
// processes for a moment: the limits are applied only once the helper is gone).
import {
  assert,
  assertEquals,
  capsule,
  capsuleCommand,
  makeBundle,
  removeAll,
  rootTest,
  state,
  waitFor,
  zombieChildren,
} from "../helpers.ts";

/** The cgroup path (after the second ":") of /proc/PID/cgroup lines, by hierarchy. */
function cgroupsOf(pid: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of Deno.readTextFileSync(`/proc/${pid}/cgroup`).trim().split("\n")) {
    const m = line.match(/^\d+:([^:]*):(.*)$/);
    if (m) out.set(m[1] || "(cgroup2)", m[2]);
  }
  return out;
}

/** The pids of a cgroup directory's cgroup.procs. */
function procs(dir: string): number[] {
  return Deno.readTextFileSync(`${dir}/cgroup.procs`).split("\n").filter(Boolean).map(Number);
}

rootTest(
  "create: the init is in every hierarchy of its cgroup, alone, and PID 1 of its own namespace",
  async (root) => {
    const b = await makeBundle("exit 0");
    try {
      const r = await capsule(root, ["create", "-b", b, "pl1"]);
      assertEquals(r.code, 0, r.stderr);
      const st = await state(root, "pl1", true);
      const pid = st.pid as number;
      const mine = cgroupsOf(Deno.pid);
      const its = cgroupsOf(pid);
      // Each hierarchy this process is in (v1 controllers, name=systemd, the cgroup2 one).
      assertEquals([...its.keys()].sort(), [...mine.keys()].sort());
      for (const [h, path] of its) {
        assert(path.endsWith("/pl1"), `${h}: the init is in ${path}, not the container's cgroup`);
      }
      // Alone: the helper that cloned it (which joined the v1 hierarchies itself) is gone.
      const rec = JSON.parse(Deno.readTextFileSync(`${root}/pl1/state.json`));
      for (const dir of new Set(Object.values(rec.cgroupPaths as Record<string, string>))) {
        assertEquals(procs(dir), [pid], `${dir}/cgroup.procs`);
      }
      // PID 1 of a new PID namespace (NSpid: host pid, then its pid in the container's).
      const status = Deno.readTextFileSync(`/proc/${pid}/status`);
      assertEquals(status.match(/^NSpid:\s+(.*)$/m)?.[1].split(/\s+/), [String(pid), "1"]);
      assert(
        Deno.readLinkSync(`/proc/${pid}/ns/pid`) !== Deno.readLinkSync("/proc/self/ns/pid"),
        "the init shares the host's PID namespace",
      );
      assertEquals((await capsule(root, ["start", "pl1"])).code, 0);
      await waitFor(async () => (await state(root, "pl1")).status === "stopped", 5000, "exit");
      assertEquals((await capsule(root, ["delete", "pl1"])).code, 0);
    } finally {
      await capsule(root, ["delete", "-f", "pl1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "create into a PID namespace joined by path: the init is a member, not its PID 1",
  async (root) => {
    const a = await makeBundle("sleep 60");
    let b: string | undefined;
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", a, "pl-host"])).code, 0);
      const hostPid = (await state(root, "pl-host")).pid as number;
      b = await makeBundle("sleep 60", (s) => {
        s.linux!.namespaces = s.linux!.namespaces!.map((n) =>
          n.type === "pid" ? { type: "pid", path: `/proc/${hostPid}/ns/pid` } : n
        );
      });
      const r = await capsule(root, ["create", "-b", b, "pl-guest"]);
      assertEquals(r.code, 0, r.stderr);
      const pid = (await state(root, "pl-guest")).pid as number;
      assertEquals(
        Deno.readLinkSync(`/proc/${pid}/ns/pid`),
        Deno.readLinkSync(`/proc/${hostPid}/ns/pid`),
      );
      const nspid = Deno.readTextFileSync(`/proc/${pid}/status`).match(/^NSpid:\s+(.*)$/m)?.[1]
        .split(/\s+/);
      assertEquals(nspid?.length, 2);
      assert(nspid![1] !== "1", `the guest is PID 1 of the host's namespace: ${nspid}`);
    } finally {
      await capsule(root, ["delete", "-f", "pl-guest"]);
      await capsule(root, ["delete", "-f", "pl-host"]);
      await removeAll(a, ...(b ? [b] : []));
    }
  },
);

rootTest(
  "run with pids.limit 1: the program starts (the limit comes after the clone)",
  async (root) => {
    const b = await makeBundle(["true"], (s) => {
      s.linux!.resources = { ...s.linux!.resources, pids: { limit: 1 } };
    });
    try {
      const r = await capsule(root, ["run", "-b", b, "pl-pids"]);
      assertEquals(r.code, 0, r.stderr);
    } finally {
      await capsule(root, ["delete", "-f", "pl-pids"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "library: create reaps the helper that cloned the init (no zombie is left)",
  async (root) => {
    const { openRuntime } = await import("../../mod.ts");
    const b = await makeBundle("sleep 60");
    const rt = await openRuntime({ root });
    try {
      const before = zombieChildren();
      for (let i = 0; i < 3; i++) await rt.create(`pl-lib${i}`, { bundle: b });
      const left = zombieChildren().filter((z) => !before.includes(z));
      assertEquals(left, [], "zombie children after create");
    } finally {
      for (let i = 0; i < 3; i++) await rt.delete(`pl-lib${i}`, { force: true }).catch(() => {});
      await removeAll(b);
    }
  },
);

rootTest(
  "create with a bad PID namespace path fails naming it, and leaves nothing",
  async (root) => {
    const b = await makeBundle("true", (s) => {
      s.linux!.namespaces = s.linux!.namespaces!.map((n) =>
        n.type === "pid" ? { type: "pid", path: "/proc/self/ns/net" } : n
      );
    });
    try {
      const r = await capsule(root, ["create", "-b", b, "pl-bad"]);
      assertEquals(r.code, 1, r.stdout + r.stderr);
      assert(r.stderr.includes("/proc/self/ns/net"), r.stderr);
      assert(!/internal error|^ {4}at /m.test(r.stderr), r.stderr);
      assertEquals((await capsule(root, ["list", "-q"])).stdout.trim(), "");
    } finally {
      await capsule(root, ["delete", "-f", "pl-bad"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "the hooks the init runs (createContainer, startContainer) get the init's pid, as the host's hooks do",
  async (root) => {
    const out = await Deno.makeTempDir({ prefix: "capsule-hookpid-" });
    const hook = (dir: string, f: string) => ({
      path: "/bin/sh",
      args: ["sh", "-c", `cat > ${dir}/${f}`],
    });
    const b = await makeBundle("sleep 60", (s) => {
      // createContainer runs before the init's pivot_root (the host's paths), startContainer in
      // the container (`out` is its /tmp).
      s.mounts!.push({ destination: "/tmp", type: "bind", source: out, options: ["rbind", "rw"] });
      s.hooks = {
        createRuntime: [hook(out, "createRuntime")],
        createContainer: [hook(out, "createContainer")],
        startContainer: [hook("/tmp", "startContainer")],
      };
    });
    try {
      const r = await capsule(root, ["create", "-b", b, "pl-hooks"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals((await capsule(root, ["start", "pl-hooks"])).code, 0);
      const pid = (await state(root, "pl-hooks")).pid as number;
      for (const f of ["createRuntime", "createContainer", "startContainer"]) {
        const st = JSON.parse(Deno.readTextFileSync(`${out}/${f}`));
        assertEquals(st.pid, pid, `${f}'s state: pid ${st.pid}, the init is ${pid}`);
        assertEquals(st.id, "pl-hooks");
      }
    } finally {
      await capsule(root, ["delete", "-f", "pl-hooks"]);
      await removeAll(b, out);
    }
  },
);

rootTest(
  "run in an existing threaded cgroup2 directory: its busy check reads cgroup.threads (cgroup.procs is EOPNOTSUPP there), and it runs, as runc does",
  async (root) => {
    // The cgroup2 hierarchy: a hybrid host's unified one, or the whole of /sys/fs/cgroup on v2.
    let base = "/sys/fs/cgroup/unified";
    try {
      Deno.statSync(`${base}/cgroup.procs`);
    } catch {
      base = "/sys/fs/cgroup";
      try {
        Deno.statSync(`${base}/cgroup.threads`);
      } catch {
        return; // no cgroup2 hierarchy
      }
    }
    const top = `${base}/capsule-thr-${Deno.pid}`;
    Deno.mkdirSync(`${top}/leaf`, { recursive: true });
    const b = await makeBundle("true", (s) => {
      s.linux!.cgroupsPath = `/capsule-thr-${Deno.pid}/leaf`;
    });
    try {
      Deno.writeTextFileSync(`${top}/leaf/cgroup.type`, "threaded");
      const r = await capsule(root, ["run", "-b", b, "pl-thr"]);
      assert(!/internal error|^ {4}at /m.test(r.stderr), r.stderr);
      assertEquals(r.code, 0, r.stdout + r.stderr);
      assertEquals((await capsule(root, ["list", "-q"])).stdout.trim(), "");
    } finally {
      await capsule(root, ["delete", "-f", "pl-thr"]);
      await removeAll(b);
      // What the run may have made in the v1 hierarchies, then the cgroup2 tree.
      for (const e of Deno.readDirSync("/sys/fs/cgroup")) {
        for (const d of [`leaf`, ""]) {
          try {
            Deno.removeSync(`/sys/fs/cgroup/${e.name}/capsule-thr-${Deno.pid}/${d}`);
          } catch { /* not there */ }
        }
      }
      for (const d of [`${top}/leaf`, top]) {
        try {
          Deno.removeSync(d);
        } catch { /* gone */ }
      }
    }
  },
);

rootTest(
  "create into a PID namespace whose init has exited fails saying so, and leaves nothing",
  async (root) => {
    // A PID namespace kept by a bind mount of its ns file after its PID 1 ended.
    const dir = await Deno.makeTempDir({ prefix: "capsule-deadns-" });
    const nsFile = `${dir}/pid`;
    Deno.writeTextFileSync(nsFile, "");
    const keeper = new Deno.Command("unshare", {
      args: ["--pid", "--fork", "--", "sh", "-c", `mount --bind /proc/self/ns/pid ${nsFile}`],
    });
    let mounted = false;
    const b = await makeBundle("true", (s) => {
      s.linux!.namespaces = s.linux!.namespaces!.map((n) =>
        n.type === "pid" ? { type: "pid", path: nsFile } : n
      );
    });
    try {
      const k = await keeper.output();
      assertEquals(k.code, 0, new TextDecoder().decode(k.stderr));
      mounted = true;
      const r = await capsule(root, ["create", "-b", b, "pl-dead"]);
      assertEquals(r.code, 1, r.stdout + r.stderr);
      assert(r.stderr.includes(nsFile), r.stderr);
      assert(/no process left|init has exited/.test(r.stderr), r.stderr);
      assert(!/internal error|^ {4}at /m.test(r.stderr), r.stderr);
      assertEquals((await capsule(root, ["list", "-q"])).stdout.trim(), "");
    } finally {
      await capsule(root, ["delete", "-f", "pl-dead"]);
      if (mounted) await new Deno.Command("umount", { args: [nsFile] }).output();
      await removeAll(b, dir);
    }
  },
);

rootTest(
  "create in an existing cgroup with pids.max 1: v1 (the helper joins first) fails saying the limit leaves no room; v2 (the init is born there) fits",
  async (root) => {
    // The pids hierarchy: v1's, or the cgroup2 one (v2).
    const base = [
      "/sys/fs/cgroup/pids",
      "/sys/fs/cgroup",
    ].find((d) => {
      try {
        return Deno.statSync(`${d}/cgroup.procs`).isFile &&
          (d.endsWith("/pids") ||
            Deno.readTextFileSync(`${d}/cgroup.controllers`).includes("pids"));
      } catch {
        return false;
      }
    });
    if (!base) return; // no pids controller
    const name = `capsule-pmax-${Deno.pid}`;
    Deno.mkdirSync(`${base}/${name}/leaf`, { recursive: true });
    const b = await makeBundle("true", (s) => {
      s.linux!.cgroupsPath = `/${name}/leaf`;
    });
    try {
      try {
        Deno.writeTextFileSync(`${base}/${name}/cgroup.subtree_control`, "+pids");
      } catch { /* v1 */ }
      Deno.writeTextFileSync(`${base}/${name}/leaf/pids.max`, "1");
      const r = await capsule(root, ["create", "-b", b, "pl-pmax"]);
      if (!base.endsWith("/pids")) {
        assertEquals(r.code, 0, r.stdout + r.stderr);
        assertEquals((await capsule(root, ["delete", "-f", "pl-pmax"])).code, 0);
        return;
      }
      assertEquals(r.code, 1, r.stdout + r.stderr);
      assert(r.stderr.includes("pids"), r.stderr);
      assert(!/internal error|^ {4}at /m.test(r.stderr), r.stderr);
      assertEquals((await capsule(root, ["list", "-q"])).stdout.trim(), "");
    } finally {
      await capsule(root, ["delete", "-f", "pl-pmax"]);
      await removeAll(b);
      for (const e of Deno.readDirSync("/sys/fs/cgroup")) {
        for (const d of [`${e.name}/${name}/leaf`, `${e.name}/${name}`]) {
          try {
            Deno.removeSync(`/sys/fs/cgroup/${d}`);
          } catch { /* not there */ }
        }
      }
      for (const d of [`${name}/leaf`, name]) {
        try {
          Deno.removeSync(`/sys/fs/cgroup/${d}`);
        } catch { /* not there */ }
      }
    }
  },
);

rootTest(
  "create in an existing cgroup2 directory with controllers on for its children fails naming it",
  async (root) => {
    // The cgroup2 hierarchy (a hybrid host's unified one, or v2's), with a controller its root
    // hands down already (the test does not change the host's root).
    const base = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].find((d) => {
      try {
        return Deno.statSync(`${d}/cgroup.subtree_control`).isFile;
      } catch {
        return false;
      }
    });
    // Not a threaded controller (cpu, cpuset, pids...): with those only, the kernel lets the
    // directory take a process (it could become a thread root).
    const ctrl = base
      ? Deno.readTextFileSync(`${base}/cgroup.subtree_control`).trim().split(/\s+/)
        .find((c) => ["memory", "io", "hugetlb", "rdma", "misc"].includes(c))
      : undefined;
    if (!base || !ctrl) return;
    const name = `capsule-inner-${Deno.pid}`;
    Deno.mkdirSync(`${base}/${name}/leaf/kid`, { recursive: true });
    const b = await makeBundle("true", (s) => {
      s.linux!.cgroupsPath = `/${name}/leaf`;
    });
    try {
      Deno.writeTextFileSync(`${base}/${name}/cgroup.subtree_control`, `+${ctrl}`);
      Deno.writeTextFileSync(`${base}/${name}/leaf/cgroup.subtree_control`, `+${ctrl}`);
      const r = await capsule(root, ["create", "-b", b, "pl-inner"]);
      assertEquals(r.code, 1, r.stdout + r.stderr);
      assert(r.stderr.includes(`${base}/${name}/leaf`), r.stderr);
      assert(r.stderr.includes("linux.cgroupsPath"), r.stderr);
      assert(!/internal error|^ {4}at /m.test(r.stderr), r.stderr);
      assertEquals((await capsule(root, ["list", "-q"])).stdout.trim(), "");
    } finally {
      await capsule(root, ["delete", "-f", "pl-inner"]);
      await removeAll(b);
      for (const e of Deno.readDirSync("/sys/fs/cgroup")) {
        for (const d of ["leaf/kid", "leaf", ""]) {
          try {
            Deno.removeSync(`/sys/fs/cgroup/${e.name}/${name}/${d}`);
          } catch { /* not there */ }
        }
      }
      for (const d of ["leaf/kid", "leaf", ""]) {
        try {
          Deno.removeSync(`/sys/fs/cgroup/${name}/${d}`);
        } catch { /* not there */ }
      }
    }
  },
);

rootTest(
  "a namespace path that is a FIFO (pid, or net) fails at once naming it, never waits for a writer",
  async (root) => {
    const dir = await Deno.makeTempDir({ prefix: "capsule-nsfifo-" });
    const fifo = `${dir}/ns`;
    const mk = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    assertEquals(mk.code, 0);
    try {
      for (const type of ["pid", "network"]) {
        const b = await makeBundle("true", (s) => {
          s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== type);
          s.linux!.namespaces!.push({ type, path: fifo } as never);
        });
        try {
          // Killed after 60 s: an open(2) of a FIFO for reading waits for a writer. (A `run`
          // takes ~0.1 s on the host; in the cgroup v2 VM's software emulation on a loaded
          // machine one took more than 10 s, the limit before.) The output goes to a file: a helper left
          // waiting would keep a pipe open.
          const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
          const line = ["timeout", "-s", "KILL", "60", ...capsuleCommand(), "--root", root]
            .concat(["run", "-b", b, "pl-fifo"]).map(q).join(" ") + ` >/dev/null 2>${dir}/err`;
          const out = await new Deno.Command("sh", { args: ["-c", line], stdin: "null" }).output();
          const err = Deno.readTextFileSync(`${dir}/err`);
          assertEquals(out.code, 1, `${type}: ${err}`);
          assert(err.includes(fifo), err);
          assert(!/internal error|^ {4}at /m.test(err), err);
          assertEquals((await capsule(root, ["list", "-q"])).stdout.trim(), "");
        } finally {
          // A writer (O_RDWR never waits) ends the wait of a helper left in open(2).
          await new Deno.Command("sh", { args: ["-c", `exec 3<>${fifo}`] }).output();
          await capsule(root, ["delete", "-f", "pl-fifo"]);
          await removeAll(b);
        }
      }
    } finally {
      await removeAll(dir);
    }
  },
);
