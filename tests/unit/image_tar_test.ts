// Unit tests of image/tar.ts: the streaming tar reader on crafted bytes (ustar, pax, GNU long
// names, base-256 numbers), chunk boundaries, truncated and non-tar input.
import {
  buildTar,
  ChunkReader,
  entryPath,
  parseNumber,
  readTar,
  TarError,
  type TarHeader,
  type WriteEntry,
} from "../../image/tar.ts";
import { assert, assertEquals, assertRejects } from "./helpers.ts";

const dec = new TextDecoder();

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
}

async function entries(
  bytes: Uint8Array,
  chunk = 1 << 20,
): Promise<{ h: TarHeader; data: string }[]> {
  const out: { h: TarHeader; data: string }[] = [];
  for await (const e of readTar(new ChunkReader(chunked(bytes, chunk)))) {
    out.push({ h: e.header, data: dec.decode(await e.bytes()) });
  }
  return out;
}

const SAMPLE: WriteEntry[] = [
  { name: "./", type: "dir", mode: 0o755 },
  { name: "./etc/", type: "dir", mode: 0o700, mtime: 1_600_000_000 },
  { name: "./etc/hostname", data: "box\n", mode: 0o640, uid: 1000, gid: 100 },
  { name: "./bin/sh", type: "symlink", linkname: "busybox" },
  { name: "./bin/busybox", data: "x".repeat(1500), mode: 0o4755 },
  { name: "./bin/ash", type: "link", linkname: "./bin/busybox" },
];

Deno.test("readTar: ustar entries, types, modes, owners, data", async () => {
  const got = await entries(buildTar(SAMPLE));
  assertEquals(got.map((e) => [e.h.name, e.h.type]), [
    ["./", "dir"],
    ["./etc/", "dir"],
    ["./etc/hostname", "file"],
    ["./bin/sh", "symlink"],
    ["./bin/busybox", "file"],
    ["./bin/ash", "link"],
  ]);
  const host = got[2];
  assertEquals([host.data, host.h.mode, host.h.uid, host.h.gid, host.h.size], [
    "box\n",
    0o640,
    1000,
    100,
    4,
  ]);
  assertEquals(got[1].h.mtime, 1_600_000_000);
  assertEquals(got[3].h.linkname, "busybox");
  assertEquals(got[4].data.length, 1500);
  assertEquals(got[4].h.mode, 0o4755);
  assertEquals(got[5].h.linkname, "./bin/busybox");
});

Deno.test("readTar: the same entries whatever the chunk boundaries", async () => {
  const bytes = buildTar(SAMPLE);
  const whole = await entries(bytes);
  for (const size of [1, 7, 511, 513, 4096]) {
    assertEquals(await entries(bytes, size), whole, `chunks of ${size}`);
  }
});

Deno.test("readTar: unread data is skipped", async () => {
  const names: string[] = [];
  for await (const e of readTar(new ChunkReader(chunked(buildTar(SAMPLE), 100)))) {
    names.push(e.header.name);
  }
  assertEquals(names.length, SAMPLE.length);
});

Deno.test("readTar: pax headers override path, linkpath, size, mtime, owner; xattrs", async () => {
  const long = "usr/share/" + "d".repeat(120) + "/file.txt";
  const got = await entries(buildTar([
    {
      name: "short",
      data: "hello",
      pax: {
        path: long,
        mtime: "1700000000.5",
        uid: "70000",
        "SCHILY.xattr.user.test": "v1",
        "SCHILY.xattr.security.capability": "caps",
      },
    },
    { name: "l", type: "symlink", linkname: "x", pax: { linkpath: "/" + "t".repeat(150) } },
    { name: "after", data: "plain" },
  ]));
  assertEquals(got[0].h.name, long);
  assertEquals(got[0].data, "hello");
  assertEquals(got[0].h.mtime, 1700000000.5);
  assertEquals(got[0].h.uid, 70000);
  assertEquals(dec.decode(got[0].h.xattrs["user.test"]), "v1");
  assertEquals(dec.decode(got[0].h.xattrs["security.capability"]), "caps");
  assertEquals(got[1].h.linkname, "/" + "t".repeat(150));
  // A pax header applies to the next entry only.
  assertEquals([got[2].h.name, got[2].data, Object.keys(got[2].h.xattrs).length], [
    "after",
    "plain",
    0,
  ]);
});

