// SPIKE (issue 14's design step): NOT USED BY THE PRODUCT. A rough `capsule run` with no second
// Deno: this Deno validates config.json and builds the init plan as runtime/create.ts does
// (checkConfig, buildInitPlan, the cgroups made by the driver), then spawns the static C helper
// (exec_helper.c, run mode) right after unshare(CLONE_NEWPID) on its main thread, so the helper
// is PID 1 of the new PID namespace: it joins the cgroups, unshares the other namespaces, mounts
// (proc included, with the right pids: it is in the namespace), makes the devices, pivot_root,
// masked and read-only paths, hostname, then the same privileges, seccomp and execve as exec.
// What it leaves out (so the number is a lower bound of a real one): no state directory (so no
// create/start/state/kill: there is no exec.fifo barrier), no hooks, no sysctl, no terminal, no
// user namespace, no linux.resources, no network or image layers, no --debug, no signals passed
// on. See docs/DESIGN.md "A native helper on the start path (spike, not built)".
//
//   deno run -A bench/spike/run_native.ts [--helper PATH] run -b BUNDLE ID
import * as libc from "../../ffi/libc.ts";
import { detectCgroups } from "../../runtime/cgroups/mod.ts";
import { CLONE, NAMESPACES } from "../../runtime/consts.ts";
import { CapsuleError, execFailureStatus } from "../../runtime/errors.ts";
import { sealedExe } from "../../runtime/exe_seal.ts";
import { buildInitPlan, type InitPlan } from "../../runtime/plan.ts";
import { exitCode } from "../../runtime/spawn.ts";
import { checkConfig } from "../../runtime/validate.ts";
import { PlanWriter } from "./plan_writer.ts";

const mark = Deno.env.get("SPIKE_DEBUG")
  ? (what: string) => console.error(`spike: ${what} at ${performance.now().toFixed(1)} ms`)
  : () => {};
const mask = (caps: number[]) => caps.reduce((m, c) => m | (1n << BigInt(c)), 0n);

function encode(
  plan: InitPlan,
  cgroupProcs: string[],
  fifo: string | undefined,
): Uint8Array<ArrayBuffer> {
  const w = new PlanWriter();
  const p = plan.process;
  w.num("M", 1);
  if (fifo) w.str("X", fifo);
  let flags = 0;
  for (const n of plan.namespaces) {
    if (n.path || n.type === "user") {
      throw new CapsuleError(`run_native: namespace ${n.type} with a path or a user namespace`);
    }
    if (n.type !== "pid") flags |= NAMESPACES[n.type as keyof typeof NAMESPACES].flag;
  }
  if (plan.noPivot || plan.hostMountNs || Object.keys(plan.sysctl).length || plan.hooks) {
    throw new CapsuleError("run_native: --no-pivot, no mount namespace, sysctl, hooks: not here");
  }
  w.num("U", flags);
  w.num("Q", plan.rootPropagation);
  w.num("q", plan.readonly ? 1 : 0);
  w.num("V", plan.setupDev ? 1 : 0);
  w.str("R", plan.rootfs);
  if (plan.hostname) w.str("h", plan.hostname);
  const enc = new TextEncoder();
  for (const m of plan.mounts) {
    if (m.propagation.length > 4) throw new CapsuleError("run_native: > 4 propagation changes");
    const head = new Uint8Array(64);
    const dv = new DataView(head.buffer);
    [m.flags, m.recursiveFlags ?? 0, m.bind ? 1 : 0, m.propagation.length, ...m.propagation]
      .forEach((v, i) => dv.setBigUint64(8 * i, BigInt(v), true));
    const tail = enc.encode(`${m.destination}\0${m.source}\0${m.type}\0${m.data}\0`);
    const rec = new Uint8Array(64 + tail.length);
    rec.set(head);
    rec.set(tail, 64);
    w.bytes("o", rec);
  }
  for (const d of plan.devices) {
    const rec = new Uint8Array(48 + enc.encode(d.path).length);
    const dv = new DataView(rec.buffer);
    [d.type.charCodeAt(0), d.major, d.minor, d.mode, d.uid, d.gid]
      .forEach((v, i) => dv.setBigUint64(8 * i, BigInt(v), true));
    rec.set(enc.encode(d.path), 48);
    w.bytes("D", rec);
  }
  for (const m of plan.maskedPaths) w.str("k", m);
  for (const r of plan.readonlyPaths) w.str("r", r);
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
  if (p.seccomp) {
    w.bytes("S", Uint8Array.from(atob(p.seccomp.program), (c) => c.charCodeAt(0)));
    w.num("F", p.seccomp.flags);
  }
  w.str("d", p.cwd);
  for (const a of p.args) w.str("a", a);
  for (const e of p.env) w.str("e", e);
  return w.done();
}

/** As exec_native.ts: start the cgroup lock's RCU grace period on a pool thread now. */
function warmCgroupLock(): void {
  try {
    const line = Deno.readTextFileSync("/proc/self/cgroup").split("\n")
      .find((l) => /^\d+:pids:/.test(l));
    if (!line) return;
    const dir = `/sys/fs/cgroup/pids${line.slice(line.indexOf(":/") + 1)}`;
    Deno.writeTextFile(`${dir}/cgroup.procs`, String(Deno.pid)).catch(() => {});
  } catch { /* nothing to warm */ }
}

