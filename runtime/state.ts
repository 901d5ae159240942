// Where containers live on disk: <root>/<id>/state.json (written atomically), exec.fifo,
// container.log. Status is never stored: it is derived from the kernel (is the init alive,
// with the same start time?) and from the fifo (still there = not started).
import * as libc from "../ffi/libc.ts";
import { CapsuleError, NotFoundError } from "./errors.ts";
import type { SeccompFilter } from "./seccomp.ts";
import type { Process } from "./spec.ts";
import { ID_PATTERN, validateId } from "./ids.ts";
import { parseJson, stringifyJson } from "./json.ts";

/** A container's status (runtime spec "State"), derived from the kernel each time. */
export type Status = "creating" | "created" | "running" | "paused" | "stopped";

/** What capsule keeps about a container. The OCI state is a view of it (see ociState). */
export interface ContainerRecord {
  /** The runtime spec version capsule follows. */
  ociVersion: string;
  /** Container id. */
  id: string;
  /** Host pid of the init (then of the container's program, which it execs). */
  pid: number;
  /** Field 22 of /proc/<pid>/stat when the init started: a recycled pid never matches. */
  pidStartTime: string;
  /**
   * In a user namespace: util-linux's `unshare --fork` above the init (host pid), which exits
   * with the init's status (killing itself with the init's signal). capsule's process reaps it,
   * not the init: run -d's waiter (runtime/waiter.ts) takes its exit for the init's.
   */
  waitPid?: number;
  /** Absolute bundle directory. */
  bundle: string;
  /** Absolute root filesystem path. */
  rootfs: string;
  /** When create began, ISO 8601 UTC. */
  created: string;
  /** config.json's annotations. */
  annotations: Record<string, string>;
  /**
   * True until create finished. While the process that creates it lives (creatorPid), the
   * container is creating, whatever `pid` says (until "created", `pid` may name the helper that
   * cloned the init and has exited); once that process is gone (a crash), the init decides: a
   * live one is creating, a dead one stopped (delete removes it).
   */
  creating?: boolean;
  /** While creating: the pid of the process that creates it (the CLI, or a library caller). */
  creatorPid?: number;
  /** While creating: field 22 of that process's /proc/<pid>/stat (a recycled pid never matches). */
  creatorStartTime?: string;
  /** cgroup directories of the container, by controller (or "" for v2). */
  cgroupPaths?: Record<string, string>;
  /**
   * The default parents ("capsule") that sit inside the caller's own cgroup rather than at a
   * hierarchy's root: removed with the last container there, as an empty child would keep the
   * caller's cgroup (a session scope) from being removed. One at a root stays (docker's too).
   */
  cgroupParents?: string[];
  /**
   * What exec takes from the container's config as create validated it (runc keeps the same):
   * the init's process (environment, user, cwd, capabilities, rlimits, no_new_privileges) and the
   * compiled seccomp filter. The bundle's config.json is never read again: a changed or missing
   * file must not widen what exec'd processes may do.
   */
  exec?: { process: Process; seccomp?: SeccompFilter };
  /** The OCI hooks to run at start and delete. */
  hooks?: { poststart?: HookRecord[]; poststop?: HookRecord[] };
  /** Detached run: the log file of stdout/stderr. */
  logFile?: string;
  /** Detached run: the log's rotation (log_writer.ts), for detached execs too. */
  logLimits?: { maxSize: number; maxFiles: number };
  /**
   * Detached run: the file the root's monitor creates once the log has its last bytes
   * (log_writer.ts logDoneFile), so that `log -f` can wait for them after the container stopped.
   */
  logDone?: string;
  /**
   * Detached run of a build before the monitor: its log writer process (host pid, and field 22
   * of /proc/<pid>/stat), which `log -f` waits for as it waits for `logDone`.
   */
  logWriter?: { pid: number; startTime: string };
  /** Data that layers above the runtime keep with the container (network endpoint, image). */
  ext?: Record<string, unknown>;
}

/** An OCI hook (config.json "hooks"; runtime spec "POSIX-platform Hooks"); timeout in seconds. */
export interface HookRecord {
  /** Absolute path of the program. */
  path: string;
  /** argv, including argv[0]. */
  args?: string[];
  /** KEY=VALUE: its whole environment. */
  env?: string[];
  /** Seconds before it is killed. */
  timeout?: number;
}

/** Where container state lives by default (`capsule --root`). */
export const DEFAULT_ROOT = "/var/run/capsule";

/**
 * `path` made absolute against `cwd` (default: the working directory), "." and ".." taken
 * lexically and repeated or trailing slashes dropped (Go's filepath.Abs, as runc takes --root):
 * a path saved for later (an image container's --root) means the same from any directory.
 */
