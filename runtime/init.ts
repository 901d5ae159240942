// The container's init: a small Deno process that the parent starts in the new PID namespace.
// Everything runs synchronously on the main thread (async Deno ops run on pool threads that
// keep the host's root, DESIGN.md). It sets up namespaces and the rootfs, reports "ready",
// waits on exec.fifo for `start`, then execve's the user's program: no Deno stays behind.
// Imports: ffi, the plan types and rootfs logic only. No CLI, no zod.
import * as libc from "../ffi/libc.ts";
import { CAPABILITIES, CLONE, MS, NAMESPACES, RLIMITS } from "./consts.ts";
import {
  INIT_EXE_FD_ENV,
  INIT_PIPE_ENV,
  INIT_STDERR_FD_ENV,
  type InitMessage,
  receiveFrame,
  sendFrame,
} from "./channel.ts";
import { EXEC_DENIED, EXEC_NOT_FOUND, EXEC_NOT_IN_PATH } from "./errors.ts";
import type { DeviceOp, HookPlan, InitPlan, ProcessPlan } from "./plan.ts";
import { readMountinfo } from "./mountinfo.ts";
import { signalName } from "./signals.ts";
import { type FileKind, type RootfsOps, setupRootfs } from "./rootfs.ts";

const S_IF: Record<DeviceOp["type"], number> = {
  c: 0o020000,
  u: 0o020000,
  b: 0o060000,
  p: 0o010000,
};

function statKind(path: string, follow: boolean): FileKind | undefined {
  const mode = libc.statMode(path, follow);
  if (mode === undefined) return undefined;
  return KIND_OF[mode & S_IFMT] ?? "other";
}

const S_IFMT = 0o170000;
const KIND_OF: Record<number, FileKind> = {
  0o040000: "dir",
  0o100000: "file",
  0o120000: "symlink",
};
const STEP = libc.RESOLVE.BENEATH | libc.RESOLVE.NO_SYMLINKS | libc.RESOLVE.NO_MAGICLINKS;

/** The real RootfsOps: blocking FFI and Deno's *Sync APIs, on this thread only. */
export const realRootfsOps: RootfsOps = {
  mount: (s, t, f, flags, d) => libc.mount(s, t, f, flags, d),
  umount2: (t, f) => libc.umount2(t, f),
  pivotRoot: (n, o) => libc.pivotRoot(n, o),
  chdir: (p) => libc.chdir(p),
  chroot: (p) => libc.chroot(p),
  umask: (m) => libc.umask(m),
  mknodAt: (dir, name, type, mode, major, minor) =>
    libc.mknodat(dir, name, S_IF[type] | mode, libc.makedev(major, minor)),
  chownAt: (dir, name, u, g) => libc.fchownat(dir, name, u, g),
  sysctl: (path, value) => {
    try {
      const fd = libc.openat2(
        libc.AT_FDCWD_NUM,
        `/proc/sys/${path}`,
        libc.O.WRONLY | libc.O.NOFOLLOW | libc.O.CLOEXEC,
        libc.RESOLVE.NO_SYMLINKS | libc.RESOLVE.NO_MAGICLINKS,
      );
      try {
        libc.writeAll(fd, new TextEncoder().encode(value));
      } finally {
        libc.close(fd);
      }
    } catch (e) {
      throw new Error(
        `cannot set sysctl ${path.replace(/[./]/g, (c) => c === "/" ? "." : "/")}=${value}: ${
          (e as Error).message
        }`,
      );
    }
  },
  lkind: (p) => statKind(p, false),
  kind: (p) => statKind(p, true),
  readlink: (p) => Deno.readLinkSync(p),
  openDir: (p) => libc.open(p, libc.O.PATH | libc.O.DIRECTORY | libc.O.CLOEXEC),
  openAt: (dir, name) =>
    libc.openat2IfExists(dir, name, libc.O.PATH | libc.O.NOFOLLOW | libc.O.CLOEXEC, STEP),
  openInRoot: (root, path) =>
    libc.openat2IfExists(
      root,
      path,
      libc.O.PATH | libc.O.CLOEXEC,
      libc.RESOLVE.IN_ROOT | libc.RESOLVE.NO_MAGICLINKS,
    ),
  mkdirAt: (dir, name, mode) => libc.mkdirat(dir, name, mode),
  createAt: (dir, name, mode) =>
    libc.close(
      libc.openat2(
        dir,
        name,
        libc.O.WRONLY | libc.O.CREAT | libc.O.EXCL | libc.O.NOFOLLOW | libc.O.CLOEXEC,
        STEP,
        mode,
      ),
    ),
  symlinkAt: (target, dir, name) => libc.symlinkat(target, dir, name),
  unlinkAt: (dir, name, isDir) => libc.unlinkat(dir, name, isDir),
  stat: (fd) => {
    const st = libc.fstatFd(fd);
    const fmt = st.mode & S_IFMT;
    const dev = fmt === 0o020000 || fmt === 0o060000
      ? {
        type: fmt === 0o020000 ? "c" as const : "b" as const,
        major: st.rdevMajor,
        minor: st.rdevMinor,
      }
      : undefined;
    return { kind: KIND_OF[fmt] ?? "other", mode: st.mode & 0o7777, dev };
  },
  fdPath: (fd) => `/proc/self/fd/${fd}`,
  close: (fd) => libc.close(fd),
  submounts: (path) =>
    readMountinfo().map((m) => m.mountPoint).filter((mp) => mp.startsWith(path + "/")),
  mountTable: () => readMountinfo(),
};

