// The container lifecycle, runc-style: create (init waits on exec.fifo), start, kill, delete,
// state, list, and run (create + start + wait + delete). The parent side only: the init's
// side is init.ts. Layers above the runtime (network, images) attach through Extensions.
import * as libc from "../ffi/libc.ts";
import { closeFd, type InitMessage, receiveFrame, sendFrame } from "./channel.ts";
import { CapsuleError, NotFoundError, StateTransitionError } from "./errors.ts";
import { runHooks } from "./hooks.ts";
import { validateId } from "./ids.ts";
import { buildInitPlan, buildProcessPlan, type ExecPlan, type MountOp } from "./plan.ts";
import { signalName } from "./signals.ts";
import { sendToConsoleSocket } from "./terminal.ts";
import {
  exitCode,
  exitReason,
  forkedChild,
  forwardSignals,
  relayed,
  spawnInit,
  utilLinux,
} from "./spawn.ts";
import { compileSeccomp, type SeccompProfile } from "./seccomp.ts";
import { OCI_VERSION, type Process, type Spec } from "./spec.ts";
import {
  type ContainerRecord,
  DEFAULT_ROOT,
  EXEC_FIFO,
  exists,
  initAlive,
  LOG_FILE,
  procStat,
  StateStore,
  type Status,
  writeFileAtomic,
} from "./state.ts";
import type { CgroupDriver, CgroupStats, LinuxResources } from "./cgroups/mod.ts";

/** What create knows about a container, handed to extensions. */
export interface CreateContext {
  id: string;
  pid: number;
  bundle: string;
  spec: Spec;
  record: ContainerRecord;
  /** The container's state directory (for files an extension keeps). */
  dir: string;
  /** Options an extension registered itself for (e.g. network: { name, ports }). */
  options: Record<string, unknown>;
}

/** What `prepare` gets: the create context, and a way to keep data before making anything. */
export interface PrepareContext extends Omit<CreateContext, "pid" | "record"> {
  /**
   * Stores `data` in the container's state now (as `ext[name]`), so that a crash before
   * `prepare` returns is still undone by `delete -f`: call it before mounting or allocating.
   */
  save(data: unknown): void;
}

/** What an extension's `prepare` gives back. */
export interface Prepared {
  /** Extra mounts for the container (e.g. /etc/hosts), as the init's plan takes them. */
  mounts?: MountOp[];
  /** Kept at once in the container's state (`ext[name]`): a crash after this is undone by delete. */
  data?: unknown;
  /** Overrides of the root filesystem (an image's overlay): absolute host path. */
  rootfs?: string;
}

/**
 * A layer above the runtime (network, image) that attaches to the lifecycle, as CNI attaches
 * beside runc. `prepare` runs before the init's plan is made (it may allocate an address, add
 * mounts such as /etc/hosts, mount an overlay root); `created` once the container's
 * namespaces exist (the init waits, nothing of the program ran), and may return new data;
 * `deleted` on delete, and on any create that failed after `prepare` began. `deleted` must be
 * idempotent and cope with data from a `prepare` that stopped halfway.
 */
export interface Extension {
  name: string;
  prepare?(ctx: PrepareContext): Promise<Prepared | void> | Prepared | void;
  created?(ctx: CreateContext): Promise<unknown> | unknown;
  deleted?(record: ContainerRecord, data: unknown): Promise<void> | void;
}

export interface CreateOptions {
  /** Bundle directory (default: the current directory). */
  bundle?: string;
  pidFile?: string;
  /** Detached: stdio to <root>/<id>/container.log, new session. */
  detach?: boolean;
  noPivot?: boolean;
  /** Options for extensions, by extension name. */
  ext?: Record<string, unknown>;
  /** stdio of the container (create: inherit, as runc). */
  stdio?: "inherit" | "null";
  /** Give the program a pseudo-terminal (overrides process.terminal of config.json). */
  tty?: boolean;
  /** Unix socket that receives the pty master (runc's --console-socket). */
  consoleSocket?: string;
}

export interface ExecOptions {
  /** The program and its arguments (unless `process` gives them). */
  args?: string[];
  /** KEY=VALUE, merged over the container's environment. */
  env?: string[];
  cwd?: string;
  user?: { uid: number; gid: number; additionalGids?: number[] };
  /** A whole OCI process (exec --process FILE, as podman and containerd send it). */
  process?: Process;
  /** Output to the exec's own log; returns at once with the exec id. */
  detach?: boolean;
  /**
   * With `detach`: keep the caller's stdio instead of the exec log (runc's `exec -d`, which
   * engines use: conmon hands the process its own pipes and reaps it as a subreaper).
   */
  keepStdio?: boolean;
  pidFile?: string;
  tty?: boolean;
  consoleSocket?: string;
}

export interface OciState {
  ociVersion: string;
  id: string;
  status: Status;
  pid: number;
  bundle: string;
  rootfs: string;
  created: string;
  owner: string;
  annotations: Record<string, string>;
  [k: string]: unknown;
}

