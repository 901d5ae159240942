// What a container can reach of capsule's own processes (issue 10 items 1-2, issue 11): the
// host's Deno is never writable through /proc/<pid>/exe of a process in the container's cgroup
// (created init, exec helper), an exec helper shows nothing of the caller's environment and no
// host file through /proc, and exec lands in the container's root also when the container was
// entered by chroot (--no-pivot). Root only.
import { CAPABILITIES } from "../../runtime/consts.ts";
import {
  assert,
  assertEquals,
  capsule,
  makeBundle,
  removeAll,
  REPO,
  rootTest,
  sleep,
  spawnCapsule,
  state,
  waitFor,
} from "../helpers.ts";

/** Every pid in the cgroup of `pid` (the pids controller on v1, the unified one on v2). */
function cgroupProcs(pid: number): number[] {
  const lines = Deno.readTextFileSync(`/proc/${pid}/cgroup`).trim().split("\n");
  const v1 = lines.find((l) => l.split(":")[1]?.split(",").includes("pids"));
  const dir = v1
    ? `/sys/fs/cgroup/pids${v1.split(":")[2]}`
    : `/sys/fs/cgroup${lines.find((l) => l.startsWith("0::"))!.slice(3)}`;
  return Deno.readTextFileSync(`${dir}/cgroup.procs`).trim().split("\n").filter(Boolean).map(
    Number,
  );
}

/** Is this process capsule's init (`capsule-nsexec init FD [EXE]`, before it exec'd the program)? */
function isCapsuleInit(pid: number): boolean {
  try {
    const cmd = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    return /\0init\0\d+\0(\d+\0)?$/.test(cmd);
  } catch {
    return false;
  }
}

/** Is this process capsule's exec helper (capsule-nsexec, before it exec'd the program)? */
function isExecHelper(pid: number): boolean {
  try {
    return /(^|\/)capsule-nsexec$/.test(Deno.readLinkSync(`/proc/${pid}/exe`));
  } catch {
    return false;
  }
}

const HOST_DENO = Deno.statSync(Deno.execPath());
const HOST_NSEXEC = Deno.statSync(`${REPO}/dist/capsule-nsexec`);

/**
 * Why `/proc/<pid>/exe` may be opened for writing from the container (a string), or undefined
 * when it cannot: EROFS (read-only view) and EPERM (sealed memfd) are the answers; ETXTBSY only
 * lasts while a process runs the file, so it counts as writable when the exe is the host's Deno.
 */
function exeWritable(pid: number): string | undefined {
  let f: Deno.FsFile | undefined;
  try {
    f = Deno.openSync(`/proc/${pid}/exe`, { write: true });
    return `pid ${pid}: /proc/${pid}/exe opened for writing`;
  } catch (e) {
    const errno = Number(/os error (\d+)/.exec((e as Error).message)?.[1]);
    // EROFS, EPERM: sealed; ENOENT, ESRCH: the process is gone
    if ([30, 1, 2, 3].includes(errno)) return;
    let st: Deno.FileInfo | undefined;
    try {
      st = Deno.statSync(`/proc/${pid}/exe`);
    } catch { /* gone */ }
    if (!st) return;
    const host = [HOST_DENO, HOST_NSEXEC].some((h) => st.dev === h.dev && st.ino === h.ino);
    if (errno === 26 && !host) {
      return; // ETXTBSY of the program (busybox), not of a host binary
    }
    return `pid ${pid}: ${Deno.readLinkSync(`/proc/${pid}/exe`)}: ${(e as Error).message}`;
  } finally {
    f?.close();
  }
}