function joinNamespaces(plan: InitPlan): void {
  // Open every namespace to join before entering any: a path may be relative to the host.
  const joins = plan.namespaces.filter((n) => n.path).map((n) => {
    const flag = NAMESPACES[n.type as keyof typeof NAMESPACES].flag;
    return { flag, fd: libc.open(n.path!, libc.O.RDONLY | libc.O.CLOEXEC), path: n.path! };
  });
  if (joins.some((j) => j.flag === CLONE.NEWNS)) libc.unshare(CLONE.FS);
  for (const j of joins) {
    try {
      libc.setns(j.fd, j.flag);
    } catch (e) {
      throw new Error(`cannot join namespace ${j.path}: ${(e as Error).message}`);
    }
    libc.close(j.fd);
  }
  let flags = 0;
  for (const n of plan.namespaces) {
    if (!n.path) flags |= NAMESPACES[n.type as keyof typeof NAMESPACES].flag;
  }
  if (flags) libc.unshare(flags);
}

function isExecutable(path: string): boolean {
  try {
    const st = Deno.statSync(path);
    return st.isFile && ((st.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Finds argv[0] as execvp would, in the container's PATH; the message is runc's. */
export function lookPath(name: string, env: string[]): string {
  if (name.includes("/")) {
    if (isExecutable(name)) return name;
    const why = statKind(name, true) === undefined ? EXEC_NOT_FOUND : EXEC_DENIED;
    throw new Error(`exec: "${name}": ${why}`);
  }
  const pathVar = env.findLast((e) => e.startsWith("PATH="))?.slice(5) ??
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const dir of pathVar.split(":")) {
    const candidate = `${dir || "."}/${name}`;
    if (isExecutable(candidate)) return candidate;
  }
  throw new Error(`exec: "${name}": ${EXEC_NOT_IN_PATH}`);
}

function mask(caps: number[]): bigint {
  return caps.reduce((m, c) => m | (1n << BigInt(c)), 0n);
}

function lastCap(): number {
  try {
    return Number(Deno.readTextFileSync("/proc/sys/kernel/cap_last_cap").trim());
  } catch {
    return CAPABILITIES.length - 1;
  }
}

const PR_SET_KEEPCAPS = 8, PR_CAPBSET_DROP = 24, PR_SET_NO_NEW_PRIVS = 38;
const PR_CAP_AMBIENT = 47, PR_CAP_AMBIENT_RAISE = 2;

function setgroupsDenied(): boolean {
  try {
    return Deno.readTextFileSync("/proc/self/setgroups").trim() === "deny";
  } catch {
    return false;
  }
}

/** User, groups and capabilities, in the order that keeps the capabilities asked for. */
function finalizeProcess(p: ProcessPlan): void {
  const caps = p.caps;
  if (caps) {
    const keep = new Set(caps.bounding);
    const last = lastCap();
    for (let c = 0; c <= last; c++) {
      if (!keep.has(c)) libc.prctl(PR_CAPBSET_DROP, BigInt(c));
    }
    libc.prctl(PR_SET_KEEPCAPS, 1n);
  }
  // Where setgroups is denied (a user namespace made by an unprivileged user) it cannot run.
  if (!setgroupsDenied()) libc.setgroups(p.additionalGids);
  libc.setresgid(p.gid);
  libc.setresuid(p.uid);
  if (caps) {
    libc.capset(mask(caps.effective), mask(caps.permitted), mask(caps.inheritable));
    for (const c of caps.ambient) {
      try {
        libc.prctl(PR_CAP_AMBIENT, BigInt(PR_CAP_AMBIENT_RAISE), BigInt(c));
      } catch { /* not in permitted+inheritable: the kernel refuses, as with runc */ }
    }
  }
  if (p.noNewPrivileges) libc.prctl(PR_SET_NO_NEW_PRIVS, 1n);
}

/** stdin from /dev/null, stdout and stderr to the log fd the parent opened for us. */
function redirectStdio(log: number): void {
  const nul = libc.open("/dev/null", libc.O.RDWR);
  libc.dup2(nul, 0);
  libc.dup2(log, 1);
  libc.dup2(log, 2);
  libc.close(nul);
  libc.close(log);
}

/**
 * The home directory of `uid` in an /etc/passwd text (name:pw:uid:gid:gecos:home:shell);
 * "/" when the uid has no entry (runc's default).
 */
export function homeFor(passwd: string | undefined, uid: number): string {
  for (const line of (passwd ?? "").split("\n")) {
    const f = line.split(":");
    if (f.length >= 6 && f[2] !== "" && Number(f[2]) === uid && f[5]) return f[5];
  }
  return "/";
}

/**
 * `env` with HOME added when it has none (or an empty one), from the container's
 * /etc/passwd for the process's uid, as runc does. `readPasswd` is called only then.
 */
export function withHome(
  env: string[],
  uid: number,
  readPasswd: () => string | undefined,
): string[] {
  if (env.some((e) => e.startsWith("HOME=") && e.length > 5)) return env;
  return [...env.filter((e) => !e.startsWith("HOME=")), `HOME=${homeFor(readPasswd(), uid)}`];
}

/** The container's /etc/passwd (at most 4 MiB), or undefined when it has none. */
function readPasswd(): string | undefined {
  try {
    // Resolved inside the container's "/" even if /etc/passwd is a link.
    const root = libc.open("/", libc.O.PATH | libc.O.DIRECTORY | libc.O.CLOEXEC);
    let fd: number;
    try {
      fd = libc.openat2(
        root,
        "etc/passwd",
        libc.O.RDONLY | libc.O.CLOEXEC,
        libc.RESOLVE.IN_ROOT | libc.RESOLVE.NO_MAGICLINKS,
      );
    } finally {
      libc.close(root);
    }
    try {
      const chunks: Uint8Array[] = [];
      let total = 0;
      for (;;) {
        const buf = new Uint8Array(65536);
        const n = libc.read(fd, buf);
        if (n === 0 || total > 4 << 20) break;
        chunks.push(buf.subarray(0, n));
        total += n;
      }
      const all = new Uint8Array(total);
      let off = 0;
      for (const c of chunks) {
        all.set(c, off);
        off += c.length;
      }
      return new TextDecoder().decode(all);
    } finally {
      libc.close(fd);
    }
  } catch {
    return undefined;
  }
}

/**
 * Hard limits above the current ones are raised now, while the init still has
 * CAP_SYS_RESOURCE (a refusal fails create with the limit named); the soft limits, which
 * could starve Deno itself (RLIMIT_AS, NOFILE), are set right before execve.
 */
function raiseHardLimits(p: ProcessPlan): void {
  for (const r of p.rlimits) {
    const [soft, hard] = libc.getrlimit(r.resource);
    if (BigInt(r.hard) <= hard) continue;
    try {
      libc.setrlimit(r.resource, soft, BigInt(r.hard));
    } catch (e) {
      const name = Object.entries(RLIMITS).find(([, v]) => v === r.resource)?.[0];
      throw new Error(
        `cannot raise the hard limit of ${name ?? r.resource} to ${r.hard}: ${
          (e as Error).message
        }`,
      );
    }
  }
}

/** A pty made in the container's devpts, also bound over /dev/console (runc's console). */
interface Tty {
  master: number;
  slave: number;
  name: string;
}

/** Binds the pty slave (by its fd) over /dev/console, made as an empty file if missing. */
function mountConsole(slave: number): void {
  const root = realRootfsOps.openDir("/");
  try {
    const dev = realRootfsOps.openInRoot(root, "/dev");
    if (dev === undefined) throw new Error("cannot make /dev/console: the container has no /dev");
    try {
      if (realRootfsOps.stat(dev).kind !== "dir") throw new Error("/dev is not a directory");
      try {
        realRootfsOps.createAt(dev, "console", 0o600);
      } catch (e) {
        if ((e as libc.SysError).code !== "EEXIST") throw e;
      }
      const fd = realRootfsOps.openAt(dev, "console");
      if (
        fd === undefined || realRootfsOps.stat(fd).kind === "symlink" ||
        realRootfsOps.stat(fd).kind === "dir"
      ) {
        if (fd !== undefined) libc.close(fd);
        throw new Error("/dev/console is a symlink or a directory: refused");
      }
      try {
        libc.mount(`/proc/self/fd/${slave}`, `/proc/self/fd/${fd}`, "bind", MS.BIND, null);
      } finally {
        libc.close(fd);
      }
    } finally {
      libc.close(dev);
    }
  } finally {
    libc.close(root);
  }
}

/**
 * Everything up to "ready": namespaces, rootfs, sysctls, hostname, the console, HOME,
 * hard limits. Returns argv[0]'s path and the terminal (when process.terminal).
 */
export function prepare(plan: InitPlan, channel: number): { path: string; tty?: Tty } {
  if (plan.logFd !== undefined) redirectStdio(plan.logFd);
  if (plan.setsid) libc.setsid();
  if (plan.process.oomScoreAdj !== undefined) {
    Deno.writeTextFileSync("/proc/self/oom_score_adj", String(plan.process.oomScoreAdj));
  }
  joinNamespaces(plan);
  if (plan.sourcesByFd) takeBindSources(plan, channel);
  let tty: Tty | undefined;
  setupRootfs(realRootfsOps, plan, () => {
    if (plan.hostname !== undefined) libc.sethostname(plan.hostname);
    if (plan.domainname !== undefined) libc.setdomainname(plan.domainname);
    // Before the read-only paths and root: /dev/console is bound like runc's.
    tty = makeTerminal(plan.process);
    if (tty) mountConsole(tty.slave);
  }, () => {
    // runtime spec: prestart and createRuntime (the parent's) before createContainer, all
    // after the mounts and before pivot_root; the parent answers "resume" once they succeeded.
    if (plan.hooks?.host) {
      sendFrame(channel, { type: "hooks" } satisfies InitMessage);
      const answer = receiveFrame<{ type: string }>(channel);
      if (answer?.type !== "resume") throw new Error("create stopped during its hooks");
    }
    runInitHooks("createContainer", plan.hooks?.createContainer, plan.hooks?.state ?? "");
  });
  try {
    plan.process.env = withHome(plan.process.env, plan.process.uid, readPasswd);
    raiseHardLimits(plan.process);
    libc.chdir(plan.process.cwd);
    return { path: lookPath(plan.process.args[0], plan.process.env), tty };
  } catch (e) {
    if (tty) libc.close(tty.master);
    throw e;
  }
}

/**
 * The bind mounts' sources as fds from the parent (plan.sourcesByFd), opened in this mount
 * namespace by host root: each is mounted from /proc/self/fd/N (CLOEXEC, gone at execve).
 */
function takeBindSources(plan: InitPlan, channel: number): void {
  const binds = plan.mounts.filter((m) => m.bind);
  if (!binds.length) return;
  sendFrame(channel, { type: "sources" } satisfies InitMessage);
  for (const m of binds) m.source = `/proc/self/fd/${libc.recvFd(channel)}`;
}

/** Blocks until `capsule start` opens exec.fifo for reading, then tells it we are going. */
function waitForStart(fifoFd: number): void {
  const w = libc.open(`/proc/self/fd/${fifoFd}`, libc.O.WRONLY | libc.O.CLOEXEC);
  libc.writeAll(w, new Uint8Array([0x30]));
  libc.close(w);
  libc.close(fifoFd);
}

/**
 * With process.terminal: a pty from the container's own devpts (so `tty` names a device the
 * container can see); the master goes to the parent over the init socket, the slave stays.
 */
function makeTerminal(p: ProcessPlan): Tty | undefined {
  if (!p.terminal) return undefined;
  const [master, name] = libc.openPty();
  try {
    const slave = libc.open(name, libc.O.RDWR | libc.O.NOCTTY | libc.O.CLOEXEC);
    try {
      ownTerminal(slave, p.uid);
    } catch (e) {
      libc.close(slave);
      throw e;
    }
    if (p.consoleSize) libc.setWinsize(master, p.consoleSize.height, p.consoleSize.width);
    return { master, slave, name };
  } catch (e) {
    libc.close(master);
    throw e;
  }
}

/**
 * The terminal becomes the process's uid's (the group stays devpts' gid=, the tty group), as
 * runc's fixStdioPermissions does, before the user switch: a non-root program can then use and
 * chmod its own terminal. Throws when the fd is not a pty slave. Where the uid or the inode's
 * owner is not mapped in a user namespace (EINVAL, EPERM) the terminal is left as it is, as
 * runc does.
 */
function ownTerminal(slave: number, uid: number): void {
  const st = libc.fstatFd(slave);
  // Opened by name in the container's /dev/pts: what is chowned must be a pty's slave
  // (UNIX98 majors 136-143), never a file the container put in its place.
  if ((st.mode & S_IFMT) !== 0o020000 || st.rdevMajor < 136 || st.rdevMajor > 143) {
    throw new Error(`the terminal's slave is not a pseudo-terminal (major ${st.rdevMajor})`);
  }
  if (st.uid === uid) return;
  try {
    libc.fchownat(slave, "", uid, st.gid);
  } catch (e) {
    const code = (e as libc.SysError).code;
    if (code !== "EINVAL" && code !== "EPERM") throw e;
  }
}

/** "ready" to the parent, then the pty master (when there is one) as a second message. */
function reportReady(sock: number, tty: ReturnType<typeof makeTerminal>): void {
  sendFrame(sock, { type: "ready", pid: libc.getpid() } satisfies InitMessage);
  if (!tty) return;
  libc.sendFd(sock, tty.master, new TextEncoder().encode(tty.name) as Uint8Array<ArrayBuffer>);
  libc.close(tty.master);
}

/** The slave becomes stdio and the controlling terminal of a new session. */
function attachTerminal(slave: number, alreadyLeader: boolean): void {
  if (!alreadyLeader) libc.setsid();
  libc.setControllingTerminal(slave);
  for (const fd of [0, 1, 2]) libc.dup2(slave, fd);
  if (slave > 2) libc.close(slave);
}

/**
 * Before "ready", as runc does: seccomp when it must precede dropping privileges, then user,
 * groups, capabilities and no_new_privs, and the umask. What fails here (a capability the host's
 * bounding set lacks, say) fails create or exec, with the step named.
 */
function dropPrivileges(p: ProcessPlan): void {
  // Without no_new_privs, seccomp(2) needs CAP_SYS_ADMIN: load it before dropping privileges
  // (the profile must then allow what follows, as with runc); with it, as late as possible.
  if (p.seccomp && !p.noNewPrivileges) {
    try {
      libc.bindAll(); // nothing may dlopen under the profile (libc() binds on first use)
      libc.seccompSetFilter(seccompProgram(p), p.seccomp.flags);
    } catch (e) {
      throw new Error(`cannot load the seccomp profile: ${(e as Error).message}`);
    }
  }
  try {
    finalizeProcess(p);
  } catch (e) {
    throw new Error(
      `cannot set the process's user, groups and capabilities (process.user, ` +
        `process.capabilities): ${(e as Error).message}`,
    );
  }
  libc.umask(p.umask);
}

function seccompProgram(p: ProcessPlan): Uint8Array<ArrayBuffer> {
  return Uint8Array.from(atob(p.seccomp!.program), (c) => c.charCodeAt(0));
}

/**
 * The last steps after "ready" (and start): the terminal, signals, fds, limits, execve.
 * `filterLoaded`: the seccomp filter was loaded already (before startContainer hooks).
 */
function execProcess(
  path: string,
  p: ProcessPlan,
  tty?: { slave: number; leader: boolean },
  filterLoaded = false,
): never {
  if (tty) attachTerminal(tty.slave, tty.leader);
  const filter = p.seccomp && p.noNewPrivileges && !filterLoaded ? seccompProgram(p) : undefined;
  // Built now: after the limits are set, only system calls run (a small RLIMIT_AS or
  // RLIMIT_NOFILE must meet the program, not Deno).
  // Socket activation (sd_listen_fds(3)): the program, this process once exec'd, is told.
  const env = p.listenFds
    ? [
      ...p.env.filter((e) => !/^LISTEN_(FDS|PID)=/.test(e)),
      `LISTEN_FDS=${p.listenFds}`,
      `LISTEN_PID=${libc.getpid()}`,
    ]
    : p.env;
  const exec: () => never = libc.prepareExecve(path, p.args, env);
  const setLimits = libc.prepareRlimits(
    p.rlimits.map((r) => ({ resource: r.resource, soft: BigInt(r.soft), hard: BigInt(r.hard) })),
  );
  libc.resetSignals();
  libc.closeRangeCloexec(3);
  // The caller's fds (--preserve-fds) came through capsule and this init at their numbers.
  for (const fd of p.preserveFds ?? []) libc.setCloexec(fd, false);
  setLimits();
  if (filter) libc.seccompSetFilter(filter, p.seccomp!.flags);
  exec();
}

/**
 * OCI hooks the init runs itself (runtime spec: createContainer in the container's mount
 * namespace before pivot_root, startContainer in the container before the program), one after
 * the other, synchronously on the main thread (the namespaces and root are this thread's): the
 * state JSON on stdin, exactly the hook's env. A failure throws with the hook's stderr. The
 * hook's `timeout` kills it (outputWithin) and fails the operation.
 */
function runInitHooks(kind: string, hooks: readonly HookPlan[] | undefined, state: string): void {
  for (const h of hooks ?? []) {
    const [mine, theirs] = libc.socketpair(true);
    const saved = libc.open("/dev/null", libc.O.RDONLY | libc.O.CLOEXEC);
    try {
      libc.writeAll(mine, new TextEncoder().encode(state));
      libc.close(mine);
      libc.dup2(0, saved);
      libc.dup2(theirs, 0);
      const command = new Deno.Command(h.path, {
        args: (h.args ?? [h.path]).slice(1),
        env: Object.fromEntries((h.env ?? []).map((e) => {
          const i = e.indexOf("=");
          return [e.slice(0, i), e.slice(i + 1)];
        })),
        clearEnv: true,
        stdin: "inherit",
        stdout: "null",
        stderr: "piped",
      });
      let out: { code: number; signal: string | null; stderr: Uint8Array };
      try {
        if (h.timeout) {
          out = outputWithin(command, h.timeout * 1000);
        } else {
          const o = command.outputSync();
          out = { code: o.code, signal: o.signal, stderr: o.stderr };
        }
      } catch (e) {
        throw new Error(`${kind} hook ${h.path} could not start: ${(e as Error).message}`);
      } finally {
        libc.dup2(saved, 0);
      }
      if (out.signal === "timeout") {
        throw new Error(`${kind} hook ${h.path} timed out after ${h.timeout} s (killed)`);
      }
      if (out.code !== 0 || out.signal) {
        // SIGSYS is seccomp's kill: said in words, as runc's "bad system call".
        const sig = out.signal === "SIGSYS" ? "SIGSYS (bad system call)" : out.signal;
        const why = sig ? `killed by ${sig}` : `exit status ${out.code}`;
        const err = new TextDecoder().decode(out.stderr).trim();
        throw new Error(`${kind} hook ${h.path} failed (${why})${err ? `: ${err}` : ""}`);
      }
    } finally {
      libc.close(theirs);
      libc.close(saved);
    }
  }
}

/**
 * Runs `command` (its stderr "piped") for `timeoutMs` at most, then SIGKILL: the runtime spec's
 * hook `timeout`. Synchronous, on the main thread (no async op in the container's namespaces):
 * the child's exit is awaited through a pidfd with ppoll and the child reaped with wait4. Its
 * stderr is read here from the pipe's read end, found as the one pipe fd the spawn added (Deno
 * reads a piped stream only from its event loop, which never runs in the init, and its
 * "inherit" is its own copy of fd 2, not what fd 2 is at the spawn). `signal` is "timeout"
 * when it was killed for its time. Throws SysError.
 */
function outputWithin(
  command: Deno.Command,
  timeoutMs: number,
): { code: number; signal: string | null; stderr: Uint8Array } {
  const pipes = () => {
    const out = new Set<number>();
    for (const e of Deno.readDirSync("/proc/self/fd")) {
      try {
        if (Deno.readLinkSync(`/proc/self/fd/${e.name}`).startsWith("pipe:")) out.add(+e.name);
      } catch { /* the listing's own fd, closed by now */ }
    }
    return out;
  };
  const before = pipes();
  const child = command.spawn();
  child.status.catch(() => {}); // reaped here (wait4): never awaited
  const fresh = [...pipes()].filter((fd) => !before.has(fd));
  const errFd = fresh.length === 1 ? fresh[0] : -1;
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(16384);
  let open = errFd >= 0;
  const drain = (waitMs: number) => {
    while (open && libc.pollIn(errFd, waitMs)) {
      const n = libc.read(errFd, buf);
      if (n <= 0) open = false;
      else if (chunks.length < 64) chunks.push(buf.slice(0, n)); // 1 MiB of it at most
      waitMs = 0;
    }
  };
  let timedOut = false;
  const pidfd = libc.pidfdOpen(child.pid);
  try {
    const end = Date.now() + timeoutMs;
    while (!libc.pollIn(pidfd, 0)) {
      const left = end - Date.now();
      if (left <= 0) {
        libc.kill(child.pid, 9);
        timedOut = true;
        break;
      }
      if (open) drain(Math.min(left, 10));
      else libc.pollIn(pidfd, Math.min(left, 10));
    }
  } finally {
    libc.close(pidfd);
  }
  const status = libc.waitStatus(child.pid);
  drain(0);
  const sig = status & 0x7f;
  const stderr = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  chunks.reduce((at, c) => (stderr.set(c, at), at + c.length), 0);
  return {
    code: sig ? 128 + sig : (status >> 8) & 0xff,
    signal: timedOut ? "timeout" : sig ? signalName(sig) : null,
    stderr,
  };
}

/**
 * The init's exit status for a failure after "ready" (the program's status, as a shell's):
 * 126 when execve found the program but cannot run it (ENOEXEC "exec format error", EACCES:
 * cannot execute), else 127 (not found, or a step before it).
 */
function afterReadyStatus(e: unknown): 126 | 127 {
  return e instanceof libc.SysError && e.syscall === "exec" && e.code !== "ENOENT" &&
      e.code !== "ENOTDIR"
    ? 126
    : 127;
}

/** The init's entry: never returns (execve, or exit with the error reported). */
export function runInit(): never {
  // First: no process in the container may read this one's memory, fds, environ, root or cwd
  // through /proc (PR_SET_DUMPABLE 0 holds until execve); and the sealed binary's fd that a
  // user namespace helper passed on is not needed (README "Security").
  const PR_SET_DUMPABLE = 4;
  libc.prctl(PR_SET_DUMPABLE, 0n);
  const exeFd = Number(Deno.env.get(INIT_EXE_FD_ENV) ?? "-1");
  if (Number.isInteger(exeFd) && exeFd > 2) libc.close(exeFd);
  const stderrFd = Number(Deno.env.get(INIT_STDERR_FD_ENV) ?? "-1");
  if (Number.isInteger(stderrFd) && stderrFd > 2) {
    libc.dup2(stderrFd, 2);
    libc.close(stderrFd);
  }
  const fd = Number(Deno.env.get(INIT_PIPE_ENV));
  if (!Number.isInteger(fd) || fd < 3) {
    console.error("capsule init: not started by capsule (no init pipe)");
    Deno.exit(2);
  }
  let ready = false;
  // Where an error after "ready" goes: the program's terminal when it has one (the init's own
  // stdio is /dev/null then), else the stderr it shares with the program.
  let errFd = 2;
  try {
    const plan = receiveFrame<InitPlan>(fd);
    if (!plan) Deno.exit(1); // the parent gave up before sending the plan
    // The fifo (O_PATH, from the parent) stays reachable after pivot_root through its fd.
    const fifoFd = plan.execFifoFd;
    libc.setCloexec(fifoFd, true);
    const { path, tty } = prepare(plan, fd);
    if (tty) errFd = tty.slave;
    dropPrivileges(plan.process);
    reportReady(fd, tty);
    ready = true;
    libc.close(fd);
    waitForStart(fifoFd);
    // As runc: startContainer hooks run under the seccomp filter. Loaded before them here when
    // no_new_privileges put it last (the profile must then allow the few calls up to execve).
    const startHooks = plan.hooks?.startContainer;
    const early = !!(startHooks?.length && plan.process.seccomp && plan.process.noNewPrivileges);
    if (early) {
      try {
        libc.seccompSetFilter(seccompProgram(plan.process), plan.process.seccomp!.flags);
      } catch (e) {
        throw new Error(`cannot load the seccomp profile: ${(e as Error).message}`);
      }
    }
    runInitHooks("startContainer", startHooks, plan.hooks?.state ?? "");
    execProcess(path, plan.process, tty && { slave: tty.slave, leader: plan.setsid }, early);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (!ready) {
      try {
        sendFrame(fd, { type: "error", message } satisfies InitMessage);
      } catch { /* parent gone */ }
    } else {
      const text = new TextEncoder().encode(`capsule: ${message}\n`);
      try {
        libc.writeAll(errFd, text);
      } catch { /* no stderr */ }
    }
    Deno.exit(ready ? afterReadyStatus(e) : 1);
  }
}