export interface RuntimeOptions {
  root?: string;
  extensions?: Extension[];
  /** The cgroup driver; resolved lazily (detection reads mountinfo). */
  cgroups?: () => CgroupDriver | undefined;
  /** Debug lines (capsule --debug): what create does, with milliseconds since it began. */
  debug?: (msg: string) => void;
}

function realDir(path: string, what: string): string {
  try {
    const real = Deno.realPathSync(path);
    if (!Deno.statSync(real).isDirectory) throw new Error("not a directory");
    return real;
  } catch {
    throw new CapsuleError(`${what} "${path}" is not a directory`);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Runtime {
  readonly store: StateStore;
  readonly extensions: Extension[];
  #cgroups?: () => CgroupDriver | undefined;
  #driver?: CgroupDriver | null;

  #debug?: (msg: string) => void;

  constructor(opts: RuntimeOptions = {}) {
    this.store = new StateStore(opts.root ?? DEFAULT_ROOT);
    this.extensions = opts.extensions ?? [];
    this.#cgroups = opts.cgroups;
    this.#debug = opts.debug;
  }

  /** A stopwatch for --debug: `step("name")` logs the milliseconds since the last step. */
  #stopwatch(what: string): (step: string) => void {
    if (!this.#debug) return () => {};
    const t0 = performance.now();
    let last = t0;
    return (step) => {
      const now = performance.now();
      this.#debug!(`${what}: ${step} +${(now - last).toFixed(1)} ms (${(now - t0).toFixed(1)} ms)`);
      last = now;
    };
  }

  get cgroups(): CgroupDriver | undefined {
    if (this.#driver === undefined) this.#driver = this.#cgroups?.() ?? null;
    return this.#driver ?? undefined;
  }

  /** Creates a container; returns its record. The init waits for `start`. */
  async create(id: string, opts: CreateOptions = {}): Promise<ContainerRecord> {
    const { record, child } = await this.#create(id, opts, false);
    child.unref();
    return record;
  }

  async #create(
    id: string,
    opts: CreateOptions,
    foreground: boolean,
  ): Promise<{ record: ContainerRecord; child: Deno.ChildProcess; master?: number }> {
    validateId(id);
    const bundle = realDir(opts.bundle ?? Deno.cwd(), "Bundle");
    let text: string;
    try {
      text = Deno.readTextFileSync(`${bundle}/config.json`);
    } catch {
      throw new CapsuleError(
        `Cannot create container "${id}": bundle "${bundle}" has no config.json`,
      );
    }
    let raw: Spec;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new CapsuleError(
        `Invalid ${bundle}/config.json: not valid JSON: ${(e as Error).message}`,
      );
    }
    const step = this.#stopwatch(`create ${id}`);
    const dir = this.store.claim(id);
    step("state directory claimed");
    // Undone in reverse on failure, after the init is dead (a cgroup with a process in it
    // cannot be removed); the state directory goes last.
    const undo: (() => void | Promise<void>)[] = [];
    let child: Deno.ChildProcess | undefined;
    let fd = -1;
    try {
      const execFifo = `${dir}/${EXEC_FIFO}`;
      libc.mkfifo(execFifo, 0o622);
      Deno.chmodSync(execFifo, 0o622); // mkfifo obeys the umask; a user-namespaced init writes it
      const [parentEnd, childEnd] = libc.socketpair();
      fd = parentEnd;
      libc.setCloexec(parentEnd, true);
      const inherited = [childEnd];
      const namespaces = Array.isArray(raw?.linux?.namespaces) ? raw.linux.namespaces : [];
      const userNs = namespaces.some((n) => n?.type === "user" && !n.path);
      const pidNs = userNs ? undefined : namespaces.find((n) => n?.type === "pid");
      let wrapper: string[] = [];
      let gate: number | undefined;
      if (userNs) {
        // A user namespace is entered only by a single-threaded process, and the init must be
        // its root when it execs (or it loses its capabilities): setpriv becomes the host uid
        // that container root maps to, unshare(1) makes the user namespace and the PID
        // namespace it owns (so /proc can be mounted inside) and forks PID 1, which waits on
        // the gate until the maps are written here, then execs the init.
        const owner = mappedRoot(raw);
        const rootless = Deno.uid() !== 0;
        if (rootless && owner.uid !== Deno.uid()) {
          throw new CapsuleError(
            `Cannot create container "${id}": run as uid ${Deno.uid()}, capsule can only map ` +
              `the container's root to your own uid (linux.uidMappings maps it to ${owner.uid}); ` +
              `see "capsule spec --rootless"`,
          );
        }
        const tools = [rootless ? "" : utilLinux("setpriv"), utilLinux("unshare")];
        const [ours, theirs] = libc.socketpair();
        libc.setCloexec(ours, true);
        gate = ours;
        undo.push(() => {
          if (gate !== undefined) closeFd(gate); // it never got to the maps
        });
        inherited.push(theirs);
        const newPid = namespaces.some((n) => n?.type === "pid" && !n.path);
        wrapper = [
          ...(rootless
            ? []
            : [tools[0], `--reuid=${owner.uid}`, `--regid=${owner.gid}`, "--clear-groups", "--"]),
          tools[1],
          "--user",
          ...(newPid ? ["--pid"] : []),
          "--fork",
          "--kill-child",
          "--",
          "/bin/bash", // dash cannot read from an fd above 9
          "-c",
          `read -r _ <&${theirs}; exec "$0" "$@"`,
        ];
      }
      // What the init inherits (no CLOEXEC), so that it never reaches the state directory by
      // path: the fifo (O_PATH) and, detached, the log. Closed here once the init runs.
      const fifoFd = libc.open(execFifo, libc.O.PATH);
      inherited.push(fifoFd);
      const logFd = opts.detach
        ? libc.open(`${dir}/${LOG_FILE}`, libc.O.WRONLY | libc.O.CREAT | libc.O.APPEND, 0o640)
        : undefined;
      if (logFd !== undefined) inherited.push(logFd);
      // Start the init first: its Deno start-up overlaps the validation below.
      try {
        child = spawnInit(
          childEnd,
          pidNs,
          opts.detach ? "null" : (opts.stdio ?? "inherit"),
          wrapper,
        );
      } finally {
        for (const f of inherited) closeFd(f);
      }
      step(`init spawned (pid ${child.pid})`);
      let pid = child.pid;
      if (gate !== undefined) {
        try {
          pid = await forkedChild(child.pid);
          writeIdMappings(id, pid, raw);
          libc.writeAll(gate, new TextEncoder().encode("go\n"));
        } finally {
          closeFd(gate); // on failure the helper reads EOF, and is killed with the init
          gate = undefined;
        }
      }
      const record: ContainerRecord = {
        ociVersion: OCI_VERSION,
        id,
        pid,
        pidStartTime: procStat(pid)?.startTime ?? "",
        bundle,
        rootfs: "",
        created: new Date().toISOString(),
        annotations: {},
        creating: true,
      };
      this.store.write(record);

      // The cgroup before validation, so that joining it overlaps the work below.
      const cg = this.cgroups;
      let joined: Promise<unknown> = Promise.resolve();
      const rawCgroupsPath = typeof raw?.linux?.cgroupsPath === "string"
        ? raw.linux.cgroupsPath
        : undefined;
      const cgroupPaths = cg?.paths(rawCgroupsPath, id);
      if (cg && cgroupPaths) {
        const paths = cgroupPaths;
        // A cgroup that holds processes already is someone else's: delete -f would kill them.
        const busy = cg.pids(paths);
        if (busy.length) {
          throw new CapsuleError(
            `Cannot create container "${id}": its cgroup ${Object.values(paths)[0]} already has ` +
              `processes (${busy.slice(0, 5).join(", ")}); choose another linux.cgroupsPath`,
          );
        }
        record.cgroupPaths = paths;
        record.cgroupParentShared = rawCgroupsPath === undefined;
        this.store.write(record);
        undo.push(() => cg.destroy(paths));
        try {
          cg.create(paths);
        } catch {
          // A delete may have removed the shared "capsule" parent in between: once more.
          cg.create(paths);
        }
        // On pool threads, while zod loads here and the init's Deno starts: the first write
        // to cgroup.procs waits for an RCU grace period (~15 ms on v1).
        joined = Promise.all(
          [...new Set(Object.values(paths))].map((d) =>
            Deno.writeTextFile(`${d}/cgroup.procs`, String(pid)).catch((e) => {
              throw new CapsuleError(
                `Cannot add process ${pid} to ${d}/cgroup.procs: ${(e as Error).message}`,
              );
            })
          ),
        );
        joined.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile
      }
      step("cgroups made");

      const { validateConfig } = await import("./config.ts");
      const spec = validateConfig(raw, `${bundle}/config.json`);
      step("config.json validated");
      if (opts.tty !== undefined) spec.process!.terminal = opts.tty;
      const terminal = spec.process!.terminal === true;
      if (terminal && !opts.consoleSocket && !foreground) {
        throw new CapsuleError(
          `Cannot create container "${id}": process.terminal is true, so give --console-socket ` +
            `(or run it in the foreground with "capsule run")`,
        );
      }
      if (!(spec.linux?.namespaces ?? []).some((n) => n.type === "mount")) {
        throw new CapsuleError(
          `Invalid ${bundle}/config.json: linux.namespaces: capsule needs a "mount" namespace`,
        );
      }
      if (!userNs && (spec.linux?.namespaces ?? []).some((n) => n.type === "user")) {
        throw new CapsuleError(
          `Cannot create container "${id}": joining a user namespace by path is not supported; ` +
            `let capsule make one (linux.namespaces {"type": "user"} with uid/gid mappings)`,
        );
      }
      record.annotations = spec.annotations ?? {};
      record.hooks = { poststart: spec.hooks?.poststart, poststop: spec.hooks?.poststop };
      if (opts.detach && !terminal) record.logFile = `${dir}/${LOG_FILE}`;

      const base = { id, bundle, spec, dir, options: opts.ext ?? {} };
      const extraMounts: MountOp[] = [];
      record.ext = {};
      for (const x of this.extensions) {
        undo.push(() => x.deleted?.(record, record.ext?.[x.name]));
        const save = (data: unknown) => {
          record.ext![x.name] = data;
          this.store.write(record);
        };
        const r = await x.prepare?.({ ...base, save });
        if (r?.mounts) extraMounts.push(...r.mounts);
        if (r?.rootfs) spec.root!.path = record.rootfs = r.rootfs;
        if (r?.data !== undefined) {
          record.ext[x.name] = r.data;
          this.store.write(record);
        }
      }
      const rootfs = spec.root!.path.startsWith("/")
        ? spec.root!.path
        : `${bundle}/${spec.root!.path}`;
      if (!exists(rootfs) || !Deno.statSync(rootfs).isDirectory) {
        throw new CapsuleError(
          `Cannot create container "${id}": rootfs "${rootfs}" (root.path in config.json) does not exist`,
        );
      }
      record.rootfs = rootfs;
      const plan = buildInitPlan(spec, {
        cgroups: cgroupPaths,
        id,
        bundle,
        execFifoFd: fifoFd,
        logFd: record.logFile ? logFd : undefined,
        detach: opts.detach,
        noPivot: opts.noPivot,
        extraMounts,
      });

      await joined;
      if (cg && cgroupPaths) cg.apply(cgroupPaths, containerResources(spec));

      step("limits applied, plan ready");
      try {
        sendFrame(fd, plan);
      } catch { /* the init failed already: its message is waiting below */ }
      const msg = receiveFrame<InitMessage>(fd);
      step("init ready (namespaces, mounts, pivot_root)");
      if (!msg || msg.type !== "ready") {
        const why = msg?.type === "error" ? msg.message : await exitReason(child);
        throw new CapsuleError(`Cannot create container "${id}": ${why}`);
      }
      let master: number | undefined;
      if (terminal) {
        master = libc.recvFd(fd);
        if (opts.consoleSocket) {
          sendToConsoleSocket(opts.consoleSocket, master);
          master = undefined;
        } else {
          const m = master;
          undo.push(() => libc.close(m));
        }
      }

      for (const x of this.extensions) {
        const data = await x.created?.({ ...base, pid, record });
        if (data !== undefined) {
          record.ext[x.name] = data;
          this.store.write(record);
        }
      }
      const ociState = this.#ociState(record, "created");
      await runHooks("prestart", spec.hooks?.prestart, ociState);
      await runHooks("createRuntime", spec.hooks?.createRuntime, ociState);

      step("extensions and hooks done");
      delete record.creating;
      this.store.write(record);
      if (opts.pidFile) writeFileAtomic(opts.pidFile, `${pid}`);
      return { record, child, master };
    } catch (e) {
      if (child) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        await child.status;
      }
      for (const u of undo.reverse()) {
        try {
          await u();
        } catch { /* best effort: report the first error */ }
      }
      this.store.remove(id);
      throw e;
    } finally {
      if (fd >= 0) closeFd(fd);
    }
  }

  /** Releases a created container: its init execs the program. Returns at once. */
  async start(id: string): Promise<void> {
    const rec = this.store.load(id);
    const status = this.status(rec);
    if (status !== "created") throw new StateTransitionError(id, "start", status, ["created"]);
    const fifo = `${this.store.dir(id)}/${EXEC_FIFO}`;
    const fd = libc.open(fifo, libc.O.RDONLY | libc.O.NONBLOCK | libc.O.CLOEXEC);
    try {
      const buf = new Uint8Array(1);
      const deadline = Date.now() + 10_000;
      for (;;) {
        let n = 0;
        try {
          n = libc.read(fd, buf);
        } catch (e) {
          if ((e as libc.SysError).code !== "EAGAIN") throw e;
        }
        if (n === 1) break;
        if (!initAlive(rec)) {
          throw new CapsuleError(`Cannot start container "${id}": its init process has exited`);
        }
        if (Date.now() > deadline) {
          throw new CapsuleError(`Cannot start container "${id}": its init did not answer in 10 s`);
        }
        await sleep(1);
      }
    } finally {
      libc.close(fd);
    }
    Deno.removeSync(fifo);
    await runHooks("poststart", rec.hooks?.poststart, this.#ociState(rec, "running"));
  }

  /**
   * create + start in the foreground: stdio attached, signals to capsule passed on, the
   * program's exit status returned (128+N for signal N), the container deleted afterwards.
   * Detached (`detach`): returns once started, with exit status 0.
   */
  async run(id: string, opts: CreateOptions = {}): Promise<number> {
    const { child, master } = await this.#create(id, opts, !opts.detach);
    if (opts.detach) {
      child.unref();
      await this.start(id);
      return 0;
    }
    const stopForwarding = forwardSignals(child);
    try {
      try {
        await this.start(id);
      } catch (e) {
        await this.delete(id, { force: true });
        throw e;
      }
      const status = master === undefined ? await child.status : await relayed(master, child);
      await this.delete(id, { force: true });
      return exitCode(status);
    } finally {
      stopForwarding();
    }
  }

  #cgroupOf(
    id: string,
    action: string,
  ): { rec: ContainerRecord; cg: CgroupDriver; status: Status } {
    const rec = this.store.load(id);
    const status = this.status(rec);
    const cg = this.cgroups;
    if (!cg || !rec.cgroupPaths || !Object.keys(rec.cgroupPaths).length) {
      throw new CapsuleError(`Cannot ${action} container "${id}": it has no cgroup`);
    }
    return { rec, cg, status };
  }

  /** Applies new limits to a live container (`capsule update`). */
  update(id: string, resources: LinuxResources): void {
    const { rec, cg, status } = this.#cgroupOf(id, "update");
    if (status === "stopped") {
      throw new StateTransitionError(id, "update", status, ["created", "running", "paused"]);
    }
    cg.apply(rec.cgroupPaths!, resources);
  }

  /** Freezes every process of a running container. */
  pause(id: string): void {
    const { rec, cg, status } = this.#cgroupOf(id, "pause");
    if (status !== "running") throw new StateTransitionError(id, "pause", status, ["running"]);
    cg.freeze(rec.cgroupPaths!);
  }

  resume(id: string): void {
    const { rec, cg, status } = this.#cgroupOf(id, "resume");
    if (status !== "paused") throw new StateTransitionError(id, "resume", status, ["paused"]);
    cg.thaw(rec.cgroupPaths!);
  }

  /** Memory, cpu, pids and OOM counts of the container's cgroup. */
  stats(id: string): CgroupStats {
    const { rec, cg } = this.#cgroupOf(id, "read the stats of");
    return cg.stats(rec.cgroupPaths!);
  }

  /**
   * Runs one more program in a created or running container: same namespaces and cgroup, the
   * container's environment with `env` over it. Foreground: returns the exit status.
   * Detached: returns the exec id at once (its output: `execLogFile(id, execId)`).
   */
  async exec(
    id: string,
    opts: ExecOptions,
  ): Promise<{ code?: number; execId?: string; pid: number }> {
    const rec = this.store.load(id);
    const status = this.status(rec);
    if (status !== "created" && status !== "running") {
      throw new StateTransitionError(id, "exec in", status, ["created", "running"]);
    }
    let base: Process | undefined, seccomp: unknown;
    try {
      const config = JSON.parse(Deno.readTextFileSync(`${rec.bundle}/config.json`)) as Spec;
      base = config.process;
      seccomp = config.linux?.seccomp;
    } catch { /* the bundle went away: exec with what was given */ }
    let proc: Process;
    if (opts.process) {
      proc = opts.process;
    } else {
      if (!opts.args?.length) {
        throw new CapsuleError(`Cannot exec in container "${id}": no command given`);
      }
      const env = new Map<string, string>();
      for (const e of [...(base?.env ?? []), ...(opts.env ?? [])]) {
        const i = e.indexOf("=");
        if (i <= 0) throw new CapsuleError(`Invalid environment variable "${e}": use KEY=VALUE`);
        env.set(e.slice(0, i), e.slice(i + 1));
      }
      proc = {
        ...base,
        terminal: false,
        args: opts.args,
        env: [...env].map(([k, v]) => `${k}=${v}`),
        cwd: opts.cwd ?? base?.cwd ?? "/",
        user: opts.user ?? base?.user ?? { uid: 0, gid: 0 },
      };
    }
    if (opts.tty !== undefined) proc = { ...proc, terminal: opts.tty };
    if (proc.terminal && opts.detach && !opts.consoleSocket) {
      throw new CapsuleError(
        `Cannot exec in container "${id}": a detached terminal needs --console-socket`,
      );
    }
    if (!proc.cwd?.startsWith("/")) {
      throw new CapsuleError(`Invalid working directory "${proc.cwd}": it must be absolute`);
    }
    const namespaces: string[] = [];
    const same = (ns: string) => {
      try {
        return Deno.readLinkSync(`/proc/${rec.pid}/ns/${ns}`) ===
          Deno.readLinkSync(`/proc/self/ns/${ns}`);
      } catch {
        return true;
      }
    };
    for (const ns of ["ipc", "uts", "net", "cgroup", "mnt"]) if (!same(ns)) namespaces.push(ns);
    const execId = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
    const plan: ExecPlan = {
      kind: "exec",
      pid: rec.pid,
      namespaces,
      // The container's seccomp profile holds for what is exec'd into it too.
      process: {
        ...buildProcessPlan(proc),
        seccomp: seccomp ? compileSeccomp(seccomp as SeccompProfile) : undefined,
      },
      logFd: undefined,
      setsid: (opts.detach && !opts.keepStdio) ?? false,
    };
    const [parentEnd, childEnd] = libc.socketpair();
    libc.setCloexec(parentEnd, true);
    let child: Deno.ChildProcess;
    let master: number | undefined;
    const userNsEntered = !same("user");
    let execPid = 0;
    // Detached: the exec's own log, opened here and inherited (the exec-init may be a user
    // namespace's root that cannot reach the state directory by path).
    if (opts.detach && !opts.keepStdio && !proc.terminal) {
      plan.logFd = libc.open(
        this.execLogFile(id, execId),
        libc.O.WRONLY | libc.O.CREAT | libc.O.APPEND,
        0o640,
      );
    }
    try {
      // A container with its own user namespace: nsenter(1), single-threaded, enters it (as
      // its root) and then its PID namespace, which needs no capability of ours on the host
      // (an unprivileged user has none), and forks the exec-init there.
      const wrapper = userNsEntered
        ? [
          utilLinux("nsenter"),
          `--user=/proc/${rec.pid}/ns/user`,
          // An unprivileged user is itself the namespace's root (and setgroups is denied).
          ...(Deno.uid() === 0 ? [] : ["--preserve-credentials"]),
          ...(same("pid") ? [] : [`--pid=/proc/${rec.pid}/ns/pid`]),
          "--",
        ]
        : [];
      child = spawnInit(
        childEnd,
        same("pid") || userNsEntered ? undefined : { path: `/proc/${rec.pid}/ns/pid` },
        opts.detach && !opts.keepStdio ? "null" : "inherit",
        wrapper,
      );
    } catch (e) {
      closeFd(parentEnd);
      throw e;
    } finally {
      closeFd(childEnd);
      if (plan.logFd !== undefined) closeFd(plan.logFd);
    }
    try {
      // Under nsenter --pid, the exec's process is nsenter's child.
      execPid = userNsEntered && !same("pid") ? await forkedChild(child.pid) : child.pid;
      if (rec.cgroupPaths && Object.keys(rec.cgroupPaths).length) {
        this.cgroups?.addProcess(rec.cgroupPaths, execPid);
      }
      sendFrame(parentEnd, plan);
      const msg = receiveFrame<InitMessage>(parentEnd);
      if (!msg || msg.type !== "ready") {
        const why = msg?.type === "error" ? msg.message : await exitReason(child);
        throw new CapsuleError(`Cannot exec in container "${id}": ${why}`);
      }
      if (proc.terminal) {
        master = libc.recvFd(parentEnd);
        if (opts.consoleSocket) {
          sendToConsoleSocket(opts.consoleSocket, master);
          master = undefined;
        }
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
    if (opts.pidFile) writeFileAtomic(opts.pidFile, `${execPid}`);
    if (opts.detach) {
      child.unref();
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

  /** Where a detached exec's output goes. */
  execLogFile(id: string, execId: string): string {
    if (!/^[0-9a-f]{12}$/.test(execId)) throw new CapsuleError(`Invalid exec id "${execId}"`);
    return `${this.store.dir(id)}/exec-${execId}.log`;
  }

  /** The processes of a container: host pid, pid inside, uid, command line. */
  processes(id: string): { pid: number; cpid: number; uid: number; command: string }[] {
    const rec = this.store.load(id);
    const out = [];
    for (const pid of this.pids(rec).sort((a, b) => a - b)) {
      try {
        const status = Deno.readTextFileSync(`/proc/${pid}/status`);
        const nspid = /^NSpid:\s*(.*)$/m.exec(status)?.[1].trim().split(/\s+/) ?? [String(pid)];
        const uid = Number(/^Uid:\s*(\d+)/m.exec(status)?.[1] ?? -1);
        let command = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter(Boolean)
          .join(" ");
        if (!command) command = `[${/^Name:\s*(.*)$/m.exec(status)?.[1] ?? "?"}]`;
        out.push({ pid, cpid: Number(nspid.at(-1)), uid, command });
      } catch { /* exited meanwhile */ }
    }
    return out;
  }

  status(rec: ContainerRecord): Status {
    const cg = this.cgroups;
    return this.store.status(
      rec,
      cg && rec.cgroupPaths ? (r) => cg.isFrozen(r.cgroupPaths!) : undefined,
    );
  }

  #ociState(rec: ContainerRecord, status: Status): OciState {
    return {
      ociVersion: rec.ociVersion,
      id: rec.id,
      status,
      pid: status === "stopped" ? 0 : rec.pid,
      bundle: rec.bundle,
      rootfs: rec.rootfs,
      created: rec.created,
      owner: "",
      annotations: rec.annotations,
    };
  }

  /** The OCI state of a container, plus capsule's fields from extensions (ip...). */
  state(id: string, detail = false): OciState {
    const rec = this.store.load(id);
    const status = this.status(rec);
    const out = this.#ociState(rec, status);
    for (const v of Object.values(rec.ext ?? {})) {
      if (v && typeof v === "object" && "summary" in v) {
        Object.assign(out, (v as { summary: object }).summary);
      }
    }
    if (detail) {
      let stats: CgroupStats | undefined;
      if (status !== "stopped" && rec.cgroupPaths && this.cgroups) {
        try {
          stats = this.cgroups.stats(rec.cgroupPaths);
        } catch { /* the cgroup went away meanwhile */ }
      }
      out.detail = {
        pidStartTime: rec.pidStartTime,
        cgroupPaths: rec.cgroupPaths ?? {},
        stats,
        logFile: rec.logFile,
        ext: rec.ext ?? {},
        config: `${rec.bundle}/config.json`,
      };
    }
    return out;
  }

  /** Every container under the root; a directory a crash left half-made is listed as stopped. */
  list(): OciState[] {
    const out: OciState[] = [];
    for (const id of this.store.ids()) {
      try {
        const rec = this.store.read(id);
        if (rec) out.push(this.state(id));
        else {
          out.push({
            ociVersion: OCI_VERSION,
            id,
            status: "stopped",
            pid: 0,
            bundle: "",
            rootfs: "",
            created: "",
            owner: "",
            annotations: {},
          });
        }
      } catch { /* damaged: skip, delete -f can remove it */ }
    }
    return out;
  }

  /** The host pids of every process of the container (cgroup, else its PID namespace). */
  pids(rec: ContainerRecord): number[] {
    const cg = this.cgroups;
    if (cg && rec.cgroupPaths && Object.keys(rec.cgroupPaths).length) {
      try {
        return cg.pids(rec.cgroupPaths);
      } catch { /* fall back to the namespace */ }
    }
    if (!initAlive(rec)) return [];
    let ns: string;
    try {
      ns = Deno.readLinkSync(`/proc/${rec.pid}/ns/pid`);
    } catch {
      return [];
    }
    if (ns === Deno.readLinkSync("/proc/self/ns/pid")) return [rec.pid];
    const out: number[] = [];
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      try {
        if (Deno.readLinkSync(`/proc/${e.name}/ns/pid`) === ns) out.push(Number(e.name));
      } catch { /* exited meanwhile */ }
    }
    return out;
  }

  /** Sends a signal to the init (or, with `all`, to every process of the container). */
  kill(id: string, signal: number, all = false): void {
    const rec = this.store.load(id);
    const status = this.status(rec);
    if (status === "stopped") {
      throw new StateTransitionError(id, "kill", status, ["created", "running", "paused"]);
    }
    const targets = all ? this.pids(rec) : [rec.pid];
    for (const pid of targets) {
      try {
        libc.kill(pid, signal);
      } catch (e) {
        if ((e as libc.SysError).code !== "ESRCH") {
          throw new CapsuleError(
            `Cannot send ${signalName(signal)} to container "${id}": ${(e as Error).message}`,
          );
        }
      }
    }
    // A frozen container gets the signal when it thaws; SIGKILL must not wait for that.
    if (signal === 9 && status === "paused" && rec.cgroupPaths) this.cgroups?.thaw(rec.cgroupPaths);
  }

  /** Removes a stopped container and all it held; `force` kills a live one first. */
  async delete(id: string, opts: { force?: boolean } = {}): Promise<void> {
    validateId(id);
    let rec: ContainerRecord | undefined;
    try {
      rec = this.store.read(id);
    } catch (e) {
      // runc's contract, which engines rely on: delete --force of a gone container succeeds.
      if (opts.force && e instanceof NotFoundError) return;
      // A damaged state.json: -f removes the directory (its cgroups cannot be known).
      if (!opts.force || e instanceof NotFoundError) throw e;
      this.store.remove(id);
      return;
    }
    if (!rec) {
      // A directory a crash left without a state: only -f removes it (nothing else to undo).
      if (!opts.force) {
        throw new CapsuleError(
          `Container "${id}" was never fully created; remove it with "capsule delete -f ${id}"`,
        );
      }
      this.store.remove(id);
      return;
    }
    const status = this.status(rec);
    if (status !== "stopped") {
      if (!opts.force) throw new StateTransitionError(id, "delete", status, ["stopped"]);
      await this.#killAndWait(rec);
    }
    const errors: string[] = [];
    for (const x of [...this.extensions].reverse()) {
      try {
        await x.deleted?.(rec, rec.ext?.[x.name]);
      } catch (e) {
        errors.push(`${x.name}: ${(e as Error).message}`);
      }
    }
    if (rec.cgroupPaths && this.cgroups) {
      try {
        this.cgroups.destroy(rec.cgroupPaths);
        // The default parent ("capsule") goes with its last container, like docker's.
        if (rec.cgroupParentShared) {
          for (const dir of new Set(Object.values(rec.cgroupPaths))) {
            try {
              Deno.removeSync(dir.slice(0, dir.lastIndexOf("/")));
            } catch { /* other containers still use it */ }
          }
        }
      } catch (e) {
        errors.push(`cgroups: ${(e as Error).message}`);
      }
    }
    try {
      await runHooks("poststop", rec.hooks?.poststop, this.#ociState(rec, "stopped"));
    } catch (e) {
      errors.push((e as Error).message); // runc: poststop failures are logged, delete goes on
    }
    this.store.remove(id);
    if (errors.length) {
      throw new CapsuleError(
        `Container "${id}" deleted, but cleanup reported: ${errors.join("; ")}`,
      );
    }
  }

  async #killAndWait(rec: ContainerRecord): Promise<void> {
    const deadline = Date.now() + 10_000;
    const cg = this.cgroups;
    if (cg && rec.cgroupPaths && this.status(rec) === "paused") cg.thaw(rec.cgroupPaths);
    for (;;) {
      const pids = new Set([...this.pids(rec), ...(initAlive(rec) ? [rec.pid] : [])]);
      if (pids.size === 0) return;
      for (const p of pids) {
        try {
          libc.kill(p, 9);
        } catch { /* gone */ }
      }
      if (Date.now() > deadline) {
        throw new CapsuleError(`Container "${rec.id}" did not die within 10 s of SIGKILL`);
      }
      await sleep(5);
    }
  }
}

type IdMap = { containerID: number; hostID: number; size: number };

function idMappings(raw: Spec): { uid: IdMap[]; gid: IdMap[] } {
  const ok = (m: unknown): m is IdMap[] =>
    Array.isArray(m) && m.length > 0 &&
    m.every((x) =>
      [x?.containerID, x?.hostID, x?.size].every((v) => Number.isInteger(v) && v >= 0)
    );
  const uid = raw.linux?.uidMappings, gid = raw.linux?.gidMappings;
  if (!ok(uid) || !ok(gid)) {
    throw new CapsuleError(
      `Invalid config.json: linux.uidMappings and linux.gidMappings are needed with a user ` +
        `namespace (e.g. [{"containerID": 0, "hostID": 100000, "size": 65536}])`,
    );
  }
  return { uid, gid };
}

/** The host uid and gid that the container's root maps to. */
function mappedRoot(raw: Spec): { uid: number; gid: number } {
  const { uid, gid } = idMappings(raw);
  const host = (m: IdMap[], what: string) => {
    const r = m.find((x) => x.containerID === 0);
    if (!r) {
      throw new CapsuleError(
        `Invalid config.json: linux.${what}Mappings must map the container's ${what} 0`,
      );
    }
    return r.hostID;
  };
  return { uid: host(uid, "uid"), gid: host(gid, "gid") };
}

/**
 * The user namespace's uid_map and gid_map, written from here (host root) before the init
 * execs: any number of mappings, as the OCI spec gives them.
 */
function writeIdMappings(id: string, pid: number, raw: Spec): void {
  const { uid, gid } = idMappings(raw);
  const text = (m: IdMap[]) => m.map((x) => `${x.containerID} ${x.hostID} ${x.size}`).join("\n");
  // An unprivileged user may map only itself, and only once setgroups is denied.
  if (Deno.uid() !== 0) Deno.writeTextFileSync(`/proc/${pid}/setgroups`, "deny");
  for (const [file, maps] of [["uid_map", uid], ["gid_map", gid]] as const) {
    try {
      Deno.writeTextFileSync(`/proc/${pid}/${file}`, text(maps) + "\n");
    } catch (e) {
      throw new CapsuleError(
        `Cannot create container "${id}": the kernel refused ${file} "${text(maps)}": ` +
          `${(e as Error).message}`,
      );
    }
  }
}

/** linux.resources, with allow rules for the devices of linux.devices (as runc adds them). */
function containerResources(spec: Spec): LinuxResources {
  const r = spec.linux?.resources as LinuxResources | undefined;
  const devices = spec.linux?.devices ?? [];
  return {
    ...r,
    devices: [
      // Deny every device first, as runc does, whatever the config says; the driver then adds
      // the defaults (null, zero, tty, pts...) and the config's own rules come after.
      { allow: false, access: "rwm" },
      ...(r?.devices ?? []),
      ...devices.filter((d) => d.type !== "p").map((d) => ({
        allow: true,
        type: d.type === "u" ? "c" : d.type,
        major: d.major,
        minor: d.minor,
        access: "rwm",
      })),
    ],
  };
}

export { NotFoundError };
