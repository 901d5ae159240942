// SHA-256 of what an import reads, computed beside the extraction. Import is a single JS thread
// that spends its time in system calls (an open, a write, an fchown, an fchmod, a futimens and a
// close per file); the hash of a large archive was 0.33 s of it (SHA-NI, node:crypto) for
// 548 MB, 10% of the import. On a worker thread the main thread pays a copy of each chunk
// (~0.1 ms a megabyte) instead; below SMALL the worker's start (~40 ms) costs more than it saves.
// Only `image create` loads this.

/** SHA-256 over chunks given in order. */
export interface StreamHash {
  /**
   * Adds the next bytes. The view may be reused by the caller once the returned promise has
   * resolved (the bytes were copied or hashed). Rejects when the hashing thread failed.
   */
  update(b: Uint8Array): void | Promise<void>;
  /** "sha256:<64 hex>" of everything added; the hash is finished (and its thread gone). */
  digest(): Promise<string>;
  /** Stops the hashing thread now (idempotent): for an import that failed or was stopped. */
  close(): void;
}

/** Inputs below this many bytes are hashed inline. */
export const SMALL = 64 << 20;

/** node:crypto's SHA-256 object: update() in place, digest("hex") once. */
export type NodeHash = { update(b: Uint8Array): NodeHash; digest(enc: "hex"): string };
let createHash: ((alg: string) => NodeHash) | undefined;

/** An inline SHA-256 (node:crypto, loaded on first use): for a pull's streams, small inputs. */
export async function nodeHash(): Promise<NodeHash> {
  createHash ??= (await import("node:crypto")).createHash as unknown as (a: string) => NodeHash;
  return createHash("sha256");
}

/** SHA-256 of one buffer: "sha256:<64 hex>". */
export async function sha256Of(data: Uint8Array): Promise<string> {
  return `sha256:${(await nodeHash()).update(data).digest("hex")}`;
}

/**
 * A StreamHash for about `size` bytes (Infinity when unknown): on a worker thread when that is
 * SMALL or more, else inline.
 */
export async function sha256Stream(size: number): Promise<StreamHash> {
  if (size < SMALL) {
    const h = await nodeHash();
    return {
      update: (b) => void h.update(b),
      digest: () => Promise.resolve(`sha256:${h.digest("hex")}`),
      close: () => {},
    };
  }
  return new WorkerHash();
}

// The worker: a module of its own (a blob: URL, so the bundle needs no second entry point).
// Each message is a buffer and a length, hashed and sent back to be filled again; "end" asks
// for the digest.
const WORKER_SOURCE = `
import { createHash } from "node:crypto";
const h = createHash("sha256");
self.onmessage = ({ data }) => {
  if (data === "end") {
    self.postMessage({ hex: h.digest("hex") });
    return;
  }
  h.update(new Uint8Array(data.buf, 0, data.n));
  self.postMessage({ buf: data.buf }, [data.buf]);
};
`;
let workerUrl: string | undefined;

/**
 * Buffers (of 1 MiB, as FileSource reads) in flight to the worker at most: the copies it has
 * not hashed yet. The worker takes ~70 ms to start, in which the import goes on: at 4 it
 * waited 70-130 ms for it; 24 MiB is what ~0.15 s of extraction reads.
 */
const IN_FLIGHT = 24;

/** Bytes kept (copied) before the worker is started: an archive's probe reads less. */
const HOLD = 2 << 20;

class WorkerHash implements StreamHash {
  #w: Worker | undefined;
  /** Copies of the first bytes, until there are more than HOLD (then the worker starts). */
  #held: Uint8Array[] | undefined = [];
  #heldBytes = 0;
  #pool: ArrayBuffer[] = [];
  #out = 0;
  #wake: (() => void) | undefined;
  #error: Error | undefined;
  #hex: ((hex: string) => void) | undefined;

  /**
   * The worker starts only when more than HOLD bytes came: `image create` of an image archive
   * reads the first entries of the file and then reads it by layer, so this hash ends (closed,
   * unused) without a thread.
   */
  #start(): Worker {
    workerUrl ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "text/javascript" }));
    const w = new Worker(workerUrl, { type: "module" });
    w.onmessage = (e: MessageEvent) => {
      const d = e.data as { buf?: ArrayBuffer; hex?: string };
      if (d.buf) {
        this.#pool.push(d.buf);
        this.#out--;
      } else if (d.hex !== undefined) this.#hex?.(d.hex);
      this.#wakeUp();
    };
    w.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.#fail(new Error(`the hashing thread failed: ${e.message}`));
    };
    w.onmessageerror = () => this.#fail(new Error("the hashing thread sent a broken message"));
    this.#w = w;
    for (const c of this.#held!) {
      this.#out++;
      w.postMessage({ buf: c.buffer, n: c.length }, [c.buffer as ArrayBuffer]);
    }
    this.#held = undefined;
    return w;
  }

  #wakeUp(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  #fail(e: Error): void {
    this.#error ??= e;
    this.close();
    this.#wakeUp();
  }

  async update(b: Uint8Array): Promise<void> {
    if (this.#error) throw this.#error;
    if (this.#held) {
      this.#held.push(b.slice());
      this.#heldBytes += b.length;
      if (this.#heldBytes > HOLD) this.#start();
      return;
    }
    while (!this.#error && this.#out >= IN_FLIGHT) {
      await new Promise<void>((r) => this.#wake = r);
    }
    if (this.#error) throw this.#error;
    if (!this.#w) throw new Error("the hash is finished");
    let buf = this.#pool.pop();
    if (!buf || buf.byteLength < b.length) buf = new ArrayBuffer(Math.max(b.length, 1 << 20));
    new Uint8Array(buf).set(b);
    this.#out++;
    this.#w.postMessage({ buf, n: b.length }, [buf]);
  }

  async digest(): Promise<string> {
    if (this.#error) throw this.#error;
    if (this.#held) {
      // Never started: the few bytes there were are hashed here.
      const h = await nodeHash();
      for (const c of this.#held) h.update(c);
      this.close();
      return `sha256:${h.digest("hex")}`;
    }
    const w = this.#w;
    if (!w) throw new Error("the hash is finished");
    const hex = await new Promise<string>((resolve, reject) => {
      this.#hex = resolve;
      // A failure from here on rejects instead of waiting forever.
      const wake = () => this.#error ? reject(this.#error) : (this.#wake = wake);
      this.#wake = wake;
      w.postMessage("end");
    });
    this.close();
    return `sha256:${hex}`;
  }

  close(): void {
    this.#w?.terminate();
    this.#w = undefined;
    this.#held = undefined;
    this.#pool = [];
  }
}
