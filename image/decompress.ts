// Decompression of archives and layers, for `image create` and `image pull`: gzip and zstd
// through node:zlib, tar as is. The kind is sniffed from the first bytes, not trusted from a
// file name or a media type.
//
// Memory is bounded whatever the ratio: gzip expands up to ~1000:1 and zstd ~30000:1, so a
// decompressor that turns one input chunk into all its output at once (the Web
// DecompressionStream does, and node:zlib in flowing mode) holds gigabytes for a small
// hostile input. Here the decompressor's output is pulled a chunk at a time (OUT_CHUNK bytes)
// and its input is written only as that output is taken: node:zlib stops inflating an input
// chunk while its readable side is full, and the next chunk waits for the write callback.
// Finished output buffers are released (detached) at once rather than left to the garbage
// collector, which lets hundreds of megabytes of them pile up at gigabytes per second.
// Measured (bench/RESULTS.md): a gzip or zstd of 2 GB of zeros imports at 60-85 MB peak RSS.

/** What a layer stream is, from its first four bytes. */
export type Compression = "none" | "gzip" | "zstd" | "bzip2" | "xz";

/** The compression of a stream from its first bytes (magic numbers). */
export function sniff(head: Uint8Array): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head[0] === 0x28 && head[1] === 0xb5 && head[2] === 0x2f && head[3] === 0xfd) return "zstd";
  // A zstd skippable frame (0x184D2A5?), as zstd:chunked metadata: zstd -d reads past it.
  if ((head[0] & 0xf0) === 0x50 && head[1] === 0x2a && head[2] === 0x4d && head[3] === 0x18) {
    return "zstd";
  }
  if (head[0] === 0x42 && head[1] === 0x5a && head[2] === 0x68) return "bzip2";
  if (head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58) return "xz";
  return "none";
}

/**
 * A corrupt or truncated compressed stream, or a compression capsule does not read (the
 * message says which; the caller prefixes what was being read).
 */
export class DecompressError extends Error {
  override name = "DecompressError";
}

/**
 * Bytes per output chunk of the decompressor (node:zlib's chunkSize). With the readable
 * side's high-water mark at the same size, at most a few such chunks are held at once.
 */
export const OUT_CHUNK = 1 << 20;

/** What decompress.ts uses of a node:zlib Transform (a Duplex stream). */
interface NodeTransform extends AsyncIterable<Uint8Array> {
  write(chunk: Uint8Array, cb: (err?: Error | null) => void): boolean;
  end(): void;
  destroy(error?: Error): void;
  readonly destroyed: boolean;
  once(ev: "close", f: () => void): void;
  off(ev: "close", f: () => void): void;
}

interface Zlib {
  createGunzip(o: { chunkSize: number; highWaterMark?: number }): NodeTransform;
  createZstdDecompress(o: { chunkSize: number; highWaterMark?: number }): NodeTransform;
}

let zlib: Zlib | undefined;

type FrameState = "magic" | "skipsize" | "fhd" | "fhdrest" | "block" | "skip";

/**
 * Follows the frame structure of zstd input (RFC 8878 section 3.1: frame and block headers;
 * block contents are counted, not decoded) to find where each frame ends. node:zlib's zstd
 * decoder in Deno reads one frame and quietly ignores what follows (more frames, as pzstd and
 * zstd:chunked layers have, or garbage), and ends quietly within a truncated frame, where
 * `zstd -d` reads every frame and fails on both: `zstd()` below decodes frame by frame and
 * this scanner reports the errors.
 */
export class ZstdFrames {
  #buf = new Uint8Array(16);
  #have = 0;
  #need = 4;
  #state: FrameState = "magic";
  #after: FrameState = "magic";
  #skip = 0;
  #checksum = false;
  #fcsBytes = 0;
  #frames = 0;
  #offset = 0;
  /** Set by scan(): the index it returned ends a frame. */
  frameEnded = false;
  /** The current frame is a skippable frame (known once its first 4 bytes are scanned). */
  skippable = false;
  /** The current frame's header has been scanned (then contentSize is known). */
  headerDone = false;
  /** Decompressed size the current frame's header declares, if it does (not trusted). */
  contentSize: number | undefined;

