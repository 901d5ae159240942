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

/** An illegal move of the lifecycle state machine ("start a stopped container"). */
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
    super(
      `Cannot ${action} container "${id}": it is ${status}, not ${allowed.join(" or ")}`,
    );
  }
}
