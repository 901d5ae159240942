// The host side of a container's terminal: relay between the caller's terminal and the pty
// master (raw mode, window size, SIGWINCH), or hand the master to a console socket as runc
// does for podman's conmon and containerd's shim.
import * as libc from "../ffi/libc.ts";
import { CapsuleError } from "./errors.ts";

/** Sends the pty master over the unix socket at `path` (SCM_RIGHTS), then closes it here. */
export function sendToConsoleSocket(path: string, master: number, name = "/dev/ptmx"): void {
  let sock: number;
  try {
    sock = libc.connectUnix(path);
  } catch (e) {
    throw new CapsuleError(`Cannot connect to console socket "${path}": ${(e as Error).message}`);
  }
  try {
    libc.sendFd(sock, master, new TextEncoder().encode(name) as Uint8Array<ArrayBuffer>);
  } finally {
    libc.close(sock);
    libc.close(master);
  }
}

function resize(master: number): void {
  if (!Deno.stdout.isTerminal()) return;
  try {
    const { columns, rows } = Deno.consoleSize();
    libc.setWinsize(master, rows, columns);
  } catch { /* not a terminal after all */ }
}

/**
 * Copies the caller's stdin to the pty and the pty to stdout until the program's side of the
 * pty closes; the caller's terminal is raw meanwhile and restored afterwards.
 */
export async function relay(master: number, done: Promise<unknown>): Promise<void> {
  const raw = Deno.stdin.isTerminal();
  if (raw) Deno.stdin.setRaw(true);
  resize(master);
  const onWinch = () => resize(master);
  try {
    Deno.addSignalListener("SIGWINCH", onWinch);
  } catch { /* no signal support */ }
  // stdin -> pty (not awaited: a read on stdin may outlive the program).
  (async () => {
    try {
      for await (const chunk of Deno.stdin.readable) {
        libc.writeAll(master, chunk as Uint8Array<ArrayBuffer>);
      }
    } catch { /* the pty closed */ }
  })();
  try {
    const buf = new Uint8Array(32768);
    const pump = (async () => {
      for (;;) {
        const n = await libc.readAsync(master, buf);
        if (n <= 0) return; // EIO once every slave fd is closed
        Deno.stdout.writeSync(buf.subarray(0, n));
      }
    })();
    await Promise.all([pump, done]);
  } finally {
    try {
      Deno.removeSignalListener("SIGWINCH", onWinch);
    } catch { /* ignore */ }
    if (raw) Deno.stdin.setRaw(false);
    libc.close(master);
  }
}
