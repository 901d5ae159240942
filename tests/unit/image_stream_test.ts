// Unit tests of the streaming parts of an import (issue 14): image/decompress.ts (zstd frames,
// gzip members, back-pressure, finished buffers released), the release contract of
// ChunkReader/readTar, and extract.ts's SparseWriter (holes for runs of zeros).
import zlib from "node:zlib";
import {
  decompress,
  DecompressError,
  OUT_CHUNK,
  release,
  ZstdFrames,
} from "../../image/decompress.ts";
import { allZero, SparseWriter } from "../../image/extract.ts";
import { buildTar, ChunkReader, readTar } from "../../image/tar.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./helpers.ts";

interface Zlib {
  gzipSync(b: Uint8Array): Uint8Array;
  zstdCompressSync(b: Uint8Array): Uint8Array;
}
const z = zlib as unknown as Zlib;
const enc = new TextEncoder(), dec = new TextDecoder();

function cat(...xs: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(xs.reduce((n, x) => n + x.length, 0));
  let at = 0;
  for (const x of xs) {
    out.set(x, at);
    at += x.length;
  }
  return out;
}

/** `bytes` in chunks of `size`, each a buffer of its own. */
async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

/**
 * Like chunked, but as image/import.ts's FileSource does: a chunk is released (emptied) as
 * soon as the next is asked for, so a reader that keeps a view too long reads nothing.
 */
async function* releasing(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) {
    const c = bytes.slice(i, i + size);
    yield c;
    release(c.buffer);
  }
}

async function all(src: AsyncIterable<Uint8Array>): Promise<string> {
  const parts: Uint8Array[] = [];
  for await (const c of decompress(src)) parts.push(c.slice());
  return dec.decode(cat(...parts));
}

const SKIPPABLE = new Uint8Array([0x5e, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 7, 7, 7]);

Deno.test("decompress: zstd frame by frame: several frames, skippable ones, any chunking", async () => {
  const a = z.zstdCompressSync(enc.encode("first frame, ")),
    b = z.zstdCompressSync(enc.encode("second frame"));
  // The scanner stops at each frame's end.
  const frames = new ZstdFrames(), both = cat(a, SKIPPABLE, b);
  assertEquals(frames.scan(both), a.length);
  assert(frames.frameEnded && !frames.skippable);
  assertEquals(frames.contentSize, undefined); // node:zlib's frames declare no size
  // A frame written by hand: single segment, content size 13, one raw block, no checksum.
  const raw = cat(
    new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0x20, 13, 1 | (13 << 3), 0, 0]),
    enc.encode("a raw block. "),
  );
  const one = new ZstdFrames();
  assertEquals(one.scan(raw), raw.length);
  assert(one.frameEnded);
  assertEquals(one.contentSize, 13);
  assertEquals(await all(chunked(cat(raw, a), 2)), "a raw block. first frame, ");
  assertEquals(frames.scan(both, a.length), a.length + SKIPPABLE.length);
  assert(frames.frameEnded && frames.skippable);
  assertEquals(frames.scan(both, a.length + SKIPPABLE.length, both.length - 1), both.length - 1);
  assert(!frames.frameEnded);
  assertThrows(() => frames.end(), DecompressError, "truncated");
  assertEquals(frames.scan(both, both.length - 1), both.length);
  frames.end();
  for (const size of [1, 2, 3, 5, 7, 64, 4096]) {
    assertEquals(await all(chunked(cat(a, SKIPPABLE, b), size)), "first frame, second frame");
    assertEquals(await all(releasing(cat(SKIPPABLE, a, b), size)), "first frame, second frame");
  }
});

Deno.test("decompress: truncated or trailing garbage zstd is an error, at every cut", async () => {
  const a = z.zstdCompressSync(enc.encode("frame one ".repeat(50))),
    b = z.zstdCompressSync(enc.encode("frame two ".repeat(50)));
  const whole = cat(a, b);
  // Every cut that is not a frame boundary (Deno's decoder alone ends quietly on all).
  for (let cut = 4; cut < whole.length; cut++) {
    if (cut === a.length) continue;
    await assertRejects(
      () => all(chunked(whole.subarray(0, cut), 7)),
      DecompressError,
      "zstd data is",
    );
  }
  assertEquals(await all(chunked(a, 7)), "frame one ".repeat(50));
  await assertRejects(
    () => all(chunked(cat(a, enc.encode("not a frame")), 7)),
    DecompressError,
    `no zstd frame at byte ${a.length}`,
  );
});

Deno.test("decompress: a zstd frame whose checksum does not match is an error, not a crash", async () => {
  // Deno's node:zlib throws this one from a callback, not on the stream, when it is found as
  // the stream ends: uncaught, it ended the process with a stack trace (image create left its
  // temporary directory behind). A frame larger than one output buffer, read in 1 MiB chunks
  // as an import reads, is that case.
  const zc = zlib as unknown as {
    zstdCompressSync(b: Uint8Array, o: unknown): Uint8Array;
    constants: Record<string, number>;
  };
  const data = new Uint8Array(3 << 20);
  for (let at = 0; at < data.length; at += 65536) {
    crypto.getRandomValues(data.subarray(at, at + 65536));
  }
  const good = zc.zstdCompressSync(data, { params: { [zc.constants.ZSTD_c_checksumFlag]: 1 } });
  assert(good[4] & 0x04, "the frame has no checksum");
  const size = async (b: Uint8Array, chunk: number) => {
    let n = 0;
    for await (const c of decompress(chunked(b, chunk))) n += c.length;
    return n;
  };
  assertEquals(await size(good, 1 << 20), data.length);
  const bad = Uint8Array.from(good); // a copy (a Buffer's slice() is a view)
  bad[bad.length - 2] ^= 0xff; // in the frame's 4-byte checksum
  for (const chunk of [1 << 20, 4096, bad.length]) {
    await assertRejects(() => size(bad, chunk), DecompressError, "checksum");
  }
  // And the process goes on: the good frame decodes after it.
  assertEquals(await size(good, 1 << 20), data.length);
});

