// capsule-nsexec, the native helper of `capsule exec` (runtime/native/nsexec.c): where its
// binary is, the plan it reads, and what it answers. exec.ts decides everything; the helper
// carries it out single-threaded, outside the container's PID namespace until it has dropped
// to the program's ids and capabilities (docs/DESIGN.md "The exec helper").
import * as libc from "../ffi/libc.ts";
import { CapsuleError } from "./errors.ts";
import type { ProcessPlan } from "./plan.ts";

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
    `capsule's exec helper (${NSEXEC}) was not found beside capsule (${
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
 * The plan as nsexec.c reads it: u32 LE length, then records `tag | u32 LE length | data`,
 * strings as UTF-8 (a NUL byte is refused here), numbers as u64 LE. Throws CapsuleError.
 */
export function encodeNsexecPlan(plan: NsexecPlan): Uint8Array<ArrayBuffer> {
  const parts: Uint8Array[] = [];
  let size = 0;
  const enc = new TextEncoder();
  const rec = (tag: string, data: Uint8Array) => {
    const h = new Uint8Array(5);
    h[0] = tag.charCodeAt(0);
    new DataView(h.buffer).setUint32(1, data.length, true);
    parts.push(h, data);
    size += 5 + data.length;
  };
  const str = (tag: string, s: string) => {
    if (s.includes("\0")) {
      throw new CapsuleError(`Invalid value "${s.replaceAll("\0", "\\0")}": it holds a NUL byte`);
    }
    rec(tag, enc.encode(s));
  };
  const num = (tag: string, ...ns: (number | bigint)[]) => {
    const b = new Uint8Array(8 * ns.length);
    const v = new DataView(b.buffer);
    ns.forEach((n, i) => v.setBigUint64(8 * i, BigInt.asUintN(64, BigInt(n)), true));
    rec(tag, b);
  };
  const p = plan.process;
  num("p", plan.pid);
  str("X", plan.pidStartTime);
  for (const ns of plan.namespaces) str("n", ns);
  for (const file of plan.cgroupProcs) str("c", file);
  num("u", p.uid);
  num("g", p.gid);
  for (const g of p.additionalGids) num("G", g);
  num("m", p.umask);
  num("N", p.noNewPrivileges ? 1 : 0);
  num("s", plan.setsid ? 1 : 0);
  num("x", plan.detach ? 1 : 0);
  if (plan.logFd !== undefined) num("O", plan.logFd);
  if (p.oomScoreAdj !== undefined) num("o", p.oomScoreAdj);
  if (p.terminal) num("t", 1);
  if (p.consoleSize) num("w", p.consoleSize.height, p.consoleSize.width);
  for (const r of p.rlimits) num("l", r.resource, BigInt(r.soft), BigInt(r.hard));
  if (p.caps) {
    num("B", mask(p.caps.bounding));
    num("E", mask(p.caps.effective));
    num("P", mask(p.caps.permitted));
    num("I", mask(p.caps.inheritable));
    num("A", mask(p.caps.ambient));
  }
  if (p.seccomp) {
    rec("S", Uint8Array.from(atob(p.seccomp.program), (c) => c.charCodeAt(0)));
    num("F", p.seccomp.flags);
  }
  str("d", p.cwd);
  for (const a of p.args) str("a", a);
  for (const e of p.env) str("e", e);
  for (const fd of p.preserveFds ?? []) num("f", fd);
  if (p.listenFds) num("L", p.listenFds);
  const out = new Uint8Array(4 + size);
  new DataView(out.buffer).setUint32(0, size, true);
  let off = 4;
  for (const part of parts) {
    out.set(part, off);
    off += part.length;
  }
  return out;
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
  const head = new Uint8Array(5);
  for (;;) {
    let got = 0;
    while (got < 5) {
      let r: { n: number; fd?: number };
      const chunk = new Uint8Array(5 - got);
      try {
        r = libc.recvWithFd(sock, chunk);
      } catch (e) {
        // A helper that died with our plan unread resets the socket: its end, like EOF.
        if (e instanceof libc.SysError && e.code === "ECONNRESET") return out;
        throw e;
      }
      if (r.fd !== undefined) {
        if (out.master !== undefined) libc.close(r.fd);
        else out.master = r.fd;
      }
      if (r.n === 0) {
        if (got) throw new CapsuleError(`${NSEXEC}: its answer was cut short`);
        return out;
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
    const type = String.fromCharCode(head[0]);
    if (type === "E") out.error = new TextDecoder().decode(data);
    else if (type === "P" && len === 8) {
      out.pid = Number(new DataView(data.buffer).getBigUint64(0, true));
    } else if (type !== "T") {
      throw new CapsuleError(`${NSEXEC}: an answer of unknown type "${type}"`);
    }
  }
}