export function absolutePath(path: string, cwd: string = Deno.cwd()): string {
  const parts: string[] = [];
  for (const c of (path.startsWith("/") ? path : `${cwd}/${path}`).split("/")) {
    if (c === "" || c === ".") continue;
    if (c === "..") parts.pop();
    else parts.push(c);
  }
  return `/${parts.join("/")}`;
}

/**
 * Whether `a` and `b` name the same directory: their real paths when they exist (a symlink
 * to it, `//` in it), else their absolute forms (absolutePath).
 */
export function sameDir(a: string, b: string): boolean {
  const key = (p: string) => {
    try {
      return Deno.realPathSync(p);
    } catch {
      return absolutePath(p);
    }
  };
  return a === b || key(a) === key(b);
}

export const STATE_FILE = "state.json";
/** The file of a stopped container's exit status in its state directory (docker's 128+N). */
export const EXIT_FILE = "exit.json";
export const EXEC_FIFO = "exec.fifo";
export const LOG_FILE = "container.log";

/** Start time of a process (clock ticks since boot) and its state letter; undefined if gone. */
export function procStat(pid: number): { startTime: string; state: string } | undefined {
  if (!(pid > 0)) return undefined;
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { state: rest[0], startTime: rest[19] };
}

/** Is the container's init still the process we started (and not a zombie)? */
export function initAlive(rec: Pick<ContainerRecord, "pid" | "pidStartTime">): boolean {
  const st = procStat(rec.pid);
  return !!st && st.startTime === rec.pidStartTime && st.state !== "Z" && st.state !== "X";
}

/**
 * Makes `path` a directory that only its owner can enter (0700), whatever made it first:
 * created 0700 (missing parents 0755, as `mkdir -p`), or, when it exists empty with group or
 * other permission bits, tightened to 0700 (tightenOwnDir; a looser one holding anything, or a
 * symlink to one, is refused). capsule keeps state, logs, images and volumes (whose
 * contents containers write, setuid files included) below such directories, so no other
 * local user reaches them. `what` names the directory in errors (e.g. "--root").
 * Throws CapsuleError when `path` is not a directory, belongs to another user, is a shared
 * sticky directory such as /tmp (tightening that would break the host), or is looser and holds
 * anything or is reached through a symlink (another program's: never changed).
 */
export function privateDir(
  path: string,
  what: string,
  owns: (dir: string, name: string) => boolean = () => false,
): void {
  // Looked at first: it is there nearly always, and a mkdir's EEXIST is a thrown error (Deno's
  // first in a process costs ~0.4 ms).
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    try {
      Deno.mkdirSync(path, { mode: 0o700 });
      return;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        Deno.mkdirSync(path, { recursive: true, mode: 0o755 });
        Deno.chmodSync(path, 0o700);
        return;
      }
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
    st = Deno.statSync(path); // made by someone else in between
  }
  const mode = (st.mode ?? 0) & 0o7777;
  if (!st.isDirectory) {
    throw new CapsuleError(`Cannot use ${what} ${path}: it is not a directory`);
  }
  if (st.uid !== Deno.uid()) {
    throw new CapsuleError(
      `Cannot use ${what} ${path}: it belongs to uid ${st.uid}, not to this user ` +
        `(uid ${Deno.uid()}); choose a directory of your own`,
    );
  }
  if ((mode & 0o077) === 0) return;
  if (mode & 0o1000) {
    throw new CapsuleError(
      `Cannot use ${what} ${path}: it is a shared directory (mode ${mode.toString(8)}); ` +
        `choose a directory of capsule's own, e.g. ${path.replace(/\/+$/, "")}/capsule`,
    );
  }
  tightenOwnDir(path, what, mode, owns);
}

/**
 * privateDir's `owns` for a state root (--root): an entry capsule makes there, a container's
 * directory (one holding state.json: an empty one may be anybody's, e.g. /srv's), the networks'
 * state (`_networks`) or a monitor's socket and lock (`.monitor-*`).
 */
export function rootOwns(dir: string, name: string): boolean {
  if (name === "_networks" || /^\.monitor-[0-9a-f]{16}\.(sock|lock)$/.test(name)) return true;
  if (!ID_PATTERN.test(name)) return false;
  try {
    const st = Deno.lstatSync(`${dir}/${name}`);
    if (!st.isDirectory) return false;
    return Deno.lstatSync(`${dir}/${name}/${STATE_FILE}`).isFile;
  } catch {
    return false;
  }
}

/**
 * chmod go-rwx of the looser directory `path` (mode `mode`), only when capsule may take it as its
 * own: reached by its own name (opened O_NOFOLLOW: never a symlink another user placed, which
 * would have capsule change /etc) and holding nothing but what `owns` says capsule puts there
 * (empty: made for capsule, e.g. by mkdir under a 022 umask; or left loose by an older capsule).
 * One holding anything else is another program's (`--root /run`, `--store /var/lib` by
 * mistake): refused with a CapsuleError, never changed; runc and podman never change an
 * existing root.
 */
