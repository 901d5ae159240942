// The steps of create that deal with the init process: the channel and exec.fifo, the user
// namespace's gate and maps, spawning it, its plan, and waiting until it is ready. See
// create.ts for the order; the init's side is runtime/native/init.c.
import * as libc from "../ffi/libc.ts";
import { encodeInitPlan, NSEXEC, type NsexecFrame, readNsexecFrame } from "./nsexec.ts";
import { HelperProcess } from "./helper_process.ts";
import { warmMigration } from "./cgroup_warm.ts";
import type { Creating } from "./create_state.ts";
import { ociState } from "./query.ts";
import { CapsuleError } from "./errors.ts";
import { buildInitPlan } from "./plan.ts";
import type { SeccompProfile } from "./seccomp.ts";
import { exitReason, forkedChild, spawnInit, utilLinux } from "./spawn.ts";
import { runHooks } from "./hooks.ts";
import type { Spec } from "./spec.ts";
import { EXEC_FIFO, exists, LOG_FILE, procStat } from "./state.ts";
import { sendToConsoleSocket } from "./terminal.ts";
import { mappedRoot, userNsWrapper, writeIdMappings } from "./userns.ts";

/** exec.fifo (the init blocks writing to it until start) and the channel to the init. */
export function makeFifoAndChannel(c: Creating): void {
  const execFifo = `${c.dir}/${EXEC_FIFO}`;
  libc.mkfifo(execFifo, 0o622);
  Deno.chmodSync(execFifo, 0o622); // mkfifo obeys the umask; a user-namespaced init writes it
  const [parentEnd, childEnd] = libc.socketpair();
  c.fd = parentEnd;
  libc.setCloexec(parentEnd, true);
  c.childEnd = childEnd;
}

function namespacesOf(raw: Spec) {
  return Array.isArray(raw?.linux?.namespaces) ? raw.linux.namespaces : [];
}

/**
 * A user namespace is entered only by a single-threaded process, and the init must be its
 * root when it execs (or it loses its capabilities): see userNsWrapper.
 */
export function prepareUserNamespace(c: Creating): void {
  const namespaces = namespacesOf(c.raw);
  if (!namespaces.some((n) => n?.type === "user" && !n.path)) return;
  const owner = mappedRoot(c.raw);
  const rootless = Deno.uid() !== 0;
  if (rootless && owner.uid !== Deno.uid()) {
    throw new CapsuleError(
      `Cannot create container "${c.id}": run as uid ${Deno.uid()}, capsule can only map ` +
        `the container's root to your own uid (linux.uidMappings maps it to ${owner.uid}); ` +
        `see "capsule spec --rootless"`,
    );
  }
  // capsule joins this init to its cgroup itself (a migration: an RCU grace period), so the
  // kernel's wait is started now, to overlap what comes before the join (cgroup_warm.ts).
  warmMigration();
  const tools: [string, string] = [rootless ? "" : utilLinux("setpriv"), utilLinux("unshare")];
  const [ours, theirs] = libc.socketpair();
  libc.setCloexec(ours, true);
  const newPid = namespaces.some((n) => n?.type === "pid" && !n.path);
  c.userNs = { gate: ours, theirs, wrapper: userNsWrapper(owner, rootless, newPid, tools, theirs) };
}

export function closeGate(c: Creating): void {
  if (c.userNs?.gate !== undefined) libc.close(c.userNs.gate); // it never got to the maps
}

/**
 * Starts the init first: its start-up overlaps the steps below. It inherits (no
 * CLOEXEC) what it needs so that it never reaches the state directory by path: its end of
 * the channel, the fifo (O_PATH) and, detached, the write end of the pipe to the root's
 * monitor (log_writer.ts: rotated by size, one process for the whole root); closed here once it runs.
 */
