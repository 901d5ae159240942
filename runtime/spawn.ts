// The processes capsule starts for a container: the init in the right PID namespace (an exec's
// process is capsule-nsexec's, see nsexec.ts), and the foreground waiting of run/exec (signals
// passed on, the pty relayed, the exit status as the shell reports it).
import * as libc from "../ffi/libc.ts";
import { INIT_EXE_FD_ENV, INIT_PIPE_ENV, INIT_STDERR_FD_ENV } from "./channel.ts";
import { sealedExe } from "./exe_seal.ts";
import { CLONE } from "./consts.ts";
import { SIGNALS } from "./signals.ts";
import { relay } from "./terminal.ts";
import { CapsuleError } from "./errors.ts";

/**
 * How this program starts its own init: from source, `deno run runtime/init_main.ts`; from
 * the bundle, `deno run dist/runtime/init_main.js` (dist/ holds the chunk of this code);
 * as a compiled binary, `capsule init`. `--no-code-cache`: Deno keeps no V8 code cache (a
 * host file, open read-write, that a container could poison) in a process it can see.
 */
function initCommand(): { cmd: string; args: string[] } {
  const exe = Deno.execPath();
  if (!/(^|\/)deno$/.test(exe)) return { cmd: exe, args: ["init"] };
  const flags = ["run", "-A", "--no-config", "--no-lock", "--quiet", "--no-code-cache"];
  if (import.meta.url.endsWith(".ts")) {
    return { cmd: exe, args: [...flags, new URL("./init_main.ts", import.meta.url).pathname] };
  }
  // The bundle's own entry for the init (scripts/build.ts): main.js would make Deno, which
  // runs the init without its caches, parse the whole CLI graph (+27 ms).
  const entry = new URL("./runtime/init_main.js", import.meta.url).pathname;
  try {
    if (Deno.statSync(entry).isFile) return { cmd: exe, args: [...flags, entry] };
  } catch { /* an older bundle */ }
  return { cmd: exe, args: [...flags, new URL("./main.js", import.meta.url).pathname, "init"] };
}

/**
 * The init's whole environment: nothing of the caller's (the init sits in the container's PID
 * namespace, where /proc/<pid>/environ shows what it was started with). DENO_DIR names a path
 * below a regular file, which can never be a directory: Deno then opens none of its cache
 * databases (dep/node analysis) and keeps them in memory; with no transpile cache either
 * (DENO_EMIT_CACHE_MODE), running from source re-transpiles the init's modules (~25 ms; the
 * bundle has nothing to transpile).
 */
export function initEnv(
  childFd: number,
  exeFd?: number,
  stderrFd?: number,
): Record<string, string> {
  return {
    [INIT_PIPE_ENV]: String(childFd),
    ...(exeFd === undefined ? {} : { [INIT_EXE_FD_ENV]: String(exeFd) }),
    ...(stderrFd === undefined ? {} : { [INIT_STDERR_FD_ENV]: String(stderrFd) }),
    DENO_DIR: `${Deno.execPath()}/no-cache`,
    DENO_EMIT_CACHE_MODE: "disable",
    DENO_NO_UPDATE_CHECK: "1",
    NO_COLOR: "1",
  };
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
 * The init's binary is a sealed, read-only view of this Deno (exe_seal.ts), so no process in
 * the container can write the host's Deno through /proc/<pid>/exe; `step` gets the --debug line.
 */
export function spawnInit(
  childFd: number,
  pidNs: { path?: string } | undefined,
  stdio: "inherit" | "null",
  wrapper: string[] = [],
  step: (what: string) => void = () => {},
): Deno.ChildProcess {
  const init = initCommand();
  const exe = sealedExe(init.cmd);
  step(`init binary sealed (${exe.how})`);
  try {
    // A user namespace can only be entered by a single-threaded process: util-linux's unshare
    // (with setpriv) does it, then execs the init (with the init pipe and the sealed binary's
    // fd, which they leave open; the init closes the latter first thing).
    const passFd = wrapper.length > 0 && exe.fd !== undefined;
    // Deno starts on a stderr that is no terminal (channel.ts INIT_STDERR_FD_ENV); the init
    // takes the caller's back from this duplicate.
    let stderrFd: number | undefined;
    if (stdio === "inherit") {
      try {
        stderrFd = libc.dupCloexec(2);
      } catch { /* no stderr: the init's is /dev/null */ }
    }
    const [cmd, ...args] = [...wrapper, exe.path, ...init.args];
    const command = new Deno.Command(cmd, {
      args,
      env: initEnv(childFd, passFd ? exe.fd : undefined, stderrFd),
      clearEnv: true,
      stdin: stdio,
      stdout: stdio,
      stderr: stderrFd === undefined ? stdio : "null",
    });
    if (passFd) libc.setCloexec(exe.fd!, false);
    if (stderrFd !== undefined) libc.setCloexec(stderrFd, false);
    // Between clone and execve the child is a copy of this process (posix_spawn: our memory,
    // our fds, our environment) already in the container's PID namespace: non-dumpable, so
    // that no process there may read it through /proc. Restored once the spawn returned.
    const PR_GET_DUMPABLE = 3, PR_SET_DUMPABLE = 4;
    const dumpable = libc.prctl(PR_GET_DUMPABLE);
    libc.prctl(PR_SET_DUMPABLE, 0n);
    try {
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
    } finally {
      libc.prctl(PR_SET_DUMPABLE, BigInt(dumpable));
      if (passFd) libc.setCloexec(exe.fd!, true);
      if (stderrFd !== undefined) libc.close(stderrFd);
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
