// The log of a detached container or exec: its stdout and stderr go to a pipe, and the monitor
// of the state root (runtime/native/monitor.c, one process for every detached container and exec
// of the root) appends what it reads to the log file, rotating by rename, as conmon and docker's
// json-file driver do. Nothing here is on the path of a container that is not detached.
//
// Rotation (docker's rule, checked before each write): when the file is not empty and the
// bytes read would take it past max-size, the file is renamed away first (container.log ->
// .1 -> .2 ..., the oldest dropped; with max-files 1 the file is replaced) and a new one is
// begun. Where it can, the writer cuts at the last newline that fits, so files end on whole
// lines; a read (at most 64 KiB) that holds no such newline is cut at max-size. So no file
// is ever larger than max-size, and the files together hold at most max-size x max-files.
// Once every writer has closed the pipe, the monitor creates LOG.done (empty): `capsule log -f`
// follows until then.
import * as libc from "../ffi/libc.ts";
import { CapsuleError } from "./errors.ts";
import { nsexecPath } from "./nsexec.ts";

/** Log rotation: rotate past `maxSize` bytes (0: never), keep `maxFiles` files (>= 1). */
export interface LogLimits {
  /** Bytes a file may hold before the next write goes to a new one; 0: no limit. */
  maxSize: number;
  /** Files kept, the current one included (docker's max-file): 1 replaces the file. */
  maxFiles: number;
}

/** The default log limits: 10 MiB, 3 files (container.log, .1, .2), as docker's. */
export const LOG_DEFAULTS: LogLimits = { maxSize: 10 * 1024 * 1024, maxFiles: 3 };

/** Whether `v` is a well-formed LogLimits (e.g. one read back from a record). */
export function validLimits(v: unknown): v is LogLimits {
  const l = v as LogLimits | undefined;
  return !!l && Number.isSafeInteger(l.maxSize) && l.maxSize >= 0 &&
    Number.isSafeInteger(l.maxFiles) && l.maxFiles >= 1;
}

/** The file the monitor creates once the log at `path` has its last bytes: `path`.done. */
export function logDoneFile(path: string): string {
  return `${path}.done`;
}

/** What openLog made: the fd for the process's stdout and stderr. */
export interface OpenedLog {
  /** The pipe's write end; close-on-exec. */
  fd: number;
  /** The file that appears once the log has its last bytes (logDoneFile). */
  done: string;
}

/**
 * Opens the log at `path` (an absolute path: created 0640, appended to) for a detached process
 * and hands it, with the read end of a new pipe, to the monitor of the state root `root` (started
 * if it has none) with `limits`. Returns the pipe's write end to hand to the process as stdout and
 * stderr, close-on-exec: clear that right before the one spawn that must inherit it, and close it
 * here once that spawn is done (the log ends when every holder of it has closed it). Throws
 * CapsuleError when the file cannot be opened or the monitor does not take the log.
 */
export function openLog(path: string, limits: LogLimits, root: string): OpenedLog {
  if (!path.startsWith("/")) path = `${Deno.cwd()}/${path}`; // the monitor is in /
  if (!root.startsWith("/")) root = `${Deno.cwd()}/${root}`;
  const done = logDoneFile(path);
  try {
    Deno.removeSync(done); // a run before this one's
  } catch { /* none */ }
  let file: number;
  try {
    file = libc.open(path, libc.O.WRONLY | libc.O.CREAT | libc.O.APPEND | libc.O.CLOEXEC, 0o640);
  } catch (e) {
    throw new CapsuleError(`Cannot open the log ${path}: ${(e as Error).message}`);
  }
  let read = -1, write = -1;
  try {
    [read, write] = libc.pipe2(true);
    // Only the monitor's client gets these two; its own copy of the write end would never see EOF.
    libc.setCloexec(read, false);
    libc.setCloexec(file, false);
    const out = new Deno.Command(nsexecPath(), {
      args: [
        "monitor",
        "log",
        root,
        path,
        String(limits.maxSize),
        String(limits.maxFiles),
        String(read),
        String(file),
        done,
      ],
      cwd: "/",
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    if (!out.success) {
      const said = new TextDecoder().decode(out.stderr).trim().replace(/^capsule: /, "");
      throw new Error(said || `exit status ${out.code}`);
    }
    return { fd: write, done };
  } catch (e) {
    if (write >= 0) libc.close(write);
    if (e instanceof CapsuleError) throw e;
    throw new CapsuleError(`Cannot hand the log ${path} to the monitor: ${(e as Error).message}`);
  } finally {
    if (read >= 0) libc.close(read);
    libc.close(file);
  }
}
