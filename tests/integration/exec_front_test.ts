// exec's native front end (runtime/native/front.c): the launcher's `exec ID COMMAND...` run
// without Deno. The file builds the bundle and its launcher once (scripts/build.ts); each test
// copies them into a temp dir and runs every command through its copy, as a user does. Beside the
// launcher, `capsule-nodeno` is the same launcher with a Deno that does not exist: a command it
// runs is native, and one the front end hands to the CLI fails with "cannot start". Root only.
import { build } from "../../scripts/build.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  cgroupDirsNamed,
  exists,
  inUserNamespace,
  makeBundle,
  removeAll,
  REPO,
  type Result,
  rootTest,
  waitFor,
  writeNoDenoLauncher,
} from "../helpers.ts";
import type { Spec } from "../../runtime/spec.ts";

/** util-linux's setpriv and unshare (user namespaces, another user): not in the cgroup v2 VM. */
const utilLinux = (() => {
  try {
    const out = new Deno.Command("setpriv", { args: ["--version"], stderr: "null" }).outputSync();
    return new TextDecoder().decode(out.stdout).includes("util-linux");
  } catch {
    return false;
  }
})();

interface RunOptions {
  /** Through `capsule-nodeno`: only a native exec works. */
  nodeno?: boolean;
  env?: Record<string, string>;
  /** Without the test's `--root ROOT` first (the arguments give their own). */
  ownRoot?: boolean;
  /** stdout and stderr to /dev/null: create's, which its init keeps open. */
  quiet?: boolean;
}

interface Built {
  /** Runs the built launcher (or `capsule-nodeno` with `nodeno`) with `--root root`. */
  run(args: string[], o?: RunOptions): Promise<Result>;
  spawn(args: string[]): Deno.ChildProcess;
  /** Asserts that the front end hands `args` to the Deno CLI (through `capsule-nodeno`: 127). */
  handedOn(args: string[], o?: RunOptions): Promise<void>;
  dist: string;
}

/**
 * The file's one build (scripts/build.ts: deno bundle, rollup, gcc; ~5 s here and minutes under
 * the cgroup v2 VM's software emulation), made by the first test that needs it and removed when
 * the file ends. Each test runs a copy of it: one replaces the helper on disk.
 */
let shared: Promise<string> | undefined;
function sharedBuild(): Promise<string> {
  return shared ??= (async () => {
    const tmp = await Deno.makeTempDir({ prefix: "capsule-front-build-" });
    globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));
    const cc = Deno.env.get("CC");
    try {
      // No compiler (the cgroup v2 VM): the helper tests/run.sh built from the same sources,
      // copied by a stand-in for gcc.
      if (!cc && !new Deno.Command("sh", { args: ["-c", "command -v gcc"] }).outputSync().success) {
        const helper = `${REPO}/dist/capsule-nsexec`;
        Deno.writeTextFileSync(
          `${tmp}/cc`,
          `#!/bin/sh\nwhile [ "$1" != -o ]; do shift; done; exec cp '${helper}' "$2"\n`,
          { mode: 0o755 },
        );
        Deno.env.set("CC", `${tmp}/cc`);
      }
      await build(`${tmp}/dist`);
      return `${tmp}/dist`;
    } finally {
      if (cc === undefined) Deno.env.delete("CC");
    }
  })();
}

async function withBuild(root: string, fn: (b: Built) => Promise<void>): Promise<void> {
  const built = await sharedBuild();
  const tmp = await Deno.makeTempDir({ prefix: "capsule-front-" });
  try {
    Deno.chmodSync(tmp, 0o755); // another user runs the launcher too
    const dist = `${tmp}/dist`;
    const cp = await new Deno.Command("cp", { args: ["-a", built, dist] }).output();
    assert(cp.success, new TextDecoder().decode(cp.stderr));
    const launcher = `${dist}/capsule`;
    assert(
      writeNoDenoLauncher(`${dist}/capsule-nodeno`, [launcher]),
      "the launcher names this Deno",
    );
    const dec = new TextDecoder();
    // Under a soft open-files limit of 256 (the hard one stays): the program's, when its config
    // sets none, is what the CLI's Deno passes on (its soft limit raised to the hard one).
    const cmd = (
      args: string[],
      { nodeno = false, env, ownRoot = false, quiet = false }: RunOptions = {},
    ) =>
      new Deno.Command("sh", {
        args: ["-c", 'ulimit -Sn 256; exec "$0" "$@"', nodeno ? `${dist}/capsule-nodeno` : launcher]
          .concat(ownRoot ? args : ["--root", root, ...args]),
        env,
        stdin: "null",
        stdout: quiet ? "null" : "piped",
        stderr: quiet ? "null" : "piped",
      });
    const run = async (args: string[], o: RunOptions = {}) => {
      const out = await cmd(args, o).output();
      if (o.quiet) return { code: out.code, stdout: "", stderr: "" };
      return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
    };
    await fn({
      dist,
      run,
      handedOn: async (args, o = {}) => {
        const r = await run(args, { ...o, nodeno: true });
        assertEquals(r.code, 127, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
        assertMatch(r.stderr, /cannot start \/nonexistent\/deno/);
      },
      spawn: (args) => cmd(args).spawn(),
    });
  } finally {
    await removeAll(tmp);
  }
}

// What a process is: ids, groups, capabilities, no_new_privs, seccomp, environment, cwd, umask,
// limits, oom_score_adj, hostname, its PID namespace.
const WHO = "id; grep -E '^(Uid|Gid|Groups|Cap...|NoNewPrivs|Seccomp)' /proc/self/status; " +
  'env | sort; echo "cwd=$(pwd) umask=$(umask) nofile=$(ulimit -n)/$(ulimit -Hn)"; ' +
  'echo "oom=$(cat /proc/self/oom_score_adj) host=$(hostname)"; echo "pid=$$"; ' +
  "for n in pid net mnt user; do readlink /proc/self/ns/$n; done";

async function sameAsDeno(b: Built, id: string): Promise<void> {
  const native = await b.run(["exec", id, "sh", "-c", WHO], { nodeno: true });
  assertEquals(native.code, 0, native.stderr);
  // --debug: the same exec, by the TypeScript CLI (the front end takes no such flag).
  const deno = await b.run(["--debug", "exec", id, "sh", "-c", WHO]);
  assertEquals(deno.code, 0, deno.stderr);
  // $$ differs by one exec to the next; everything else is the same process.
  const norm = (s: string) => s.split("\n").filter((l) => !l.startsWith("pid=")).join("\n");
  assertEquals(norm(native.stdout), norm(deno.stdout));
  assertMatch(native.stdout, /NoNewPrivs/);
}

rootTest(
  "exec front end: the same process as the Deno CLI's exec, for a rich config",
  async (root) => {
    const rich = (s: Spec) => {
      s.hostname = "front-host";
      const p = s.process!;
      p.user = { uid: 1000, gid: 1000, additionalGids: [10, 20], umask: 0o027 };
      p.env = ["A=1", "B=2", "A=3", "PATH=/bin:/usr/bin"];
      p.cwd = "/tmp";
      p.rlimits = [{ type: "RLIMIT_NOFILE", soft: 100, hard: 200 }];
      p.oomScoreAdj = 100;
      p.noNewPrivileges = false;
      p.capabilities = {
        bounding: ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        effective: ["CAP_KILL"],
        permitted: ["CAP_KILL"],
        inheritable: [],
        ambient: [],
      };
      s.linux!.seccomp = {
        defaultAction: "SCMP_ACT_ALLOW",
        architectures: ["SCMP_ARCH_X86_64"],
        syscalls: [{ names: ["mkdirat", "mkdir"], action: "SCMP_ACT_ERRNO" }],
      };
    };
    const b1 = await makeBundle("sleep 1000", rich);
    const b2 = await makeBundle("sleep 1000", inUserNamespace);
    // No PID namespace of its own: the helper execs the program itself (no fork).
    const b3 = await makeBundle("sleep 1000", (s) => {
      s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== "pid");
      s.process!.rlimits = [];
    });
    try {
      await withBuild(root, async (b) => {
        const ids = utilLinux ? ["f1", "f2", "f3"] : ["f1", "f3"];
        for (const [id, bundle] of [["f1", b1], ["f2", b2], ["f3", b3]]) {
          if (!ids.includes(id)) continue;
          const r = await b.run(["run", "-d", "-b", bundle, id]);
          assertEquals(r.code, 0, r.stderr);
          assert(
            Deno.statSync(`${root}/${id}/exec.plan`).mode! % 0o1000 === 0o600,
            "exec.plan 0600",
          );
          await sameAsDeno(b, id);
        }
        // The seccomp profile holds for the native exec (mkdir refused).
        const mk = await b.run(["exec", "f1", "mkdir", "/tmp/x"], { nodeno: true });
        assert(mk.code !== 0, "mkdir passed the container's seccomp profile");
        // Exit statuses: the program's, 128+N for a signal, 255 (runc's) for exec's own failure.
        assertEquals(
          (await b.run(["exec", "f3", "sh", "-c", "exit 42"], { nodeno: true })).code,
          42,
        );
        const killed = await b.run(["exec", "f3", "sh", "-c", "kill -9 $$"], { nodeno: true });
        assertEquals(killed.code, 137);
        const missing = await b.run(["exec", "f1", "no-such-program"], { nodeno: true });
        assertEquals(missing.code, 255);
        assertEquals(
          missing.stderr.trim(),
          `capsule: Cannot exec in container "f1": exec: "no-such-program": executable file not found in $PATH`,
        );
        // Every word after the id is the command's, "--" and flags included.
        const words = await b.run(["exec", "f1", "echo", "--", "-t", "x y"], { nodeno: true });
        assertEquals(words.stdout, "-- -t x y\n");
        for (const id of ids) {
          assertEquals((await b.run(["delete", "-f", id])).code, 0);
        }
      });
    } finally {
      await removeAll(b1, b2, b3);
    }
  },
);

