// exec: one more program in a created or running container. capsule's native helper
// (nsexec.ts, runtime/native/nsexec.c) joins the container's cgroup and namespaces, drops to
// the program's ids and capabilities, and only then forks into the container's PID namespace
// to exec the program with the container's environment and seccomp profile.
import * as libc from "../ffi/libc.ts";
import { close as closeFd } from "../ffi/libc.ts";
import { subCgroupPaths } from "./cgroups/util.ts";
import type { RuntimeContext } from "./context.ts";
import { CapsuleError, StateTransitionError } from "./errors.ts";
import { warmMigration } from "./cgroup_warm.ts";
import { refuseUnappliedProcess } from "./config_check.ts";
import { type SealedExe, sealedExe } from "./exe_seal.ts";
import {
  decodeRecords,
  encodeFrontRecords,
  encodeNsexecParts,
  framed,
  NSEXEC,
  nsexecPath,
  type NsexecPlan,
  readNsexecAnswer,
} from "./nsexec.ts";
import { parseJson } from "./json.ts";
import { buildProcessPlan } from "./plan.ts";
import { status } from "./query.ts";
import type { SeccompFilter, SeccompProfile } from "./seccomp.ts";
import { type HelperProcess, spawnHelper } from "./helper_process.ts";
import { callerFds, exitCode, forwardSignals, relayed } from "./spawn.ts";
import type { Process, Spec } from "./spec.ts";
import {
  type ContainerRecord,
  execLogFile,
  initAlive,
  writeFileAtomic,
  writePidFile,
} from "./state.ts";
import { sendToConsoleSocket } from "./terminal.ts";

/** What to run in the container, and how (capsule exec's flags). */
export interface ExecOptions {
  /** The program and its arguments (unless `process` gives them). */
  args?: string[];
  /** KEY=VALUE, merged over the container's environment. */
  env?: string[];
  /** Working directory in the container, absolute (default: process.cwd of config.json). */
  cwd?: string;
  /** uid and gids in the container (default: process.user of config.json). */
  user?: { uid: number; gid: number; additionalGids?: number[] };
  /** A whole OCI process (exec --process FILE, as podman and containerd send it). */
  process?: Process;
  /**
   * The bytes `process` was read from, unchanged (the --process file's). With them, a
   * successful exec keeps its verdict on that process for the native front end
   * (writeExecProcess), which then runs the same file's process without Deno.
   */
  processFile?: Uint8Array;
  /** Output to the exec's own log; returns at once with the exec id. */
  detach?: boolean;
  /**
   * With `detach`: keep the caller's stdio instead of the exec log (runc's `exec -d`, which
   * engines use: conmon hands the process its own pipes and reaps it as a subreaper).
   */
  keepStdio?: boolean;
  /** Write the exec's host pid to this file (atomically). */
  pidFile?: string;
  /** Give the program a pseudo-terminal. */
  tty?: boolean;
  /** Unix socket that receives the pty master (runc's --console-socket). */
  consoleSocket?: string;
  /** Pass the caller's fds 3 to 3+N-1 on to the program (runc's --preserve-fds). */
  preserveFds?: number;
  /**
   * Sub-cgroups of the container's to join instead of its own (runc's `--cgroup`): "SUB" or
   * "CTRL[,CTRL]:SUB" (cgroups/util.ts subCgroupPaths reads them).
   */
  cgroup?: string[];
  /** Exec into a paused container too: the program starts frozen, and runs once resumed. */
  ignorePaused?: boolean;
}

/**
 * Runs one more program in a created or running container: same namespaces and cgroup, the
 * container's environment with `env` over it. Foreground: returns the exit status.
 * Detached: returns the exec id at once (its output: `execLogFile(id, execId)`).
 */
/**
 * The init's process and seccomp filter as create recorded them; for a container made before
 * they were recorded, from its bundle's config.json, and a refusal when that is gone (exec
 * never runs a process with fewer restrictions than the container's).
 */
