// The processes capsule starts for a container: the init in the right PID namespace (an exec's
// process is capsule-nsexec's, see nsexec.ts), and the foreground waiting of run/exec (signals
// passed on, the pty relayed, the exit status as the shell reports it).
import * as libc from "../ffi/libc.ts";
import { nsexecPath } from "./nsexec.ts";
import { sealedExe } from "./exe_seal.ts";
import { SIGNALS } from "./signals.ts";
import { relay } from "./terminal.ts";
import { CapsuleError } from "./errors.ts";
import { type HelperProcess, spawnHelper } from "./helper_process.ts";

/** Signals sent to capsule in the foreground are passed on to the program; returns the undo. */
export function forwardSignals(child: { kill(signal: Deno.Signal): void }): () => void {
  const signals = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"] as const;
  const handlers = signals.map((sig) => {
    const h = () => {
      try {
        child.kill(sig);
      } catch { /* already gone */ }
    };
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  return () => {
    for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
  };
}

/** The shell's convention: the exit status, or 128+N when killed by signal N. */
export function exitCode(st: Deno.CommandStatus): number {
  if (!st.signal) return st.code;
  return 128 +
    (typeof st.signal === "number" ? st.signal : SIGNALS[st.signal.replace(/^SIG/, "")] ?? 0);
}

export async function relayed(
  master: number,
  child: HelperProcess,
): Promise<Deno.CommandStatus> {
  const status = child.status;
  await relay(master, status);
  return await status;
}

export async function exitReason(child: HelperProcess): Promise<string> {
  const st = await child.status;
  return st.signal
    ? `its init was killed by ${st.signal}`
    : `its init exited with status ${st.code} before it was ready`;
}

/**
 * Starts capsule-nsexec's init mode, `capsule-nsexec init FD` (runtime/native/init.c), in this
 * process's PID namespace: it clones the init into the container's (plan.ts InitPlacement), or,
 * under util-linux's unshare (`wrapper`, a user namespace), is the init. The binary is a sealed,
 * read-only view of the helper (exe_seal.ts), so no process in the container can write the
 * host's binary through /proc/<pid>/exe; its environment is empty (nothing of the caller's
 * reaches the container's /proc/1/environ); `step` gets the --debug line. Throws CapsuleError
 * when the helper is missing, SysError when the spawn fails.
 */
export function spawnInit(
  childFd: number,
  stdio: "inherit" | "null",
  wrapper: string[] = [],
  step: (what: string) => void = () => {},
): HelperProcess {
  const exe = sealedExe(nsexecPath());
  step(`init binary sealed (${exe.how})`);
  try {
    // A user namespace can only be entered by a single-threaded process: util-linux's unshare
    // (with setpriv) does it, then execs the init; the sealed binary's fd, which they leave
    // open for that exec, is passed on for the init to close first thing.
    const passFd = wrapper.length > 0 && exe.fd !== undefined;
    const args = ["init", String(childFd), ...(passFd ? [String(exe.fd)] : [])];
    if (passFd) libc.setCloexec(exe.fd!, false);
    try {
      return spawnHelper(exe.path, args, stdio, wrapper);
    } finally {
      if (passFd) libc.setCloexec(exe.fd!, true);
    }
  } finally {
    // The child has exec'd (posix_spawn returns after the exec): its exe holds the file.
    exe.release();
  }
}

/**
 * The fds 3 to 3+n-1 of capsule's caller that the init passes on to the program (systemd's
 * LISTEN_FDS and runc's --preserve-fds; `why` names them for the error). Each must be open in
 * the caller, as runc checks. Called before capsule opens any fd of its own for the init: then an
 * fd inherited from the caller is exactly one that is not close-on-exec (Deno opens all of its
 * own close-on-exec), and one that is (Deno's own, in a number the caller left closed) is
 * refused like a closed one, never passed. Returns the fds; throws a CapsuleError naming the
 * first that is not the caller's; `what` begins it.
 */
export function callerFds(n: number, what: string, why: string): number[] {
  const out: number[] = [];
  for (let fd = 3; fd < 3 + n; fd++) {
    let inherited = false;
    try {
      inherited = !libc.isCloexec(fd);
    } catch { /* not open at all */ }
    if (!inherited) {
      throw new CapsuleError(
        `${what}: ${why}: fd ${fd} is not open; open fds 3 to ${2 + n} for the program, ` +
          `or pass fewer`,
      );
    }
    out.push(fd);
  }
  return out;
}

/** util-linux's unshare/setpriv, found by path (engines call capsule with an empty PATH). */
export function utilLinux(name: "unshare" | "setpriv"): string {
  for (const dir of ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not there */ }
  }
  throw new CapsuleError(`${name} (util-linux) is needed for user namespaces and was not found`);
}

/**
 * The init under `unshare --fork` is that process's child: its host pid, once it exists.
 */
export async function forkedChild(parent: number, timeoutMs = 5000): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      const kids = Deno.readTextFileSync(`/proc/${parent}/task/${parent}/children`).trim();
      if (kids) return Number(kids.split(/\s+/)[0]);
    } catch { /* the helper is gone: reported below */ }
    if (Date.now() > end) {
      throw new CapsuleError(`the user namespace helper (pid ${parent}) did not start the init`);
    }
    await new Promise((r) => setTimeout(r, 1));
  }
}