  #to(state: Exclude<FrameState, "skip">, skip = 0, need?: number): void {
    this.#need = need ?? (state === "fhd" ? 1 : state === "block" ? 3 : 4);
    if (state === "block") this.headerDone = true;
    if (skip > 0) {
      this.#state = "skip";
      this.#after = state;
      this.#skip = skip;
    } else this.#state = state;
    if (this.#state === "magic") {
      this.#frames++;
      this.frameEnded = true;
    }
  }

  /**
   * Scans b[from, to) (to defaults to b's end) and returns where it stopped: at a frame's
   * end (frameEnded is then set) or at `to`. Throws DecompressError for what is no frame.
   */
  scan(b: Uint8Array, from = 0, to = b.length): number {
    this.frameEnded = false;
    let i = from;
    while (i < to) {
      if (this.#state === "skip") {
        const n = Math.min(this.#skip, to - i);
        i += n;
        this.#offset += n;
        this.#skip -= n;
        if (this.#skip === 0) this.#to(this.#after as Exclude<FrameState, "skip">);
      } else {
        this.#buf[this.#have++] = b[i++];
        this.#offset++;
        if (this.#have < this.#need) continue;
        this.#have = 0;
        this.#header();
      }
      if (this.frameEnded) return i;
    }
    return i;
  }

  #header(): void {
    const b = this.#buf;
    switch (this.#state) {
      case "magic": {
        const v = (b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24) >>> 0;
        this.skippable = (v & 0xfffffff0) >>> 0 === 0x184d2a50;
        this.headerDone = false;
        this.contentSize = undefined;
        if (v === 0xfd2fb528) this.#to("fhd");
        else if (this.skippable) this.#to("skipsize");
        else {
          throw new DecompressError(
            `the zstd data is corrupt (no zstd frame at byte ${this.#offset - 4})`,
          );
        }
        break;
      }
      case "skipsize": {
        this.#to("magic", (b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24) >>> 0);
        break;
      }
      case "fhd": {
        const d = b[0];
        if (d & 0x08) {
          throw new DecompressError(
            `the zstd data is corrupt (reserved bit set at byte ${this.#offset - 1})`,
          );
        }
        const single = (d >> 5) & 1;
        this.#checksum = ((d >> 2) & 1) === 1;
        // Window descriptor, dictionary id, then the content size (its last field).
        this.#fcsBytes = [single, 2, 4, 8][d >> 6];
        const rest = (single ? 0 : 1) + [0, 1, 2, 4][d & 3] + this.#fcsBytes;
        if (rest) this.#to("fhdrest", 0, rest);
        else this.#to("block");
        break;
      }
      case "fhdrest": {
        const n = this.#fcsBytes, at = this.#need - n;
        let size = 0;
        for (let k = n - 1; k >= 0; k--) size = size * 256 + b[at + k];
        if (n === 2) size += 256;
        this.contentSize = n ? size : undefined;
        this.#to("block");
        break;
      }
      case "block": {
        const h = b[0] | b[1] << 8 | b[2] << 16;
        const type = (h >> 1) & 3;
        if (type === 3) {
          throw new DecompressError(
            `the zstd data is corrupt (reserved block type at byte ${this.#offset - 3})`,
          );
        }
        const content = type === 1 ? 1 : h >>> 3;
        if (h & 1) this.#to("magic", content + (this.#checksum ? 4 : 0));
        else this.#to("block", content);
        break;
      }
    }
  }

  /** Throws DecompressError unless the input ended after a whole frame. */
  end(): void {
    if (this.#frames === 0 || this.#state !== "magic" || this.#have !== 0) {
      throw new DecompressError(
        `the zstd data is truncated (it ends within a frame, after ${this.#offset} bytes)`,
      );
    }
  }
}

/**
 * Frees the memory of a buffer now, not at the next garbage collection: it is detached (any
 * view of it reads as empty from here on). For buffers whose every user is done with them.
 * Importing gigabytes allocates a chunk per megabyte: left to the collector, hundreds of
 * megabytes of finished chunks wait for it; released, a few are alive at any time.
 */
export function release(buf: ArrayBufferLike): void {
  try {
    if (buf instanceof ArrayBuffer && !buf.detached) buf.transfer(0);
  } catch { /* not detachable (a Wasm memory, a buffer Deno pinned): the collector frees it */ }
}

/** The zstd decoders `through` is feeding (a write under way) or ending. */
const busyDecoders = new Set<NodeTransform>();

/**
 * Deno's node:zlib throws a zstd decoder's error found while it works through a write (a frame
 * whose checksum does not match, when the frame's end comes with a full output buffer) from a
 * callback instead of emitting it on the stream, and the write never completes: uncaught, it
 * ended the process with a stack trace and left the import's temporary directory. Such an
 * error ("Zstd decompress error: ...") is taken as the decoder's own when exactly one decoder
 * of ours is busy, and destroys it (the import fails with a clear error). Any other uncaught
 * error, or one that cannot be told apart (two imports in one process at that moment), is left
 * alone: it is a caller's own, or it ends the process as before.
 */
function onUncaughtZstd(e: ErrorEvent): void {
  const err = e.error;
  if (!(err instanceof Error) || !err.message.startsWith("Zstd decompress error")) return;
  if (busyDecoders.size !== 1) return;
  e.preventDefault();
  const [t] = busyDecoders;
  busyDecoders.delete(t);
  t.destroy(err);
}

/** Marks a zstd decoder busy or not; the listener is there while any is. */
function busy(t: NodeTransform, on: boolean): void {
  const before = busyDecoders.size;
  if (on) busyDecoders.add(t);
  else busyDecoders.delete(t);
  if (before === 0 && busyDecoders.size > 0) globalThis.addEventListener("error", onUncaughtZstd);
  if (before > 0 && busyDecoders.size === 0) {
    globalThis.removeEventListener("error", onUncaughtZstd);
  }
}

/**
 * Runs `src` through the transform `t` with back-pressure both ways: the next input chunk is
 * read once `t` has consumed the previous one (its write callback), and `t` produces output
 * only as it is taken (its readable side holds at most `size` bytes). Each output buffer is
 * released once `t` has moved on to the next and the caller has asked for more (see
 * `decompress`), the last one when `t` is gone. An error of `src` (an interrupt, an over-long download) is rethrown as it
 * is; an error of `t` becomes a DecompressError. Stopping early (the caller returns)
 * destroys `t` and closes `src`.
 */
async function* through(
  src: AsyncIterable<Uint8Array>,
  t: NodeTransform,
  kind: string,
  size = OUT_CHUNK,
): AsyncGenerator<Uint8Array> {
  let srcError: { e: unknown } | undefined;
  let stop = false;
  /** Resolves when `t` has consumed chunk c, or is closed (destroyed, failed). */
  const zstd = kind === "zstd";
  const write = (c: Uint8Array) =>
    new Promise<void>((res) => {
      const done = () => {
        t.off("close", done);
        if (zstd) busy(t, false);
        res();
      };
      t.once("close", done);
      if (zstd) busy(t, true);
      t.write(c, done);
    });
  const feed = (async () => {
    try {
      for await (const c of src) {
        if (stop) break;
        await write(c);
        if (stop) break;
      }
      // Not on a stream that failed: ending it throws its error again, uncaught.
      if (!stop && !t.destroyed) {
        if (zstd) busy(t, true); // until it is gone (below)
        t.end();
      }
    } catch (e) {
      srcError = { e };
      t.destroy(e instanceof Error ? e : new Error(String(e)));
    }
  })();
  /** A full output buffer, released when the caller asks for the next chunk. */
  let full: ArrayBufferLike | undefined;
  /** The output buffer `t` is filling, released once `t` is gone. */
  let last: ArrayBufferLike | undefined;
  try {
    for await (const c of t) {
      // node:zlib fills an output buffer of `size` bytes with one or more chunks (in order),
      // then allocates a new one: a chunk that ends the buffer is its last use. Nothing
      // else is released: a buffer of another size may be shared (Buffer's pool).
      if (c.buffer.byteLength === size) {
        if (c.byteOffset + c.byteLength === size) full = c.buffer;
        else last = c.buffer;
      }
      yield new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
      if (full) release(full);
      full = undefined;
    }
    await feed;
    if (srcError) throw srcError.e;
  } catch (e) {
    if (srcError) throw srcError.e;
    if (e instanceof DecompressError) throw e;
    throw new DecompressError(
      `the ${kind} data is corrupt or truncated (${(e as Error).message ?? e})`,
    );
  } finally {
    busy(t, false);
    stop = true;
    t.destroy();
    await feed;
    if (full) release(full);
    if (last) release(last);
  }
}

/**
 * zstd input decoded frame by frame (a decoder per frame; skippable frames are dropped), the
 * frames found by ZstdFrames. Input chunks are handed on as views: each is done with before
 * the next is asked for, as `through` needs.
 */
async function* zstd(
  src: AsyncIterable<Uint8Array>,
  decoder: (size: number) => NodeTransform,
): AsyncGenerator<Uint8Array> {
  const it = src[Symbol.asyncIterator]();
  const frames = new ZstdFrames();
  let chunk: Uint8Array = new Uint8Array(0);
  let pos = 0;
  let ended = false;
  const more = async (): Promise<boolean> => {
    if (pos < chunk.length) return true;
    if (ended) return false;
    const r = await it.next();
    if (r.done) {
      ended = true;
      return false;
    }
    chunk = r.value;
    pos = 0;
    return true;
  };
  /** The input of one frame (nothing for a skippable one); ends at the frame's end. */
  async function* frame(): AsyncGenerator<Uint8Array> {
    // The magic number first: it tells a skippable frame, and may straddle chunks.
    const magic = new Uint8Array(4);
    for (let have = 0; have < 4;) {
      if (!(await more())) return;
      const n = Math.min(4 - have, chunk.length - pos);
      magic.set(chunk.subarray(pos, pos + n), have);
      pos = frames.scan(chunk, pos, pos + n);
      have += n;
    }
    const skip = frames.skippable;
    if (!skip) {
      // Then the rest of the frame header (at most 14 bytes): it may declare the size.
      const header = [...magic];
      while (!frames.headerDone && await more()) {
        header.push(chunk[pos]);
        pos = frames.scan(chunk, pos, pos + 1);
      }
      yield Uint8Array.from(header);
    }
    while (!frames.frameEnded && await more()) {
      const start = pos;
      pos = frames.scan(chunk, pos);
      if (!skip) yield chunk.subarray(start, pos);
    }
  }
  try {
    while (await more()) {
      const input = frame();
      const first = await input.next();
      if (first.done) continue; // a skippable frame, or the input ended within a magic number
      // Output buffers of the frame's declared size (at least 64 KiB, at most OUT_CHUNK):
      // frames of a few kilobytes each (zstd:chunked) cost no megabyte each.
      const size = Math.min(OUT_CHUNK, Math.max(64 << 10, frames.contentSize ?? OUT_CHUNK));
      yield* through(
        (async function* () {
          yield first.value;
          yield* input;
        })(),
        decoder(size),
        "zstd",
        size,
      );
    }
    frames.end();
  } finally {
    if (!ended) await it.return?.();
  }
}

/** The first bytes of a stream (at least `n` unless it ends) and the whole stream again. */
async function peek(
  src: AsyncIterable<Uint8Array>,
  n: number,
): Promise<{ head: Uint8Array; whole: AsyncIterable<Uint8Array>; close(): Promise<void> }> {
  const it = src[Symbol.asyncIterator]();
  let head: Uint8Array = new Uint8Array(0);
  let ended = false;
  // A first chunk of fewer than n bytes cannot be sniffed: gather a little more.
  while (head.length < n) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    // Kept in a buffer of its own: the source may release a chunk when the next is asked for.
    const joined = new Uint8Array(head.length + r.value.length);
    joined.set(head);
    joined.set(r.value, head.length);
    head = joined;
  }
  const whole: AsyncIterable<Uint8Array> = {
    async *[Symbol.asyncIterator]() {
      try {
        if (head.length) yield head;
        if (ended) return;
        for (;;) {
          const r = await it.next();
          if (r.done) return;
          yield r.value;
        }
      } finally {
        if (!ended) await it.return?.();
      }
    },
  };
  const close = async () => {
    if (!ended) await it.return?.();
  };
  return { head, whole, close };
}

