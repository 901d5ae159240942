// The parent <-> init channel: a socketpair whose child end the init inherits (runc's init
// pipe). Frames are a 4-byte big-endian length and a JSON body. Blocking FFI calls only, so
// the init can use it from inside its namespaces.
import { close, read, SysError, writeAll } from "../ffi/libc.ts";

export const INIT_PIPE_ENV = "_CAPSULE_INITPIPE";
/** Under a user namespace helper, the fd of the sealed binary the init was exec'd from. */
export const INIT_EXE_FD_ENV = "_CAPSULE_EXEFD";
/**
 * The caller's stderr, which the init puts back on fd 2 first thing: Deno starts with stderr on
 * /dev/null, so what Deno prints about itself at start-up (it warns on a terminal about the
 * caches the init runs without) never reaches the caller's terminal or the program's stderr.
 */
export const INIT_STDERR_FD_ENV = "_CAPSULE_STDERR";

/**
 * What the init tells the parent: "sources" asks for the bind mounts' sources as fds (one
 * SCM_RIGHTS message each, in plan order); "hooks" says its mounts are made and it waits, before
 * pivot_root, for the prestart and createRuntime hooks (the parent answers "resume" once they
 * succeeded); "ready" and "error" end create's wait.
 */
export type InitMessage =
  | { type: "ready"; pid: number }
  | { type: "error"; message: string }
  | { type: "sources" }
  | { type: "hooks" };

export function sendFrame(fd: number, value: unknown): void {
  const body = new TextEncoder().encode(JSON.stringify(value));
  const frame = new Uint8Array(4 + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, 4);
  writeAll(fd, frame);
}

function readExactly(fd: number, n: number): Uint8Array | undefined {
  const out = new Uint8Array(n);
  let off = 0;
  while (off < n) {
    const chunk = new Uint8Array(n - off);
    const got = read(fd, chunk);
    if (got === 0) return undefined;
    out.set(chunk.subarray(0, got), off);
    off += got;
  }
  return out;
}

/** Reads one frame; undefined when the other end closed first. */
export function receiveFrame<T>(fd: number): T | undefined {
  const head = readExactly(fd, 4);
  if (!head) return undefined;
  const len = new DataView(head.buffer).getUint32(0);
  const body = readExactly(fd, len);
  if (!body) return undefined;
  return JSON.parse(new TextDecoder().decode(body)) as T;
}

/**
 * The init's next message to its parent, or undefined once the init is gone: an init that died
 * with a frame of ours unread resets the socket (ECONNRESET), which is its end like EOF; why it
 * ended is its exit status, for the caller to report. Other errors throw SysError.
 */
export function receiveFromInit<T>(fd: number): T | undefined {
  try {
    return receiveFrame<T>(fd);
  } catch (e) {
    if (e instanceof SysError && e.code === "ECONNRESET") return undefined;
    throw e;
  }
}

export { close as closeFd };
