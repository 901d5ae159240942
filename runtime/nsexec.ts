// capsule-nsexec, capsule's native helper (runtime/native/): where its binary is, the plans it
// reads (exec's, and a new container's init's) and what it answers. exec.ts and create decide
// everything; the helper carries it out single-threaded (docs/DESIGN.md "The exec helper", "The
// container's init").
import * as libc from "../ffi/libc.ts";
import { CapsuleError } from "./errors.ts";
import type { HookPlan, InitPlan, ProcessPlan } from "./plan.ts";

/** The helper's file name, beside the bundle (dist/) or in a checkout's dist/. */
export const NSEXEC = "capsule-nsexec";

/**
 * The helper's binary: beside this module in the bundle (dist/capsule-nsexec), or in the
 * checkout's dist/ when capsule runs from source. Throws a CapsuleError saying how to build
 * it when there is none (it is made by `deno task build`, with gcc).
 */
export function nsexecPath(): string {
  // Beside the chunk (dist/, or a release's lib/), or dist/ from source (runtime/nsexec.ts).
  const candidates = [`./${NSEXEC}`, `../dist/${NSEXEC}`];
  for (const c of candidates) {
    const path = new URL(c, import.meta.url).pathname;
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch { /* not there */ }
  }
  throw new CapsuleError(
    `capsule's native helper (${NSEXEC}: containers' init and exec's) was not found beside capsule (${
      new URL(".", import.meta.url).pathname
    }): build it with \`deno task build\` (needs gcc and libc6-dev)`,
  );
}

/** What exec.ts hands the helper: the process to run and how to reach the container. */
export interface NsexecPlan {
  /** The container's init (host pid): its /proc/PID/ns/* and root are joined. */
  pid: number;
  /** The init's start time (field 22 of /proc/PID/stat): a pid taken over is refused. */
  pidStartTime: string;
  /** Namespaces to join, by their /proc/PID/ns name: user, pid, ipc, uts, net, cgroup, mnt. */
  namespaces: string[];
  /**
   * The cgroup.procs files of the container's cgroup (one per v1 hierarchy, or the v2 one): the
   * helper opens them first and moves the program's process in by pid (itself stays out).
   */
  cgroupProcs: string[];
  /** The program, its ids, capabilities, limits, seccomp filter and fds. */
  process: ProcessPlan;
  /** An fd (inherited by the helper) that becomes the program's stdout and stderr. */
  logFd?: number;
  /** The program leads a new session (a detached exec without the caller's stdio). */
  setsid: boolean;
  /** Detached: the helper does not wait for the program. */
  detach: boolean;
}

const mask = (caps: number[]) => caps.reduce((m, c) => m | (1n << BigInt(c)), 0n);

/**
 * Records as nsexec.c's plan.c reads them: `tag (1 byte) | u32 LE length | data`, strings as
 * UTF-8 (a NUL byte is refused: CapsuleError), numbers as u64 LE, and records holding records.
 */
