// Unit tests of image/hash.ts (issue 14): the SHA-256 of an import, inline below SMALL and on a
// worker thread above it, must be the digest of exactly the bytes given, in order, even when the
// caller fills the same buffer again as soon as update() has resolved (FileSource does).
import { createHash } from "node:crypto";
import { sha256Of, sha256Stream, SMALL } from "../../image/hash.ts";
import { assertEquals, assertRejects } from "./helpers.ts";

function expected(chunks: Uint8Array[]): string {
  const h = createHash("sha256");
  for (const c of chunks) h.update(c);
  return `sha256:${h.digest("hex")}`;
}

/** Chunks of varied sizes (1 MiB, odd sizes, empty), each of its own seeded bytes. */
function chunks(count: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let seed = 7;
  for (let i = 0; i < count; i++) {
    const n = [1 << 20, 4093, 0, 65536, (1 << 20) + 1][i % 5];
    const c = new Uint8Array(n);
    for (let k = 0; k < n; k++) c[k] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    out.push(c);
  }
  return out;
}

const kinds = [
  ["inline", 1, 60],
  ["worker thread", SMALL, 60],
  // Under 2 MiB in all: kept until the digest, no thread started (an archive's probe).
  ["worker thread, not started", SMALL, 2],
] as const;
for (const [name, size, count] of kinds) {
  Deno.test(`sha256Stream (${name}): the digest of the bytes given, one buffer reused`, async () => {
    const data = chunks(count);
    const h = await sha256Stream(size);
    try {
      // One buffer, overwritten with the next chunk once update() resolved, and with junk
      // right after: a hash that kept a view instead of a copy would read the junk.
      const buf = new Uint8Array((1 << 20) + 1);
      for (const c of data) {
        buf.set(c);
        await h.update(buf.subarray(0, c.length));
        buf.fill(0xee);
      }
      assertEquals(await h.digest(), expected(data));
    } finally {
      h.close();
    }
  });
}

Deno.test("sha256Stream (worker thread): nothing given, and closed early", async () => {
  const empty = await sha256Stream(Infinity);
  assertEquals(await empty.digest(), expected([]));
  // A hash dropped halfway (a failed import) ends its thread: the test's sanitizers would
  // report a worker left running.
  const dropped = await sha256Stream(Infinity);
  await dropped.update(new Uint8Array(1000));
  dropped.close();
  dropped.close();
  await assertRejects(() => dropped.digest(), Error, "finished");
  await assertRejects(async () => await dropped.update(new Uint8Array(1)), Error, "finished");
});

Deno.test("sha256Of: one buffer", async () => {
  const b = new TextEncoder().encode("abc");
  assertEquals(
    await sha256Of(b),
    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});
