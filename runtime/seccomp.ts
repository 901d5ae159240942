// seccomp: compiles an OCI `linux.seccomp` profile into a classic BPF program, as libseccomp
// does for runc. Pure (the init loads the bytes with seccomp(2)); unit-tested by running the
// program in a small BPF interpreter. x86_64 only for now: elsewhere a profile is refused.
import { CapsuleError } from "./errors.ts";
import { SYSCALLS_X86_64 } from "./syscalls_x86_64.ts";

export interface SeccompArg {
  index: number;
  /** A uint64 (or the negative int64 of its bits); a bigint past 2^53-1, as parseJson reads it. */
  value: number | bigint;
  valueTwo?: number | bigint;
  op: string;
}

export interface SeccompRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: SeccompArg[];
}

export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: SeccompRule[];
}

/** What the init hands to seccomp(SECCOMP_SET_MODE_FILTER). */
export interface SeccompFilter {
  /** sock_filter array, 8 bytes per instruction, as base64 (the plan is JSON). */
  program: string;
  /**
   * seccomp(2) SECCOMP_FILTER_FLAG_* bits from linux.seccomp.flags (LOG 2, SPEC_ALLOW 4;
   * TSYNC is accepted as 0: only the thread that calls execve needs the filter).
   */
  flags: number;
}

const RET = {
  KILL_PROCESS: 0x80000000,
  KILL_THREAD: 0x00000000,
  TRAP: 0x00030000,
  ERRNO: 0x00050000,
  TRACE: 0x7ff00000,
  LOG: 0x7ffc0000,
  ALLOW: 0x7fff0000,
} as const;

const EPERM = 1, ENOSYS = 38;

/** An OCI action name and its errno to the SECCOMP_RET_* value. */
export function actionValue(action: string, errnoRet: number | undefined, where: string): number {
  switch (action) {
    case "SCMP_ACT_KILL":
    case "SCMP_ACT_KILL_THREAD":
      return RET.KILL_THREAD;
    case "SCMP_ACT_KILL_PROCESS":
      return RET.KILL_PROCESS;
    case "SCMP_ACT_TRAP":
      return RET.TRAP;
    case "SCMP_ACT_ERRNO":
      return (RET.ERRNO | ((errnoRet ?? EPERM) & 0xffff)) >>> 0;
    case "SCMP_ACT_TRACE":
      return (RET.TRACE | ((errnoRet ?? EPERM) & 0xffff)) >>> 0;
    case "SCMP_ACT_LOG":
      return RET.LOG;
    case "SCMP_ACT_ALLOW":
      return RET.ALLOW;
  }
  throw new CapsuleError(
    `Invalid linux.seccomp ${where}: action "${action}" is not supported ` +
      `(use SCMP_ACT_ALLOW, ERRNO, KILL, KILL_PROCESS, TRAP, TRACE or LOG)`,
  );
}

const FLAGS: Record<string, number> = {
  SECCOMP_FILTER_FLAG_TSYNC: 0, // one thread execs: there is nothing to synchronize
  SECCOMP_FILTER_FLAG_LOG: 2,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW: 4,
};

// BPF opcodes (linux/filter.h).
const LD_W_ABS = 0x20, JEQ = 0x15, JGT = 0x25, JGE = 0x35, AND = 0x54, RET_K = 0x06;
const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_BIT = 0x40000000;
const OFF_NR = 0, OFF_ARCH = 4;
const argLo = (i: number) => 16 + 8 * i, argHi = (i: number) => 20 + 8 * i;

type Ins = { code: number; k: number; jt?: string | number; jf?: string | number; label?: string };

/** Compiles a profile for x86_64; throws a CapsuleError naming what it cannot express. */
export function compileSeccomp(p: SeccompProfile): SeccompFilter {
  if (Deno.build.arch !== "x86_64") {
    throw new CapsuleError(
      `linux.seccomp is supported on x86_64 only; this host is ${Deno.build.arch}`,
    );
  }
  const def = actionValue(p.defaultAction, p.defaultErrnoRet, "defaultAction");
  let flags = 0;
  for (const f of p.flags ?? []) {
    if (!(f in FLAGS)) throw new CapsuleError(`Invalid linux.seccomp flag "${f}"`);
    flags |= FLAGS[f];
  }
  const prog: Ins[] = [];
  let n = 0;
  const label = () => `L${n++}`;
  // Another architecture (i386, x32) has other numbers: it gets the default action, or is
  // killed when the default would allow it.
  const foreign = def === RET.ALLOW ? RET.KILL_PROCESS : def;
  prog.push({ code: LD_W_ABS, k: OFF_ARCH });
  prog.push({ code: JEQ, k: AUDIT_ARCH_X86_64, jt: 1, jf: 0 });
  prog.push({ code: RET_K, k: foreign });
  prog.push({ code: LD_W_ABS, k: OFF_NR });
  prog.push({ code: JGE, k: X32_BIT, jt: 0, jf: 1 });
  prog.push({ code: RET_K, k: foreign });
  const last = enosysAbove(p, def);
  if (last !== undefined) {
    prog.push({ code: JGT, k: last, jt: 0, jf: 1 });
    prog.push({ code: RET_K, k: (RET.ERRNO | ENOSYS) >>> 0 });
  }
  (p.syscalls ?? []).forEach((rule, ri) => {
    const action = actionValue(rule.action, rule.errnoRet, `syscalls.${ri}`);
    for (const name of rule.names) {
      const nr = SYSCALLS_X86_64[name];
      if (nr === undefined) continue; // unknown to this table: skipped, as libseccomp does
      if (!rule.args?.length) {
        prog.push({ code: JEQ, k: nr, jt: 0, jf: 1 });
        prog.push({ code: RET_K, k: action });
        continue;
      }
      // Each alternative is tried in turn; a miss reloads the number and falls through to
      // the next alternative or rule, so that rules for one syscall are ORed.
      for (const conds of alternatives(rule.args)) {
        const fail = label();
        prog.push({ code: JEQ, k: nr, jt: 0, jf: fail });
        for (const a of conds) argCheck(prog, a, fail, label, ri);
        prog.push({ code: RET_K, k: action });
        prog.push({ code: LD_W_ABS, k: OFF_NR, label: fail });
      }
    }
  });
  prog.push({ code: RET_K, k: def });
  return { program: assemble(prog), flags };
}

