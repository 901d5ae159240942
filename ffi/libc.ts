// The one place in capsule that calls Deno.dlopen. Every call here is a blocking FFI call on
// the calling (main) thread: namespace work must never hop to another thread (DESIGN.md).
// Errors come back as SysError, with the errno name, the syscall and the path it was about.
// This module imports nothing of the project.

const SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" },
  // Every system call goes through this one symbol (sys below): binding costs ~0.2-0.5 ms per
  // symbol (Deno.dlopen), which a path paid for each call it made (~7 ms for the init's 22).
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
  readNonblocking: {
    name: "read",
    parameters: ["i32", "buffer", "usize"],
    result: "isize",
    nonblocking: true,
  },
  // posix_spawn(3) (not a system call: glibc's clone(CLONE_VM|CLONE_VFORK) and execve): the
  // way to start a process without Deno.Command, whose first use costs 3.4-5.1 ms (spawn below).
  posix_spawn: {
    parameters: ["buffer", "buffer", "pointer", "pointer", "buffer", "buffer"],
    result: "i32",
  },
  wait4Nonblocking: {
    name: "wait4",
    parameters: ["i32", "buffer", "i32", "pointer"],
    result: "i32",
    nonblocking: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let lib: Lib | undefined;

/**
 * The libc symbols, each bound on its first use: binding costs ~0.2-0.5 ms per symbol (~1 ms for
 * the first), so every system call goes through `syscall` (measured: the init bound 22 symbols,
 * ~7 ms, before; now 2-3). A symbol's getter replaces itself with the bound function.
 * Binding happens inside a wrapper's call, before the call proper: errno is read only after
 * the call itself returned -1, so nothing dlopen leaves in errno is ever reported.
 */
export function libc(): Lib {
  if (!lib) {
    const symbols: Record<string, unknown> = {};
    for (const name of Object.keys(SYMBOLS) as (keyof typeof SYMBOLS)[]) {
      Object.defineProperty(symbols, name, {
        configurable: true,
        enumerable: true,
        get() {
          const fn = Deno.dlopen("libc.so.6", { [name]: SYMBOLS[name] }).symbols[name];
          Object.defineProperty(symbols, name, { value: fn, enumerable: true });
          return fn;
        },
      });
    }
    lib = symbols as Lib;
  }
  return lib;
}

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  7: "E2BIG",
  8: "ENOEXEC",
  9: "EBADF",
  10: "ECHILD",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  26: "ETXTBSY",
  27: "EFBIG",
  28: "ENOSPC",
  30: "EROFS",
  32: "EPIPE",
  34: "ERANGE",
  36: "ENAMETOOLONG",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  95: "EOPNOTSUPP",
  98: "EADDRINUSE",
  104: "ECONNRESET",
  111: "ECONNREFUSED",
};

/** strerror's text (in lower case) of each errno ERRNO_NAMES names: "NAME" alone is no reason. */
const ERRNO_TEXT: Record<string, string> = {
  EPERM: "operation not permitted",
  ENOENT: "no such file or directory",
  ESRCH: "no such process",
  EACCES: "permission denied",
  EBUSY: "device or resource busy",
  EEXIST: "file exists",
  ENOTDIR: "not a directory",
  EISDIR: "is a directory",
  EINVAL: "invalid argument",
  ENOSPC: "no space left on device",
  EROFS: "read-only file system",
  ELOOP: "too many levels of symbolic links",
  ENOEXEC: "exec format error",
  ENOMEM: "cannot allocate memory",
  ENOSYS: "function not implemented",
  EAGAIN: "resource temporarily unavailable",
  EMFILE: "too many open files",
  ENFILE: "too many open files in the system",
  EBADF: "bad file descriptor",
  ENOTEMPTY: "directory not empty",
  EXDEV: "invalid cross-device link",
  ENODEV: "no such device",
  EINTR: "interrupted system call",
  EIO: "input/output error",
  E2BIG: "argument list too long",
  ECHILD: "no child processes",
  EFAULT: "bad address",
  ENOTTY: "inappropriate ioctl for device",
  ETXTBSY: "text file busy",
  EFBIG: "file too large",
  EPIPE: "broken pipe",
  ERANGE: "numerical result out of range",
  ENAMETOOLONG: "file name too long",
  EOPNOTSUPP: "operation not supported",
  EADDRINUSE: "address already in use",
  ECONNRESET: "connection reset by peer",
  ECONNREFUSED: "connection refused",
};

/** Each errno name this module knows, with its text: the messages SysError makes of them. */
export function errnoTexts(): [name: string, text: string | undefined][] {
  return Object.values(ERRNO_NAMES).map((n) => [n, ERRNO_TEXT[n]]);
}

function errnoName(errno: number): string {
  if (errno === 0) return "errno not set";
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/** A failed system call: `code` is the errno name (ENOENT...), `errno` its number. */
export class SysError extends Error {
  override name = "SysError";
  constructor(
    readonly syscall: string,
    readonly errno: number,
    readonly path?: string,
  ) {
    const code = errnoName(errno);
    super(`${syscall}${path ? ` ${path}` : ""}: ${ERRNO_TEXT[code] ?? code} (${code})`);
  }
  get code(): string {
    return errnoName(this.errno);
  }
}

/**
 * The calling (main) thread's errno as a 1-element view on libc's thread-local variable.
 * Every wrapper here is a blocking FFI call on the main JS thread, so one view serves them
 * all; reading it is a plain memory load, with no FFI call (and nothing of Deno's that could
 * fail and set errno) between the failed call and the read.
 */
let errnoView: Int32Array | undefined;
function errnoCell(): Int32Array {
  if (!errnoView) {
    const p = libc().__errno_location();
    if (!p) throw new Error("__errno_location returned NULL");
    errnoView = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(p, 4));
  }
  return errnoView;
}