Deno.test("readTar: GNU long names (././@LongLink)", async () => {
  const long = "a/".repeat(80) + "leaf";
  const got = await entries(buildTar([{ name: long, data: "z", gnuLongName: true }, {
    name: "next",
    data: "n",
  }]));
  assertEquals(got.map((e) => [e.h.name, e.data]), [[long, "z"], ["next", "n"]]);
});

Deno.test("readTar: GNU base-256 numbers", () => {
  const b = new Uint8Array(12);
  b[0] = 0x80;
  b[8] = 0x01; // 2^24
  assertEquals(parseNumber(b), 1 << 24);
  assertEquals(parseNumber(new TextEncoder().encode("0000644\0")), 0o644);
  // Negative: two's complement, as GNU tar writes a time before 1970 (-2: 0xff ... 0xfe).
  const minus = (n: number) => {
    const f = new Uint8Array(12).fill(0xff);
    let v = n - 1; // the bytes of -n are those of n-1 inverted
    for (let i = 11; i > 0 && v > 0; i--, v = Math.floor(v / 256)) f[i] = 0xff ^ (v % 256);
    return f;
  };
  assertEquals(parseNumber(minus(2)), -2);
  assertEquals(parseNumber(minus(1)), -1);
  assertEquals(parseNumber(minus(315619200)), -315619200);
});

Deno.test("readTar: not a tar, empty, truncated, no end marker", async () => {
  await assertRejects(
    () => entries(new TextEncoder().encode("this is not a tar file".repeat(40))),
    TarError,
    "not a tar archive",
  );
  await assertRejects(() => entries(new Uint8Array(0)), TarError, "empty");
  const bytes = buildTar([{ name: "big", data: "q".repeat(5000) }, { name: "b", data: "x" }]);
  const err = await assertRejects(() => entries(bytes.slice(0, 2048)), TarError, "ends early");
  assert((err as TarError).truncated);
  const noEnd = buildTar([{ name: "a", data: "x" }], { end: false });
  await assertRejects(() => entries(noEnd), TarError, "end marker");
  const corrupt = buildTar([{ name: "a", data: "x" }, { name: "b", data: "y" }]);
  corrupt[1024 + 10] ^= 0xff; // second header
  await assertRejects(() => entries(corrupt), TarError, "corrupt tar header");
});

Deno.test("entryPath: normalizes, drops a leading /, refuses ..", () => {
  assertEquals(entryPath("./a//b/"), ["a", "b"]);
  assertEquals(entryPath("/etc/passwd"), ["etc", "passwd"]);
  assertEquals(entryPath("./"), []);
  assertEquals(entryPath("../x"), null);
  assertEquals(entryPath("a/../../b"), null);
  assertEquals(entryPath("a/..b"), ["a", "..b"]);
});