/**
 * The conditions of one rule as alternatives, as runc hands them to libseccomp: ANDed in one
 * alternative, unless an argument index repeats (two conditions on one argument, which ANDed
 * would mostly never hold): then each condition is an alternative of its own (ORed).
 */
function alternatives(args: SeccompArg[]): SeccompArg[][] {
  const indexes = new Set(args.map((a) => a.index));
  return indexes.size < args.length ? args.map((a) => [a]) : [args];
}

/**
 * runc's -ENOSYS stub: the highest x86_64 syscall number the profile names, above which a
 * call gets ENOSYS instead of the default action (so that libc falls back from a syscall newer
 * than the profile, e.g. clone3, instead of failing with EPERM). As runc: only when the default
 * denies (not ALLOW, LOG or TRACE), is not ENOSYS already, and x86_64 (or SCMP_ARCH_NATIVE) is
 * among `architectures`; undefined when there is no stub.
 */
function enosysAbove(p: SeccompProfile, def: number): number | undefined {
  if (def === RET.ALLOW || def === RET.LOG || (def & 0xffff0000) >>> 0 === RET.TRACE) return;
  if (def === ((RET.ERRNO | ENOSYS) >>> 0)) return;
  const archs = p.architectures ?? [];
  if (!archs.includes("SCMP_ARCH_X86_64") && !archs.includes("SCMP_ARCH_NATIVE")) return;
  let last = 0;
  for (const rule of p.syscalls ?? []) {
    for (const name of rule.names) last = Math.max(last, SYSCALLS_X86_64[name] ?? 0);
  }
  return last > 0 ? last : undefined;
}

/** One argument condition; on failure jumps to `fail` (which reloads the syscall number). */
function argCheck(prog: Ins[], a: SeccompArg, fail: string, label: () => string, ri: number) {
  if (!(a.index >= 0 && a.index <= 5)) {
    throw new CapsuleError(`Invalid linux.seccomp syscalls.${ri}: argument index ${a.index}`);
  }
  // An integer literal is exact (parseJson: a bigint past 2^53-1). A number that is not a safe
  // integer was written with a fraction or an exponent (1.8446744073709552e19 reads as 2^64,
  // which asUintN would make 0): refused, never compared as another number.
  for (const [key, n] of [["value", a.value], ["valueTwo", a.valueTwo]] as const) {
    if (n === undefined) continue;
    const exact = typeof n === "bigint"
      ? n >= -(2n ** 63n) && n < 2n ** 64n
      : Number.isSafeInteger(n);
    if (!exact) {
      throw new CapsuleError(
        `Invalid linux.seccomp syscalls.${ri}: argument ${a.index}'s ${key} ${n} is not an ` +
          `exact integer of -9223372036854775808 to 18446744073709551615: write it as a plain ` +
          `integer (no fraction, no exponent)`,
      );
    }
  }
  const v = BigInt.asUintN(64, BigInt(a.value));
  const hi = Number(v >> 32n), lo = Number(v & 0xffffffffn);
  const ok = label();
  const ld = (off: number) => prog.push({ code: LD_W_ABS, k: off });
  switch (a.op) {
    case "SCMP_CMP_EQ":
      ld(argHi(a.index));
      prog.push({ code: JEQ, k: hi, jt: 0, jf: fail });
      ld(argLo(a.index));
      prog.push({ code: JEQ, k: lo, jt: ok, jf: fail });
      break;
    case "SCMP_CMP_NE":
      ld(argHi(a.index));
      prog.push({ code: JEQ, k: hi, jt: 0, jf: ok });
      ld(argLo(a.index));
      prog.push({ code: JEQ, k: lo, jt: fail, jf: ok });
      break;
    case "SCMP_CMP_MASKED_EQ": {
      const w = BigInt.asUintN(64, BigInt(a.valueTwo ?? 0));
      ld(argHi(a.index));
      prog.push({ code: AND, k: hi });
      prog.push({ code: JEQ, k: Number(w >> 32n), jt: 0, jf: fail });
      ld(argLo(a.index));
      prog.push({ code: AND, k: lo });
      prog.push({ code: JEQ, k: Number(w & 0xffffffffn), jt: ok, jf: fail });
      break;
    }
    case "SCMP_CMP_GT":
    case "SCMP_CMP_GE": {
      ld(argHi(a.index));
      prog.push({ code: JGT, k: hi, jt: ok, jf: 0 });
      prog.push({ code: JEQ, k: hi, jt: 0, jf: fail });
      ld(argLo(a.index));
      prog.push({ code: a.op === "SCMP_CMP_GT" ? JGT : JGE, k: lo, jt: ok, jf: fail });
      break;
    }
    case "SCMP_CMP_LT":
    case "SCMP_CMP_LE": {
      ld(argHi(a.index));
      prog.push({ code: JGE, k: hi, jt: 0, jf: ok });
      prog.push({ code: JEQ, k: hi, jt: 0, jf: fail });
      ld(argLo(a.index));
      // lo < L  <=>  !(lo >= L);  lo <= L  <=>  !(lo > L)
      prog.push({ code: a.op === "SCMP_CMP_LT" ? JGE : JGT, k: lo, jt: fail, jf: ok });
      break;
    }
    default:
      throw new CapsuleError(`Invalid linux.seccomp syscalls.${ri}: operator "${a.op}"`);
  }
  // `ok` is the next instruction: a no-op jump target placeholder resolved by assemble.
  prog.push({ code: -1, k: 0, label: ok });
}