rootTest(
  "exec front end: anything it does not take goes to the Deno CLI, unchanged",
  async (root) => {
    const bundle = await makeBundle("sleep 1000");
    const quick = await makeBundle("true");
    try {
      await withBuild(root, async (b) => {
        assertEquals((await b.run(["run", "-d", "-b", bundle, "g1"])).code, 0);
        const native = (args: string[]) => b.run(args, { nodeno: true });
        const handedOn = b.handedOn;
        assertEquals((await native(["exec", "g1", "true"])).code, 0);
        // Flags, other commands, an unknown or invalid id: the CLI's.
        await handedOn(["exec", "-t", "g1", "sh"]);
        await handedOn(["exec", "--env", "A=1", "g1", "true"]);
        await handedOn(["exec", "g1"]);
        await handedOn(["exec", "nosuch", "true"]);
        await handedOn(["exec", "../g1", "true"]);
        // A paused container: the CLI's refusal, word for word.
        assertEquals((await b.run(["pause", "g1"])).code, 0);
        await handedOn(["exec", "g1", "true"]);
        const paused = await b.run(["exec", "g1", "true"]);
        assertEquals(paused.code, 255);
        assertMatch(paused.stderr, /it is paused/);
        assertEquals((await b.run(["resume", "g1"])).code, 0);
        assertEquals((await native(["exec", "g1", "true"])).code, 0);
        // exec.plan written by another build of the helper (here: its binary touched).
        const helper = `${b.dist}/capsule-nsexec`;
        const st = Deno.statSync(helper);
        Deno.utimeSync(helper, new Date(), new Date(st.mtime!.getTime() - 5000));
        await handedOn(["exec", "g1", "true"]);
        Deno.utimeSync(helper, st.atime!, st.mtime!);
        assertEquals((await native(["exec", "g1", "true"])).code, 0);
        // exec.plan that others may write, that is cut short, or that is gone: not taken.
        const plan = `${root}/g1/exec.plan`;
        const bytes = Deno.readFileSync(plan);
        Deno.chmodSync(plan, 0o622);
        await handedOn(["exec", "g1", "true"]);
        Deno.chmodSync(plan, 0o600);
        Deno.writeFileSync(plan, bytes.subarray(0, bytes.length - 3));
        await handedOn(["exec", "g1", "true"]);
        Deno.removeSync(plan);
        await handedOn(["exec", "g1", "true"]);
        assertEquals((await b.run(["exec", "g1", "true"])).code, 0, "the CLI's exec without it");
        // A state root that others may write: not trusted.
        Deno.writeFileSync(plan, bytes, { mode: 0o600 });
        assertEquals((await native(["exec", "g1", "true"])).code, 0);
        Deno.chmodSync(root, 0o777);
        await handedOn(["exec", "g1", "true"]);
        Deno.chmodSync(root, 0o700);
        // Not root: the CLI's (its own default root and rules).
        const other = !utilLinux ? undefined : await new Deno.Command("setpriv", {
          args: ["--reuid=65534", "--regid=65534", "--clear-groups", `${b.dist}/capsule-nodeno`]
            .concat(["--root", root, "exec", "g1", "true"]),
          stdout: "piped",
          stderr: "piped",
        }).output();
        if (other) {
          assertMatch(new TextDecoder().decode(other.stderr), /cannot start \/nonexistent\/deno/);
        }
        // Closed stdio (the helper's socket would take its place): the CLI's.
        const closed = await new Deno.Command("sh", {
          args: ["-c", `exec "$0" --root "$1" exec g1 true <&-`, `${b.dist}/capsule-nodeno`, root],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assertMatch(new TextDecoder().decode(closed.stderr), /cannot start \/nonexistent\/deno/);
        // A stopped container (its init gone): the CLI's.
        assertEquals((await b.run(["run", "-d", "-b", quick, "g2"])).code, 0);
        await waitFor(
          async () => (await b.run(["state", "g2"])).stdout.includes('"stopped"'),
          5000,
        );
        await handedOn(["exec", "g2", "true"]);
        // g1's plan copied under g2's id: not g2's (without the check, this ran in g1).
        Deno.writeFileSync(`${root}/g2/exec.plan`, Deno.readFileSync(`${root}/g1/exec.plan`), {
          mode: 0o600,
        });
        await handedOn(["exec", "g2", "true"]);
        // A --root whose ".." follows a symlink: the CLI takes ".." on the text, as runc does
        // (here: L/.. is the link's own directory, which holds no g1), not the kernel's way.
        const links = await Deno.makeTempDir({ prefix: "capsule-front-links-" });
        try {
          Deno.symlinkSync(`${root}/g1`, `${links}/L`);
          const own = { ownRoot: true };
          await handedOn(["--root", `${links}/L/..`, "exec", "g1", "true"], own);
          await handedOn([`--root=${links}/L/../`, "exec", "g1", "true"], own);
          await handedOn(["--root", `${links}/L/./..`, "exec", "g1", "true"], own);
          // Without such a component, the same root is taken natively.
          const direct = await b.run(["--root", root, "exec", "g1", "true"], {
            ...own,
            nodeno: true,
          });
          assertEquals(direct.code, 0, direct.stderr);
          const cli = await b.run(["--root", `${links}/L/..`, "exec", "g1", "true"], own);
          assertMatch(cli.stderr, /container "g1" does not exist/);
        } finally {
          await removeAll(links);
        }
        for (const id of ["g1", "g2"]) assertEquals((await b.run(["delete", "-f", id])).code, 0);
      });
    } finally {
      await removeAll(bundle, quick);
    }
  },
);

rootTest(
  "exec front end: sealed helper, signals passed on, nothing of the caller's reaches the program",
  async (root) => {
    const bundle = await makeBundle("sleep 1000");
    try {
      await withBuild(root, async (b) => {
        assertEquals((await b.run(["run", "-d", "-b", bundle, "h1"])).code, 0);
        // The caller's environment stays out (the helper starts with none; the program gets the
        // container's).
        const env = await b.run(["exec", "h1", "env"], {
          nodeno: true,
          env: { FRONT_SECRET: "x" },
        });
        assertEquals(env.code, 0, env.stderr);
        assert(!env.stdout.includes("FRONT_SECRET"), env.stdout);
        // A signal to capsule reaches the program, whose status comes back.
        const child = b.spawn([
          "exec",
          "h1",
          "sh",
          "-c",
          "trap 'exit 9' TERM; echo ready; while :; do sleep 0.1; done",
        ]);
        const reader = child.stdout.getReader();
        const first = await reader.read();
        assertEquals(new TextDecoder().decode(first.value), "ready\n");
        // The helper between capsule and the program runs from the sealed, read-only view.
        const kids = Deno.readTextFileSync(`/proc/${child.pid}/task/${child.pid}/children`).trim();
        const helper = Number(kids.split(" ")[0]);
        assert(helper > 0, `no helper under ${child.pid}`);
        const exe = Deno.readLinkSync(`/proc/${helper}/exe`);
        assert(!exe.startsWith(b.dist), `the helper runs from ${exe}, the file on disk`);
        let wrote = false;
        try {
          Deno.openSync(`/proc/${helper}/exe`, { write: true }).close();
          wrote = true;
        } catch { /* EROFS or ETXTBSY */ }
        assert(!wrote, "the helper's binary is writable through /proc/PID/exe");
        reader.releaseLock();
        Deno.kill(child.pid, "SIGTERM");
        const st = await child.output();
        assertEquals(st.code, 9);
        assertEquals((await b.run(["delete", "-f", "h1"])).code, 0);
      });
    } finally {
      await removeAll(bundle);
    }
  },
);

rootTest(
  "start front end: a created container started without Deno; hooks, flags and other states go to the CLI",
  async (root) => {
    const bundle = await makeBundle("sleep 1000");
    const quick = await makeBundle("echo started");
    const marks = await Deno.makeTempDir({ prefix: "capsule-front-hook-" });
    const hooked = await makeBundle("sleep 1000", (s) => {
      s.hooks = { poststart: [{ path: "/bin/sh", args: ["sh", "-c", `echo ran > ${marks}/ran`] }] };
    });
    try {
      await withBuild(root, async (b) => {
        const status = async (id: string) => JSON.parse((await b.run(["state", id])).stdout).status;
        const handedOn = b.handedOn;
        const create = async (id: string, bundle: string) =>
          assertEquals((await b.run(["create", "-b", bundle, id], { quiet: true })).code, 0);
        await create("s1", bundle);
        assertEquals(await status("s1"), "created");
        const started = await b.run(["start", "s1"], { nodeno: true });
        assertEquals(started.code, 0, started.stderr);
        assertEquals(await status("s1"), "running");
        assert(!exists(`${root}/s1/exec.fifo`), "exec.fifo is left");
        const ps = await b.run(["exec", "s1", "cat", "/proc/1/cmdline"], { nodeno: true });
        assertEquals(ps.stdout, "sleep\u00001000\u0000");
        // Running now: the CLI's refusal.
        await handedOn(["start", "s1"]);
        assertMatch((await b.run(["start", "s1"])).stderr, /running/);
        // As engines call it (containerd, podman's conmon): global flags, no log on success.
        await create("s2", bundle);
        const log = `${marks}/log.json`;
        const engine = ["--root", root, "--log", log, "--log-format", "json", "--systemd-cgroup"];
        const e = await b.run([...engine, "start", "s2"], { nodeno: true, ownRoot: true });
        assertEquals(e.code, 0, e.stderr);
        assertEquals(await status("s2"), "running");
        assert(!exists(log), "a start that succeeded wrote the log");
        // A program that is done before start looks: started all the same.
        await create("s3", quick);
        assertEquals((await b.run(["start", "s3"], { nodeno: true })).code, 0);
        await waitFor(async () => (await status("s3")) === "stopped", 5000);
        // Poststart hooks, --debug, an unknown --log-format, a created container whose init is
        // gone: the CLI's.
        await create("s4", hooked);
        await handedOn(["start", "s4"]);
        await handedOn(["--debug", "start", "s4"]);
        await handedOn(["--log-format", "yaml", "start", "s4"]);
        assertEquals((await b.run(["start", "s4"])).code, 0);
        assertEquals(Deno.readTextFileSync(`${marks}/ran`), "ran\n");
        await create("s5", bundle);
        const pid = JSON.parse((await b.run(["state", "s5"])).stdout).pid;
        Deno.kill(pid, "SIGKILL");
        await waitFor(async () => (await status("s5")) === "stopped", 5000);
        await handedOn(["start", "s5"]);
        // Two starts at once: one starts it, the other hands over at once (it used to wait out
        // the 10 s deadline once the winner had removed the fifo).
        for (const id of ["s6", "s7", "s8"]) {
          await create(id, bundle);
          const t0 = performance.now();
          const both = await Promise.all([1, 2].map(() => b.run(["start", id], { nodeno: true })));
          assert(
            performance.now() - t0 < 3000,
            `two starts of ${id} took ${performance.now() - t0} ms`,
          );
          assertEquals(
            both.map((r) => r.code).sort(),
            both.some((r) => r.code === 127) ? [0, 127] : [0, 0],
          );
          assertEquals(await status(id), "running");
        }
        for (const id of ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"]) {
          assertEquals((await b.run(["delete", "-f", id])).code, 0);
        }
      });
    } finally {
      await removeAll(bundle, quick, hooked, marks);
    }
  },
);

rootTest(
  "delete front end: created, stopped and (-f) running containers removed without Deno; what it does not take goes to the CLI",
  async (root) => {
    const bundle = await makeBundle("sleep 1000");
    const quick = await makeBundle("true");
    const marks = await Deno.makeTempDir({ prefix: "capsule-front-del-" });
    const hooked = await makeBundle("sleep 1000", (s) => {
      s.hooks = { poststop: [{ path: "/bin/sh", args: ["sh", "-c", `echo ran > ${marks}/ran`] }] };
    });
    const hostMounts = await makeBundle("sleep 1000", (s) => {
      s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== "mount");
      delete s.linux!.maskedPaths;
      delete s.linux!.readonlyPaths;
    });
    try {
      await withBuild(root, async (b) => {
        const handedOn = b.handedOn;
        const state = async (id: string) => JSON.parse((await b.run(["state", id])).stdout);
        // Deleted natively: no state, no cgroup, no init; a nested "capsule" parent it was the
        // last container of is gone too.
        const gone = (id: string, pid: number, parents: string[]) => {
          assert(!exists(`${root}/${id}`), `${id}: state directory left`);
          assertEquals(cgroupDirsNamed(id), [], `${id}: cgroups left`);
          assert(!exists(`/proc/${pid}`) || /^State:\s+Z/m.test(readStatus(pid)), "init alive");
          for (const p of parents) {
            const left = exists(p) ? [...Deno.readDirSync(p)].filter((e) => e.isDirectory) : [];
            assert(!exists(p) || left.length > 0, `${p} left empty`);
          }
        };
        const record = (id: string) =>
          JSON.parse(Deno.readTextFileSync(`${root}/${id}/state.json`));
        const create = async (id: string, bundle: string) =>
          assertEquals((await b.run(["create", "-b", bundle, id], { quiet: true })).code, 0);
        // Created: killed and removed, as runc does, without -f.
        await create("d1", bundle);
        let rec = record("d1");
        const d1 = await b.run(["delete", "d1"], { nodeno: true });
        assertEquals(d1.code, 0, d1.stderr);
        gone("d1", rec.pid, rec.cgroupParents ?? []);
        // Running: the CLI's refusal without -f; with it (as engines pass it), native.
        assertEquals((await b.run(["run", "-d", "-b", bundle, "d2"])).code, 0);
        rec = record("d2");
        await handedOn(["delete", "d2"]);
        assertMatch((await b.run(["delete", "d2"])).stderr, /running/);
        const log = `${marks}/log.json`;
        const engine = ["--root", root, "--log", log, "--log-format", "json", "delete", "--force"];
        const d2 = await b.run([...engine, "d2"], { nodeno: true, ownRoot: true });
        assertEquals(d2.code, 0, d2.stderr);
        gone("d2", rec.pid, rec.cgroupParents ?? []);
        // Stopped (its program done): removed (rm is delete).
        assertEquals((await b.run(["run", "-d", "-b", quick, "d3"])).code, 0);
        await waitFor(async () => (await state("d3")).status === "stopped", 5000);
        rec = record("d3");
        assertEquals((await b.run(["rm", "d3"], { nodeno: true })).code, 0);
        gone("d3", rec.pid, rec.cgroupParents ?? []);
        // Poststop hooks, a rootfs bound on the host (no mount namespace): the CLI's.
        await create("d4", hooked);
        await handedOn(["delete", "-f", "d4"]);
        assertEquals((await b.run(["delete", "-f", "d4"])).code, 0);
        assertEquals(Deno.readTextFileSync(`${marks}/ran`), "ran\n");
        await create("d5", hostMounts);
        await handedOn(["delete", "-f", "d5"]);
        assertEquals((await b.run(["delete", "-f", "d5"])).code, 0);
        // A sub-cgroup left in the container's (exec --cgroup's kind): the init is killed, the
        // rest is the CLI's, which finishes from where the front end stopped.
        await create("d6", bundle);
        rec = record("d6");
        const pidsDir = rec.cgroupPaths.pids ?? Object.values(rec.cgroupPaths)[0];
        Deno.mkdirSync(`${pidsDir}/sub`);
        await handedOn(["delete", "-f", "d6"]);
        const d6 = await b.run(["delete", "-f", "d6"]);
        assertEquals(d6.code, 0, d6.stderr);
        gone("d6", rec.pid, []);
        // Extensions in the record's own "ext" (a network's, an image's), after hooks that hold an
        // "ext" member of their own (a hook's unknown keys are kept): the CLI's, which releases
        // what they hold (the first "ext" in the text used to be taken for the record's).
        await create("d7", bundle);
        const r7 = record("d7");
        const { ext: _ext, hooks: _hooks, ...rest } = r7;
        Deno.writeTextFileSync(
          `${root}/d7/state.json`,
          JSON.stringify(
            { ...rest, hooks: { poststart: [{ path: "/bin/true", ext: {} }] }, ext: { x: {} } },
            null,
            2,
          ),
        );
        await handedOn(["delete", "-f", "d7"]);
        assertEquals((await b.run(["delete", "-f", "d7"])).code, 0);
        // Unknown: the CLI's (-f of a gone container succeeds, runc's contract).
        await handedOn(["delete", "-f", "nosuch"]);
        assertEquals((await b.run(["delete", "-f", "nosuch"])).code, 0);
      });
    } finally {
      await removeAll(bundle, quick, hooked, hostMounts, marks);
    }
  },
);

function readStatus(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return "";
  }
}