Deno.test("readTar: a binary pax xattr (a file capability with bytes >= 0x80) is kept byte for byte", async () => {
  // What `setcap cap_setuid,cap_net_raw+ep` stores, and GNU tar --xattrs --format=pax writes.
  // modern-tar 0.8.6 and tar-stream 3.2.2 hand pax values on as UTF-8 strings, turning 0x80
  // into U+FFFD (measured): the reason capsule keeps its own reader (docs/DESIGN.md).
  const cap = Uint8Array.from([1, 0, 0, 2, 0x80, 0x20, 0, 0, ...new Array(12).fill(0)]);
  // buildTar writes pax values as text: write a placeholder of the same length, then put the
  // binary value in its place (the record's length field stays right).
  const bytes = buildTar([
    { name: "ping", data: "x", pax: { "SCHILY.xattr.security.capability": "@".repeat(20) } },
  ]);
  const at = dec.decode(bytes).indexOf("@".repeat(20));
  assert(at > 0, "placeholder written");
  bytes.set(cap, at);
  const got = await entries(bytes);
  assertEquals(got.length, 1);
  assertEquals(got[0].h.name, "ping");
  assertEquals(got[0].h.xattrs["security.capability"], cap);
});

/** The header at `at` given another type flag, its checksum made again. */
function retype(bytes: Uint8Array, at: number, flag: string): Uint8Array {
  const out = bytes.slice();
  out[at + 156] = flag.charCodeAt(0);
  out.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += out[at + i];
  out.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), at + 148);
  return out;
}

Deno.test("readTar: pax numbers that are not numbers are a TarError, not a crash", async () => {
  const one = (pax: Record<string, string>) => entries(buildTar([{ name: "f", data: "x", pax }]));
  // A fraction and a sign are mtime's only.
  assertEquals((await one({ mtime: "-1.5" }))[0].h.mtime, -1.5);
  assertEquals((await one({ mtime: "-1.5" }))[0].h.mtimeNs, -1500000000n);
  // Python's tarfile writes str(float), an exponent for a time within 0.1 ms of 1970.
  assertEquals((await one({ mtime: "1e-05" }))[0].h.mtime, 0.00001);
  const ns = (await one({ mtime: "1600000000.123456789" }))[0].h;
  assertEquals([ns.mtime, ns.mtimeNs], [1600000000.123456789, 1600000000123456789n]);
  assertEquals((await one({ uid: "4294967295", gid: "7" }))[0].h.uid, 4294967295);
  for (
    const [key, value] of [
      ["mtime", "abc"],
      ["mtime", ""],
      ["mtime", "1e999"],
      ["mtime", "1E9"],
      ["mtime", "1e99"],
      ["uid", "12.5"],
      ["uid", "-1"],
      ["gid", "0x10"],
      ["size", "1.0"],
    ]
  ) {
    await assertRejects(() => one({ [key]: value }), TarError, `invalid ${key}`);
  }
  // 32-bit owners: a larger one would wrap to another user.
  await assertRejects(() => one({ uid: "4294968296" }), TarError, "not 0 to 4294967295");
  await assertRejects(() => one({ gid: "4294967296" }), TarError, "not 0 to 4294967295");
});

Deno.test("readTar: a GNU sparse file (type S, or pax GNU.sparse.*) is refused, never dropped", async () => {
  const plain = buildTar([{ name: "d/", type: "dir" }, { name: "d/s", data: "x" }]);
  await assertRejects(() => entries(retype(plain, 512, "S")), TarError, "GNU sparse file");
  const pax = buildTar([{
    name: "GNUSparseFile.0/s",
    data: "1\n0\n1\n",
    pax: { "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s" },
  }]);
  await assertRejects(() => entries(pax), TarError, "GNU sparse file");
});

Deno.test("readTar: a layer with no entries (docker's empty layer) is read as none", async () => {
  const none = async (b: Uint8Array) => {
    const out = [];
    for await (const e of readTar(new ChunkReader(chunked(b, 512)), { layer: true })) out.push(e);
    return out.length;
  };
  assertEquals(await none(new Uint8Array(1024)), 0); // sha256:5f70bf18... in docker saves
  assertEquals(await none(new Uint8Array(0)), 0);
  assertEquals(await none(buildTar([{ name: "a", data: "x" }])), 1);
  // Not a layer: an empty block first is still "not a tar archive" (a rootfs import).
  await assertRejects(() => entries(new Uint8Array(1024)), TarError, "not a tar archive");
});