async function execBase(
  id: string,
  rec: ContainerRecord,
): Promise<{ base?: Process; seccomp?: SeccompFilter }> {
  if (rec.exec) return { base: rec.exec.process, seccomp: rec.exec.seccomp };
  let config: Spec;
  try {
    config = parseJson(Deno.readTextFileSync(`${rec.bundle}/config.json`)) as Spec;
  } catch (e) {
    throw new CapsuleError(
      `Cannot exec in container "${id}": its configuration was not recorded and ` +
        `${rec.bundle}/config.json cannot be read (${(e as Error).message})`,
    );
  }
  const profile = config.linux?.seccomp as SeccompProfile | undefined;
  if (!profile) return { base: config.process };
  // The compiler is loaded only here (an older record): a recorded filter is compiled already.
  const { compileSeccomp } = await import("./seccomp.ts");
  return { base: config.process, seccomp: compileSeccomp(profile) };
}

/**
 * The process an exec runs for a --process file's `file` process (validated: processFromFile):
 * what the file leaves out comes from the container's `base`: its capabilities (never capsule's
 * own, which are the host's, as runc takes the container's), its rlimits (runc 1.1.5 leaves its
 * own here: capsule's caller's would reach the program) and its oomScoreAdj (runc gives the
 * container's; an engine's shim runs at a score near -1000, which would make the program all but
 * immune to the OOM killer).
 */
export function fileProcess(file: Process, base: Process | undefined): Process {
  return {
    ...file,
    capabilities: file.capabilities ?? base?.capabilities,
    rlimits: file.rlimits?.length ? file.rlimits : base?.rlimits,
    oomScoreAdj: file.oomScoreAdj ?? base?.oomScoreAdj,
  };
}

/**
 * A --process file's process, parsed from its JSON value `raw`, as runc reads one (no "user":
 * uid 0, gid 0, Go's zero value) and validated by config.json's rules for its process
 * (validate.ts checkConfig), what capsule cannot apply refused as create refuses it
 * (config_check.ts refuseUnappliedProcess: an AppArmor profile, an SELinux label), and its
 * capability and rlimit names checked (plan.ts buildProcessPlan). `where` names it in errors.
 * Throws CapsuleError.
 */
export async function processFromFile(raw: unknown, where: string): Promise<Process> {
  if (raw && typeof raw === "object" && !Array.isArray(raw) && !("user" in raw)) {
    raw = { ...raw, user: { uid: 0, gid: 0 } };
  }
  const { checkConfig } = await import("./validate.ts");
  const spec = await checkConfig({ ociVersion: "1.0.0", process: raw, root: { path: "/" } }, where);
  refuseUnappliedProcess(spec.process, where);
  buildProcessPlan(spec.process!, where); // its names and limits, refused naming this file
  return spec.process!;
}