/** errno of the last failed call on this thread; read it right after the call returned -1. */
export function errno(): number {
  return errnoCell()[0];
}

/**
 * Buffers whose addresses ptr() handed out since the last system call returned. A call is given
 * bare addresses (i64), which do not keep a buffer alive: a temporary such as `ptr(cstr(path))`
 * is garbage as soon as its address is taken, and sys() allocates (the BigInts) before the call,
 * so a collection there could free what the kernel is about to read. Held here, every such buffer
 * lives until the call that uses it returned: `invoke` empties the list when it is done, retries
 * after EINTR included (their addresses may have been taken before it began), a bare sys() and
 * spawn() when they return. Every pointer ptr() gives is used by the next call: nothing keeps
 * one across calls.
 */
const pinned: unknown[] = [];
/** invoke() calls under way (they nest only in tests): sys() leaves `pinned` to them. */
let invoking = 0;

const EINTR = 4;

/** How a wrapper treats EINTR: "retry" the call (safe for nearly all), or "fail". */
export type OnEintr = "retry" | "fail";

/**
 * Runs one libc/syscall call the way every wrapper does: errno is zeroed before each attempt
 * (so a value left by an earlier call, or by Deno's own code, can never be taken for this
 * call's), read only when the call returned -1, and an EINTR retried. A -1 with errno still
 * 0 is reported as such (EIO-like "errno not set"), never as someone else's error.
 * Returns the call's result; throws SysError(syscall, errno, path).
 * `cell` is for tests (a fake errno); the real one is libc's.
 */
export function invoke(
  call: () => number | bigint,
  syscall: string,
  path?: string,
  onEintr: OnEintr = "retry",
  cell: Int32Array = errnoCell(),
): number {
  // The buffers pinned for this call stay pinned through its retries (see `pinned`).
  invoking++;
  try {
    for (;;) {
      cell[0] = 0;
      const n = Number(call());
      if (n !== -1) return n;
      const e = cell[0];
      if (e === EINTR && onEintr === "retry") continue;
      throw new SysError(syscall, e, path);
    }
  } finally {
    if (--invoking === 0) pinned.length = 0;
  }
}

const enc = new TextEncoder();
/** A NUL-terminated C string. */
function cstr(s: string): Uint8Array<ArrayBuffer> {
  return enc.encode(s + "\0") as Uint8Array<ArrayBuffer>;
}

// Syscall numbers (x86_64 and aarch64 differ; capsule targets both).
const ARM = Deno.build.arch === "aarch64";
export const SYS = {
  read: ARM ? 63 : 0,
  write: ARM ? 64 : 1,
  openat: ARM ? 56 : 257,
  close: ARM ? 57 : 3,
  ioctl: ARM ? 29 : 16,
  dup3: ARM ? 24 : 292,
  getpid: ARM ? 172 : 39,
  sendmsg: ARM ? 211 : 46,
  recvmsg: ARM ? 212 : 47,
  socketpair: ARM ? 199 : 53,
  socket: ARM ? 198 : 41,
  connect: ARM ? 203 : 42,
  kill: ARM ? 129 : 62,
  fcntl: ARM ? 25 : 72,
  chdir: ARM ? 49 : 80,
  umask: ARM ? 166 : 95,
  prctl: ARM ? 167 : 157,
  chroot: ARM ? 51 : 161,
  mount: ARM ? 40 : 165,
  umount2: ARM ? 39 : 166,
  sethostname: ARM ? 161 : 170,
  setdomainname: ARM ? 162 : 171,
  setsid: ARM ? 157 : 112,
  unshare: ARM ? 97 : 272,
  setns: ARM ? 268 : 308,
  pipe2: ARM ? 59 : 293,
  pivot_root: ARM ? 41 : 155,
  setresuid: ARM ? 147 : 117,
  setresgid: ARM ? 149 : 119,
  setgroups: ARM ? 159 : 116,
  rt_sigaction: ARM ? 134 : 13,
  rt_sigprocmask: ARM ? 135 : 14,
  close_range: 436,
  capget: ARM ? 90 : 125,
  capset: ARM ? 91 : 126,
  prlimit64: ARM ? 261 : 302,
  pidfd_open: 434,
  pidfd_send_signal: 424,
  seccomp: ARM ? 277 : 317,
  fchownat: ARM ? 54 : 260,
  utimensat: ARM ? 88 : 280,
  lsetxattr: ARM ? 6 : 189,
  bpf: ARM ? 280 : 321,
  openat2: 437,
  mkdirat: ARM ? 34 : 258,
  mknodat: ARM ? 33 : 259,
  symlinkat: ARM ? 36 : 266,
  unlinkat: ARM ? 35 : 263,
  statx: ARM ? 291 : 332,
  ppoll: ARM ? 73 : 271,
  getsockopt: ARM ? 209 : 55,
  wait4: ARM ? 260 : 61,
} as const;

function sys(nr: number, ...args: (number | bigint)[]): number {
  try {
    const a = [0, 1, 2, 3, 4, 5].map((i) => BigInt(args[i] ?? 0));
    return Number(libc().syscall(BigInt(nr), a[0], a[1], a[2], a[3], a[4], a[5]));
  } finally {
    if (invoking === 0) pinned.length = 0;
  }
}

