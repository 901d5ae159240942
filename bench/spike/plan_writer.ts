// SPIKE, not used by the product: the flat binary plan that bench/spike/exec_helper.c reads.
import { CapsuleError } from "../../runtime/errors.ts";

/** The plan's records: tag, u32 LE length, data (strings as UTF-8, numbers as u64 LE). */
export class PlanWriter {
  #parts: Uint8Array[] = [];
  #size = 0;
  #enc = new TextEncoder();
  #rec(tag: string, data: Uint8Array): void {
    const h = new Uint8Array(5);
    h[0] = tag.charCodeAt(0);
    new DataView(h.buffer).setUint32(1, data.length, true);
    this.#parts.push(h, data);
    this.#size += 5 + data.length;
  }
  str(tag: string, s: string): void {
    if (s.includes("\0")) throw new CapsuleError(`A NUL byte in "${s.replaceAll("\0", "\\0")}"`);
    this.#rec(tag, this.#enc.encode(s));
  }
  num(tag: string, ...ns: (number | bigint)[]): void {
    const b = new Uint8Array(8 * ns.length);
    ns.forEach((n, i) => new DataView(b.buffer).setBigUint64(8 * i, BigInt(n), true));
    this.#rec(tag, b);
  }
  bytes(tag: string, b: Uint8Array): void {
    this.#rec(tag, b);
  }
  /** u32 LE total length, then the records. */
  done(): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(4 + this.#size);
    new DataView(out.buffer).setUint32(0, this.#size, true);
    let off = 4;
    for (const p of this.#parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
}
