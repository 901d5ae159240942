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