export async function spawnTheInit(c: Creating): Promise<void> {
  const inherited = [c.childEnd];
  if (c.userNs) inherited.push(c.userNs.theirs);
  c.fifoFd = libc.open(`${c.dir}/${EXEC_FIFO}`, libc.O.PATH);
  inherited.push(c.fifoFd);
  const terminal = (c.opts.tty ?? c.raw.process?.terminal) === true;
  if (c.opts.detach && !terminal) {
    try {
      // Only a detached container loads log_writer.ts and hands its log to the monitor.
      const { LOG_DEFAULTS, openLog, validLimits } = await import("./log_writer.ts");
      if (c.opts.log !== undefined && !validLimits(c.opts.log)) {
        throw new CapsuleError(
          `Cannot create container "${c.id}": invalid log limits ${JSON.stringify(c.opts.log)}` +
            ` (maxSize: bytes >= 0, maxFiles: a whole number >= 1)`,
        );
      }
      c.logLimits = c.opts.log ?? LOG_DEFAULTS;
      const log = openLog(`${c.dir}/${LOG_FILE}`, c.logLimits, c.ctx.store.root);
      c.logFd = log.fd;
      c.logDone = log.done;
    } catch (e) {
      for (const f of inherited) libc.close(f);
      throw e;
    }
    inherited.push(c.logFd);
    libc.setCloexec(c.logFd, false); // for the init alone, spawned next
  }
  const userNs = namespacesOf(c.raw).some((n) => n?.type === "user" && !n.path);
  if (!userNs) {
    const pidNs = namespacesOf(c.raw).find((n) => n?.type === "pid");
    c.clone = { pidNs: pidNs ? (pidNs.path ? { path: pidNs.path } : {}) : undefined };
  }
  try {
    c.child = spawnInit(
      c.childEnd,
      // With a terminal the program's stdio is the pty: the init must not hold create's stdio
      // (a caller reading create's output would wait until start); its own errors go through
      // the init pipe, or to the pty once it is ready.
      c.opts.detach || terminal ? "null" : (c.opts.stdio ?? "inherit"),
      c.userNs?.wrapper ?? [],
      (what) => c.step(what),
    );
  } catch (e) {
    if (!(e instanceof libc.SysError)) throw e;
    throw new CapsuleError(
      `Cannot create container "${c.id}": cannot start its init (${NSEXEC}): ${e.message}`,
    );
  } finally {
    for (const f of inherited) libc.close(f);
  }
  c.pid = c.child.pid;
}

/** Under unshare, PID 1 waits on the gate until its maps are written here. */
export async function mapUserNamespace(c: Creating): Promise<void> {
  const gate = c.userNs?.gate;
  if (gate === undefined) return;
  try {
    c.pid = await forkedChild(c.child!.pid);
    writeIdMappings(c.id, c.pid, c.raw);
    libc.writeAll(gate, new TextEncoder().encode("go\n"));
  } finally {
    libc.close(gate); // on failure the helper reads EOF, and is killed with the init
    c.userNs!.gate = undefined;
  }
}

/** The init's plan (plan.ts), once the root filesystem is known to exist. */
export async function buildPlan(c: Creating): Promise<void> {
  const spec = c.spec;
  const rootfs = spec.root!.path.startsWith("/")
    ? spec.root!.path
    : `${c.bundle}/${spec.root!.path}`;
  if (!exists(rootfs) || !Deno.statSync(rootfs).isDirectory) {
    throw new CapsuleError(
      `Cannot create container "${c.id}": rootfs "${rootfs}" (root.path in config.json) does not exist`,
    );
  }
  c.record.rootfs = rootfs;
  const profile = spec.linux?.seccomp as SeccompProfile | undefined;
  const placement = c.cg && c.cgroupPaths ? c.cg.placement(c.cgroupPaths) : { tasks: [] };
  c.plan = buildInitPlan(spec, {
    clone: c.clone ? { ...placement, pidNs: c.clone.pidNs } : undefined,
    seccomp: profile ? (await import("./seccomp.ts")).compileSeccomp(profile) : undefined,
    cgroups: c.cgroupPaths,
    id: c.id,
    bundle: c.bundle,
    execFifoFd: c.fifoFd,
    logFd: c.record.logFile ? c.logFd : undefined,
    detach: c.opts.detach,
    noPivot: c.opts.noPivot,
    extraMounts: c.extraMounts,
  });
  c.plan.process.preserveFds = c.passFds;
  c.plan.process.listenFds = c.opts.listenFds;
  if (c.userNs) c.plan.sourcesByFd = true;
  c.record.exec = { process: spec.process!, seccomp: c.plan.process.seccomp };
  const hooks = spec.hooks;
  const host = !!(hooks?.prestart?.length || hooks?.createRuntime?.length);
  if (host || hooks?.createContainer?.length || hooks?.startContainer?.length) {
    c.plan.hooks = {
      createContainer: hooks?.createContainer,
      startContainer: hooks?.startContainer,
      ...(host ? { host } : {}),
      state: JSON.stringify(ociState(c.record, "creating")),
    };
  }
}

