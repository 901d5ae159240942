// The processes capsule starts for a container: the init (or an exec's init) in the right PID
// namespace, and the foreground waiting of run/exec (signals passed on, the pty relayed, the
// exit status as the shell reports it).
import * as libc from "../ffi/libc.ts";
import { INIT_PIPE_ENV } from "./channel.ts";
import { CLONE } from "./consts.ts";
import { SIGNALS } from "./signals.ts";
import { relay } from "./terminal.ts";
import { CapsuleError } from "./errors.ts";

/**
 * How this program starts its own init: from source, `deno run runtime/init_main.ts`; from
 * the bundle, `deno run dist/main.js init` (main.js sits beside the chunk holding this code);
 * as a compiled binary, `capsule init`.
 */
function initCommand(): { cmd: string; args: string[] } {
  const exe = Deno.execPath();
  if (!/(^|\/)deno$/.test(exe)) return { cmd: exe, args: ["init"] };
  const flags = ["run", "-A", "--no-config", "--no-lock", "--quiet"];
  if (import.meta.url.endsWith(".ts")) {
    return { cmd: exe, args: [...flags, new URL("./init_main.ts", import.meta.url).pathname] };
  }
  return { cmd: exe, args: [...flags, new URL("./main.js", import.meta.url).pathname, "init"] };
}

/** Signals sent to capsule in the foreground are passed on to the program; returns the undo. */
export function forwardSignals(child: Deno.ChildProcess): () => void {
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
  child: Deno.ChildProcess,
): Promise<Deno.CommandStatus> {
  const status = child.status;
  await relay(master, status);
  return await status;
}

export async function exitReason(child: Deno.ChildProcess): Promise<string> {
  const st = await child.status;
  return st.signal
    ? `its init was killed by ${st.signal}`
    : `its init exited with status ${st.code} before it was ready`;
}

/**
 * Starts the init in the container's PID namespace. unshare(CLONE_NEWPID) affects only the
 * children of this (main) thread, so the window is this one spawn, restored in `finally`.
 */
export function spawnInit(
  childFd: number,
  pidNs: { path?: string } | undefined,
  stdio: "inherit" | "null",
  wrapper: string[] = [],
): Deno.ChildProcess {
  const init = initCommand();
  // A user namespace can only be entered by a single-threaded process: util-linux's unshare or
  // nsenter does it, then execs the init (with the init pipe, which they leave open).
  const [cmd, ...args] = [...wrapper, init.cmd, ...init.args];
  const command = new Deno.Command(cmd, {
    args,
    env: { ...Deno.env.toObject(), [INIT_PIPE_ENV]: String(childFd), DENO_NO_UPDATE_CHECK: "1" },
    clearEnv: true,
    stdin: stdio,
    stdout: stdio,
    stderr: stdio,
  });
  if (!pidNs) return command.spawn();
  const saved = libc.open("/proc/self/ns/pid", libc.O.RDONLY | libc.O.CLOEXEC);
  try {
    if (pidNs.path) {
      const target = libc.open(pidNs.path, libc.O.RDONLY | libc.O.CLOEXEC);
      try {
        libc.setns(target, CLONE.NEWPID);
      } finally {
        libc.close(target);
      }
    } else {
      libc.unshare(CLONE.NEWPID);
    }
    return command.spawn();
  } finally {
    libc.setns(saved, CLONE.NEWPID);
    libc.close(saved);
  }
}

/** util-linux's unshare/nsenter, found by path (engines call capsule with an empty PATH). */
export function utilLinux(name: "unshare" | "nsenter" | "setpriv"): string {
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