export async function exec(
  ctx: RuntimeContext,
  id: string,
  opts: ExecOptions,
): Promise<{ code?: number; execId?: string; pid: number }> {
  const step = ctx.stopwatch(`exec ${id}`);
  warmMigration();
  const rec = ctx.store.load(id);
  const st = status(ctx, rec);
  step("state read");
  if (st === "paused" && !opts.ignorePaused) {
    throw new CapsuleError(
      `Cannot exec in container "${id}": it is paused (cannot exec in a paused container); ` +
        `resume it, or pass --ignore-paused to start the program frozen until the resume`,
    );
  }
  if (st !== "created" && st !== "running" && st !== "paused") {
    throw new StateTransitionError(id, "exec in", st, ["created", "running"]);
  }
  const joined = rec.cgroupPaths && Object.keys(rec.cgroupPaths).length
    ? (opts.cgroup?.length ? subCgroupPaths(rec.cgroupPaths, opts.cgroup) : rec.cgroupPaths)
    : undefined;
  if (opts.cgroup?.length && !joined) {
    throw new CapsuleError(`Cannot exec in container "${id}" with --cgroup: it has no cgroup`);
  }
  const { base, seccomp } = await execBase(id, rec);
  let proc: Process;
  if (opts.process) {
    proc = fileProcess(opts.process, base);
  } else {
    if (!opts.args?.length) {
      throw new CapsuleError(`Cannot exec in container "${id}": no command given`);
    }
    proc = commandProcess(base, opts);
  }
  if (opts.tty !== undefined) proc = { ...proc, terminal: opts.tty };
  // A terminal relayed to the caller's starts at the caller's size (not 0x0 until the relay
  // catches up: the program may ask at once).
  if (proc.terminal && !opts.consoleSocket && !proc.consoleSize && Deno.stdout.isTerminal()) {
    try {
      const { columns, rows } = Deno.consoleSize();
      proc = { ...proc, consoleSize: { height: rows, width: columns } };
    } catch { /* no size to give */ }
  }
  if (proc.terminal && opts.detach && !opts.consoleSocket) {
    throw new CapsuleError(
      `Cannot exec in container "${id}": a detached terminal needs --console-socket`,
    );
  }
  if (opts.consoleSocket && (!proc.terminal || !opts.detach)) {
    throw new CapsuleError(
      `Cannot exec in container "${id}": --console-socket ${opts.consoleSocket} is used only ` +
        `with a terminal (-t) in a detached exec (-d)`,
    );
  }
  if (!proc.cwd?.startsWith("/")) {
    throw new CapsuleError(`Invalid working directory "${proc.cwd}": it must be absolute`);
  }
  const links = new Map<string, string>();
  for (const ns of NAMESPACE_ORDER) {
    try {
      links.set(ns, Deno.readLinkSync(`/proc/${rec.pid}/ns/${ns}`));
    } catch (e) {
      // Never "the host's, then": an unreadable namespace is a gone (or hidden) init.
      throw new CapsuleError(
        `Cannot exec in container "${id}": its ${ns} namespace cannot be read (${
          (e as Error).message
        }); is the container still running?`,
      );
    }
  }
  // The links were read from the container's init, not from a process that took its pid
  // (the helper checks the start time again once it holds the namespaces).
  if (!initAlive(rec)) {
    throw new CapsuleError(`Cannot exec in container "${id}": its init process has exited`);
  }
  const namespaces = NAMESPACE_ORDER.filter((ns) =>
    links.get(ns) !== Deno.readLinkSync(`/proc/self/ns/${ns}`)
  );
  // Before any fd of exec's own is open (see callerFds).
  const passFds = opts.preserveFds
    ? callerFds(
      opts.preserveFds,
      `Cannot exec in container "${id}"`,
      `--preserve-fds ${opts.preserveFds}`,
    )
    : undefined;
  const execId = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
  const plan: NsexecPlan = {
    pid: rec.pid,
    pidStartTime: rec.pidStartTime,
    namespaces,
    cgroupProcs: joined && ctx.cgroups ? ctx.cgroups.procsFiles(joined) : [],
    // The container's seccomp profile holds for what is exec'd into it too.
    process: { ...buildProcessPlan(proc), seccomp, preserveFds: passFds },
    setsid: (opts.detach && !opts.keepStdio) ?? false,
    detach: opts.detach ?? false,
  };
  // Detached: the exec's own log, rotated by the root's monitor with the container's limits
  // (log_writer.ts); the helper inherits the pipe to it.
  if (opts.detach && !opts.keepStdio && !proc.terminal) {
    const { LOG_DEFAULTS, openLog, validLimits } = await import("./log_writer.ts");
    const limits = validLimits(rec.logLimits) ? rec.logLimits : LOG_DEFAULTS;
    plan.logFd = openLog(execLogFile(ctx.store.dir(id), execId), limits, ctx.store.root).fd;
  }
  let parts: ReturnType<typeof encodeNsexecParts>;
  let encoded: Uint8Array<ArrayBuffer>;
  let exe: SealedExe;
  try {
    parts = encodeNsexecParts(plan); // a NUL in an argument is refused before any spawn
    encoded = framed(parts.header, parts.process);
    step("plan made");
    exe = sealedExe(nsexecPath());
  } catch (e) {
    if (plan.logFd !== undefined) closeFd(plan.logFd);
    throw e;
  }
  step(`exec helper sealed (${exe.how})`);
  const [parentEnd, childEnd] = libc.socketpair();
  libc.setCloexec(parentEnd, true);
  // With a terminal, the program's stdio is the pty; detached, its log (or nothing).
  const stdio = (opts.detach && !opts.keepStdio) || proc.terminal ? "null" : "inherit";
  let child: HelperProcess;
  try {
    if (plan.logFd !== undefined) libc.setCloexec(plan.logFd, false); // for the helper alone
    // Started in the host's PID namespace, with nothing of ours in its environment; it joins
    // the container's PID namespace for the program only (nsexec.c).
    child = spawnHelper(exe.path, [String(childEnd)], stdio);
    step(`exec helper spawned (pid ${child.pid})`);
  } catch (e) {
    closeFd(parentEnd);
    throw new CapsuleError(
      `Cannot exec in container "${id}": cannot start ${NSEXEC}: ${(e as Error).message}`,
    );
  } finally {
    exe.release();
    closeFd(childEnd);
    if (plan.logFd !== undefined) closeFd(plan.logFd);
  }
  let master: number | undefined;
  let execPid: number;
  try {
    try {
      libc.writeAll(parentEnd, encoded);
    } catch (e) {
      // A helper gone before it read the plan: why is in its answer or its exit status.
      if (!(e instanceof libc.SysError && (e.code === "EPIPE" || e.code === "ECONNRESET"))) {
        throw e;
      }
    }
    const answer = readNsexecAnswer(parentEnd);
    master = answer.master;
    if (answer.error !== undefined || answer.pid === undefined) {
      const which = opts.cgroup?.length && answer.error?.startsWith("adding pid")
        ? ` (--cgroup ${opts.cgroup.join(" ")})`
        : "";
      throw new CapsuleError(
        `Cannot exec in container "${id}"${which}: ${answer.error ?? await helperGone(child)}`,
      );
    }
    execPid = answer.pid;
    step("exec helper done (namespaces joined, program started)");
    if (proc.terminal) {
      if (master === undefined) {
        throw new CapsuleError(`Cannot exec in container "${id}": ${NSEXEC} sent no terminal`);
      }
      if (opts.consoleSocket) {
        sendToConsoleSocket(opts.consoleSocket, master);
        master = undefined;
      }
    } else if (master !== undefined) {
      libc.close(master);
      master = undefined;
    }
  } catch (e) {
    if (master !== undefined) libc.close(master);
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    throw e;
  } finally {
    closeFd(parentEnd);
  }
  // The verdict on this process file, for the front end's next exec of it (a terminal's or
  // passed fds' are not its to take).
  if (opts.process && opts.processFile && !proc.terminal && !passFds?.length) {
    try {
      writeExecProcess(ctx.store.dir(id), execInstance(rec), opts.processFile, parts.process);
      step("process kept for the front end");
    } catch (e) {
      // Only a later exec's speed depends on it: said in --debug, as exec.plan's.
      step(`process not kept (${(e as Error).message})`);
    }
  }
  if (opts.pidFile) writePidFile(opts.pidFile, execPid);
  if (opts.detach) {
    child.unref(); // reaped here once it ends, by whoever adopts it once this process is gone
    return { execId, pid: execPid };
  }
  const stopForwarding = forwardSignals(child);
  try {
    const st = master === undefined ? await child.status : await relayed(master, child);
    return { code: exitCode(st), pid: execPid };
  } finally {
    stopForwarding();
  }
}

