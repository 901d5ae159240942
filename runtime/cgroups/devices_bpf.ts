// cgroup v2 device rules: an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE, as runc's
// devicefilter builds it. The program sees struct bpf_cgroup_dev_ctx { u32 access_type (access
// << 16 | type); u32 major; u32 minor } and returns 1 (allow) or 0 (deny). Rules are read as
// the v1 devices.allow/deny writes are: the last rule that matches decides, so they are
// emitted in reverse and the first match returns; an allow matches a request within its
// access, a deny one that shares any access with it (v1's exception list, which runc
// reproduces by running the rules through its v1 emulator first). Pure; unit-tested with an interpreter.
import type { LinuxDeviceCgroup } from "./types.ts";

const TYPE: Record<string, number> = { b: 1, c: 2 }; // BPF_DEVCG_DEV_BLOCK, _CHAR
const ACCESS: Record<string, number> = { m: 1, r: 2, w: 4 }; // BPF_DEVCG_ACC_MKNOD, _READ, _WRITE

// eBPF opcodes (linux/bpf.h, linux/bpf_common.h).
const LDXW = 0x61, AND64_K = 0x57, RSH64_K = 0x77, MOV64_K = 0xb7, MOV64_X = 0xbf;
const JNE_K = 0x55, JEQ_K = 0x15, EXIT = 0x95;

interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

const ins = (code: number, dst: number, src: number, off: number, imm: number): Insn => ({
  code,
  dst,
  src,
  off,
  imm,
});

function accessMask(access: string | undefined): number {
  let m = 0;
  for (const c of access ?? "rwm") m |= ACCESS[c] ?? 0;
  return m;
}

/** The program's instructions for `rules` (in the order of config.json, then the defaults). */
export function deviceFilterInsns(rules: readonly LinuxDeviceCgroup[]): Insn[] {
  const out: Insn[] = [
    ins(LDXW, 2, 1, 0, 0), // r2 = access_type
    ins(AND64_K, 2, 0, 0, 0xffff), // r2 = type
    ins(LDXW, 3, 1, 0, 0),
    ins(RSH64_K, 3, 0, 0, 16), // r3 = access
    ins(LDXW, 4, 1, 4, 0), // r4 = major
    ins(LDXW, 5, 1, 8, 0), // r5 = minor
  ];
  for (const r of [...rules].reverse()) {
    const checks: ((skip: number) => Insn[])[] = [];
    const type = r.type ?? "a";
    if (type !== "a") checks.push((skip) => [ins(JNE_K, 2, 0, skip, TYPE[type])]);
    const mask = accessMask(r.access);
    if (mask !== 7 && r.allow) {
      // An allow holds for requests within its access: (access & ~mask) == 0.
      checks.push((skip) => [
        ins(MOV64_X, 6, 3, 0, 0),
        ins(AND64_K, 6, 0, 0, ~mask & 7),
        ins(JNE_K, 6, 0, skip, 0),
      ]);
    } else if (mask !== 7) {
      // A deny holds for requests that share any access with it, as v1's exception list
      // does (an O_RDWR open asks "rw": a denied "w" refuses it): (access & mask) != 0.
      checks.push((skip) => [
        ins(MOV64_X, 6, 3, 0, 0),
        ins(AND64_K, 6, 0, 0, mask),
        ins(JEQ_K, 6, 0, skip, 0),
      ]);
    }
    const wild = (v: number | null | undefined) => v === undefined || v === null || v < 0;
    if (type !== "a" && !wild(r.major)) checks.push((skip) => [ins(JNE_K, 4, 0, skip, r.major!)]);
    if (type !== "a" && !wild(r.minor)) checks.push((skip) => [ins(JNE_K, 5, 0, skip, r.minor!)]);
    // Lengths first (each check's size does not depend on its offset), then the offsets.
    const sizes = checks.map((c) => c(0).length);
    const total = sizes.reduce((a, b) => a + b, 0) + 2;
    let done = 0;
    checks.forEach((c, i) => {
      done += sizes[i];
      // Each check ends in its jump: on a mismatch, skip the rest of this rule's block.
      out.push(...c(total - done));
    });
    out.push(ins(MOV64_K, 0, 0, 0, r.allow ? 1 : 0), ins(EXIT, 0, 0, 0, 0));
    // A rule that matches everything ends the program: the verifier refuses unreachable code.
    if (!checks.length) return out;
  }
  out.push(ins(MOV64_K, 0, 0, 0, 0), ins(EXIT, 0, 0, 0, 0)); // nothing matched: deny
  return out;
}

/** The instructions packed as struct bpf_insn (8 bytes each). */
export function packInsns(insns: Insn[]): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(insns.length * 8);
  const dv = new DataView(buf.buffer);
  insns.forEach((i, n) => {
    dv.setUint8(n * 8, i.code);
    dv.setUint8(n * 8 + 1, (i.src << 4) | i.dst);
    dv.setInt16(n * 8 + 2, i.off, true);
    dv.setInt32(n * 8 + 4, i.imm, true);
  });
  return buf;
}

/** Runs the program as the kernel would for one access; true if allowed. For the tests. */
export function runDeviceFilter(
  insns: Insn[],
  req: { type: "b" | "c"; access: string; major: number; minor: number },
): boolean {
  const ctx = [(accessMask(req.access) << 16) | TYPE[req.type], req.major, req.minor];
  const r = new Array<number>(11).fill(0);
  for (let pc = 0; pc < insns.length;) {
    const i = insns[pc];
    switch (i.code) {
      case LDXW:
        r[i.dst] = ctx[i.off / 4] >>> 0;
        break;
      case AND64_K:
        r[i.dst] = (r[i.dst] & i.imm) >>> 0;
        break;
      case RSH64_K:
        r[i.dst] = r[i.dst] >>> i.imm;
        break;
      case MOV64_K:
        r[i.dst] = i.imm;
        break;
      case MOV64_X:
        r[i.dst] = r[i.src];
        break;
      case JNE_K:
        if (r[i.dst] !== (i.imm >>> 0)) pc += i.off;
        break;
      case JEQ_K:
        if (r[i.dst] === (i.imm >>> 0)) pc += i.off;
        break;
      case EXIT:
        return r[0] === 1;
      default:
        throw new Error(`bad opcode ${i.code}`);
    }
    pc++;
  }
  throw new Error("fell off the end of the program");
}
