// SPIKE (issue 14's design step): NOT USED BY THE PRODUCT, never imported by it. `capsule exec`
// with the second Deno process replaced by a small static C helper (bench/spike/exec_helper.c):
// this Deno computes what runtime/exec.ts computes today (the container's record and state, the
// process from config.json with the command line over it, namespaces, cgroup, the compiled
// seccomp filter), writes it as a flat binary plan, and spawns the helper in the container's PID
// namespace from a sealed read-only view of its binary (runtime/exe_seal.ts). The helper joins
// everything, drops privileges, loads seccomp last and execve's the program.
//
//   deno run -A bench/spike/exec_native.ts [--helper PATH] [--seal overlay|none] [--pid early] \
//     --root DIR exec ID CMD [ARG...]
//
// Handles only: a foreground exec of a command line (no -t, -d, --process, --pid-file, --cgroup,
// -u, -e, --cwd, --preserve-fds), into a container without a user namespace. See
// docs/DESIGN.md "A native helper on the start path (spike, not built)".
import * as libc from "../../ffi/libc.ts";
import { createContext } from "../../runtime/context.ts";
import { CLONE } from "../../runtime/consts.ts";
import { CapsuleError, execFailureStatus } from "../../runtime/errors.ts";
import { sealedExe } from "../../runtime/exe_seal.ts";
import { buildProcessPlan, type ProcessPlan } from "../../runtime/plan.ts";
import { status } from "../../runtime/query.ts";
import { compileSeccomp, type SeccompFilter, type SeccompProfile } from "../../runtime/seccomp.ts";
import { exitCode, forwardSignals } from "../../runtime/spawn.ts";
import type { Process, Spec } from "../../runtime/spec.ts";
import { initAlive } from "../../runtime/state.ts";
import { PlanWriter } from "./plan_writer.ts";

const mask = (caps: number[]) => caps.reduce((m, c) => m | (1n << BigInt(c)), 0n);

function encodePlan(
  pid: number,
  namespaces: string[],
  cgroupProcs: string[],
  p: ProcessPlan,
  seccomp: SeccompFilter | undefined,
): Uint8Array<ArrayBuffer> {
  const w = new PlanWriter();
  w.num("p", pid);
  for (const ns of namespaces) w.str("n", ns);
  for (const c of cgroupProcs) w.str("c", c);
  w.num("u", p.uid);
  w.num("g", p.gid);
  for (const g of p.additionalGids) w.num("G", g);
  w.num("m", p.umask);
  w.num("N", p.noNewPrivileges ? 1 : 0);
  for (const r of p.rlimits) w.num("l", r.resource, BigInt(r.soft), BigInt(r.hard));
  if (p.caps) {
    w.num("B", mask(p.caps.bounding));
    w.num("E", mask(p.caps.effective));
    w.num("P", mask(p.caps.permitted));
    w.num("I", mask(p.caps.inheritable));
    w.num("A", mask(p.caps.ambient));
  }
  if (seccomp) {
    w.bytes("S", Uint8Array.from(atob(seccomp.program), (c) => c.charCodeAt(0)));
    w.num("F", seccomp.flags);
  }
  w.str("d", p.cwd);
  for (const a of p.args) w.str("a", a);
  for (const e of p.env) w.str("e", e);
  return w.done();
}

/** SPIKE_DEBUG=1: milliseconds since Deno's runtime began, per step, on stderr. */
const mark = Deno.env.get("SPIKE_DEBUG")
  ? (what: string) => console.error(`spike: ${what} at ${performance.now().toFixed(1)} ms`)
  : () => {};

/**
 * The first cgroup migration after a quiet while waits for an RCU grace period (5-18 ms here:
 * cgroup_threadgroup_rwsem, one for all hierarchies). Moving this process to the cgroup it is
 * already in takes that lock too: done on a pool thread at once, the wait overlaps this
 * process's planning, and the helper's own cgroup.procs writes find the lock warm. Best effort.
 */
function warmCgroupLock(): void {
  try {
    const line = Deno.readTextFileSync("/proc/self/cgroup").split("\n")
      .find((l) => /^\d+:pids:/.test(l));
    if (!line) return;
    const dir = `/sys/fs/cgroup/pids${line.slice(line.indexOf(":/") + 1)}`;
    Deno.writeTextFile(`${dir}/cgroup.procs`, String(Deno.pid)).catch(() => {});
  } catch { /* no v1 pids hierarchy: nothing to warm */ }
}