function tightenOwnDir(
  path: string,
  what: string,
  mode: number,
  owns: (dir: string, name: string) => boolean,
): void {
  const refuse = (why: string) =>
    new CapsuleError(
      `Cannot use ${what} ${path}: other users can enter it (mode ${
        mode.toString(8)
      }) and ${why}; ` +
        `capsule keeps its directories closed to other users and never changes another ` +
        `program's: give a directory of capsule's own (e.g. ${
          path.replace(/\/+$/, "")
        }/capsule), ` +
        `or run "chmod go-rwx ${path}" if this one is capsule's`,
    );
  let fd: number;
  try {
    fd = libc.open(path, libc.O.RDONLY | libc.O.DIRECTORY | libc.O.NOFOLLOW | libc.O.CLOEXEC);
  } catch (e) {
    // O_NOFOLLOW|O_DIRECTORY on a symlink: ELOOP, or ENOTDIR (what stat followed was a directory).
    if (e instanceof libc.SysError && (e.code === "ELOOP" || e.code === "ENOTDIR")) {
      throw refuse("it is a symbolic link");
    }
    throw e;
  }
  try {
    // The directory the fd holds, whatever its path names by now.
    const own = `/proc/self/fd/${fd}`;
    const st = Deno.statSync(own);
    if (st.uid !== Deno.uid()) throw refuse(`it belongs to uid ${st.uid}`);
    for (const e of Deno.readDirSync(own)) {
      if (!owns(own, e.name)) {
        throw refuse(`it holds ${JSON.stringify(e.name)}, which capsule did not put there`);
      }
    }
    libc.fchmod(fd, (st.mode ?? mode) & 0o7700, path);
  } finally {
    libc.close(fd);
  }
}

/** Is there an entry at `path` (a dangling symlink counts)? */
/**
 * `ms` (milliseconds since the epoch, default now) as `Date.prototype.toISOString` writes it
 * (RFC 3339, UTC, milliseconds: "2026-11-30T21:12:03.000Z"), for years 0-9999. Not Date's own:
 * its first use in a process costs 0.35-0.4 ms (`new Date()` 0.13-0.2, then `toISOString`
 * 0.16-0.23; measured in a fresh `deno run` with the launcher's flags), and create stamps every
 * container. The civil date from the day number is Howard Hinnant's days_from_civil inverse.
 */
export function isoTime(ms: number = Date.now()): string {
  const day = Math.floor(ms / 86_400_000);
  const rest = ms - day * 86_400_000;
  const z = day + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) -
      Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  const y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const h = Math.floor(rest / 3_600_000), mi = Math.floor(rest / 60_000) % 60;
  const s = Math.floor(rest / 1000) % 60, milli = rest % 1000;
  return `${p(y, 4)}-${p(m)}-${p(d)}T${p(h)}:${p(mi)}:${p(s)}.${p(milli, 3)}Z`;
}

/**
 * Where a detached exec's output goes in the container's state directory `dir`. Throws a
 * CapsuleError for an exec id that is not capsule's (12 hex digits).
 */
export function execLogFile(dir: string, execId: string): string {
  if (!/^[0-9a-f]{12}$/.test(execId)) throw new CapsuleError(`Invalid exec id "${execId}"`);
  return `${dir}/exec-${execId}.log`;
}

/**
 * Whether directory `dir` lists `name` (what lstat would say), read from its listing: lstat of
 * a missing file is a thrown error (Deno's first in a process ~0.4 ms, later ones 0.05-0.1 ms),
 * a listing of a container's state directory (a few entries) throws none. False without `dir`.
 */
export function listed(dir: string, name: string): boolean {
  try {
    for (const e of Deno.readDirSync(dir)) if (e.name === name) return true;
  } catch { /* no directory */ }
  return false;
}

export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Writes a file by temp file + rename: a reader sees the old or the new content, never half. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    if (typeof data === "string") Deno.writeTextFileSync(tmp, data, { mode });
    else Deno.writeFileSync(tmp, data, { mode });
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* nothing to remove */ }
    throw e;
  }
}

/**
 * Writes `pid` to `path` as runc does (--pid-file: the decimal pid, no newline), atomically
 * (writeFileAtomic: `PATH.XXXXXXXX.tmp`, 0644, renamed over PATH). Throws a CapsuleError naming
 * the file and why it cannot be written (a directory there, no room, a read-only file system).
 */
export function writePidFile(path: string, pid: number): void {
  try {
    writeFileAtomic(path, `${pid}`);
  } catch (e) {
    throw new CapsuleError(`Cannot write the pid file "${path}": ${(e as Error).message}`);
  }
}