function sysCheck(name: string, nr: number, ...args: (number | bigint)[]): number {
  return invoke(() => sys(nr, ...args), name);
}

/** How many buffers are pinned now (tests: none once a call has returned). */
export function pinnedCount(): number {
  return pinned.length;
}

/**
 * The address of `buf` for a system call's argument (0 for null), pinned until that call
 * returns (see `pinned`). Exported for tests.
 */
export function ptr(buf: Uint8Array | BigUint64Array | Int32Array | null): bigint {
  if (!buf) return 0n;
  pinned.push(buf);
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf as Uint8Array)));
}

// ---- the wrappers -----------------------------------------------------------------------

export function unshare(flags: number): void {
  invoke(() => sys(SYS.unshare, flags), "unshare");
}

export function setns(fd: number, nstype: number): void {
  invoke(() => sys(SYS.setns, fd, nstype), "setns");
}

export function mount(
  source: string | null,
  target: string,
  fstype: string | null,
  flags: bigint | number,
  data: string | null,
): void {
  const src = source === null ? null : cstr(source);
  const fs = fstype === null ? null : cstr(fstype);
  const d = data === null || data === "" ? null : cstr(data);
  const t = cstr(target);
  invoke(() => sys(SYS.mount, ptr(src), ptr(t), ptr(fs), BigInt(flags), ptr(d)), "mount", target);
}

export function umount2(target: string, flags: number): void {
  const t = cstr(target);
  invoke(() => sys(SYS.umount2, ptr(t), flags), "umount2", target);
}

export function chdir(path: string): void {
  const p = cstr(path);
  invoke(() => sys(SYS.chdir, ptr(p)), "chdir", path);
}

export function chroot(path: string): void {
  const p = cstr(path);
  invoke(() => sys(SYS.chroot, ptr(p)), "chroot", path);
}

export function sethostname(name: string): void {
  const b = enc.encode(name);
  invoke(() => sys(SYS.sethostname, ptr(b), b.length), "sethostname");
}

export function setdomainname(name: string): void {
  const b = enc.encode(name);
  invoke(() => sys(SYS.setdomainname, ptr(b), b.length), "setdomainname");
}

export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major), mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) |
    (mi & 0xffn);
}

export function mknod(path: string, mode: number, dev: bigint): void {
  const p = cstr(path);
  invoke(() => sys(SYS.mknodat, AT_FDCWD_NUM, ptr(p), mode, dev), "mknod", path);
}

export function mkfifo(path: string, mode: number): void {
  const p = cstr(path);
  invoke(() => sys(SYS.mknodat, AT_FDCWD_NUM, ptr(p), 0o010000 | mode, 0), "mkfifo", path);
}

export function umask(mask: number): number {
  return sys(SYS.umask, mask);
}

export const O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  // arm64 numbers these two differently (arch/arm64/include/uapi/asm/fcntl.h).
  DIRECTORY: Deno.build.arch === "aarch64" ? 0o40000 : 0o200000,
  NOFOLLOW: Deno.build.arch === "aarch64" ? 0o100000 : 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
} as const;

export function open(path: string, flags: number, mode = 0): number {
  const p = cstr(path);
  return invoke(() => sys(SYS.openat, AT_FDCWD_NUM, ptr(p), flags, mode), "open", path);
}

/** close(2); never retried (Linux frees the fd even when close reports EINTR); errors ignored. */
export function close(fd: number): void {
  sys(SYS.close, fd);
}

/** read(2); returns the number of bytes (0 at EOF). Retries EINTR. */
export function read(fd: number, buf: Uint8Array<ArrayBuffer>): number {
  return invoke(() => sys(SYS.read, fd, ptr(buf), buf.length), "read");
}

/** read(2) on a pool thread: for the host side only, never inside a container's namespaces. */
export async function readAsync(fd: number, buf: Uint8Array<ArrayBuffer>): Promise<number> {
  // -1 on any error: the errno of a pool thread is not ours to read. A failure is tried
  // again a few times, so an EINTR (a signal such as SIGWINCH landing on that thread) is not
  // taken for the end; a lasting error (EIO once the pty's slaves are closed) stays -1.
  for (let tries = 0;; tries++) {
    const n = Number(await libc().readNonblocking(fd, buf, BigInt(buf.length)));
    if (n >= 0 || tries === 3) return Math.max(-1, n);
  }
}

export function writeAll(fd: number, data: Uint8Array<ArrayBuffer>): void {
  let off = 0;
  while (off < data.length) {
    const chunk = data.subarray(off);
    off += invoke(() => sys(SYS.write, fd, ptr(chunk), chunk.length), "write");
  }
}

const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0o2000000;

/** socketpair(AF_UNIX, SOCK_STREAM); both ends without CLOEXEC unless asked. */
export function socketpair(cloexec = false): [number, number] {
  const sv = new Int32Array(2);
  invoke(
    () =>
      sys(
        SYS.socketpair,
        AF_UNIX,
        SOCK_STREAM | (cloexec ? SOCK_CLOEXEC : 0),
        0,
        ptr(
          new Uint8Array(sv.buffer),
        ),
      ),
    "socketpair",
  );
  return [sv[0], sv[1]];
}

/**
 * pipe2(2): [read end, write end], both close-on-exec unless `cloexec` is false (clear it on
 * the one end a child must inherit, right before that spawn). Throws SysError.
 */
