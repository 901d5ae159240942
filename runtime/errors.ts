// Typed errors of the runtime. The CLI maps them to exit codes: a UsageError is misuse of the
// command line (2), any other CapsuleError is a failure the user can act on (1); anything else
// is a bug and keeps its stack.

/** A failure with a message meant for the user: it names the value and what to do. */
export class CapsuleError extends Error {
  /** "CapsuleError". */
  override name = "CapsuleError";
  /** `message` names the value and what to do; `options.cause` keeps the underlying error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Misuse of the command line: unknown flag, missing argument (exit status 2). */
export class UsageError extends CapsuleError {
  /** "UsageError". */
  override name = "UsageError";
}

/** The container does not exist. */
export class NotFoundError extends CapsuleError {
  /** "NotFoundError". */
  override name = "NotFoundError";
  /** The message names the container id. */
  constructor(readonly id: string) {
    super(`container "${id}" does not exist`);
  }
}

/**
 * runc's words for an illegal move (libcontainer/error.go: ErrNotRunning, ErrNotPaused), kept
 * in capsule's message because engines match on them: containerd's shim treats a kill error
 * containing "container not running" as "process already finished" (pkg/process/utils.go
 * checkKillError), anything else as a failure. See docs/engines.md.
 */
function runcWords(action: string): string | undefined {
  if (action === "resume") return "container not paused";
  if (["kill", "pause", "update"].includes(action)) return "container not running";
  return undefined;
}

/**
 * An illegal move of the lifecycle state machine ("start a stopped container"): `Cannot kill
 * container "web": it is stopped, not created or running or paused (container not running)`,
 * with runc's words in parentheses where engines parse them.
 */
export class StateTransitionError extends CapsuleError {
  /** "StateTransitionError". */
  override name = "StateTransitionError";
  /** `action` was asked of container `id` in `status`; it needs one of `allowed`. */
  constructor(
    readonly id: string,
    readonly action: string,
    readonly status: string,
    readonly allowed: readonly string[],
  ) {
    const runc = runcWords(action);
    super(
      `Cannot ${action} container "${id}": it is ${status}, not ${allowed.join(" or ")}` +
        (runc ? ` (${runc})` : ""),
    );
  }
}

/**
 * Why the init could not exec the program (its lookPath, before "ready"), in runc's words:
 * `exec: "NAME": <reason>` ends create's error message.
 */
export const EXEC_NOT_FOUND = "no such file or directory";
/** `exec: "NAME": executable file not found in $PATH` (a name without "/"). */
export const EXEC_NOT_IN_PATH = "executable file not found in $PATH";
/** `exec: "NAME": permission denied` (not a regular file with an execute bit). */
export const EXEC_DENIED = "permission denied";

/**
 * The status docker's `run` exits with when create failed because the program could not be
 * exec'd: 127 when it does not exist (EXEC_NOT_FOUND, EXEC_NOT_IN_PATH), 126 when it is not
 * executable (EXEC_DENIED); undefined for any other failure (or message). runc (and capsule's
 * `run` of a bundle) exits 1 for all of these; the image commands follow docker.
 */
export function execFailureStatus(message: string): 126 | 127 | undefined {
  const m = /^Cannot create container "[^"]*": exec: ".*": ([^:"]+)$/s.exec(message);
  if (!m) return undefined;
  if (m[1] === EXEC_NOT_FOUND || m[1] === EXEC_NOT_IN_PATH) return 127;
  return m[1] === EXEC_DENIED ? 126 : undefined;
}
