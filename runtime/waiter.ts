// The waiter of a detached container (`run -d`, `image run -d`, `image start`): keeps its
// exit status.
//
// A detached container's init outlives capsule, so its exit status goes to whoever reaps it
// (runc leaves this to conmon or containerd-shim, one resident subreaper per container). capsule
// keeps one per state root instead: the monitor (runtime/native/monitor.c, `capsule-nsexec
// monitor`), a child subreaper started by the first detached run of the root and gone once the
// root has no detached container or log left. A detached run asks it to run the real capsule
// command as its child (which creates and starts the container and exits), so the monitor adopts
// the init. When the init exits it writes the status to <root>/<id>/exit.json (docker's
// convention: 128+N for a signal) unless the state now belongs to another container of that id,
// then runs the run's cleanup. The same process writes every detached log of the root
// (log_writer.ts). Nothing here is on the path of create/start: only the CLI of a detached run
// loads it.
import { CapsuleError } from "./errors.ts";
import { LOG_DEFAULTS, type LogLimits } from "./log_writer.ts";
import { v8FlagsFor } from "./v8_flags.ts";
import { EXIT_FILE, privateDir, rootOwns } from "./state.ts";
import { nsexecPath } from "./nsexec.ts";

export { LOG_DEFAULTS };

export { EXIT_FILE };

/**
 * The env var that tells a capsule run under the waiter not to start another one; its value
 * is the container's id (chosen before, so that a random one is the same in both).
 */
export const WAITED_ENV = "CAPSULE_WAITED";

/** What exit.json holds. */
export interface ExitStatus {
  /** The exit code, or 128 + the signal that killed the init (137: SIGKILL, OOM). */
  exitCode: number;
  /** The signal number that killed it, 0 if it exited. */
  signal: number;
  /** When the waiter reaped it, ISO 8601 UTC. */
  finishedAt: string;
}

/**
 * The word of a waiter's cleanup command that it replaces by PID:START of the init it saw
 * exit (its host pid and field 22 of its stat, from state.json): `stop --exited` acts only on
 * that run of the container.
 */
export const INIT_WORD = "@INIT@";

/** Whether the waiter can run here: capsule's native helper, which holds the monitor, is built. */
export function waiterAvailable(): boolean {
  try {
    nsexecPath();
    return true;
  } catch {
    return false;
  }
}

/**
 * This capsule's own program (without its arguments), to run it again under the waiter, with
 * the V8 flags the launcher gives the command line `args` (runtime/v8_flags.ts).
 */
export function selfCommand(args: readonly string[] = Deno.args): string[] {
  const exe = Deno.execPath();
  if (!/(^|\/)deno$/.test(exe)) return [exe];
  return [
    exe,
    "run",
    "-A",
    "--quiet",
    `--v8-flags=${v8FlagsFor(args)}`,
    new URL(Deno.mainModule).pathname,
  ];
}

/**
 * The cleanup of a kept (not --rm) detached image container with a network, for
 * runUnderWaiter: `capsule stop --exited PID:START ID` under its --root and --store, which
 * gives back its published ports and address once that run's init has exited (docker's stop
 * semantics) and keeps its state (exit status, log).
 */
export function releaseCommand(root: string, store: string, id: string): string[] {
  return [
    ...selfCommand(["stop"]),
    "--root",
    root,
    "--store",
    store,
    "stop",
    "--exited",
    INIT_WORD,
    id,
  ];
}

/**
 * Runs this same capsule command again as a child of its root's monitor (see the module comment),
 * for the container whose state directory is `stateDir` (`<root>/<id>`). Its output goes to this
 * process's stdout and stderr; resolves to its exit code (128+N for a signal N). The monitor stays
 * behind until the init exits, then runs `cleanup` (a command line: --rm's destroyc, or
 * releaseCommand) if one is given, its INIT_WORD replaced by PID:START of that init.
 * Throws CapsuleError if the monitor's client cannot be started.
 */
export async function runUnderWaiter(
  id: string,
  stateDir: string,
  cleanup: string[] = [],
): Promise<number> {
  if (!stateDir.startsWith("/")) stateDir = `${Deno.cwd()}/${stateDir}`; // the monitor is in /
  const root = stateDir.slice(0, stateDir.lastIndexOf("/")) || "/";
  privateDir(root, "--root", rootOwns); // where the monitor's socket goes: closed to others
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(nsexecPath(), {
      args: [
        "monitor",
        "run",
        root,
        stateDir,
        String(cleanup.length),
        ...cleanup,
        ...selfCommand(),
        ...Deno.args,
      ],
      env: { [WAITED_ENV]: id },
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (e) {
    throw new CapsuleError(`Cannot start the container's monitor: ${(e as Error).message}`);
  }
  return (await child.status).code; // 128+N when a signal N ended it (Deno's status)
}

/** The exit status the waiter kept for a stopped container, if any. */
export function readExitStatus(stateDir: string): ExitStatus | undefined {
  try {
    const v = JSON.parse(Deno.readTextFileSync(`${stateDir}/${EXIT_FILE}`));
    return typeof v?.exitCode === "number" ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * --log-max-size / --log-max-files values (docker's json-file options) into numbers; sizes
 * through `parseSize` (bytes, e.g. "10m"). Throws CapsuleError naming the flag and the form.
 */
export function parseLogOptions(
  size: string | undefined,
  files: string | undefined,
  parseSize: (v: string) => number,
): LogLimits {
  let maxSize = LOG_DEFAULTS.maxSize;
  if (size !== undefined) {
    try {
      maxSize = parseSize(size);
    } catch {
      maxSize = -1;
    }
  }
  if (maxSize < 0) {
    throw new CapsuleError(
      `Invalid --log-max-size "${size}": expected bytes with an optional unit (k, m, g), ` +
        `e.g. 10m, or 0 to never rotate`,
    );
  }
  const maxFiles = files === undefined ? LOG_DEFAULTS.maxFiles : Number(files);
  if (!/^\d+$/.test(files ?? "1") || maxFiles < 1) {
    throw new CapsuleError(`Invalid --log-max-files "${files}": expected a whole number >= 1`);
  }
  return { maxSize, maxFiles };
}