export function pipe2(cloexec = true): [number, number] {
  const fds = new Int32Array(2);
  invoke(() => sys(SYS.pipe2, ptr(new Uint8Array(fds.buffer)), cloexec ? O.CLOEXEC : 0), "pipe2");
  return [fds[0], fds[1]];
}

const F_GETFD = 1, F_SETFD = 2, FD_CLOEXEC = 1;
export function setCloexec(fd: number, on: boolean): void {
  const flags = invoke(() => sys(SYS.fcntl, fd, F_GETFD, 0), "fcntl");
  invoke(() => sys(SYS.fcntl, fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC), "fcntl");
}

/** Whether `fd` is close-on-exec; throws SysError EBADF when it is not open. */
export function isCloexec(fd: number): boolean {
  return (invoke(() => sys(SYS.fcntl, fd, F_GETFD, 0), "fcntl") & FD_CLOEXEC) !== 0;
}

/** fcntl(F_DUPFD_CLOEXEC): a close-on-exec copy of `fd` (3 or above). Throws SysError EBADF. */
export function dupCloexec(fd: number): number {
  return invoke(() => sys(SYS.fcntl, fd, 1030, /* F_DUPFD_CLOEXEC */ 3), "fcntl");
}

export function dup2(from: number, to: number): void {
  // dup3 refuses equal fds (and arm64 has no dup2): dup2's answer then, an open fd is kept.
  if (from === to) {
    invoke(() => sys(SYS.fcntl, from, F_GETFD, 0), "dup2");
    return;
  }
  invoke(() => sys(SYS.dup3, from, to, 0), "dup2");
}

export function kill(pid: number, sig: number): void {
  invoke(() => sys(SYS.kill, pid, sig), "kill");
}

/**
 * Starts `path` (absolute: no PATH lookup) with `argv` (argv[0] included) and exactly `env`
 * ("NAME=value" each) through posix_spawn(3): no file actions, no attributes, so the child has
 * this process's signal mask, its ignored signals (Deno ignores SIGPIPE) and every fd that is
 * not close-on-exec. Returns its pid; throws SysError (posix_spawn, with the exec's errno).
 */
export function spawn(path: string, argv: string[], env: string[]): number {
  const strings = [...argv, ...env].map(cstr); // pinned by ptr() until the call returned
  const vector = (from: number, n: number) => {
    const v = new BigUint64Array(n + 1); // NULL-terminated
    for (let i = 0; i < n; i++) v[i] = ptr(strings[from + i]);
    return v;
  };
  const pid = new Int32Array(1);
  let rc: number;
  try {
    rc = libc().posix_spawn(
      pid,
      cstr(path),
      null,
      null,
      vector(0, argv.length),
      vector(argv.length, env.length),
    );
  } finally {
    pinned.length = 0;
  }
  if (rc !== 0) throw new SysError("posix_spawn", rc, path);
  return pid[0];
}

/**
 * wait4(2) for the child `pid` on a pool thread: its raw wait status (as waitpid's `wstatus`),
 * or -1 when it failed (the errno of a pool thread is not readable here: waitNoHang tells).
 */
export async function wait4Async(pid: number): Promise<number> {
  const status = new Int32Array(1);
  const r = await libc().wait4Nonblocking(pid, status, 0, null);
  return r === pid ? status[0] : -1;
}

/**
 * waitpid(pid, WNOHANG): the raw wait status of the child `pid` when it has ended (it is reaped
 * now), else undefined. Throws SysError (ECHILD: not a child of this process, or reaped).
 */
export function waitNoHang(pid: number): number | undefined {
  const status = new Int32Array(1);
  const r = invoke(() => sys(SYS.wait4, pid, ptr(status), 1, /* WNOHANG */ 0), "wait4");
  return r === pid ? status[0] : undefined;
}

/** pidfd_open(2): an fd (close-on-exec) that names the process `pid` and no later one. */
export function pidfdOpen(pid: number): number {
  return invoke(() => sys(SYS.pidfd_open, pid, 0), "pidfd_open");
}

/** pidfd_send_signal(2): `sig` to the process of `pidfd`. Throws SysError (ESRCH: gone). */
export function pidfdSendSignal(pidfd: number, sig: number): void {
  invoke(() => sys(SYS.pidfd_send_signal, pidfd, sig, 0, 0), "pidfd_send_signal");
}

export function getpid(): number {
  return sys(SYS.getpid);
}

export function setsid(): void {
  invoke(() => sys(SYS.setsid), "setsid");
}

export function ioctl(fd: number, req: number, arg: number | bigint): void {
  invoke(() => sys(SYS.ioctl, fd, BigInt(req), BigInt(arg)), "ioctl");
}

export function prctl(option: number, a2 = 0n, a3 = 0n, a4 = 0n, a5 = 0n): number {
  return invoke(() => sys(SYS.prctl, option, a2, a3, a4, a5), "prctl");
}

export function setresuid(uid: number): void {
  sysCheck("setresuid", SYS.setresuid, uid, uid, uid);
}

export function setresgid(gid: number): void {
  sysCheck("setresgid", SYS.setresgid, gid, gid, gid);
}

export function setgroups(gids: number[]): void {
  const arr = new Uint32Array(gids.length || 1);
  gids.forEach((g, i) => arr[i] = g);
  sysCheck("setgroups", SYS.setgroups, gids.length, ptr(new Uint8Array(arr.buffer)));
}