/**
 * Each extension's `created`, now that the namespaces exist (e.g. the veth goes in); once
 * (before the prestart and createRuntime hooks when there are some, else after "ready").
 */
export async function extensionsCreated(c: Creating): Promise<void> {
  if (c.extensionsAttached) return;
  c.extensionsAttached = true;
  for (const x of c.ctx.extensions) {
    const data = await x.created?.({ ...c.base, pid: c.pid, record: c.record });
    if (data !== undefined) {
      c.record.ext![x.name] = data;
      c.save();
    }
  }
}

/**
 * OCI hooks prestart and createRuntime (runtime spec "Lifecycle" 5-6; config.md: after the
 * runtime environment is created, before pivot_root), on the host: run while the init waits
 * between its mounts and its pivot_root ("hooks" ... "resume"). Throws CapsuleError.
 */
async function createHooks(c: Creating): Promise<void> {
  // What the extensions set up (a network: CNI's part, done before runc create by an engine)
  // is there for the hooks to see.
  await extensionsCreated(c);
  // As runc's: the container is still being created while these run.
  const state = ociState(c.record, "creating");
  await runHooks("prestart", c.spec.hooks?.prestart, state);
  await runHooks("createRuntime", c.spec.hooks?.createRuntime, state);
}

/** Sends the plan (its errors, a NUL in a string, name the container). */
function sendPlan(c: Creating): void {
  try {
    libc.writeAll(c.fd, encodeInitPlan(c.plan));
  } catch (e) {
    // The init failed already: its message is waiting below.
    if (e instanceof CapsuleError) {
      throw new CapsuleError(`Cannot create container "${c.id}": ${e.message}`);
    }
  }
}

/** Why the helper stopped: its 'E' frame, else how it ended (the first stage's or the init's). */
async function failure(c: Creating, msg: NsexecFrame | undefined): Promise<CapsuleError> {
  if (msg?.fd !== undefined) libc.close(msg.fd);
  let why = msg?.type === "E" ? new TextDecoder().decode(msg.data) : await exitReason(c.child!);
  if (/killed by SIGKILL/.test(why)) why += oomHint(c);
  return new CapsuleError(`Cannot create container "${c.id}": ${why}`);
}

/**
 * Without a user namespace (`c.clone`): sends the plan to the helper, which joins the cgroup and
 * clones the init into its place (plan.ts InitPlacement) and answers its pid ('P'); from here
 * `child` is the init and the state says its pid. The init waits for "g" (awaitInit), so the
 * limits are in force before it does anything. Throws CapsuleError with the helper's error.
 */
export async function cloneInit(c: Creating): Promise<void> {
  if (!c.clone) return;
  sendPlan(c);
  const msg = readNsexecFrame(c.fd);
  if (msg?.type !== "P" || msg.data.length !== 8) throw await failure(c, msg);
  const pid = Number(new DataView(msg.data.buffer).getBigUint64(0, true));
  c.firstStage = c.child;
  c.child = new HelperProcess(pid);
  c.firstStage!.poll(); // it exits at once: reaped now or when create ends
  c.pid = pid;
  // Saved with the next write of the record (at the latest "created"): until then a crash's
  // delete -f finds the init by the cgroup, which it is in from birth.
  c.record.pid = pid;
  c.record.pidStartTime = procStat(pid)?.startTime ?? "";
}

