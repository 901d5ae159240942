// The state of one create in progress (create.ts runs the steps that fill it in) and the
// options it was given.
import type { CgroupDriver, CgroupPaths } from "./cgroups/mod.ts";
import type { RuntimeContext } from "./context.ts";
import type { CreateContext, Extension } from "./extension.ts";
import type { LogLimits } from "./log_writer.ts";
import type { InitPlan, MountOp } from "./plan.ts";
import type { HelperProcess } from "./helper_process.ts";
import type { Spec } from "./spec.ts";
import type { ContainerRecord } from "./state.ts";

/** How to create a container (capsule create/run's flags). */
export interface CreateOptions {
  /** Bundle directory (default: the current directory). */
  bundle?: string;
  /** Write the init's host pid to this file (atomically) once created. */
  pidFile?: string;
  /** Detached: stdio to <root>/<id>/container.log, new session. */
  detach?: boolean;
  /**
   * Detached: the log's rotation (log_writer.ts; default LOG_DEFAULTS, 10 MiB x 3 files),
   * kept in the record for detached execs.
   */
  log?: LogLimits;
  /** Switch root with MS_MOVE + chroot instead of pivot_root (a ramfs root cannot pivot). */
  noPivot?: boolean;
  /** Options for extensions, by extension name. */
  ext?: Record<string, unknown>;
  /** stdio of the container (create: inherit, as runc). */
  stdio?: "inherit" | "null";
  /** Give the program a pseudo-terminal (overrides process.terminal of config.json). */
  tty?: boolean;
  /** Unix socket that receives the pty master (runc's --console-socket). */
  consoleSocket?: string;
  /** Pass the caller's fds 3 to 3+N-1 on to the program (runc's --preserve-fds). */
  preserveFds?: number;
  /**
   * systemd socket activation: the first N fds from 3 are the caller's listening sockets (its
   * LISTEN_FDS, for capsule's pid): passed on before the --preserve-fds ones, and the program
   * gets LISTEN_FDS=N and LISTEN_PID=its own pid, as runc does.
   */
  listenFds?: number;
}

/** What create works on, filled in by the steps in order. */
export class Creating {
  readonly step: (name: string) => void;
  dir = "";
  /**
   * The id's lock (StateStore.lock), held from the claim until create ended or was undone: a
   * delete -f of the id waits for it instead of removing the directory and cgroups while the
   * create goes on (which left an init nothing lists).
   */
  idLock: Deno.FsFile | undefined;
  /** Our end of the channel to the init. */
  fd = -1;
  /** The init's end of the channel: it inherits it, closed here once it runs. */
  childEnd = -1;
  /** A user namespace of its own: unshare(1) runs the init after the maps are written. */
  userNs: { wrapper: string[]; gate: number | undefined; theirs: number } | undefined;
  child: HelperProcess | undefined;
  /**
   * Without a user namespace the helper clones the init into its place (plan.ts InitPlacement):
   * the PID namespace it makes or joins (undefined: none). `child` is the helper until the
   * init's pid came back ("init cloned"), then the init; the helper is `firstStage`.
   */
  clone: { pidNs?: { path?: string } } | undefined;
  /** The helper that cloned the init (it exits at once; reaped before create returns). */
  firstStage: HelperProcess | undefined;
  /** The init's host pid (under unshare, its forked child). */
  pid = 0;
  fifoFd = -1;
  /** config.json's text as read (its process is kept for the front end: exec.ts). */
  configText = "";
  /** The caller's fds the program gets (--preserve-fds), found before any fd of ours opened. */
  passFds: number[] | undefined;
  /** Detached: the write end of the pipe to the root's monitor, for the init. */
  logFd: number | undefined;
  /** Detached: the file that appears once the log has its last bytes (log_writer.ts). */
  logDone: string | undefined;
  /** Detached: the log's rotation in force (the option, else the defaults). */
  logLimits: LogLimits | undefined;
  record!: ContainerRecord;
  cg: CgroupDriver | undefined;
  cgroupPaths: CgroupPaths | undefined;
  /** Joining the cgroup (writes on pool threads, awaited before the limits). */
  joined: Promise<unknown> = Promise.resolve();
  spec!: Spec;
  terminal = false;
  /** The extensions' `created` ran (create_init.ts extensionsCreated). */
  extensionsAttached = false;
  extraMounts: MountOp[] = [];
  /** Extensions whose `prepare` began (their `deleted` undoes it). */
  prepared: Extension[] = [];
  plan!: InitPlan;
  master: number | undefined;

  constructor(
    readonly ctx: RuntimeContext,
    readonly id: string,
    readonly opts: CreateOptions,
    readonly foreground: boolean,
    readonly bundle: string,
    readonly raw: Spec,
  ) {
    this.step = ctx.stopwatch(`create ${id}`);
  }

  /** What extensions are told about the container. */
  get base(): Omit<CreateContext, "pid" | "record"> {
    const { id, bundle, spec, dir } = this;
    return { id, bundle, spec, dir, options: this.opts.ext ?? {} };
  }

  save(): void {
    this.ctx.store.write(this.record);
  }
}