/**
 * The process of an exec given a command (not --process): the container's, with `args`, `env`
 * merged over its environment (KEY=VALUE, the last of a key wins), and `cwd`/`user` in place of
 * its own when given; no terminal (the caller's -t sets it after). Throws CapsuleError for an
 * environment entry without a key.
 */
function commandProcess(
  base: Process | undefined,
  opts: Pick<ExecOptions, "args" | "env" | "cwd" | "user">,
): Process {
  const env = new Map<string, string>();
  for (const e of [...(base?.env ?? []), ...(opts.env ?? [])]) {
    const i = e.indexOf("=");
    if (i <= 0) throw new CapsuleError(`Invalid environment variable "${e}": use KEY=VALUE`);
    env.set(e.slice(0, i), e.slice(i + 1));
  }
  return {
    ...base,
    terminal: false,
    args: opts.args ?? [],
    env: [...env].map(([k, v]) => `${k}=${v}`),
    cwd: opts.cwd ?? base?.cwd ?? "/",
    user: opts.user ?? base?.user ?? { uid: 0, gid: 0 },
  };
}

/** The file in a container's state directory that the native front end reads (front.c). */
export const EXEC_PLAN = "exec.plan";

/**
 * Writes `<dir>/exec.plan` (mode 0600, atomically) for capsule's native front end
 * (runtime/native/front.c), which runs `capsule [--root DIR] exec ID COMMAND...` and
 * `capsule [GLOBAL FLAGS] start|delete ID` without starting Deno. For exec: what exec() would hand
 * the helper for that command line, without the command (`a` records) and the namespaces
 * (`n`, which the front end reads from /proc/PID/ns as exec() does). Before it, a frame of the
 * front end's own: the helper build it is for (`h`, helperStamp), the container's id (`i`), the
 * length of the plan's header (`o`: the records before the process's, encodeNsexecParts, which
 * an exec of a kept --process file puts before that file's process records, writeExecProcess),
 * the freezer file and its thawed value (`z`, `Z`: a paused container is the CLI's), `H`
 * when start has poststart hooks to run (then start is the CLI's), and for delete the cgroup
 * directories (`g`, each once) and the nested "capsule" parents that go with their last
 * container (`q`, record.cgroupParents). Layout: u32 LE length, the
 * front end's records, then the plan as encodeNsexecPlan writes it. Written once create is
 * done (the record no longer "creating"); nothing is written for a container whose process is
 * not exec's to take as it is (no recorded process, a relative cwd). The front end hands every
 * case it does not take (flags, a paused or stopped container, no such file) to this CLI.
 * Throws CapsuleError or a Deno error when the file cannot be written.
 */
