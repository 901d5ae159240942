// Decompression of layer streams for `image pull`: gzip through the Web DecompressionStream,
// zstd through node:zlib (Deno 2.9 has zstd there, not in DecompressionStream), tar as is.
// The kind is sniffed from the first bytes, not trusted from a media type.

/** What a layer stream is, from its first four bytes. */
export type Compression = "none" | "gzip" | "zstd" | "bzip2" | "xz";

/** The compression of a stream from its first bytes (magic numbers). */
export function sniff(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return "bzip2";
  if (head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58) return "xz";
  return "none";
}

/** A corrupt or truncated compressed stream (the message says which). */
export class DecompressError extends Error {
  override name = "DecompressError";
}

interface NodeTransform {
  write(chunk: Uint8Array, cb: (err?: Error | null) => void): boolean;
  end(): void;
  destroy(): void;
  on(ev: "data", f: (c: Uint8Array) => void): void;
  on(ev: "error", f: (e: Error) => void): void;
  on(ev: "end" | "close", f: () => void): void;
}

/** zstd frames through node:zlib, with back-pressure (one input chunk at a time). */
async function* zstd(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const zlib = await import("node:zlib") as unknown as {
    createZstdDecompress(): NodeTransform;
  };
  const d = zlib.createZstdDecompress();
  const out: Uint8Array[] = [];
  let error: Error | undefined;
  let ended = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  d.on("data", (c) => {
    out.push(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
    notify();
  });
  let written: (() => void) | undefined;
  d.on("error", (e) => {
    error ??= e;
    written?.();
    notify();
  });
  // "close" without "end": destroyed after an error, nothing more comes.
  for (const ev of ["end", "close"] as const) {
    d.on(ev, () => {
      ended = true;
      written?.();
      notify();
    });
  }
  const fail = (e: Error): never => {
    throw new DecompressError(`the zstd data is corrupt or truncated (${e.message})`);
  };
  try {
    for await (const c of src) {
      // Back-pressure: wait until zlib took this chunk (or failed: the callback may not come).
      await new Promise<void>((res) => {
        written = res;
        d.write(c, () => res());
      });
      written = undefined;
      if (error) fail(error);
      while (out.length) yield out.shift()!;
    }
    d.end();
    while (!ended && !error) {
      while (out.length) yield out.shift()!;
      if (ended || error) break;
      await new Promise<void>((r) => wake = r);
    }
    while (out.length) yield out.shift()!;
    if (error) fail(error);
  } finally {
    d.destroy();
  }
}

async function* gzip(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const stream = ReadableStream.from(src).pipeThrough(
    new DecompressionStream("gzip") as unknown as ReadableWritablePair<Uint8Array, Uint8Array>,
  );
  try {
    for await (const c of stream) yield c;
  } catch (e) {
    if (e instanceof TypeError) {
      throw new DecompressError(`the gzip data is corrupt or truncated (${e.message})`);
    }
    throw e;
  }
}

/**
 * The decompressed bytes of `src` (gzip, zstd or uncompressed tar, sniffed from the first
 * chunk). Throws DecompressError for corrupt data or an unsupported kind (bzip2, xz).
 */
export async function* decompress(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const it = src[Symbol.asyncIterator]();
  const first = await it.next();
  // A first chunk of fewer than 4 bytes cannot be sniffed: gather a little more.
  let head = first.done ? new Uint8Array(0) : first.value;
  while (!first.done && head.length < 4) {
    const more = await it.next();
    if (more.done) break;
    const joined = new Uint8Array(head.length + more.value.length);
    joined.set(head);
    joined.set(more.value, head.length);
    head = joined;
  }
  const whole: AsyncIterable<Uint8Array> = {
    async *[Symbol.asyncIterator]() {
      if (head.length) yield head;
      if (first.done) return;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value;
      }
    },
  };
  const kind = sniff(head);
  if (kind === "none") yield* whole;
  else if (kind === "gzip") yield* gzip(whole);
  else if (kind === "zstd") yield* zstd(whole);
  else {
    throw new DecompressError(`it is ${kind}-compressed; capsule reads tar, gzip and zstd layers`);
  }
}