async function main(args: string[]): Promise<number> {
  mark("main began");
  // Beside the bundle (bench/spike/dist/exec_native.js), or in dist/ when run from source.
  const fromSource = import.meta.url.endsWith(".ts");
  let helper = new URL(`./${fromSource ? "dist/" : ""}capsule-exec-helper`, import.meta.url)
    .pathname;
  let seal = "overlay";
  // Default: the helper joins the PID namespace for its children and forks only once it holds
  // the program's ids and caps (DESIGN.md). --pid early: spawned into it (spawn.ts's way), to
  // measure what the late fork costs; a container granted CAP_SYS_PTRACE can then open the
  // helper's /proc/<pid>/mem while it is host root (seal_check.sh).
  let pidEarly = false;
  let root: string | undefined;
  while (args[0]?.startsWith("--")) {
    const [flag, value] = args.splice(0, 2);
    if (flag === "--helper") helper = value;
    else if (flag === "--seal") seal = value;
    else if (flag === "--pid") pidEarly = value === "early";
    else if (flag === "--root") root = value;
    else throw new CapsuleError(`exec_native: unknown flag ${flag}`);
  }
  if (args[0] !== "exec" || args.length < 3) {
    throw new CapsuleError("usage: exec_native.ts [--root DIR] exec ID CMD [ARG...]");
  }
  const [, id, ...cmd] = args;
  if (!Deno.env.get("SPIKE_NO_WARM")) warmCgroupLock();
  const ctx = createContext({ root });
  const rec = ctx.store.load(id);
  const st = status(ctx, rec);
  mark("state loaded, status read");
  if (st !== "created" && st !== "running") {
    throw new CapsuleError(`Cannot exec in container "${id}": it is ${st}`);
  }
  // runtime/exec.ts execBase: the recorded process and filter, else the bundle's config.json.
  let base: Process | undefined, seccomp: SeccompFilter | undefined;
  if (rec.exec) {
    base = rec.exec.process;
    seccomp = rec.exec.seccomp;
  } else {
    const config = JSON.parse(Deno.readTextFileSync(`${rec.bundle}/config.json`)) as Spec;
    base = config.process;
    const profile = config.linux?.seccomp as SeccompProfile | undefined;
    seccomp = profile ? compileSeccomp(profile) : undefined;
  }
  const proc: Process = {
    ...base,
    terminal: false,
    args: cmd,
    env: base?.env ?? [],
    cwd: base?.cwd ?? "/",
    user: base?.user ?? { uid: 0, gid: 0 },
  };
  const links = new Map<string, string>();
  for (const ns of ["ipc", "uts", "net", "cgroup", "mnt", "user", "pid"]) {
    links.set(ns, Deno.readLinkSync(`/proc/${rec.pid}/ns/${ns}`));
  }
  if (!initAlive(rec)) throw new CapsuleError(`Cannot exec in container "${id}": its init exited`);
  const same = (ns: string) => links.get(ns) === Deno.readLinkSync(`/proc/self/ns/${ns}`);
  // The user namespace would go first; the helper handles it but this spike never tested it.
  if (!same("user")) throw new CapsuleError("exec_native: user namespaces are not in the spike");
  mark("namespaces compared");
  const namespaces = ["ipc", "uts", "net", "cgroup", "mnt"].filter((ns) => !same(ns));
  if (!pidEarly && !same("pid")) namespaces.unshift("pid");
  const cgroupProcs = [...new Set(Object.values(rec.cgroupPaths ?? {}))].map((d) =>
    `${d}/cgroup.procs`
  );
  const plan = encodePlan(rec.pid, namespaces, cgroupProcs, buildProcessPlan(proc), seccomp);
  mark(`plan encoded (${plan.length} bytes)`);

  // The plan goes into the socket before the spawn (a socket buffer holds ~200 KB); the helper's
  // end is inherited at its number (not close-on-exec), ours is close-on-exec.
  const [parentEnd, childEnd] = libc.socketpair();
  libc.setCloexec(parentEnd, true);
  libc.writeAll(parentEnd, plan);
  mark("socketpair made, plan written");
  // --seal none: only to measure what the seal costs; the helper's binary is then reachable
  // through /proc/<pid>/exe while it runs (see DESIGN.md for why that still needs the seal).
  const exe = seal === "none" ? { path: helper, release: () => {} } : sealedExe(helper);
  mark(`helper sealed (${seal})`);
  let child: Deno.ChildProcess;
  const dumpable = libc.prctl(3 /* PR_GET_DUMPABLE */);
  libc.prctl(4, /* PR_SET_DUMPABLE */ 0n);
  const saved = libc.open("/proc/self/ns/pid", libc.O.RDONLY | libc.O.CLOEXEC);
  try {
    const command = new Deno.Command(exe.path, {
      args: [String(childEnd)],
      env: {},
      clearEnv: true,
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    });
    if (same("pid") || !pidEarly) {
      child = command.spawn();
    } else {
      const target = libc.open(`/proc/${rec.pid}/ns/pid`, libc.O.RDONLY | libc.O.CLOEXEC);
      try {
        libc.setns(target, CLONE.NEWPID);
        child = command.spawn();
      } finally {
        libc.setns(saved, CLONE.NEWPID);
        libc.close(target);
      }
    }
  } finally {
    libc.close(saved);
    libc.prctl(4, BigInt(dumpable));
    libc.close(childEnd);
    exe.release();
  }
  mark("helper spawned");
  // EOF: the helper exec'd the program (its end was close-on-exec); text: its error.
  const buf = new Uint8Array(4096);
  let msg = "";
  for (;;) {
    const n = libc.read(parentEnd, buf);
    if (n <= 0) break;
    msg += new TextDecoder().decode(buf.subarray(0, n));
  }
  libc.close(parentEnd);
  mark("helper exec'd the program (EOF)");
  if (msg) {
    await child.status;
    const text = `Cannot exec in container "${id}": ${msg}`;
    console.error(`capsule: ${text}`);
    return execFailureStatus(text.replace(/^Cannot exec/, "Cannot create")) ?? 255;
  }
  const stop = forwardSignals(child);
  try {
    const code = exitCode(await child.status);
    mark("program exited");
    return code;
  } finally {
    stop();
  }
}

try {
  Deno.exit(await main([...Deno.args]));
} catch (e) {
  console.error(`capsule: ${e instanceof Error ? e.message : e}`);
  Deno.exit(255);
}