export interface Rlimit {
  resource: number;
  soft: bigint;
  hard: bigint;
}

/** The calling process's [soft, hard] limit of `resource` (RLIM_INFINITY = 2^64-1). */
export function getrlimit(resource: number): [bigint, bigint] {
  const lim = new BigUint64Array(2);
  sysCheck("prlimit64", SYS.prlimit64, 0, resource, 0, ptr(new Uint8Array(lim.buffer)));
  return [lim[0], lim[1]];
}

/** prlimit64 on this process; the buffer is made before the call (nothing allocated after). */
export function setrlimit(resource: number, soft: bigint, hard: bigint): void {
  const lim = new BigUint64Array([soft, hard]);
  sysCheck("prlimit64", SYS.prlimit64, 0, resource, ptr(new Uint8Array(lim.buffer)), 0);
}

/** capset(2) for the calling thread: effective, permitted, inheritable as 64-bit masks. */
export function capset(effective: bigint, permitted: bigint, inheritable: bigint): void {
  const header = new Uint32Array([0x20080522, /* _LINUX_CAPABILITY_VERSION_3 */ 0]);
  const lo = (v: bigint) => Number(v & 0xffffffffn), hi = (v: bigint) => Number(v >> 32n);
  const data = new Uint32Array([
    lo(effective),
    lo(permitted),
    lo(inheritable),
    hi(effective),
    hi(permitted),
    hi(inheritable),
  ]);
  sysCheck(
    "capset",
    SYS.capset,
    ptr(new Uint8Array(header.buffer)),
    ptr(new Uint8Array(data.buffer)),
  );
}

// ---- terminals and fd passing ------------------------------------------------------------

const TIOCSWINSZ = 0x5414;

export function setWinsize(fd: number, rows: number, cols: number): void {
  const ws = new Uint16Array([rows, cols, 0, 0]);
  invoke(
    () => sys(SYS.ioctl, fd, BigInt(TIOCSWINSZ), ptr(new Uint8Array(ws.buffer))),
    "ioctl(TIOCSWINSZ)",
  );
}

const SOL_SOCKET = 1, SCM_RIGHTS = 1;

/** sendmsg(2) of `data` with one fd attached (SCM_RIGHTS). */
export function sendFd(sock: number, fd: number, data: Uint8Array<ArrayBuffer>): void {
  const payload = data.length ? data : new Uint8Array([0]);
  const iov = new BigUint64Array([ptr(payload), BigInt(payload.length)]);
  // struct cmsghdr { size_t len; int level; int type; int fd; } padded to 24 bytes.
  const control = new ArrayBuffer(24);
  const cv = new DataView(control);
  cv.setBigUint64(0, 20n, true);
  cv.setInt32(8, SOL_SOCKET, true);
  cv.setInt32(12, SCM_RIGHTS, true);
  cv.setInt32(16, fd, true);
  const controlBytes = new Uint8Array(control);
  // struct msghdr (56 bytes): name, namelen, iov, iovlen, control, controllen, flags
  const msg = new BigUint64Array([
    0n,
    0n,
    ptr(new Uint8Array(iov.buffer)),
    1n,
    ptr(controlBytes),
    24n,
    0n,
  ]);
  invoke(() => sys(SYS.sendmsg, sock, ptr(new Uint8Array(msg.buffer)), 0), "sendmsg");
}

/**
 * recvmsg(2) into `buf`: `n` bytes read (0 at EOF) and the fd passed with them as SCM_RIGHTS,
 * if any (received CLOEXEC). On a stream socket the kernel never joins bytes sent after an fd
 * to the bytes that carried it. Throws SysError.
 */
export function recvWithFd(sock: number, buf: Uint8Array): { n: number; fd?: number } {
  const iov = new BigUint64Array([ptr(buf), BigInt(buf.length)]);
  const control = new Uint8Array(24);
  const msg = new BigUint64Array([
    0n,
    0n,
    ptr(new Uint8Array(iov.buffer)),
    1n,
    ptr(control),
    24n,
    0n,
  ]);
  const MSG_CMSG_CLOEXEC = 0x40000000;
  const n = invoke(
    () => sys(SYS.recvmsg, sock, ptr(new Uint8Array(msg.buffer)), MSG_CMSG_CLOEXEC),
    "recvmsg",
  );
  const cv = new DataView(control.buffer);
  const controllen = new DataView(msg.buffer).getBigUint64(40, true);
  if (controllen < 20n || cv.getInt32(8, true) !== SOL_SOCKET) return { n };
  if (cv.getInt32(12, true) !== SCM_RIGHTS) return { n };
  return { n, fd: cv.getInt32(16, true) };
}

/** Connects a unix stream socket to `path` (the console socket of runc's callers). */
export function connectUnix(path: string): number {
  const fd = invoke(() => sys(SYS.socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), "socket");
  const addr = new Uint8Array(110);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  const p = enc.encode(path);
  if (p.length > 107) {
    close(fd);
    throw new SysError("connect", 36, path);
  }
  addr.set(p, 2);
  try {
    // An interrupted connect goes on in the kernel: not retried, its end is awaited instead.
    invoke(() => sys(SYS.connect, fd, ptr(addr), 2 + p.length + 1), "connect", path, "fail");
  } catch (e) {
    if ((e as SysError).errno !== EINTR) {
      close(fd);
      throw e;
    }
    awaitConnect(fd, path);
  }
  return fd;
}