export function writeExecPlan(ctx: RuntimeContext, rec: ContainerRecord, dir: string): void {
  if (!rec.exec) return;
  const proc = commandProcess(rec.exec.process, {});
  if (!proc.cwd?.startsWith("/")) return;
  const paths = rec.cgroupPaths && Object.keys(rec.cgroupPaths).length
    ? rec.cgroupPaths
    : undefined;
  const { header, process } = encodeNsexecParts({
    pid: rec.pid,
    pidStartTime: rec.pidStartTime,
    namespaces: [],
    cgroupProcs: paths && ctx.cgroups ? ctx.cgroups.procsFiles(paths) : [],
    process: { ...buildProcessPlan(proc), seccomp: rec.exec.seccomp },
    setsid: false,
    detach: false,
  });
  const freezer = paths && ctx.cgroups?.freezerFile(paths);
  const records: [string, string][] = [
    ["h", helperStamp(nsexecPath())],
    ["i", rec.id],
    ["o", String(header.length)],
  ];
  if (freezer) records.push(["z", freezer.path], ["Z", freezer.thawed]);
  if (rec.hooks?.poststart?.length) records.push(["H", "1"]);
  // For delete: the cgroup directories (each once) and the nested parents that go with the last.
  for (const dir of new Set(Object.values(paths ?? {}))) records.push(["g", dir]);
  for (const parent of rec.cgroupParents ?? []) records.push(["q", parent]);
  const front = encodeFrontRecords(records);
  const plan = framed(header, process);
  const out = new Uint8Array(front.length + plan.length);
  out.set(front);
  out.set(plan, front.length);
  writeFileAtomic(`${dir}/${EXEC_PLAN}`, out, 0o600);
}

/**
 * The span [start, end) of the value of the top-level member `key` of the JSON object `text`
 * (a config.json parseJson took), in UTF-16 indices; undefined when it is absent, there twice,
 * or when a key is written with an escape (parseJson would read another name than its text).
 */