/** Reads `freezer.state`-style extra status; set by the cgroup layer (paused). */
export type PausedProbe = (rec: ContainerRecord) => boolean;

/**
 * The containers' state under a root: `<root>/<id>/state.json`, written atomically. Every
 * method validates the id first (CapsuleError: it never reaches a path otherwise).
 */
export class StateStore {
  /** Reads or makes nothing until a method is called. */
  constructor(readonly root: string = DEFAULT_ROOT) {}

  /** The container's state directory. */
  dir(id: string): string {
    return `${this.root}/${validateId(id)}`;
  }

  /** Makes the container's directory; exactly one of two racing creates of an id wins. */
  claim(id: string): string {
    const dir = this.dir(id);
    privateDir(this.root, "--root", rootOwns);
    try {
      Deno.mkdirSync(dir, { mode: 0o700 });
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) {
        throw new CapsuleError(
          `Cannot create container "${id}": a container with that id already exists ` +
            `(delete it first, or choose another id)`,
        );
      }
      throw e;
    }
    return dir;
  }

  /** Writes the record (temp file + rename: a reader never sees half of it). */
  write(rec: ContainerRecord): void {
    // Exact integers: the process exec takes (rlimits, and what config.json adds) may hold
    // uint64s past 2^53-1, parseJson's bigints, which JSON.stringify cannot write.
    writeFileAtomic(`${this.dir(rec.id)}/${STATE_FILE}`, stringifyJson(rec, 2) + "\n");
  }

  /** The record, or undefined for a directory a crash left without one. Throws if no dir. */
  read(id: string): ContainerRecord | undefined {
    const dir = this.dir(id);
    let text: string;
    try {
      text = Deno.readTextFileSync(`${dir}/${STATE_FILE}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      if (exists(dir)) return undefined;
      throw new NotFoundError(id);
    }
    try {
      const rec = parseJson(text) as ContainerRecord;
      if (rec.id !== id || typeof rec.pid !== "number") throw new Error("fields missing");
      return rec;
    } catch (e) {
      throw new CapsuleError(
        `State of container "${id}" (${dir}/${STATE_FILE}) is damaged: ${(e as Error).message}; ` +
          `remove it with "capsule delete -f ${id}"`,
      );
    }
  }

  /** Like read, but a missing container is an error. */
  load(id: string): ContainerRecord {
    const rec = this.read(id);
    if (!rec) {
      throw new CapsuleError(
        `Container "${id}" was never fully created (a create was interrupted); ` +
          `remove it with "capsule delete -f ${id}"`,
      );
    }
    return rec;
  }

  /**
   * Takes the container's lock: an exclusive flock on its state directory, held until the
   * returned file is closed (blocks while another process holds it). delete holds it while it
   * releases and removes the state; the release of a stopped container's resources
   * (stop.ts releaseStopped) while it checks which instance the state is and acts on it, so
   * that a delete and a new create of the same id never interleave with that release.
   * Returns undefined when the container has no state directory.
   */
  lock(id: string): Deno.FsFile | undefined {
    let f: Deno.FsFile;
    try {
      f = Deno.openSync(this.dir(id), { read: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
    try {
      f.lockSync(true);
    } catch (e) {
      f.close();
      throw e;
    }
    return f;
  }

  /** The ids of the containers under the root, sorted. */
  ids(): string[] {
    const out: string[] = [];
    try {
      for (const e of Deno.readDirSync(this.root)) {
        if (e.isDirectory && ID_PATTERN.test(e.name)) out.push(e.name);
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return out.sort();
  }

  /**
   * The status now: creating while the process that creates it lives (creatorPid); else
   * stopped unless the init lives with the same start time (a recycled pid never counts),
   * creating until create finished (a crashed create's live init), created while exec.fifo
   * exists.
   */
  status(rec: ContainerRecord, paused?: PausedProbe): Status {
    if (
      rec.creating && rec.creatorPid &&
      initAlive({ pid: rec.creatorPid, pidStartTime: rec.creatorStartTime ?? "" })
    ) return "creating";
    if (!initAlive(rec)) return "stopped";
    if (rec.creating) return "creating";
    if (paused?.(rec)) return "paused";
    return listed(this.dir(rec.id), EXEC_FIFO) ? "created" : "running";
  }

  /**
   * Removes the container's directory; a missing one is fine. Refused (CapsuleError) while it
   * holds the host bind of a container without a mount namespace (host-mount.json, see
   * host_mount.ts): a recursive removal would go through the bind into the rootfs.
   */
  remove(id: string): void {
    if (listed(this.dir(id), "host-mount.json")) {
      throw new CapsuleError(
        `The state of container "${id}" still holds its rootfs bind (${this.dir(id)}/rootfs); ` +
          `run "capsule delete -f ${id}" once it can be unmounted`,
      );
    }
    try {
      Deno.removeSync(this.dir(id), { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}