/**
 * Waits until `fd` is readable or hung up (POLLIN, POLLHUP), at most `timeoutMs`, blocking
 * this (main) thread; true when it is. An interrupted or failed wait returns false.
 */
export function pollIn(fd: number, timeoutMs: number): boolean {
  const POLLIN = 1;
  const pfd = new Int32Array([fd, POLLIN]); // struct pollfd { int fd; short events, revents }
  const ts = new BigInt64Array([
    BigInt(Math.floor(timeoutMs / 1000)),
    BigInt((timeoutMs % 1000) * 1_000_000),
  ]);
  return sys(SYS.ppoll, ptr(pfd), 1, ptr(new Uint8Array(ts.buffer)), 0, 8) > 0;
}

/** One write(2) (EINTR retried); returns the bytes written. */
/** Waits for an interrupted connect(2) to finish (POLLOUT), then takes its SO_ERROR. */
function awaitConnect(fd: number, path: string): void {
  const POLLOUT = 4, SOL_SOCKET = 1, SO_ERROR = 4;
  const pfd = new Int32Array([fd, POLLOUT]); // struct pollfd { int fd; short events, revents }
  invoke(() => sys(SYS.ppoll, ptr(pfd), 1, 0, 0, 8), "poll", path);
  const err = new Int32Array(1), len = new Uint32Array([4]);
  invoke(
    () => sys(SYS.getsockopt, fd, SOL_SOCKET, SO_ERROR, ptr(err), ptr(new Uint8Array(len.buffer))),
    "getsockopt",
    path,
  );
  if (err[0]) {
    close(fd);
    throw new SysError("connect", err[0], path);
  }
}

/** write(2) once: the bytes written. Throws SysError (naming `path` when given). */
export function write(fd: number, data: Uint8Array<ArrayBuffer>, path?: string): number {
  return invoke(() => sys(SYS.write, fd, ptr(data), data.length), "write", path);
}

// ---- fd-relative calls (the init's rootfs setup: nothing is reached through a path) -----

const AT_FDCWD = -100n, AT_SYMLINK_NOFOLLOW = 0x100n, AT_EMPTY_PATH = 0x1000n;
/** openat's "relative to the working directory", as a number for the fd parameters. */
const AT_FDCWD_NUM = -100;

/** openat2(2) RESOLVE_* flags. */
export const RESOLVE = {
  NO_XDEV: 0x01,
  NO_MAGICLINKS: 0x02,
  NO_SYMLINKS: 0x04,
  BENEATH: 0x08,
  IN_ROOT: 0x10,
} as const;

/**
 * openat2(dirfd, path, flags, mode, resolve): `resolve` bounds how `path` is walked, e.g.
 * RESOLVE_IN_ROOT (symlinks and ".." resolved as if dirfd were "/") or RESOLVE_NO_SYMLINKS.
 * Returns the new fd; throws SysError (ELOOP for a refused symlink, EXDEV for an escape).
 */
export function openat2(
  dirfd: number,
  path: string,
  flags: number,
  resolve: number,
  mode = 0,
): number {
  // struct open_how { u64 flags; u64 mode; u64 resolve; }
  const how = new BigUint64Array([BigInt(flags), BigInt(mode), BigInt(resolve)]);
  const p = cstr(path);
  return invoke(
    () => sys(SYS.openat2, dirfd, ptr(p), ptr(new Uint8Array(how.buffer)), 24),
    "openat2",
    path,
  );
}

/** mkdirat(2): one directory `name` in the directory open as `dirfd` (mode & ~umask). */
export function mkdirat(dirfd: number, name: string, mode: number): void {
  const p = cstr(name);
  invoke(() => sys(SYS.mkdirat, dirfd, ptr(p), mode), "mkdirat", name);
}

/** mknodat(2) of `name` in `dirfd`; `mode` carries the S_IF* type bits. */
export function mknodat(dirfd: number, name: string, mode: number, dev: bigint): void {
  const p = cstr(name);
  invoke(() => sys(SYS.mknodat, dirfd, ptr(p), mode, dev), "mknodat", name);
}

/** symlinkat(2): `name` in `dirfd`, pointing at `target` (never followed here). */
export function symlinkat(target: string, dirfd: number, name: string): void {
  const t = cstr(target), p = cstr(name);
  invoke(() => sys(SYS.symlinkat, ptr(t), dirfd, ptr(p)), "symlinkat", name);
}

/** unlinkat(2) of `name` in `dirfd` (AT_REMOVEDIR for an empty directory). */
export function unlinkat(dirfd: number, name: string, dir = false): void {
  const p = cstr(name);
  invoke(() => sys(SYS.unlinkat, dirfd, ptr(p), dir ? 0x200 : 0), "unlinkat", name);
}

/** fchownat(2) of `name` in `dirfd` without following it ("" = the fd itself). */
export function fchownat(dirfd: number, name: string, uid: number, gid: number): void {
  const p = cstr(name);
  const flags = AT_SYMLINK_NOFOLLOW | (name === "" ? AT_EMPTY_PATH : 0n);
  invoke(() => sys(SYS.fchownat, dirfd, ptr(p), uid, gid, flags), "fchownat", name);
}

// ---- calls on a path itself, never following a final symlink (image extraction) ---------
// They return 0 or the errno: the caller decides what it may skip (e.g. xattrs on tmpfs).

function sysErrno(nr: number, ...args: (number | bigint)[]): number {
  try {
    invoke(() => sys(nr, ...args), "syscall");
    return 0;
  } catch (e) {
    return (e as SysError).errno;
  }
}