async function main(args: string[]): Promise<number> {
  mark("main began");
  const fromSource = import.meta.url.endsWith(".ts");
  let helper = new URL(`${fromSource ? "./dist/" : "../"}capsule-exec-helper`, import.meta.url)
    .pathname;
  if (args[0] === "--helper") helper = args.splice(0, 2)[1];
  if (args[0] === "start" && args.length === 2) return start(args[1]);
  if (args[0] === "delete" && args.length === 2) return await remove(args[1]);
  const creating = args[0] === "create";
  if ((args[0] !== "run" && !creating) || args[1] !== "-b" || args.length !== 4) {
    throw new CapsuleError(
      "usage: run_native.ts [--helper PATH] run|create -b BUNDLE ID | start ID | delete ID",
    );
  }
  const bundle = Deno.realPathSync(args[2]), id = args[3];
  const dir = stateDir(id);
  if (creating) {
    Deno.mkdirSync(dir, { recursive: true });
    libc.mkfifo(`${dir}/exec.fifo`, 0o622);
  }
  const raw = JSON.parse(Deno.readTextFileSync(`${bundle}/config.json`));
  const spec = await checkConfig(raw, `${bundle}/config.json`);
  mark("config.json validated");
  const cg = detectCgroups();
  const paths = cg.paths(spec.linux?.cgroupsPath, id);
  cg.create(paths);
  // Not earlier: the warming write waits for the grace period holding cgroup_mutex, which every
  // cgroup mkdir needs too (measured: cgroups made 6-10 ms cold, 13-22 ms behind a warm-up).
  if (!Deno.env.get("SPIKE_NO_WARM")) warmCgroupLock();
  mark("cgroups made");
  let created = false;
  try {
    const plan = buildInitPlan(spec, { id, bundle, execFifoFd: -1, cgroups: paths });
    const cgroupProcs = [...new Set(Object.values(paths))].map((d) => `${d}/cgroup.procs`);
    const bytes = encode(plan, cgroupProcs, creating ? `${dir}/exec.fifo` : undefined);
    mark(`plan built and encoded (${bytes.length} bytes)`);
    const [parentEnd, childEnd] = libc.socketpair();
    libc.setCloexec(parentEnd, true);
    libc.writeAll(parentEnd, bytes);
    const exe = sealedExe(helper);
    let child: Deno.ChildProcess;
    const dumpable = libc.prctl(3);
    libc.prctl(4, 0n);
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
      libc.unshare(CLONE.NEWPID);
      try {
        child = command.spawn();
      } finally {
        libc.setns(saved, CLONE.NEWPID);
      }
    } finally {
      libc.close(saved);
      libc.prctl(4, BigInt(dumpable));
      libc.close(childEnd);
      exe.release();
    }
    mark("helper spawned");
    const buf = new Uint8Array(4096);
    if (creating) {
      // One "R": ready, waiting on exec.fifo; anything else: the error (then EOF).
      const n = libc.read(parentEnd, buf);
      libc.close(parentEnd);
      if (n === 1 && buf[0] === 0x52) {
        child.unref();
        created = true;
        mark("created (the helper waits on exec.fifo)");
        return 0;
      }
      const why = n > 0 ? new TextDecoder().decode(buf.subarray(0, n)) : "the helper died";
      console.error(`capsule: Cannot create container "${id}": ${why}`);
      await child.status;
      return 1;
    }
    let msg = "";
    for (;;) {
      const n = libc.read(parentEnd, buf);
      if (n <= 0) break;
      msg += new TextDecoder().decode(buf.subarray(0, n));
    }
    libc.close(parentEnd);
    mark("helper exec'd the program (EOF)");
    const st = await child.status;
    mark("program exited");
    if (msg) {
      const text = `Cannot create container "${id}": ${msg}`;
      console.error(`capsule: ${text}`);
      return execFailureStatus(text) ?? 1;
    }
    return exitCode(st);
  } finally {
    if (!created) {
      await removeCgroups(cg, paths);
      if (creating) Deno.removeSync(dir, { recursive: true });
      mark("cgroups removed");
    }
  }
}

/** Where the crude create keeps exec.fifo (no state record: a spike). */
function stateDir(id: string): string {
  if (!/^[\w.-]+$/.test(id)) throw new CapsuleError(`Invalid id "${id}"`);
  return `/run/capsule-spike/${id}`;
}

/** start: open exec.fifo for reading (releases the helper's open for writing), read its "0". */
function start(id: string): number {
  const fifo = `${stateDir(id)}/exec.fifo`;
  const got = Deno.readTextFileSync(fifo);
  Deno.removeSync(fifo);
  if (got !== "0") throw new CapsuleError(`Cannot start container "${id}": no init waits`);
  return 0;
}

/**
 * delete -f: SIGKILL what is still in the container's cgroup (never a pid read from a file,
 * which may have been reused), then remove the cgroups (retried while the exit completes).
 */
async function remove(id: string): Promise<number> {
  const dir = stateDir(id);
  const cg = detectCgroups();
  const paths = cg.paths(undefined, id);
  for (const pid of cg.pids(paths)) {
    try {
      libc.kill(pid, 9);
    } catch { /* gone already */ }
  }
  await removeCgroups(cg, paths);
  Deno.removeSync(dir, { recursive: true });
  try {
    Deno.removeSync("/run/capsule-spike"); // only once empty
  } catch { /* another container's */ }
  return 0;
}

/** The helper's PID namespace died with PID 1; an rmdir right after can be EBUSY: retried. */
async function removeCgroups(
  cg: ReturnType<typeof detectCgroups>,
  paths: Record<string, string>,
): Promise<void> {
  for (let i = 0;; i++) {
    try {
      return cg.destroy(paths);
    } catch (e) {
      if (i >= 50) throw e;
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

try {
  Deno.exit(await main([...Deno.args]));
} catch (e) {
  console.error(`capsule: ${e instanceof Error ? e.message : e}`);
  Deno.exit(1);
}