/**
 * Sends the plan (or, to an init the helper cloned, "g"); the init (runtime/native/init.c) sets
 * up namespaces, mounts and pivot_root and answers 'R' (ready), or 'E' with the error that
 * stopped it; on the way it may ask for the bind sources ('S') or stop for the host's hooks
 * ('H', answered "r"). With a terminal, the pty master comes back in a 'T' frame. Throws
 * CapsuleError.
 */
export async function awaitInit(c: Creating): Promise<void> {
  if (!c.clone) sendPlan(c);
  else {
    try {
      libc.writeAll(c.fd, new TextEncoder().encode("g"));
    } catch (e) {
      if (!(e instanceof libc.SysError && e.code === "EPIPE")) throw e; // said below
    }
  }
  let msg = readNsexecFrame(c.fd);
  while (msg?.type === "S" || msg?.type === "H") {
    const asked = msg.type;
    if (asked === "H") await createHooks(c);
    try {
      if (asked === "H") libc.writeAll(c.fd, new TextEncoder().encode("r"));
      else sendBindSources(c);
    } catch (e) {
      // The init is gone: its exit status says why (below), not our write's EPIPE.
      if (!(e instanceof libc.SysError && e.code === "EPIPE")) throw e;
    }
    msg = readNsexecFrame(c.fd);
  }
  if (!msg || msg.type !== "R") throw await failure(c, msg);
  if (c.terminal) {
    const t = readNsexecFrame(c.fd);
    if (t?.type !== "T" || t.fd === undefined) {
      if (t?.fd !== undefined) libc.close(t.fd);
      throw new CapsuleError(`Cannot create container "${c.id}": its init sent no terminal`);
    }
    if (c.opts.consoleSocket) sendToConsoleSocket(c.opts.consoleSocket, t.fd);
    else c.master = t.fd;
  }
}

/**
 * Why an init was SIGKILLed before it was ready, when the kernel's OOM killer did it (its
 * memory cgroup counts an OOM kill): the memory limit is below what it needs to start.
 */
function oomHint(c: Creating): string {
  if (!c.cg || !c.cgroupPaths) return "";
  try {
    const s = c.cg.stats(c.cgroupPaths);
    if (!s.oomKillCount) return "";
    const memory = c.spec?.linux?.resources?.memory as { limit?: unknown } | undefined;
    const limit = memory?.limit;
    return ` (out of memory: the memory limit${
      typeof limit === "number" || typeof limit === "bigint" ? ` of ${limit} bytes` : ""
    } is less than the init and the program need to start; raise linux.resources.memory.limit)`;
  } catch {
    return "";
  }
}

/**
 * plan.sourcesByFd: each bind source, opened O_PATH by us (host root, so a 0700 directory is
 * no obstacle) inside the init's new mount namespace (through /proc/<pid>/root, resolved as
 * the host path it is, never leaving that root), so that the init, in its user namespace, may
 * bind it; sent in plan order, one SCM_RIGHTS message each.
 */
function sendBindSources(c: Creating): void {
  const root = libc.open(`/proc/${c.pid}/root`, libc.O.PATH | libc.O.DIRECTORY | libc.O.CLOEXEC);
  try {
    for (const m of c.plan.mounts.filter((m) => m.bind)) {
      let fd: number;
      try {
        fd = libc.openat2(
          root,
          m.source,
          libc.O.PATH | libc.O.CLOEXEC,
          libc.RESOLVE.IN_ROOT | libc.RESOLVE.NO_MAGICLINKS,
        );
      } catch (e) {
        throw new CapsuleError(
          `Cannot create container "${c.id}": bind mount source ${m.source} (mount at ` +
            `${m.destination}): ${(e as Error).message}`,
        );
      }
      try {
        libc.sendFd(c.fd, fd, new Uint8Array([1]));
      } finally {
        libc.close(fd);
      }
    }
  } finally {
    libc.close(root);
  }
}

export function closeMaster(c: Creating): void {
  if (c.master !== undefined) libc.close(c.master);
}