/**
 * The decompressed bytes of `src` (gzip, zstd or uncompressed tar, sniffed from the first
 * bytes), in chunks of at most OUT_CHUNK bytes for compressed input (uncompressed input is
 * passed on in the chunks it came in). Memory stays bounded: see the top of this file.
 * A chunk is valid until the caller asks for the next one: then its memory may be released
 * (copy what is kept longer). `src` may do the same with its chunks: each is read by the
 * decompressor before the next is asked for.
 * Concatenated gzip members and zstd frames are read as one stream, as gzip -d and zstd -d
 * do. Throws DecompressError for corrupt or truncated data or an unsupported kind (bzip2,
 * xz); rethrows errors of `src` unchanged.
 */
export async function* decompress(src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const { head, whole, close } = await peek(src, 4);
  const kind = sniff(head);
  if (kind === "none") {
    yield* whole;
    return;
  }
  if (kind !== "gzip" && kind !== "zstd") {
    // The source is not read further: close it (a file, a download).
    await close();
    throw new DecompressError(
      `it is ${kind}-compressed; capsule reads tar, gzip and zstd (decompress it first)`,
    );
  }
  zlib ??= await import("node:zlib") as unknown as Zlib;
  const opts = { chunkSize: OUT_CHUNK, highWaterMark: OUT_CHUNK };
  if (kind === "gzip") yield* through(whole, zlib.createGunzip(opts), kind);
  else {
    yield* zstd(
      whole,
      (size) => zlib!.createZstdDecompress({ chunkSize: size, highWaterMark: size }),
    );
  }
}