export function lchown(path: string, uid: number, gid: number): number {
  return sysErrno(SYS.fchownat, AT_FDCWD, ptr(cstr(path)), uid, gid, AT_SYMLINK_NOFOLLOW);
}

/**
 * A struct timespec[2] (atime, mtime) for utimensat, both `mtime` (seconds, fractional), or
 * exactly `ns` (nanoseconds since the epoch) when given.
 */
export function timespecs(mtime: number, ns?: bigint): Uint8Array {
  let sec: bigint, nsec: bigint;
  if (ns !== undefined) {
    sec = ns / 1_000_000_000n;
    nsec = ns % 1_000_000_000n;
    if (nsec < 0n) sec -= 1n, nsec += 1_000_000_000n; // BigInt division truncates
  } else {
    let s = Math.floor(mtime);
    let n = Math.round((mtime - s) * 1e9);
    // A fraction within half a nanosecond of 1 rounds up to the next second (utimensat
    // refuses a tv_nsec of 10^9 with EINVAL).
    if (n >= 1e9) s += 1, n -= 1e9;
    sec = BigInt(s);
    nsec = BigInt(n);
  }
  return new Uint8Array(new BigInt64Array([sec, nsec, sec, nsec]).buffer);
}

/** atime and mtime (seconds, fractional; or `ns` exactly) of the path itself. */
export function lutimes(path: string, mtime: number, ns?: bigint): number {
  return sysErrno(
    SYS.utimensat,
    AT_FDCWD,
    ptr(cstr(path)),
    ptr(timespecs(mtime, ns)),
    AT_SYMLINK_NOFOLLOW,
  );
}

// ---- calls on an open file (image extraction: a file is set up through the fd it was
// created with, never looked up by path again) -------------------------------------------

const SYS_FD = {
  lseek: ARM ? 62 : 8,
  ftruncate: ARM ? 46 : 77,
  fchmod: ARM ? 52 : 91,
} as const;

/** Flags of a file created for writing, exclusively, never through a final symlink. */
export const O_CREATE_NEW = O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW | O.CLOEXEC;

/** The owner of an open file (fchown); returns 0 or the errno (the caller decides). */
export function fchown(fd: number, uid: number, gid: number): number {
  return sysErrno(SYS.fchownat, fd, ptr(cstr("")), uid, gid, AT_EMPTY_PATH);
}

/** fchmod(2): permission bits (07777) of an open file. Throws SysError. */
export function fchmod(fd: number, mode: number, path?: string): void {
  invoke(() => sys(SYS_FD.fchmod, fd, mode & 0o7777), "fchmod", path);
}

/**
 * atime and mtime (seconds, fractional; or `ns` exactly) of an open file (futimens); returns 0
 * or the errno.
 */
export function futimes(fd: number, mtime: number, ns?: bigint): number {
  return sysErrno(SYS.utimensat, fd, 0, ptr(timespecs(mtime, ns)), 0);
}

/** lseek(fd, n, SEEK_CUR): moves the offset n bytes on (past the end leaves a hole). */
export function seekCurrent(fd: number, n: number, path?: string): void {
  invoke(() => sys(SYS_FD.lseek, fd, n, 1 /* SEEK_CUR */), "lseek", path);
}

/** ftruncate(2): the file's size becomes `size` bytes. Throws SysError. */
export function ftruncate(fd: number, size: number, path?: string): void {
  invoke(() => sys(SYS_FD.ftruncate, fd, size), "ftruncate", path);
}

export function lsetxattr(path: string, name: string, value: Uint8Array): number {
  const v = new Uint8Array(value.length || 1);
  v.set(value);
  return sysErrno(SYS.lsetxattr, ptr(cstr(path)), ptr(cstr(name)), ptr(v), value.length, 0);
}

// ---- eBPF for cgroup v2 device rules ------------------------------------------------------

const BPF_PROG_LOAD = 5, BPF_PROG_ATTACH = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE = 15, BPF_CGROUP_DEVICE = 6;
export const BPF_F_ALLOW_MULTI = 2;

/** Loads a BPF_PROG_TYPE_CGROUP_DEVICE program; returns its fd (CLOEXEC). */
export function bpfLoadDeviceProgram(insns: Uint8Array<ArrayBuffer>): number {
  const license = cstr("Apache-2.0");
  // Without a verifier log first: with one, a program of a few dozen rules overflows any small
  // buffer (the log lists every instruction on every path) and the load fails with ENOSPC.
  // The log is asked for only to explain a refusal.
  const load = (log?: Uint8Array<ArrayBuffer>) => {
    const attr = new ArrayBuffer(128);
    const dv = new DataView(attr);
    dv.setUint32(0, BPF_PROG_TYPE_CGROUP_DEVICE, true);
    dv.setUint32(4, insns.length / 8, true);
    dv.setBigUint64(8, ptr(insns), true);
    dv.setBigUint64(16, ptr(license), true);
    if (log) {
      dv.setUint32(24, 1, true); // log_level
      dv.setUint32(28, log.length, true);
      dv.setBigUint64(32, ptr(log), true);
    }
    dv.setUint32(68, BPF_CGROUP_DEVICE, true); // expected_attach_type
    try {
      return {
        fd: invoke(() => sys(SYS.bpf, BPF_PROG_LOAD, ptr(new Uint8Array(attr)), 128), "bpf"),
      };
    } catch (err) {
      return { fd: -1, e: (err as SysError).errno };
    }
  };
  const first = load();
  if (first.fd !== -1) return first.fd;
  const log = new Uint8Array(1 << 20);
  const again = load(log);
  if (again.fd !== -1) return again.fd;
  const why = new TextDecoder().decode(log.subarray(0, log.indexOf(0))).trim();
  throw new SysError(
    `bpf(BPF_PROG_LOAD)${why ? ` [${why.split("\n").at(-1)}]` : ""}`,
    first.e ?? 0,
  );
}