/**
 * The JSON text of a process `json` with "user" written twice (JSON.parse keeps the last, so the
 * CLI runs the same process): the front end's whole reading (process_delta.c process_records)
 * declines such a file, and only a verdict an exec kept serves it natively.
 */
function declined(json: string): string {
  assert(json.includes('"user"'), "the process names its user");
  return json.replace("{", '{"user":{"uid":0,"gid":0},');
}

rootTest(
  "exec front end: --process as engines send it, once an exec of the same file kept its plan " +
    "(a file the front end does not read whole)",
  async (root) => {
    const bundle = await makeBundle("sleep 1000", (s) => {
      const p = s.process!;
      p.user = { uid: 1000, gid: 1000, additionalGids: [10], umask: 0o027 };
      p.env = ["A=1", "PATH=/bin:/usr/bin"];
      p.rlimits = [{ type: "RLIMIT_NOFILE", soft: 100, hard: 200 }];
      s.linux!.seccomp = {
        defaultAction: "SCMP_ACT_ALLOW",
        architectures: ["SCMP_ARCH_X86_64"],
        syscalls: [{ names: ["mkdirat", "mkdir"], action: "SCMP_ACT_ERRNO" }],
      };
    });
    const plain = await makeBundle("sleep 1000");
    const dir = await Deno.makeTempDir({ prefix: "capsule-front-process-" });
    try {
      await withBuild(root, async (b) => {
        const handedOn = b.handedOn;
        const x1 = await b.run(["run", "-d", "-b", bundle, "x1"]);
        assertEquals(x1.code, 0, x1.stderr);
        const spec = JSON.parse(Deno.readTextFileSync(`${bundle}/config.json`)) as Spec;
        // As containerd writes it: the container's process, other args, its own environment, no
        // capabilities (then the container's), user 0.
        // Those that are `kept` only (declined): what the front end does not read whole.
        const write = (name: string, change: Record<string, unknown>, kept = false) => {
          const file = `${dir}/${name}.json`;
          const { capabilities: _, ...proc } = spec.process!;
          const text = JSON.stringify({ ...proc, ...change });
          Deno.writeTextFileSync(file, kept ? declined(text) : text);
          return file;
        };
        const who = write("who", {
          args: ["sh", "-c", WHO],
          env: ["FROM=process", "PATH=/bin"],
          user: { uid: 0, gid: 0 },
          cwd: "/dev",
        }, true);
        const kept = `${root}/x1/exec.processes`;
        // Not seen yet: the CLI's, which keeps its plan.
        await handedOn(["exec", "--process", who, "x1"]);
        const deno = await b.run(["--debug", "exec", "--process", who, "x1"]);
        assertEquals(deno.code, 0, deno.stderr);
        assertEquals(Deno.statSync(kept).mode! & 0o777, 0o600);
        const native = await b.run(["exec", "--process", who, "x1"], { nodeno: true });
        assertEquals(native.code, 0, native.stderr);
        const norm = (s: string) => s.split("\n").filter((l) => !l.startsWith("pid=")).join("\n");
        assertEquals(norm(native.stdout), norm(deno.stdout));
        assertMatch(native.stdout, /FROM=process/);
        assertMatch(native.stdout, /cwd=\/dev /);
        // The same bytes under another name (engines write a new file per exec): taken; with
        // a final newline too; with one member more: not.
        Deno.copyFileSync(who, `${dir}/copy.json`);
        const copy = await b.run(["exec", "-p", `${dir}/copy.json`, "x1"], { nodeno: true });
        assertEquals(norm(copy.stdout), norm(deno.stdout));
        Deno.writeTextFileSync(`${dir}/copy.json`, "\n", { append: true });
        const nl = await b.run(["exec", "-p", `${dir}/copy.json`, "x1"], { nodeno: true });
        assertEquals(norm(nl.stdout), norm(deno.stdout));
        const more = Deno.readTextFileSync(who).replace("{", '{"x":1,');
        Deno.writeTextFileSync(`${dir}/copy.json`, more);
        await handedOn(["exec", "-p", `${dir}/copy.json`, "x1"]);
        // The container's seccomp profile holds.
        const mk = write("mk", { args: ["mkdir", "/dev/shm/d"] });
        assert((await b.run(["exec", "--process", mk, "x1"])).code !== 0, "mkdir (CLI)");
        assert(
          (await b.run(["exec", "--process", mk, "x1"], { nodeno: true })).code !== 0,
          "mkdir passed the container's seccomp profile",
        );

        // As containerd calls it: --log in json, --detach, --pid-file; nothing logged.
        const log = `${dir}/log.json`;
        const engine = ["--root", root, "--log", log, "--log-format", "json"];
        const sleep = write("sleep", { args: ["sleep", "1001"] });
        const initNs = Deno.readLinkSync(
          `/proc/${JSON.parse((await b.run(["state", "x1"])).stdout).pid}/ns/pid`,
        );
        for (const nodeno of [false, true]) {
          const pidFile = `${dir}/pid-${nodeno}`;
          const r = await b.run(
            [...engine, "exec", "--process", sleep, "--detach", "--pid-file", pidFile, "x1"],
            // Not piped: the program keeps the caller's stdio, as engines want it.
            { nodeno, ownRoot: true, quiet: true },
          );
          assertEquals(r.code, 0);
          const pid = Number(Deno.readTextFileSync(pidFile));
          assertEquals(Deno.readTextFileSync(`/proc/${pid}/cmdline`), "sleep\u00001001\u0000");
          assertEquals(Deno.readLinkSync(`/proc/${pid}/ns/pid`), initNs);
          assertEquals(Deno.statSync(pidFile).mode! & 0o777, 0o644);
          Deno.kill(pid, "SIGKILL");
        }
        assert(!exists(log), "an exec that succeeded wrote the log");

        // What it leaves to the CLI: -d without --pid-file (an exec id and its log), a command
        // beside --process, --no-new-privs (another process than the file's), -t, a pid file in
        // a missing directory, a missing file.
        await handedOn(["exec", "-d", "--process", sleep, "x1"]);
        await handedOn(["exec", "--process", who, "x1", "true"]);
        await handedOn(["exec", "--no-new-privs", "--process", who, "x1"]);
        await handedOn(["exec", "-t", "--process", who, "x1"]);
        await handedOn(["exec", "--pid-file", `${dir}/no/pid`, "--process", who, "x1"]);
        await handedOn(["exec", "--process", `${dir}/none.json`, "x1"]);
        // --no-new-privs changed the process: nothing is kept for the file's bytes.
        const nnp = write("nnp", { args: ["true"], oomScoreAdj: 3 }, true); // unlike any kept one
        assertEquals((await b.run(["exec", "--no-new-privs", "--process", nnp, "x1"])).code, 0);
        await handedOn(["exec", "--process", nnp, "x1"]);

        // exec.processes that others may write, from another build, or cut short: not taken.
        const bytes = Deno.readFileSync(kept);
        Deno.chmodSync(kept, 0o620);
        await handedOn(["exec", "--process", who, "x1"]);
        Deno.chmodSync(kept, 0o600);
        const helper = `${b.dist}/capsule-nsexec`;
        const st = Deno.statSync(helper);
        Deno.writeFileSync(kept, bytes); // written by this build: taken
        assertEquals((await b.run(["exec", "--process", who, "x1"], { nodeno: true })).code, 0);
        Deno.utimeSync(helper, new Date(), new Date(st.mtime!.getTime() - 5000));
        // exec.plan was written by the touched build too: rewrite it for this one, so that only
        // exec.processes is another build's.
        const plan = Deno.readFileSync(`${root}/x1/exec.plan`);
        const oldStamp = `${st.dev}:${st.ino}:${st.size}:${st.mtime!.getTime()}`;
        const now = Deno.statSync(helper);
        const newStamp = `${now.dev}:${now.ino}:${now.size}:${now.mtime!.getTime()}`;
        assertEquals(oldStamp.length, newStamp.length);
        Deno.writeFileSync(`${root}/x1/exec.plan`, replaceBytes(plan, oldStamp, newStamp));
        assertEquals((await b.run(["exec", "x1", "true"], { nodeno: true })).code, 0);
        await handedOn(["exec", "--process", who, "x1"]);
        Deno.utimeSync(helper, st.atime!, st.mtime!);
        Deno.writeFileSync(`${root}/x1/exec.plan`, plan);
        Deno.writeFileSync(kept, bytes.subarray(0, bytes.length - 2));
        await handedOn(["exec", "--process", who, "x1"]);
        Deno.writeFileSync(kept, bytes);
        assertEquals((await b.run(["exec", "--process", who, "x1"], { nodeno: true })).code, 0);

        // A failure after the hand-over (its working directory gone since it was kept): said as
        // the CLI says it, status 255, and in --log as a json error line. (In a container
        // without x1's seccomp profile, which refuses mkdir.)
        assertEquals((await b.run(["run", "-d", "-b", plain, "x2"])).code, 0);
        assertEquals((await b.run(["exec", "x2", "mkdir", "-p", "/dev/shm/gone"])).code, 0);
        const gone = write("gone", { args: ["true"], cwd: "/dev/shm/gone" });
        assertEquals((await b.run(["exec", "--process", gone, "x2"])).code, 0);
        assertEquals((await b.run(["exec", "x2", "rmdir", "/dev/shm/gone"])).code, 0);
        const cli = await b.run(["--debug", "exec", "--process", gone, "x2"]);
        const failed = await b.run([...engine, "exec", "--process", gone, "x2"], {
          nodeno: true,
          ownRoot: true,
        });
        assertEquals([cli.code, failed.code], [255, 255]);
        const said = failed.stderr.trim();
        assertMatch(said, /^capsule: Cannot exec in container "x2": .*\/dev\/shm\/gone/);
        assert(cli.stderr.includes(said), `the CLI said: ${cli.stderr}`);
        const line = JSON.parse(Deno.readTextFileSync(log).trim());
        assertEquals([line.level, `capsule: ${line.msg}`], ["error", said]);
        // The CLI's Logger's line: JSON.stringify's escapes (a tab as \t), in either format.
        for (const format of ["json", "text"]) {
          const [mine, theirs] = [`${dir}/front.log`, `${dir}/cli.log`];
          const tab = ["--log-format", format, "exec", "x2", "no\tsuch"];
          assertEquals((await b.run(["--log", mine, ...tab], { nodeno: true })).code, 255);
          assertEquals((await b.run(["--debug", "--log", theirs, ...tab])).code, 255);
          const error = (f: string) =>
            Deno.readTextFileSync(f).split("\n").filter((l) => /level.{0,3}error/.test(l))
              .map((l) => l.replace(/"time":"[^"]*"|time="[^"]*"/, "TIME"));
          assertEquals(error(mine), error(theirs));
          assertMatch(error(mine)[0], /no\\tsuch/);
        }

        // A pid file that cannot be written (a directory there): the CLI's words, status 255,
        // no stack trace; the same from the front end. create's: status 1, no container left.
        const t = write("t", { args: ["true"] });
        assertEquals((await b.run(["exec", "--process", t, "x2"])).code, 0);
        const piddir = `${dir}/piddir`;
        Deno.mkdirSync(piddir);
        const pidArgs = ["exec", "--pid-file", piddir, "--process", t, "x2"];
        const tmpName = (s: string) => s.replace(/\.[0-9a-f]{8}\.tmp/g, ".X.tmp");
        const cliPid = await b.run(pidArgs);
        assertEquals(cliPid.code, 255);
        assertMatch(
          cliPid.stderr,
          /^capsule: Cannot write the pid file ".*piddir": Is a directory/,
        );
        assert(!/\n\s+at /.test(cliPid.stderr), cliPid.stderr);
        const nativePid = await b.run(pidArgs, { nodeno: true });
        assertEquals([nativePid.code, tmpName(nativePid.stderr)], [255, tmpName(cliPid.stderr)]);
        const made = await b.run(["create", "--pid-file", piddir, "-b", plain, "x3"], {
          quiet: true,
        });
        assertEquals(made.code, 1);
        assertEquals((await b.run(["state", "x3"])).code, 1, "create left x3");

        // -h or --help among the words before the command's own: the CLI's (it prints help).
        await handedOn(["exec", "--process", t, "--pid-file", "-h", "x2"]);
        await handedOn(["--log", "--help", "exec", "x2", "true"]);
        assertEquals(
          (await b.run(["exec", "x2", "echo", "--help"], { nodeno: true })).stdout,
          "--help\n",
        );
        // A word that is not UTF-8: the CLI's, which Deno hands it decoded (U+FFFD).
        const raw = await new Deno.Command("sh", {
          args: [
            "-c",
            `exec "$0" --root "$1" exec x2 echo "$(printf 'a\\377b')"`,
            `${b.dist}/capsule-nodeno`,
            root,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assertEquals(raw.code, 127, new TextDecoder().decode(raw.stderr));

        // exec.processes of the container that had x1's id before (deleted, made again from
        // another bundle), or copied into another container's directory: not taken.
        const keptBytes = Deno.readFileSync(kept);
        Deno.writeFileSync(`${root}/x2/exec.processes`, keptBytes, { mode: 0o600 });
        await handedOn(["exec", "--process", who, "x2"]);
        assertEquals((await b.run(["delete", "-f", "x1"])).code, 0);
        assertEquals((await b.run(["run", "-d", "-b", plain, "x1"])).code, 0);
        Deno.writeFileSync(kept, keptBytes, { mode: 0o600 });
        await handedOn(["exec", "--process", who, "x1"]);
        for (const id of ["x1", "x2"]) assertEquals((await b.run(["delete", "-f", id])).code, 0);
      });
    } finally {
      await removeAll(bundle, plain, dir);
    }
  },
);

/** `bytes` with the first occurrence of the ASCII text `from` replaced by `to`, of its length. */
function replaceBytes(bytes: Uint8Array, from: string, to: string): Uint8Array {
  const f = new TextEncoder().encode(from);
  for (let i = 0; i + f.length <= bytes.length; i++) {
    if (f.every((c, k) => bytes[i + k] === c)) {
      const out = bytes.slice();
      out.set(new TextEncoder().encode(to), i);
      return out;
    }
  }
  throw new Error(`"${from}" not found`);
}

rootTest(
  "exec front end: a --process file that differs from a kept one only in args, env and cwd " +
    "is taken, as the CLI would run it; any other difference or a value it refuses is not " +
    "(files the front end does not read whole)",
  async (root) => {
    const bundle = await makeBundle("sleep 1000");
    const dir = await Deno.makeTempDir({ prefix: "capsule-front-delta-" });
    try {
      await withBuild(root, async (b) => {
        assertEquals((await b.run(["run", "-d", "-b", bundle, "d1"])).code, 0);
        const spec = JSON.parse(Deno.readTextFileSync(`${bundle}/config.json`)) as Spec;
        const { capabilities: _, ...proc } = spec.process!;
        // The file's text with the three values written as given (JSON text, verbatim).
        const SHOW = `printf '<%s>' "$@"; echo; env | sort; pwd`;
        const text = (args: string, env: string, cwd: string) =>
          declined(JSON.stringify({ ...proc, args: "@A@", env: "@E@", cwd: "@C@" }, null, 2))
            .replace('"@A@"', args).replace('"@E@"', env).replace('"@C@"', cwd);
        const args = (...more: string[]) =>
          `["sh", "-c", ${JSON.stringify(SHOW)}, "s"${more.map((m) => `, ${m}`).join("")}]`;
        let n = 0;
        const file = (t: string | Uint8Array) => {
          const f = `${dir}/p${n++}.json`;
          if (typeof t === "string") Deno.writeTextFileSync(f, t);
          else Deno.writeFileSync(f, t);
          return f;
        };
        const base = file(text(args('"base"'), '["PATH=/bin", "A=1"]', '"/"'));
        const first = await b.run(["exec", "--process", base, "d1"]);
        assertEquals(first.code, 0, first.stderr);
        assertMatch(first.stdout, /^<base>\nA=1\n(.*\n)*PATH=\/bin\n(.*\n)*\/\n$/);
        // Taken: the front end's exec prints what the CLI's does for the same file.
        const taken: [string, string, string][] = [
          [args('"a b"', '""', '"x=y"'), '["PATH=/bin", "B=c=d", "N=line\\nnext"]', '"/tmp"'],
          [args('"\\u00e9\\ud83d\\ude00"', '"é"', '"q\\"\\\\\\/\\t"'), "[]", '"\\/dev"'],
          [args(), '[ "PATH=/bin" ,\t"Z=" ]', '"/"'],
          ['[\r\n"echo", "one"]', '["PATH=/bin"]', '"/"'],
        ];
        for (const [a, e, c] of taken) {
          const f = file(text(a, e, c));
          const native = await b.run(["exec", "--process", f, "d1"], { nodeno: true });
          assertEquals(native.code, 0, `${a} ${e} ${c}: ${native.stderr}`);
          const deno = await b.run(["--debug", "exec", "--process", f, "d1"]);
          assertEquals([native.stdout, native.stderr], [deno.stdout, ""], `${a} ${e} ${c}`);
        }
        // Not taken: the CLI says what is wrong with it, or runs it (its own reading).
        const refused: (string | Uint8Array)[] = [
          text("[]", '["PATH=/bin"]', '"/"'), // args: at least one
          text('"sh"', '["PATH=/bin"]', '"/"'),
          text("[1]", '["PATH=/bin"]', '"/"'),
          text(args("null"), '["PATH=/bin"]', '"/"'),
          text(args(), '["=x"]', '"/"'), // env: KEY=...
          text(args(), '["NOEQ"]', '"/"'),
          text(args(), "null", '"/"'),
          text(args(), '["PATH=/bin"]', '"tmp"'), // cwd: absolute
          text(args(), '["PATH=/bin"]', '""'),
          text(args(), '["PATH=/bin"]', "5"),
          text(args('"a\\u0000b"'), '["PATH=/bin"]', '"/"'), // a NUL
          text(args('"\\ud800"'), '["PATH=/bin"]', '"/"'), // a lone surrogate
          text(args('"\\udc00x"'), '["PATH=/bin"]', '"/"'),
          text(args('"tab\there"'), '["PATH=/bin"]', '"/"'), // a raw control character
          text(args('"\\x"'), '["PATH=/bin"]', '"/"'), // not an escape
          text(args('"a"'), '["PATH=/bin"]', '"/"').replace('"terminal"', '"terminal" '),
          text(args('"a"'), '["PATH=/bin"]', '"/"').replace('"uid": 0', '"uid": 1'),
          text(args('"a"'), '["PATH=/bin"]', '"/"').replace('"uid":0', '"uid":1'),
          text(args('"a"'), '["PATH=/bin"]', '"/"').replace("{", '{"args": ["x"],'), // twice
          text(args('"a"'), '["PATH=/bin"]', '"/"').replace('"args"', '"\\u0061rgs"'),
          text(args('"a"'), '["PATH=/bin"]', '"/"').replace("{", "{ "), // not only around it
          text(args('"a"'), '["PATH=/bin"]', '"/"').replace(/,\s*"env": \[[^\]]*\]/, ""),
        ];
        refused.push(text(args('"a"'), '["PATH=/bin"]', '"/"') + "\0"); // not whitespace
        const bad = new TextEncoder().encode(text(args('"@"'), '["PATH=/bin"]', '"/"'));
        bad[bad.indexOf(64)] = 0xff; // not UTF-8
        refused.push(bad);
        for (const t of refused) {
          const f = file(t);
          await b.handedOn(["exec", "--process", f, "d1"]);
        }
        assertEquals((await b.run(["delete", "-f", "d1"])).code, 0);
      });
    } finally {
      await removeAll(bundle, dir);
    }
  },
);

rootTest(
  "exec front end: config.json's own process, kept at create, serves an engine's first exec " +
    "of it with other args, env and cwd (a file the front end does not read whole)",
  async (root) => {
    // As containerd writes both files (Go's json.Marshal: compact, its own key order).
    const compact = async () => {
      const bundle = await makeBundle("sleep 1000");
      const spec = JSON.parse(Deno.readTextFileSync(`${bundle}/config.json`)) as Spec;
      const text = JSON.stringify(spec);
      const at = text.indexOf('"process":{') + '"process":'.length;
      Deno.writeTextFileSync(
        `${bundle}/config.json`,
        text.slice(0, at) + declined(text.slice(at)),
      );
      return { bundle, spec };
    };
    const plain = await compact();
    const dir = await Deno.makeTempDir({ prefix: "capsule-front-seed-" });
    try {
      await withBuild(root, async (b) => {
        const r = await b.run(["run", "-d", "-b", plain.bundle, "k1"]);
        assertEquals(r.code, 0, r.stderr);
        const file = `${dir}/p.json`;
        const process = {
          ...plain.spec.process,
          args: ["sh", "-c", 'echo "$0 $FROM $(pwd)"', "first"],
          env: ["FROM=engine", "PATH=/bin"],
          cwd: "/dev",
        };
        Deno.writeTextFileSync(file, declined(JSON.stringify(process)));
        // The first exec into the container: no exec --process ran before it.
        const native = await b.run(["exec", "--process", file, "k1"], { nodeno: true });
        assertEquals([native.code, native.stdout], [0, "first engine /dev\n"], native.stderr);
        const deno = await b.run(["--debug", "exec", "--process", file, "k1"]);
        assertEquals(deno.stdout, native.stdout);
        // Another user than config.json's: not its verdict, the CLI's.
        const other = { ...process, user: { uid: 1, gid: 1 } };
        Deno.writeTextFileSync(`${dir}/q.json`, declined(JSON.stringify(other)));
        await b.handedOn(["exec", "--process", `${dir}/q.json`, "k1"]);
        assertEquals((await b.run(["delete", "-f", "k1"])).code, 0);
      });
    } finally {
      await removeAll(plain.bundle, dir);
    }
  },
);

rootTest(
  "exec front end: a --process file like no kept one is read whole (user, umask, groups, " +
    "capabilities, rlimits, no_new_privs, oom_score_adj): the CLI's process; what it refuses is the CLI's",
  async (root) => {
    const bundle = await makeBundle("sleep 1000", (s) => {
      const p = s.process!;
      p.rlimits = [{ type: "RLIMIT_NOFILE", soft: 100, hard: 200 }];
      p.oomScoreAdj = 100;
      s.linux!.seccomp = {
        defaultAction: "SCMP_ACT_ALLOW",
        architectures: ["SCMP_ARCH_X86_64"],
        syscalls: [{ names: ["mkdirat", "mkdir"], action: "SCMP_ACT_ERRNO" }],
      };
    });
    const dir = await Deno.makeTempDir({ prefix: "capsule-front-whole-" });
    try {
      await withBuild(root, async (b) => {
        assertEquals((await b.run(["run", "-d", "-b", bundle, "w1"])).code, 0);
        const spec = JSON.parse(Deno.readTextFileSync(`${bundle}/config.json`)) as Spec;
        const kept = `${root}/w1/exec.processes`;
        let n = 0;
        const file = (change: Record<string, unknown>) => {
          const f = `${dir}/w${n++}.json`;
          const proc = { ...spec.process, args: ["sh", "-c", WHO], ...change };
          Deno.writeTextFileSync(f, JSON.stringify(proc));
          return f;
        };
        const norm = (s: string) => s.split("\n").filter((l) => !l.startsWith("pid=")).join("\n");
        const taken: Record<string, unknown>[] = [
          { user: { uid: 1000, gid: 1000, additionalGids: [10, 20], umask: 0o077 } },
          { user: { uid: 0, gid: 0, umask: 0o002 }, noNewPrivileges: false },
          {
            capabilities: {
              bounding: ["CAP_KILL", "CAP_CHOWN"],
              effective: ["cap_kill"],
              permitted: ["CAP_KILL"],
            },
          },
          { capabilities: undefined, rlimits: [] }, // the container's
          { rlimits: [{ type: "RLIMIT_NOFILE", soft: 50, hard: 60 }], oomScoreAdj: 7 },
          {
            env: undefined,
            cwd: "/tmp",
            apparmorProfile: "",
            consoleSize: { height: 2, width: 3 },
          },
        ];
        for (const change of taken) {
          const f = file(change);
          const native = await b.run(["exec", "--process", f, "w1"], { nodeno: true });
          assertEquals(native.code, 0, `${JSON.stringify(change)}: ${native.stderr}`);
          const deno = await b.run(["--debug", "exec", "--process", f, "w1"]);
          assertEquals(deno.code, 0, deno.stderr);
          assertEquals(norm(native.stdout), norm(deno.stdout), JSON.stringify(change));
          assertMatch(native.stdout, /Seccomp:\s+2/);
          // Read whole, never kept: the CLI's exec above kept it, the front end's keeps nothing.
          Deno.removeSync(kept);
        }
        // A file without oomScoreAdj: the container's, not the caller's (an engine's shim runs
        // near -1000), both ways.
        const oom = file({ args: ["cat", "/proc/self/oom_score_adj"] });
        // Native, then the CLI's (--debug: the front end hands it over).
        for (const [launcher, ...flags] of [["capsule-nodeno"], ["capsule", "--debug"]]) {
          const r = await new Deno.Command("sh", {
            args: [
              "-c",
              'echo 500 >/proc/self/oom_score_adj && exec "$@"',
              "sh",
              `${b.dist}/${launcher}`,
              "--root",
              root,
              ...flags,
              "exec",
              "--process",
              oom,
              "w1",
            ],
          }).output();
          const out = new TextDecoder().decode(r.stdout).trim();
          assertEquals([r.code, out], [0, "100"], new TextDecoder().decode(r.stderr));
        }
        // The container's seccomp profile holds for a file read whole.
        const mk = file({ args: ["mkdir", "/dev/shm/d"], user: { uid: 0, gid: 0, umask: 0 } });
        assert(
          (await b.run(["exec", "--process", mk, "w1"], { nodeno: true })).code !== 0,
          "mkdir passed the container's seccomp profile",
        );
        // What the CLI refuses, or reads another way: left to it.
        const refused: Record<string, unknown>[] = [
          { user: { uid: 2147483648, gid: 0 } },
          { user: { uid: 0 } },
          { capabilities: { bounding: ["CAP_NOPE"] } },
          { rlimits: [{ type: "RLIMIT_NOFILE", soft: 61, hard: 60 }] },
          { rlimits: [{ type: "RLIMIT_NOPE", soft: 1, hard: 2 }] },
          { oomScoreAdj: 1001 },
          { noNewPrivileges: "yes" },
          { terminal: true },
          { cwd: "tmp" },
          { selinuxLabel: { user: "system_u" } },
          { apparmorProfile: "docker-default" }, // capsule applies none: refused, not ignored
        ];
        for (const change of refused) await b.handedOn(["exec", "--process", file(change), "w1"]);
        const aa = await b.run(["exec", "--process", file(refused.at(-1)!), "w1"]);
        assertEquals(aa.code, 255, aa.stderr); // exec's failures, as runc's
        assertMatch(aa.stderr, /process\.apparmorProfile: capsule applies no AppArmor profile/);
        assertEquals((await b.run(["delete", "-f", "w1"])).code, 0);
      });
    } finally {
      await removeAll(bundle, dir);
    }
  },
);