/** Resolves labels into relative jumps and packs sock_filter structs. */
function assemble(prog: Ins[]): string {
  // Drop the placeholders, remembering where their labels point.
  const ins: Ins[] = [];
  const at = new Map<string, number>();
  for (const i of prog) {
    if (i.label) at.set(i.label, ins.length);
    if (i.code !== -1) ins.push(i);
  }
  if (ins.length > 4096) throw new CapsuleError("linux.seccomp: the profile is too large for BPF");
  const buf = new Uint8Array(ins.length * 8);
  const dv = new DataView(buf.buffer);
  ins.forEach((i, pc) => {
    const rel = (t: string | number | undefined): number => {
      if (t === undefined) return 0;
      const off = typeof t === "number" ? t : at.get(t)! - pc - 1;
      if (off < 0 || off > 255) throw new CapsuleError("linux.seccomp: a jump is out of range");
      return off;
    };
    dv.setUint16(pc * 8, i.code, true);
    dv.setUint8(pc * 8 + 2, rel(i.jt));
    dv.setUint8(pc * 8 + 3, rel(i.jf));
    dv.setUint32(pc * 8 + 4, i.k >>> 0, true);
  });
  let bin = "";
  for (const b of buf) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Runs a compiled program on (arch, nr, args) as the kernel would: returns the action value. */
export function runFilter(program: string, arch: number, nr: number, args: bigint[] = []): number {
  const bytes = Uint8Array.from(atob(program), (c) => c.charCodeAt(0));
  const dv = new DataView(bytes.buffer);
  const data = new DataView(new ArrayBuffer(64));
  data.setUint32(OFF_NR, nr, true);
  data.setUint32(OFF_ARCH, arch, true);
  for (let i = 0; i < 6; i++) {
    data.setBigUint64(16 + 8 * i, BigInt.asUintN(64, args[i] ?? 0n), true);
  }
  let acc = 0;
  for (let pc = 0; pc < bytes.length / 8;) {
    const code = dv.getUint16(pc * 8, true), jt = dv.getUint8(pc * 8 + 2);
    const jf = dv.getUint8(pc * 8 + 3), k = dv.getUint32(pc * 8 + 4, true);
    switch (code) {
      case LD_W_ABS:
        acc = data.getUint32(k, true);
        pc++;
        break;
      case AND:
        acc = (acc & k) >>> 0;
        pc++;
        break;
      case JEQ:
        pc += 1 + (acc === k ? jt : jf);
        break;
      case JGT:
        pc += 1 + (acc > k ? jt : jf);
        break;
      case JGE:
        pc += 1 + (acc >= k ? jt : jf);
        break;
      case RET_K:
        return k;
      default:
        throw new Error(`bad opcode ${code}`);
    }
  }
  throw new Error("fell off the end of the program");
}

export const AUDIT_ARCH = { X86_64: AUDIT_ARCH_X86_64, I386: 0x40000003 } as const;
export const SECCOMP_RET = RET;

/** What compileSeccomp accepts (`capsule features` "linux.seccomp"). */
export const SECCOMP_FEATURES = {
  actions: [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
  ],
  operators: [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
  ],
  // Rules are compiled for x86_64; calls of another ABI get the profile's default action.
  archs: ["SCMP_ARCH_X86_64"],
  knownFlags: Object.keys(FLAGS),
  supportedFlags: Object.keys(FLAGS),
} as const;