rootTest(
  "security: no process in the container's cgroup can write the host's Deno or exec helper",
  async (root) => {
    const b = await makeBundle("sleep 1000");
    try {
      // created: the init waits on exec.fifo
      assertEquals((await capsule(root, ["create", "-b", b, "s1"])).code, 0);
      const pid = (await state(root, "s1")).pid;
      const procs = cgroupProcs(pid);
      assert(procs.includes(pid), `init ${pid} not in its cgroup (${procs})`);
      assert(isCapsuleInit(pid), "the created container's init is not capsule's Deno");
      const bad = procs.map(exeWritable).filter(Boolean);
      assertEquals(bad, [], "while created");
      // An exec's program process, from the moment it is in the container's cgroup until its
      // execve, runs capsule-nsexec (its parent stays outside). That window is microseconds; a
      // paused container holds it open: the process freezes as it joins the cgroup.
      assertEquals((await capsule(root, ["start", "s1"])).code, 0);
      assertEquals((await capsule(root, ["pause", "s1"])).code, 0);
      const ex = spawnCapsule(root, ["exec", "--ignore-paused", "s1", "true"]);
      let problems: string[] = [];
      try {
        await waitFor(
          () => cgroupProcs(pid).some(isExecHelper),
          5000,
          "the exec's process (capsule-nsexec) frozen in the container's cgroup",
        );
        const helpers = cgroupProcs(pid).filter(isExecHelper);
        problems = helpers.map(exeWritable).filter((w): w is string => !!w);
        assertEquals(helpers.length, 1, `one process of capsule's in the cgroup: ${helpers}`);
      } finally {
        await capsule(root, ["resume", "s1"]);
        const done = await ex.output();
        assertEquals(done.code, 0, new TextDecoder().decode(done.stderr));
      }
      assertEquals(problems, [], "during exec");
    } finally {
      await capsule(root, ["delete", "-f", "s1"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "security: exec shows the container no caller environment and no host file",
  async (root) => {
    // A container with every capability the host has, so that only non-dumpable (and having
    // nothing to show) protects the exec helper: it polls /proc/*/environ and /proc/*/fd.
    const all = [...CAPABILITIES].filter((c) => {
      const bnd = BigInt(
        "0x" + /CapBnd:\s*([0-9a-f]+)/.exec(
          Deno.readTextFileSync("/proc/self/status"),
        )![1],
      );
      return (bnd >> BigInt(CAPABILITIES.indexOf(c))) & 1n;
    });
    // Each hit is recorded with the process's command line: between clone and execve, the
    // child of posix_spawn is a copy of capsule itself (its memory, fds, command line), which
    // only a container holding CAP_SYS_PTRACE, as this one does, may read (README "Security").
    const poll = [
      "while :; do",
      "  for p in /proc/[0-9]*; do",
      "    h=$(ls -l $p/fd/ 2>/dev/null | grep -E 'cache|deno|/root/' | tr '\\n' ' ')",
      "    [ -n \"$h\" ] && echo \"$(tr '\\0' ' ' <$p/cmdline) :: $h\" >>/tmp/fd.hits",
      "    grep -q SECRET_PROBE $p/environ 2>/dev/null &&",
      "      echo \"$(tr '\\0' ' ' <$p/cmdline)\" >>/tmp/env.hits",
      "  done",
      "  echo . >>/tmp/loops",
      "done",
    ].join("\n");
    const b = await makeBundle(poll, (s) => {
      s.process!.capabilities = {
        bounding: all,
        effective: all,
        permitted: all,
        inheritable: [],
        ambient: [],
      };
    }, { ownRootfs: true });
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "s2"])).code, 0);
      await sleep(200);
      const loops = async () =>
        Number(
          (await capsule(root, ["exec", "s2", "sh", "-c", "wc -l </tmp/loops 2>/dev/null"]))
            .stdout.trim() || "0",
        );
      const before = await loops();
      for (let i = 0; i < 5; i++) {
        const r = await capsule(root, ["exec", "s2", "true"], {
          env: { SECRET_PROBE: "s3cr3t-value" },
        });
        assertEquals(r.code, 0, r.stderr);
      }
      const read = async (f: string) =>
        (await capsule(root, ["exec", "s2", "sh", "-c", `sort -u ${f} 2>/dev/null`])).stdout
          .trim();
      // The poller ran all along (since no process of capsule's with host privileges or the
      // caller's environment appears in the container, there is no helper for it to see).
      assert((await loops()) > before + 1, "the poller did not run during the execs");
      const notSpawning = (hits: string) =>
        hits.split("\n").filter((l) => l && !/ exec s2 true /.test(l)).join("\n");
      assertEquals(notSpawning(await read("/tmp/env.hits")), "", "SECRET_PROBE in environ");
      assertEquals(notSpawning(await read("/tmp/fd.hits")), "", "a host file in /proc/*/fd");
    } finally {
      await capsule(root, ["delete", "-f", "s2"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "security: exec enters the container's root when capsule runs in a chroot",
  async (root) => {
    // capsule in a chroot (here: a private mount namespace, / bound onto a directory and chroot
    // there) must create with --no-pivot; the container's mount namespace then has the host's
    // tree at its root, and the container's root is a mount below it.
    const b = await makeBundle("sleep 1000", undefined, { ownRootfs: true });
    const jail = await Deno.makeTempDir({ prefix: "capsule-chroot-" });
    const out = await Deno.makeTempFile();
    try {
      await Deno.writeTextFile(`${b}/rootfs/capsule-root-marker`, "inside\n");
      const bin = Deno.env.get("CAPSULE")?.split(" ") ??
        [Deno.execPath(), "run", "-A", "--quiet", `${REPO}/main.ts`];
      const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
      const create = [...bin, "--root", root, "create", "--no-pivot", "-b", b, "s3"].map(q).join(
        " ",
      );
      const line = `mount --make-rprivate / && mount --rbind / ${q(jail)} && ` +
        `exec chroot ${q(jail)} ${create} >${q(out)} 2>&1`;
      const made = await new Deno.Command("unshare", { args: ["-m", "sh", "-c", line] }).output();
      assertEquals(made.code, 0, Deno.readTextFileSync(out));
      assertEquals((await capsule(root, ["start", "s3"])).code, 0);
      const r = await capsule(root, ["exec", "s3", "cat", "/capsule-root-marker"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout, "inside\n");
      const cwd = await capsule(root, ["exec", "--cwd", "/bin", "s3", "pwd"]);
      assertEquals(cwd.stdout, "/bin\n", cwd.stderr);
    } finally {
      await capsule(root, ["delete", "-f", "s3"]);
      await removeAll(b, out);
      await Deno.remove(jail).catch(() => {});
    }
  },
);
