// The container's init: a small Deno process that the parent starts in the new PID namespace.
// Everything runs synchronously on the main thread (async Deno ops run on pool threads that
// keep the host's root, DESIGN.md). It sets up namespaces and the rootfs, reports "ready",
// waits on exec.fifo for `start`, then execve's the user's program: no Deno stays behind.
// Imports: ffi, the plan types and rootfs logic only. No CLI, no zod.
import * as libc from "../ffi/libc.ts";
import { CAPABILITIES, CLONE, NAMESPACES } from "./consts.ts";
import {
  INIT_EXE_FD_ENV,
  INIT_PIPE_ENV,
  type InitMessage,
  receiveFrame,
  sendFrame,
} from "./channel.ts";
import type { DeviceOp, ExecPlan, InitPlan, ProcessPlan } from "./plan.ts";
import { type FileKind, type RootfsOps, setupRootfs } from "./rootfs.ts";

const S_IF: Record<DeviceOp["type"], number> = {
  c: 0o020000,
  u: 0o020000,
  b: 0o060000,
  p: 0o010000,
};

function kindOf(info: Deno.FileInfo): FileKind {
  if (info.isSymlink) return "symlink";
  if (info.isDirectory) return "dir";
  if (info.isFile) return "file";
  return "other";
}

function statKind(path: string, follow: boolean): FileKind | undefined {
  try {
    return kindOf(follow ? Deno.statSync(path) : Deno.lstatSync(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** The real RootfsOps: blocking FFI and Deno's *Sync APIs, on this thread only. */
export const realRootfsOps: RootfsOps = {
  mount: (s, t, f, flags, d) => libc.mount(s, t, f, flags, d),
  umount2: (t, f) => libc.umount2(t, f),
  pivotRoot: (n, o) => libc.pivotRoot(n, o),
  chdir: (p) => libc.chdir(p),
  chroot: (p) => libc.chroot(p),
  mknod: (p, type, mode, major, minor) =>
    libc.mknod(p, S_IF[type] | mode, libc.makedev(major, minor)),
  chown: (p, u, g) => Deno.chownSync(p, u, g),
  symlink: (t, p) => Deno.symlinkSync(t, p),
  lkind: (p) => statKind(p, false),
  kind: (p) => statKind(p, true),
  readlink: (p) => Deno.readLinkSync(p),
  mkdir: (p, mode) => Deno.mkdirSync(p, { mode }),
  createFile: (p) => Deno.openSync(p, { write: true, create: true }).close(),
  remove: (p) => Deno.removeSync(p),
  umask: (m) => libc.umask(m),
  pin: (path, root) => {
    const fd = libc.open(path, libc.O.PATH | libc.O.NOFOLLOW | libc.O.CLOEXEC);
    const real = Deno.readLinkSync(`/proc/self/fd/${fd}`);
    const realRoot = Deno.realPathSync(root);
    if (real !== realRoot && !real.startsWith(realRoot + "/")) {
      libc.close(fd);
      throw new Error(`mount target ${path} resolves to ${real}, outside the rootfs`);
    }
    return { path: `/proc/self/fd/${fd}`, release: () => libc.close(fd) };
  },
  submounts: (path) => {
    const out: string[] = [];
    for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
      const mp = line.split(" ")[4]?.replace(
        /\\(\d{3})/g,
        (_, o) => String.fromCharCode(parseInt(o, 8)),
      );
      if (mp && mp.startsWith(path + "/")) out.push(mp);
    }
    return out;
  },
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
    const why = statKind(name, true) === undefined
      ? "no such file or directory"
      : "permission denied";
    throw new Error(`exec: "${name}": ${why}`);
  }
  const pathVar = env.findLast((e) => e.startsWith("PATH="))?.slice(5) ??
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  for (const dir of pathVar.split(":")) {
    const candidate = `${dir || "."}/${name}`;
    if (isExecutable(candidate)) return candidate;
  }
  throw new Error(`exec: "${name}": executable file not found in $PATH`);
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

/** Everything up to "ready": namespaces, rootfs, hostname, sysctl, limits. Returns argv[0]'s path. */
export function prepare(plan: InitPlan): string {
  if (plan.logFd !== undefined) redirectStdio(plan.logFd);
  if (plan.setsid) libc.setsid();
  if (plan.process.oomScoreAdj !== undefined) {
    Deno.writeTextFileSync("/proc/self/oom_score_adj", String(plan.process.oomScoreAdj));
  }
  joinNamespaces(plan);
  setupRootfs(realRootfsOps, plan);
  if (plan.hostname !== undefined) libc.sethostname(plan.hostname);
  if (plan.domainname !== undefined) libc.setdomainname(plan.domainname);
  for (const [key, value] of Object.entries(plan.sysctl)) {
    Deno.writeTextFileSync(`/proc/sys/${key.replaceAll(".", "/")}`, value);
  }
  for (const r of plan.process.rlimits) libc.setrlimit(r.resource, BigInt(r.soft), BigInt(r.hard));
  libc.chdir(plan.process.cwd);
  return lookPath(plan.process.args[0], plan.process.env);
}

const NS_FLAGS: Record<string, number> = {
  ipc: CLONE.NEWIPC,
  uts: CLONE.NEWUTS,
  net: CLONE.NEWNET,
  cgroup: CLONE.NEWCGROUP,
  mnt: CLONE.NEWNS,
};

/** exec: the parent already put us in the container's PID namespace and cgroup. */
export function prepareExec(plan: ExecPlan): string {
  if (plan.logFd !== undefined) redirectStdio(plan.logFd);
  if (plan.setsid) libc.setsid();
  // Open them all first: after joining the mount namespace, /proc is the container's.
  const fds = plan.namespaces.map((ns) => ({
    ns,
    fd: libc.open(`/proc/${plan.pid}/ns/${ns}`, libc.O.RDONLY | libc.O.CLOEXEC),
  }));
  // The container's root as its init sees it: setns(mnt) alone puts us at the namespace's
  // root, which is not the container's when it was entered by chroot (--no-pivot, or capsule
  // itself in a chroot); entered after the namespaces, as `nsenter --root` does.
  const root = libc.open(`/proc/${plan.pid}/root`, libc.O.PATH | libc.O.DIRECTORY | libc.O.CLOEXEC);
  libc.unshare(CLONE.FS); // setns into a mount namespace needs an unshared fs_struct
  for (const { ns, fd } of fds) {
    libc.setns(fd, NS_FLAGS[ns]);
    libc.close(fd);
  }
  libc.fchdir(root);
  libc.chroot(".");
  libc.close(root);
  for (const r of plan.process.rlimits) libc.setrlimit(r.resource, BigInt(r.soft), BigInt(r.hard));
  try {
    libc.chdir(plan.process.cwd);
  } catch (e) {
    throw new Error(
      `cannot change to the working directory ${plan.process.cwd}: ${(e as Error).message}`,
    );
  }
  return lookPath(plan.process.args[0], plan.process.env);
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
function makeTerminal(p: ProcessPlan): { master: number; slave: number; name: string } | undefined {
  if (!p.terminal) return undefined;
  const [master, name] = libc.openPty();
  try {
    const slave = libc.open(name, libc.O.RDWR | libc.O.NOCTTY | libc.O.CLOEXEC);
    if (p.consoleSize) libc.setWinsize(master, p.consoleSize.height, p.consoleSize.width);
    return { master, slave, name };
  } catch (e) {
    libc.close(master);
    throw e;
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

/** The last steps, the same for the init and exec: user, caps, umask, signals, fds, execve. */
function execProcess(
  path: string,
  p: ProcessPlan,
  tty?: { slave: number; leader: boolean },
): never {
  if (tty) attachTerminal(tty.slave, tty.leader);
  // Without no_new_privs, seccomp(2) needs CAP_SYS_ADMIN: load it before dropping privileges
  // (the profile must then allow what follows, as with runc); with it, as late as possible.
  const filter = p.seccomp && Uint8Array.from(atob(p.seccomp.program), (c) => c.charCodeAt(0));
  if (filter && !p.noNewPrivileges) libc.seccompSetFilter(filter, p.seccomp!.flags);
  finalizeProcess(p);
  libc.umask(p.umask);
  libc.resetSignals();
  libc.closeRangeCloexec(3);
  if (filter && p.noNewPrivileges) libc.seccompSetFilter(filter, p.seccomp!.flags);
  libc.execve(path, p.args, p.env);
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
  const fd = Number(Deno.env.get(INIT_PIPE_ENV));
  if (!Number.isInteger(fd) || fd < 3) {
    console.error("capsule init: not started by capsule (no init pipe)");
    Deno.exit(2);
  }
  let ready = false;
  try {
    const plan = receiveFrame<InitPlan | ExecPlan>(fd);
    if (!plan) Deno.exit(1); // the parent gave up before sending the plan
    if (plan.kind === "exec") {
      const path = prepareExec(plan);
      const tty = makeTerminal(plan.process);
      reportReady(fd, tty);
      ready = true;
      libc.close(fd);
      execProcess(path, plan.process, tty && { slave: tty.slave, leader: plan.setsid });
    }
    // The fifo (O_PATH, from the parent) stays reachable after pivot_root through its fd.
    const fifoFd = plan.execFifoFd;
    libc.setCloexec(fifoFd, true);
    const path = prepare(plan);
    const tty = makeTerminal(plan.process);
    reportReady(fd, tty);
    ready = true;
    libc.close(fd);
    waitForStart(fifoFd);
    execProcess(path, plan.process, tty && { slave: tty.slave, leader: plan.setsid });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (!ready) {
      try {
        sendFrame(fd, { type: "error", message } satisfies InitMessage);
      } catch { /* parent gone */ }
    } else {
      const text = new TextEncoder().encode(`capsule: ${message}\n`);
      try {
        libc.writeAll(2, text);
      } catch { /* no stderr */ }
    }
    Deno.exit(ready ? 127 : 1);
  }
}