Deno.test("decompress: gzip members in a row are one stream; garbage after one is an error", async () => {
  const a = z.gzipSync(enc.encode("hello ")), b = z.gzipSync(enc.encode("world"));
  for (const size of [1, 3, 1000]) {
    assertEquals(await all(releasing(cat(a, b), size)), "hello world");
  }
  await assertRejects(
    () => all(chunked(cat(a, enc.encode("garbage!")), 5)),
    DecompressError,
    "gzip data is corrupt",
  );
});

Deno.test("decompress: a bomb is read a chunk at a time; finished buffers are released", async () => {
  // 256 MiB of zeros from a few kilobytes of zstd, in one input chunk.
  const bomb = z.zstdCompressSync(new Uint8Array(256 << 20));
  assert(bomb.length < 64 << 10, `${bomb.length}`);
  const src = async function* () {
    yield bomb;
  };
  const it = decompress(src());
  const full: Uint8Array[] = [];
  for (let i = 0; i < 8; i++) {
    const r = await it.next();
    assert(!r.done);
    assert(r.value.length <= OUT_CHUNK, `a chunk of ${r.value.length} bytes`);
    assert(allZero(r.value));
    if (r.value.length === OUT_CHUNK) full.push(r.value);
  }
  await it.return(undefined);
  // The caller moved on from every full 1 MiB output buffer: its memory is gone already.
  assert(full.length >= 4, `${full.length} full chunks of 8`);
  for (const c of full) assertEquals(c.length, 0, "a finished chunk still holds memory");
});

Deno.test("decompress: an error of the source is rethrown as is, not as corrupt data", async () => {
  const gz = z.gzipSync(new Uint8Array(1 << 20).fill(1));
  const failing = async function* () {
    yield gz.subarray(0, 100);
    throw new RangeError("the download broke");
  };
  await assertRejects(() => all(failing()), RangeError, "the download broke");
});

Deno.test("readTar: headers and pax records survive chunks released as the reader moves on", async () => {
  const long = "d/".repeat(80) + "file";
  const tar = buildTar([
    { name: "short", data: "1" },
    { name: "x", pax: { path: long, "SCHILY.xattr.user.k": "v" }, data: "two" },
    { name: long + "2", gnuLongName: true, data: "three" },
    { name: "last", data: "z".repeat(3000) },
  ]);
  const want = ["short 1", `${long} two`, `${long}2 three`, `last ${"z".repeat(3000)}`];
  for (const size of [1, 100, 511, 512, 513, 700, 1000, 1500, 4096]) {
    const got: string[] = [];
    let xattr = "";
    for await (const e of readTar(new ChunkReader(releasing(tar, size)))) {
      got.push(`${e.header.name} ${dec.decode(await e.bytes())}`);
      if (e.header.xattrs["user.k"]) xattr = dec.decode(e.header.xattrs["user.k"]);
    }
    assertEquals(got, want, `chunks of ${size}`);
    assertEquals(xattr, "v", `chunks of ${size}`);
  }
});

Deno.test("allZero: any length and alignment", () => {
  const b = new Uint8Array(100);
  for (let from = 0; from < 9; from++) {
    for (let to = from; to < 40; to++) {
      assert(allZero(b.subarray(from, to)));
      for (let k = from; k < to; k++) {
        b[k] = 1;
        assert(!allZero(b.subarray(from, to)), `[${from}, ${to}) with a 1 at ${k}`);
        b[k] = 0;
      }
    }
  }
});

Deno.test("SparseWriter: the file reads back the same; runs of zeros become holes", async () => {
  const tmp = await Deno.makeTempDir();
  try {
    const MiB = 1 << 20;
    // Data, 8 MiB of zeros, data, zeros up to the end (unaligned, in odd pieces).
    const data = new Uint8Array(3 + 8 * MiB + 70_000 + 5 * MiB + 17);
    data.fill(0xab, 0, 3);
    data.fill(0xcd, 3 + 8 * MiB, 3 + 8 * MiB + 70_000);
    const path = `${tmp}/f`;
    const f = Deno.openSync(path, { write: true, createNew: true });
    const w = new SparseWriter(f);
    for (let at = 0, step = 1; at < data.length; step = (step * 7 + 13) % 900_000 + 1) {
      w.write(data.subarray(at, Math.min(data.length, at + step)));
      at += step;
    }
    w.end();
    f.close();
    assertEquals(Deno.readFileSync(path), data);
    const st = Deno.statSync(path);
    assertEquals(st.size, data.length);
    // At most the blocks holding data (plus file system slack): the zeros take no disk.
    assert(st.blocks! * 512 < 2 * MiB, `${st.blocks! * 512} bytes allocated`);
    // A file of zeros only, and an empty one.
    for (const n of [0, 1, 65536, 3 * MiB + 5]) {
      const g = Deno.openSync(`${tmp}/z${n}`, { write: true, createNew: true });
      const sw = new SparseWriter(g);
      sw.write(new Uint8Array(n));
      sw.end();
      g.close();
      assertEquals(Deno.readFileSync(`${tmp}/z${n}`), new Uint8Array(n));
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