export function topLevelMember(text: string, key: string): [number, number] | undefined {
  const n = text.length;
  const ws = (i: number) => {
    while (i < n && " \t\n\r".includes(text[i])) i++;
    return i;
  };
  const stringEnd = (i: number) => { // i at '"': just past its closing quote
    for (i++; i < n; i++) {
      if (text[i] === "\\") i++;
      else if (text[i] === '"') return i + 1;
    }
    return -1;
  };
  const valueEnd = (i: number): number => {
    if (text[i] === '"') return stringEnd(i);
    if (text[i] === "{" || text[i] === "[") {
      for (let depth = 0; i < n; i++) {
        const c = text[i];
        if (c === '"') {
          const e = stringEnd(i);
          if (e < 0) return -1;
          i = e - 1;
        } else if (c === "{" || c === "[") depth++;
        else if ((c === "}" || c === "]") && --depth === 0) return i + 1;
      }
      return -1;
    }
    while (i < n && !",}] \t\n\r".includes(text[i])) i++;
    return i;
  };
  let i = ws(0);
  if (text[i] !== "{") return undefined;
  i = ws(i + 1);
  let found: [number, number] | undefined;
  if (text[i] === "}") return undefined;
  for (;;) {
    if (text[i] !== '"') return undefined;
    const ke = stringEnd(i);
    if (ke < 0) return undefined;
    const name = text.slice(i + 1, ke - 1);
    if (name.includes("\\")) return undefined;
    i = ws(ke);
    if (text[i] !== ":") return undefined;
    i = ws(i + 1);
    const ve = valueEnd(i);
    if (ve < 0) return undefined;
    if (name === key) {
      if (found) return undefined;
      found = [i, ve];
    }
    i = ws(ve);
    if (text[i] === ",") {
      i = ws(i + 1);
      continue;
    }
    return text[i] === "}" ? found : undefined;
  }
}

/**
 * Keeps config.json's own process (`configText`'s "process", its exact text) in exec.processes as
 * exec would after running it as a --process file: engines write an exec's process file as they
 * wrote config.json's (containerd's shim: the container's process, its args replaced), so the
 * front end takes even the first exec into the container of one that differs from it only in
 * args, env and cwd (runtime/native/process_delta.c). Nothing for a terminal's process (as
 * exec keeps none), or when anything of it is not as an exec would take it. Throws nothing:
 * only a later exec's speed depends on it.
 */
export async function keepConfigProcess(
  rec: ContainerRecord,
  dir: string,
  configText: string,
): Promise<void> {
  try {
    if (!rec.exec) return;
    const span = topLevelMember(configText, "process");
    if (!span) return;
    const source = new TextEncoder().encode(configText.slice(...span));
    if (source.length > KEPT_PROCESS_BYTES) return;
    const proc = fileProcess(
      await processFromFile(parseJson(configText.slice(...span)), "config.json's process"),
      rec.exec.process,
    );
    if (proc.terminal || !proc.cwd?.startsWith("/")) return;
    const { process } = encodeNsexecParts({
      pid: rec.pid,
      pidStartTime: rec.pidStartTime,
      namespaces: [],
      cgroupProcs: [],
      process: { ...buildProcessPlan(proc), seccomp: rec.exec.seccomp, preserveFds: undefined },
      setsid: false,
      detach: false,
    });
    writeExecProcess(dir, execInstance(rec), source, process);
  } catch { /* not kept: its first exec is the CLI's */ }
}

/**
 * The file in a container's state directory that keeps exec's verdicts on --process files for
 * the native front end (writeExecProcess).
 */
export const EXEC_PROCESSES = "exec.processes";

/** How many process files exec.processes keeps (the newest), and the largest it keeps (bytes). */
const KEPT_PROCESSES = 16;
const KEPT_PROCESS_BYTES = 64 << 10;

/**
 * Which container a kept verdict is for: `ID:PID:START` of its init (record.pid, pidStartTime).
 * A container deleted and made again under the same id has another; so has every other
 * container, should the file be copied.
 */
export function execInstance(rec: Pick<ContainerRecord, "id" | "pid" | "pidStartTime">): string {
  return `${rec.id}:${rec.pid}:${rec.pidStartTime}`;
}

