// The processes capsule starts itself (the native helper: a container's init, an exec), through
// posix_spawn(3) instead of Deno.Command, and their reaping. Imports only ffi/libc.ts, signals.ts
// and errors.ts: delete loads it too.
import * as libc from "../ffi/libc.ts";
import { CapsuleError } from "./errors.ts";
import { SIGNALS } from "./signals.ts";

/**
 * A process capsule started itself (spawnHelper): the init of a container, the exec helper. In
 * the place of Deno.ChildProcess, whose Deno.Command costs 3.4-5.1 ms of the JS thread on its first
 * use in a process (it loads Deno's process module and the streams behind it; measured as the
 * first access to `Deno.Command` in a fresh `deno run`), on every create, run and exec. Only this
 * process reaps it: through `status`, `poll`, `unref` (in the background) or reapEnded.
 */
export class HelperProcess {
  #status?: Promise<Deno.CommandStatus>;
  #ended?: Deno.CommandStatus;
  #pidfd: number;

  /** `pid`: a child of this process, not yet reaped. */
  constructor(readonly pid: number) {
    unreaped.add(this);
    try {
      this.#pidfd = libc.pidfdOpen(pid);
    } catch {
      this.#pidfd = -1; // before Linux 5.3: kill(2), safe while it is not reaped (only here)
    }
  }

  /**
   * Resolves once the process has ended, with its status (Deno's shape: `code` 128+N and
   * `signal` "SIGx" when killed by signal N). The first access starts the wait, on a pool thread.
   */
  get status(): Promise<Deno.CommandStatus> {
    return this.#status ??= this.#wait();
  }

  async #wait(): Promise<Deno.CommandStatus> {
    for (;;) {
      const raw = await libc.wait4Async(this.pid);
      if (raw !== -1) return this.#reaped(raw);
      // A failed wait on the pool thread (EINTR): whether it ended, asked here.
      let now: number | undefined;
      try {
        now = libc.waitNoHang(this.pid);
      } catch {
        return this.#reaped(0xff00); // reaped by no one here: "exit status 255"
      }
      if (now !== undefined) return this.#reaped(now);
    }
  }

  /**
   * The status when the process has ended already (reaped now), else undefined; never waits.
   * Undefined as well while `status` is waiting (that wait reaps it).
   */
  poll(): Deno.CommandStatus | undefined {
    if (this.#ended || this.#status) return this.#ended;
    let raw: number | undefined;
    try {
      raw = libc.waitNoHang(this.pid);
    } catch {
      return undefined;
    }
    if (raw === undefined) return undefined;
    const st = this.#reaped(raw);
    this.#status = Promise.resolve(st);
    return st;
  }

  #reaped(raw: number): Deno.CommandStatus {
    unreaped.delete(this);
    if (this.#pidfd >= 0) libc.close(this.#pidfd);
    const sig = raw & 0x7f;
    const st = sig === 0
      ? { success: ((raw >> 8) & 0xff) === 0, code: (raw >> 8) & 0xff, signal: null }
      : { success: false, code: 128 + sig, signal: SIGNAL_NAMES[sig] ?? null };
    this.#ended = st;
    try {
      this.#onExit?.(st);
    } catch { /* the caller's: best effort */ }
    return st;
  }

  #onExit?: (status: Deno.CommandStatus) => void;

  /**
   * Has the process reaped as soon as it ends, with nothing awaiting it (as Deno.ChildProcess's
   * unref): a SIGCHLD listener, which keeps no event loop alive, reaps every ended helper and
   * calls `onExit` with this one's status. A process that ends while this one runs on is then no
   * zombie of it (a program using the library), nor its pidfd an open fd.
   */
  unref(onExit?: (status: Deno.CommandStatus) => void): void {
    this.#onExit = onExit;
    if (!listening) {
      listening = true;
      Deno.addSignalListener("SIGCHLD", reapEnded); // ~0.4 ms, once per process
    }
    this.poll(); // it may have ended before the listener was there
  }

  /**
   * Sends `signal` (default SIGTERM) through a pidfd: never to a later process that got the pid.
   * Throws once the process has ended (SysError ESRCH, or CapsuleError once reaped).
   */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#ended) throw new CapsuleError(`process ${this.pid} has ended`);
    const sig = SIGNALS[signal.replace(/^SIG/, "")];
    if (this.#pidfd >= 0) libc.pidfdSendSignal(this.#pidfd, sig);
    else libc.kill(this.pid, sig);
  }
}

/** The helpers this process started and has not reaped. */
const unreaped = new Set<HelperProcess>();
let listening = false;

/**
 * Reaps every helper of this process that has ended and that no `status` waits for (as Deno
 * reaps an unref'd child): a long-lived process using the library (mod.ts) keeps no zombie of a
 * container it created and deleted. Never waits; a CLI call that started none makes no call.
 */
export function reapEnded(): void {
  for (const c of unreaped) c.poll();
}

/** Each signal's name as Deno gives it: the first of two (ABRT, not IOT; IO, not POLL). */
const SIGNAL_NAMES: Record<number, Deno.Signal> = {};
for (const [name, n] of Object.entries(SIGNALS)) SIGNAL_NAMES[n] ??= `SIG${name}` as Deno.Signal;

/**
 * Starts the native helper `exe` (absolute) with `args` after it, or `wrapper` with the helper
 * after that (util-linux's unshare/setpriv), with an empty environment. Its stdio is capsule's
 * (`inherit`) or /dev/null (`null`, the wrapper's too: an `unshare --fork` left holding the
 * caller's pipe would keep `run -d`'s caller waiting for its end); the signals it inherits
 * ignored are reset before any program runs (plan.c exec_program). Throws SysError when the
 * spawn fails.
 */
export function spawnHelper(
  exe: string,
  args: string[],
  stdio: "inherit" | "null",
  wrapper: string[] = [],
): HelperProcess {
  const argv = [...wrapper, exe, ...args];
  const spawn = () => new HelperProcess(libc.spawn(argv[0], argv, []));
  return stdio === "null" ? withNullStdio(spawn) : spawn();
}

/**
 * Runs `fn` (a spawn) with /dev/null as this process's fds 0-2, restored afterwards: posix_spawn
 * is given no file actions (each of their libc symbols costs 0.2-0.5 ms to bind), and a spawn
 * returns only once the child has exec'd, so nothing else of this process writes meanwhile.
 */
function withNullStdio<T>(fn: () => T): T {
  // Copies first: an fd of 0-2 that is not open (EBADF) is closed again afterwards (and may be
  // where /dev/null opens); any other failure (EMFILE) is the spawn's error.
  const saved: number[] = [];
  let nul = -1;
  try {
    for (let fd = 0; fd < 3; fd++) {
      try {
        saved.push(libc.dupCloexec(fd));
      } catch (e) {
        if (!(e instanceof libc.SysError && e.code === "EBADF")) throw e;
        saved.push(-1);
      }
    }
    nul = libc.open("/dev/null", libc.O.RDWR | libc.O.CLOEXEC);
    for (let fd = 0; fd < 3; fd++) {
      if (fd === nul) libc.setCloexec(fd, false);
      else libc.dup2(nul, fd);
    }
    return fn();
  } finally {
    saved.forEach((copy, fd) => {
      if (copy >= 0) {
        libc.dup2(copy, fd);
        libc.close(copy);
      } else if (nul >= 0) libc.close(fd);
    });
    if (nul > 2) libc.close(nul);
  }
}