class Records {
  #parts: Uint8Array[] = [];
  size = 0;
  static #enc = new TextEncoder();
  rec(tag: string, data: Uint8Array): void {
    const h = new Uint8Array(5);
    h[0] = tag.charCodeAt(0);
    new DataView(h.buffer).setUint32(1, data.length, true);
    this.#parts.push(h, data);
    this.size += 5 + data.length;
  }
  str(tag: string, s: string): void {
    if (s.includes("\0")) {
      throw new CapsuleError(`Invalid value "${s.replaceAll("\0", "\\0")}": it holds a NUL byte`);
    }
    this.rec(tag, Records.#enc.encode(s));
  }
  num(tag: string, ...ns: (number | bigint)[]): void {
    const b = new Uint8Array(8 * ns.length);
    const v = new DataView(b.buffer);
    ns.forEach((n, i) => v.setBigUint64(8 * i, BigInt.asUintN(64, BigInt(n)), true));
    this.rec(tag, b);
  }
  /** A record whose data is the records `fill` writes. */
  nested(tag: string, fill: (r: Records) => void): void {
    const inner = new Records();
    fill(inner);
    this.rec(tag, inner.bytes(false));
  }
  /** The records, after a u32 LE length of them all when `frame` (the plan's outer form). */
  bytes(frame = true): Uint8Array<ArrayBuffer> {
    if (frame) return framed(...this.#parts);
    const out = new Uint8Array(this.size);
    let off = 0;
    for (const part of this.#parts) {
      out.set(part, off);
      off += part.length;
    }
    return out;
  }
}

/** The process part of a plan, the same for exec and the init. */
function processRecords(r: Records, p: ProcessPlan): void {
  r.num("u", p.uid);
  r.num("g", p.gid);
  for (const g of p.additionalGids) r.num("G", g);
  r.num("m", p.umask);
  r.num("N", p.noNewPrivileges ? 1 : 0);
  if (p.oomScoreAdj !== undefined) r.num("o", p.oomScoreAdj);
  if (p.terminal) r.num("t", 1);
  if (p.consoleSize) r.num("w", p.consoleSize.height, p.consoleSize.width);
  for (const l of p.rlimits) r.num("l", l.resource, BigInt(l.soft), BigInt(l.hard));
  if (p.caps) {
    r.num("B", mask(p.caps.bounding));
    r.num("E", mask(p.caps.effective));
    r.num("P", mask(p.caps.permitted));
    r.num("I", mask(p.caps.inheritable));
    r.num("A", mask(p.caps.ambient));
  }
  if (p.seccomp) {
    r.rec("S", Uint8Array.from(atob(p.seccomp.program), (c) => c.charCodeAt(0)));
    r.num("F", p.seccomp.flags);
  }
  r.str("d", p.cwd);
  for (const a of p.args) r.str("a", a);
  for (const e of p.env) r.str("e", e);
  for (const fd of p.preserveFds ?? []) r.num("f", fd);
  if (p.listenFds) r.num("L", p.listenFds);
}

/**
 * The exec plan as nsexec.c reads it: u32 LE length, then records `tag | u32 LE length | data`,
 * strings as UTF-8 (a NUL byte is refused here), numbers as u64 LE. Throws CapsuleError.
 */
export function encodeNsexecPlan(plan: NsexecPlan): Uint8Array<ArrayBuffer> {
  const { header, process } = encodeNsexecParts(plan);
  return framed(header, process);
}

/** `parts` one after the other, after a u32 LE length of them all (the plan's outer form). */
export function framed(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const size = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(4 + size);
  new DataView(out.buffer).setUint32(0, size, true);
  let off = 4;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * The records of `bytes` (tag | u32 LE length | data, unframed) as [tag, data] pairs, data as
 * views of `bytes`; undefined when they are cut short.
 */
export function decodeRecords(bytes: Uint8Array): [tag: string, data: Uint8Array][] | undefined {
  const out: [string, Uint8Array][] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let off = 0; off < bytes.length;) {
    if (off + 5 > bytes.length) return undefined;
    const len = view.getUint32(off + 1, true);
    if (off + 5 + len > bytes.length) return undefined;
    out.push([String.fromCharCode(bytes[off]), bytes.subarray(off + 5, off + 5 + len)]);
    off += 5 + len;
  }
  return out;
}

/**
 * The two parts of an exec plan, each as its records without a frame: what reaches the
 * container (pid, start time, namespaces, cgroups, setsid, detach, log fd) and the process. The
 * plan is `u32 LE length of both | header | process`; the helper reads the records in any
 * order, and the last of a number wins. The native front end puts them together (exec.ts
 * writeExecPlan, writeExecProcess). Throws CapsuleError for a string holding a NUL byte.
 */
export function encodeNsexecParts(
  plan: NsexecPlan,
): { header: Uint8Array<ArrayBuffer>; process: Uint8Array<ArrayBuffer> } {
  const h = new Records();
  headerRecords(h, plan);
  const p = new Records();
  processRecords(p, plan.process);
  return { header: h.bytes(false), process: p.bytes(false) };
}

function headerRecords(r: Records, plan: NsexecPlan): void {
  r.num("p", plan.pid);
  r.str("X", plan.pidStartTime);
  for (const ns of plan.namespaces) r.str("n", ns);
  for (const file of plan.cgroupProcs) r.str("c", file);
  r.num("s", plan.setsid ? 1 : 0);
  r.num("x", plan.detach ? 1 : 0);
  if (plan.logFd !== undefined) r.num("O", plan.logFd);
}

/**
 * Records (`tag`, value) in the plan's format, after a u32 LE length of them all when `framed`:
 * the front end's part of exec.plan and the entries of exec.processes (exec.ts writeExecPlan,
 * writeExecProcess). A string is UTF-8 (CapsuleError for a NUL byte), bytes go as they are.
 */
export function encodeFrontRecords(
  records: [tag: string, value: string | Uint8Array][],
  framed = true,
): Uint8Array<ArrayBuffer> {
  const r = new Records();
  for (const [tag, value] of records) {
    if (typeof value === "string") r.str(tag, value);
    else r.rec(tag, value);
  }
  return r.bytes(framed);
}

function hookRecords(r: Records, h: HookPlan): void {
  r.str("p", h.path);
  for (const a of h.args ?? []) r.str("a", a);
  for (const e of h.env ?? []) r.str("e", e);
  if (h.timeout) r.num("T", Math.ceil(h.timeout));
}

/**
 * The init's plan (plan.ts InitPlan) as `capsule-nsexec init` reads it (runtime/native/plan.c):
 * the process records of exec, and the rootfs, namespaces, hooks and exec.fifo of create. Throws
 * CapsuleError for a string holding a NUL byte.
 */
export function encodeInitPlan(plan: InitPlan): Uint8Array<ArrayBuffer> {
  const r = new Records();
  r.str("R", plan.rootfs);
  r.num("r", plan.readonly ? 1 : 0);
  r.num("y", plan.rootPropagation);
  if (plan.finalPropagation !== undefined) r.num("Y", plan.finalPropagation);
  r.num("v", plan.noPivot ? 1 : 0);
  if (plan.hostMountNs) r.num("h", 1);
  if (plan.sourcesByFd) r.num("b", 1);
  if (plan.setupDev) r.num("z", 1);
  r.num("q", plan.execFifoFd);
  if (plan.logFd !== undefined) r.num("O", plan.logFd);
  r.num("s", plan.setsid ? 1 : 0);
  for (const n of plan.namespaces) {
    if (n.path) r.str("j", `${n.type}=${n.path}`);
    else r.str("n", n.type);
  }
  for (const m of plan.mounts) {
    r.nested("M", (x) => {
      x.str("d", m.destination);
      x.str("s", m.source);
      x.str("t", m.type);
      if (m.data) x.str("D", m.data);
      x.num("f", m.flags);
      if (m.recursiveFlags) x.num("r", m.recursiveFlags);
      if (m.bind) x.num("b", 1);
      for (const p of m.propagation) x.num("p", p);
    });
  }
  for (const d of plan.devices) {
    r.nested("V", (x) => {
      x.str("p", d.path);
      x.str("t", d.type);
      x.num("M", d.major);
      x.num("m", d.minor);
      x.num("o", d.mode);
      x.num("u", d.uid);
      x.num("g", d.gid);
    });
  }
  for (const p of plan.maskedPaths) r.str("K", p);
  for (const p of plan.readonlyPaths) r.str("k", p);
  for (const [k, v] of Object.entries(plan.sysctl)) {
    r.nested("Z", (x) => {
      x.str("k", k);
      x.str("v", v);
    });
  }
  if (plan.hostname !== undefined) r.str("H", plan.hostname);
  if (plan.domainname !== undefined) r.str("W", plan.domainname);
  const hooks = plan.hooks;
  if (hooks) {
    if (hooks.host) r.num("U", 1);
    r.str("J", hooks.state);
    for (const h of hooks.createContainer ?? []) r.nested("C", (x) => hookRecords(x, h));
    for (const h of hooks.startContainer ?? []) r.nested("Q", (x) => hookRecords(x, h));
  }
  if (plan.clone) {
    r.num("+", 1);
    for (const t of plan.clone.tasks) r.str("c", t);
    if (plan.clone.cgroup2 !== undefined) r.str("i", plan.clone.cgroup2);
    if (plan.clone.pidNs) r.str("!", plan.clone.pidNs.path ?? "");
  }
  processRecords(r, plan.process);
  return r.bytes();
}

/** One frame from the helper: its type, data, and the fd that came with it (SCM_RIGHTS). */
export interface NsexecFrame {
  type: string;
  data: Uint8Array;
  fd?: number;
}

/**
 * Reads one frame (`type | u32 LE length | data`) from the helper; undefined at EOF (the
 * program has been exec'd: the helper's end is close-on-exec; or the helper is gone). Throws
 * SysError on a read error, CapsuleError on a frame cut short or too long.
 */
export function readNsexecFrame(sock: number): NsexecFrame | undefined {
  const head = new Uint8Array(5);
  let fd: number | undefined;
  let got = 0;
  while (got < 5) {
    let r: { n: number; fd?: number };
    const chunk = new Uint8Array(5 - got);
    try {
      r = libc.recvWithFd(sock, chunk);
    } catch (e) {
      // A helper that died with our plan unread resets the socket: its end, like EOF.
      if (e instanceof libc.SysError && e.code === "ECONNRESET") r = { n: 0 };
      else throw e;
    }
    if (r.fd !== undefined) {
      if (fd !== undefined) libc.close(r.fd);
      else fd = r.fd;
    }
    if (r.n === 0) {
      if (fd !== undefined) libc.close(fd);
      if (got) throw new CapsuleError(`${NSEXEC}: its answer was cut short`);
      return undefined;
    }
    head.set(chunk.subarray(0, r.n), got);
    got += r.n;
  }
  const len = new DataView(head.buffer).getUint32(1, true);
  if (len > 1 << 20) throw new CapsuleError(`${NSEXEC}: an answer of ${len} bytes`);
  const data = new Uint8Array(len);
  for (let off = 0; off < len;) {
    const chunk = new Uint8Array(len - off);
    const n = libc.read(sock, chunk);
    if (n === 0) throw new CapsuleError(`${NSEXEC}: its answer was cut short`);
    data.set(chunk.subarray(0, n), off);
    off += n;
  }
  return { type: String.fromCharCode(head[0]), data, fd };
}

/** What the helper answered: the program's host pid, its terminal, or why it failed. */
export interface NsexecAnswer {
  /** The program's host pid ('P'); unset when the helper failed first. */
  pid?: number;
  /** The pty master ('T', process.terminal), CLOEXEC; the caller closes it. */
  master?: number;
  /** The helper's failure ('E'), one line; the program never started. */
  error?: string;
}

/**
 * Reads the helper's frames (`type | u32 LE length | data`) until EOF, which comes when the
 * program has been exec'd (the helper's end is close-on-exec) or the helper is gone. Throws
 * SysError on a read error, CapsuleError on a frame it does not know.
 */
export function readNsexecAnswer(sock: number): NsexecAnswer {
  const out: NsexecAnswer = {};
  for (;;) {
    const f = readNsexecFrame(sock);
    if (!f) return out;
    if (f.fd !== undefined) {
      if (out.master !== undefined) libc.close(f.fd);
      else out.master = f.fd;
    }
    if (f.type === "E") out.error = new TextDecoder().decode(f.data);
    else if (f.type === "P" && f.data.length === 8) {
      out.pid = Number(new DataView(f.data.buffer).getBigUint64(0, true));
    } else if (f.type !== "T") {
      throw new CapsuleError(`${NSEXEC}: an answer of unknown type "${f.type}"`);
    }
  }
}