/** Attaches a device program to the cgroup directory open as `cgroupFd`. */
export function bpfAttachDeviceProgram(cgroupFd: number, progFd: number, flags: number): void {
  const attr = new ArrayBuffer(128);
  const dv = new DataView(attr);
  dv.setUint32(0, cgroupFd, true);
  dv.setUint32(4, progFd, true);
  dv.setUint32(8, BPF_CGROUP_DEVICE, true);
  dv.setUint32(12, flags, true);
  sysCheck("bpf(BPF_PROG_ATTACH)", SYS.bpf, BPF_PROG_ATTACH, ptr(new Uint8Array(attr)), 128);
}

// ---- sealed copies of an executable, and entering a root by fd (runtime/exe_seal.ts, exec) --

const SYS_SEAL = {
  openat: ARM ? 56 : 257,
  fchdir: ARM ? 50 : 81,
  memfd_create: ARM ? 279 : 319,
  sendfile: ARM ? 71 : 40,
  faccessat: ARM ? 48 : 269,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
} as const;

/** openat(2) relative to the directory (or mount) `dirFd`; returns the fd. */
export function openat(dirFd: number, path: string, flags: number, mode = 0): number {
  const p = cstr(path);
  return invoke(() => sys(SYS_SEAL.openat, dirFd, ptr(p), flags, mode), "openat", path);
}

/** access(path, W_OK) with the real uid: could this user open `path` for writing? */
export function accessWritable(path: string): boolean {
  const p = cstr(path);
  return sys(SYS_SEAL.faccessat, -100, /* AT_FDCWD */ ptr(p), 2, /* W_OK */ 0) === 0;
}

/** fchdir(2): the working directory becomes the directory open as `fd` (any namespace). */
export function fchdir(fd: number): void {
  invoke(() => sys(SYS_SEAL.fchdir, fd), "fchdir");
}

/**
 * A detached, read-only, nosuid, nodev mount of a new filesystem of type `fsType` configured
 * with string options (new mount API: fsopen, fsconfig, fsmount; Linux 5.2). Returns the mount
 * fd (O_CLOEXEC); the mount is unreachable by path and dissolves when the fd and every file
 * opened through it are closed. Throws SysError (EPERM without CAP_SYS_ADMIN, ENOSYS, ENODEV).
 */
export function fsmountReadOnly(fsType: string, options: [string, string][]): number {
  const FSOPEN_CLOEXEC = 1, FSCONFIG_SET_STRING = 1, FSCONFIG_CMD_CREATE = 6;
  const FSMOUNT_CLOEXEC = 1;
  const MOUNT_ATTR_RDONLY = 1, MOUNT_ATTR_NOSUID = 2, MOUNT_ATTR_NODEV = 4;
  const type = cstr(fsType);
  const ctx = invoke(() => sys(SYS_SEAL.fsopen, ptr(type), FSOPEN_CLOEXEC), `fsopen ${fsType}`);
  try {
    for (const [key, value] of options) {
      const k = cstr(key), v = cstr(value);
      invoke(
        () => sys(SYS_SEAL.fsconfig, ctx, FSCONFIG_SET_STRING, ptr(k), ptr(v), 0),
        `fsconfig ${fsType} ${key}=${value}`,
      );
    }
    invoke(
      () => sys(SYS_SEAL.fsconfig, ctx, FSCONFIG_CMD_CREATE, 0, 0, 0),
      `fsconfig ${fsType} create`,
    );
    return invoke(
      () =>
        sys(
          SYS_SEAL.fsmount,
          ctx,
          FSMOUNT_CLOEXEC,
          MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        ),
      `fsmount ${fsType}`,
    );
  } finally {
    close(ctx);
  }
}

/**
 * A memfd holding a copy of the file open as `srcFd` (`size` bytes), sealed against every
 * change (F_SEAL_SEAL|SHRINK|GROW|WRITE): what runc does with its own binary. Returns the fd
 * (O_CLOEXEC). Throws SysError.
 */
export function sealedMemfdCopy(name: string, srcFd: number, size: number): number {
  const MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2, F_ADD_SEALS = 1033;
  const F_SEAL_SEAL = 1, F_SEAL_SHRINK = 2, F_SEAL_GROW = 4, F_SEAL_WRITE = 8;
  const n = cstr(name);
  const fd = invoke(
    () => sys(SYS_SEAL.memfd_create, ptr(n), MFD_CLOEXEC | MFD_ALLOW_SEALING),
    "memfd_create",
  );
  try {
    let done = 0;
    while (done < size) {
      const got = sys(SYS_SEAL.sendfile, fd, srcFd, 0, size - done);
      if (got === -1) throw new SysError("sendfile", errno());
      if (got === 0) break;
      done += got;
    }
    invoke(
      () =>
        sys(SYS.fcntl, fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE),
      "fcntl(F_ADD_SEALS)",
    );
    return fd;
  } catch (e) {
    close(fd);
    throw e;
  }
}