/**
 * Keeps exec's verdict on a --process file in `<dir>/exec.processes` (0600, atomically): the
 * file's bytes (`source`, as read) and the process records exec made of them (`records`,
 * encodeNsexecParts's `process`). The native front end (runtime/native/front.c) runs an
 * `exec --process FILE [--detach] [--pid-file PATH] ID` whose file holds exactly these bytes
 * with these records and exec.plan's header, without Deno: engines send the same process again
 * and again (Kubernetes' exec probes), and its validation (checkConfig) and plan depend only on
 * those bytes, this build and what create recorded, none of which changes while the container
 * lives. Layout: u32 LE length, `h` (helperStamp: a file written by another build is not
 * taken), `c` (`instance`, execInstance: the container it was written for, so that an exec
 * that raced a delete and a create under the same id leaves nothing the new one takes), then
 * one `E` record per process, newest first, each holding `j` (the bytes) and `r` (the records);
 * at most KEPT_PROCESSES of them, of at most KEPT_PROCESS_BYTES each. Nothing is written for a
 * container without exec.plan (the front end takes no exec into it). Throws a Deno error when
 * the file cannot be written.
 */
export function writeExecProcess(
  dir: string,
  instance: string,
  source: Uint8Array,
  records: Uint8Array,
): void {
  if (source.length > KEPT_PROCESS_BYTES) return;
  try {
    Deno.lstatSync(`${dir}/${EXEC_PLAN}`);
  } catch {
    return;
  }
  const stamp = helperStamp(nsexecPath());
  const file = `${dir}/${EXEC_PROCESSES}`;
  const kept = readExecProcesses(file, stamp, instance);
  if (kept.length && sameBytes(kept[0][0], source) && sameBytes(kept[0][1], records)) return;
  const entries = [[source, records], ...kept.filter(([s]) => !sameBytes(s, source))]
    .slice(0, KEPT_PROCESSES)
    .map(([j, r]) =>
      ["E", encodeFrontRecords([["j", j], ["r", r]], false)] as [string, Uint8Array]
    );
  writeFileAtomic(file, encodeFrontRecords([["h", stamp], ["c", instance], ...entries]), 0o600);
}

/**
 * The entries of an exec.processes file written by the helper build `stamp` for the container
 * `instance` (execInstance), newest first, as [source, records]; none when it is missing, cut
 * short, another build's or another container's.
 */
export function readExecProcesses(
  file: string,
  stamp: string,
  instance: string,
): [Uint8Array, Uint8Array][] {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(file);
  } catch {
    return [];
  }
  const len = bytes.length >= 4 ? new DataView(bytes.buffer).getUint32(0, true) : -1;
  const top = len === bytes.length - 4 ? decodeRecords(bytes.subarray(4)) : undefined;
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  if (
    !top || top.length < 2 || top[0][0] !== "h" || text(top[0][1]) !== stamp ||
    top[1][0] !== "c" || text(top[1][1]) !== instance
  ) {
    return [];
  }
  const out: [Uint8Array, Uint8Array][] = [];
  for (const [tag, data] of top.slice(2)) {
    const inner = tag === "E" ? decodeRecords(data) : undefined;
    const j = inner?.find(([t]) => t === "j")?.[1];
    const r = inner?.find(([t]) => t === "r")?.[1];
    if (j && r) out.push([j, r]);
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Which build of the helper a plan was written for: `DEV:INO:SIZE:MTIME_MS` of its binary. The
 * front end takes exec.plan only when its own binary (/proc/self/exe) has the same: the bundle
 * and the helper are built and replaced together, so a plan written by another build (capsule
 * upgraded while the container runs) goes to the Deno CLI instead of a helper that may read it
 * otherwise.
 */
export function helperStamp(path: string): string {
  const st = Deno.statSync(path);
  return `${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime() ?? 0}`;
}

/**
 * Namespaces an exec joins when the container's differ from capsule's own, in the helper's
 * order: the user namespace first (its capabilities serve the others), mnt last.
 */
const NAMESPACE_ORDER = ["user", "pid", "ipc", "uts", "net", "cgroup", "mnt"];

/** Why the helper ended without a word (killed, say), for the error. */
async function helperGone(child: HelperProcess): Promise<string> {
  const st = await child.status;
  return st.signal
    ? `${NSEXEC} was killed by ${st.signal}`
    : `${NSEXEC} exited with status ${st.code} before the program started`;
}
