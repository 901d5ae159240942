// Unit tests of image/extract.ts (no root needed): metadata, links, whiteouts, and archives
// that try to write outside the image directory.
import { applyTar, EscapeError } from "../../image/extract.ts";
import { buildTar, ChunkReader, readTar, type WriteEntry } from "../../image/tar.ts";
import { assert, assertEquals, assertRejects, withTempDir } from "./helpers.ts";

async function apply(dir: string, list: WriteEntry[], layer = false) {
  const bytes = buildTar(list);
  return await applyTar(readTar(new ChunkReader(chunksOf(bytes))), dir, {
    layer,
    owners: false,
  });
}

function ls(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of Deno.readDirSync(d)) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(e.isSymlink ? `${r}@` : e.isDirectory ? `${r}/` : r);
      if (e.isDirectory) walk(`${d}/${e.name}`, r);
    }
  };
  walk(dir, "");
  return out.sort();
}

function chunksOf(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  return (async function* () {
    yield bytes;
  })();
}

Deno.test("applyTar: files, dirs, symlinks, hard links, modes and mtimes", async () => {
  await withTempDir(async (tmp) => {
    const root = `${tmp}/rootfs`;
    Deno.mkdirSync(root);
    await applyTar(
      readTar(
        new ChunkReader(chunksOf(buildTar([
          { name: "./", type: "dir", mode: 0o755 },
          { name: "./etc/", type: "dir", mode: 0o555, mtime: 1_500_000_000 },
          { name: "./etc/motd", data: "hi\n", mode: 0o640, mtime: 1_600_000_000 },
          { name: "./bin/busybox", data: "BB", mode: 0o755 },
          { name: "./bin/sh", type: "symlink", linkname: "busybox" },
          { name: "./bin/ash", type: "link", linkname: "./bin/busybox" },
          { name: "./usr/lib/deep/file", data: "d" },
        ]))),
      ),
      root,
      { owners: false },
    );
    assertEquals(ls(root), [
      "bin/",
      "bin/ash",
      "bin/busybox",
      "bin/sh@",
      "etc/",
      "etc/motd",
      "usr/",
      "usr/lib/",
      "usr/lib/deep/",
      "usr/lib/deep/file",
    ]);
    const motd = Deno.statSync(`${root}/etc/motd`);
    assertEquals(motd.mode! & 0o7777, 0o640);
    assertEquals(motd.mtime!.getTime(), 1_600_000_000_000);
    const etc = Deno.statSync(`${root}/etc`);
    assertEquals(etc.mode! & 0o7777, 0o555);
    assertEquals(etc.mtime!.getTime(), 1_500_000_000_000, "directory mtime set last");
    assertEquals(Deno.readLinkSync(`${root}/bin/sh`), "busybox");
    assertEquals(Deno.statSync(`${root}/bin/ash`).ino, Deno.statSync(`${root}/bin/busybox`).ino);
    assertEquals(Deno.statSync(`${root}/usr/lib`).mode! & 0o777, 0o755);
    Deno.chmodSync(`${root}/etc`, 0o755);
  });
});

Deno.test("applyTar: refuses .. entries and writes nothing outside", async () => {
  await withTempDir(async (tmp) => {
    const root = `${tmp}/rootfs`;
    Deno.mkdirSync(root);
    await assertRejects(
      () => apply(root, [{ name: "ok", data: "1" }, { name: "../escaped", data: "x" }]),
      EscapeError,
      '"../escaped"',
    );
    await assertRejects(
      () => apply(root, [{ name: "a/../../escaped2", data: "x" }]),
      EscapeError,
    );
    assertEquals(ls(tmp), ["rootfs/", "rootfs/ok"]);
  });
});

Deno.test("applyTar: a symlink that climbs out is never written through", async () => {
  await withTempDir(async (tmp) => {
    const root = `${tmp}/rootfs`;
    Deno.mkdirSync(root);
    Deno.mkdirSync(`${tmp}/outside`);
    await assertRejects(
      () =>
        apply(root, [
          { name: "evil", type: "symlink", linkname: "../outside" },
          { name: "evil/pwned", data: "x" },
        ]),
      EscapeError,
      "outside the image",
    );
    await assertRejects(
      () =>
        apply(root, [
          { name: "d/", type: "dir" },
          { name: "d/up", type: "symlink", linkname: "../../../../.." },
          { name: "d/up/tmp/pwned", data: "x" },
        ]),
      EscapeError,
    );
    assertEquals([...Deno.readDirSync(`${tmp}/outside`)].length, 0);
    // A hard link to a file outside is refused as well.
    await assertRejects(
      () => apply(root, [{ name: "hl", type: "link", linkname: "../outside/f" }]),
      EscapeError,
    );
  });
});

Deno.test("applyTar: an absolute symlink resolves inside the image (as in a chroot)", async () => {
  await withTempDir(async (tmp) => {
    const root = `${tmp}/rootfs`;
    Deno.mkdirSync(root);
    await apply(root, [
      { name: "abs", type: "symlink", linkname: `${tmp}/host` },
      { name: "abs/file", data: "contained" },
    ]);
    assert(!exists(`${tmp}/host`), "nothing written on the host path");
    assertEquals(Deno.readTextFileSync(`${root}${tmp}/host/file`), "contained");
  });
});

Deno.test("applyTar: an existing symlink is replaced, not followed", async () => {
  await withTempDir(async (tmp) => {
    const root = `${tmp}/rootfs`;
    Deno.mkdirSync(root);
    Deno.writeTextFileSync(`${tmp}/victim`, "original");
    await apply(root, [
      { name: "x", type: "symlink", linkname: `${tmp}/victim` },
      { name: "x", data: "new" },
    ]);
    assertEquals(Deno.readTextFileSync(`${tmp}/victim`), "original");
    assert(Deno.lstatSync(`${root}/x`).isFile);
    assertEquals(Deno.readTextFileSync(`${root}/x`), "new");
  });
});

Deno.test("applyTar: layers with whiteouts and opaque directories", async () => {
  await withTempDir(async (root) => {
    await apply(root, [
      { name: "a/1", data: "1" },
      { name: "a/2", data: "2" },
      { name: "a/sub/deep", data: "d" },
      { name: "b/f", data: "f" },
      { name: "c", data: "c" },
      { name: "dir/x", data: "x" },
    ], true);
    await apply(root, [
      { name: "a/", type: "dir" },
      { name: "a/.wh..wh..opq" },
      { name: "a/3", data: "3" },
      { name: ".wh.c" },
      { name: "dir/.wh.x" },
      { name: "dir/y", data: "y" },
      // opaque marker after this layer's own entry keeps it
      { name: "b/g", data: "g" },
      { name: "b/.wh..wh..opq" },
    ], true);
    assertEquals(ls(root), ["a/", "a/3", "b/", "b/g", "dir/", "dir/y"]);
  });
});

Deno.test("applyTar: whiteout names are literal files outside layer mode", async () => {
  await withTempDir(async (root) => {
    await apply(root, [{ name: "keep", data: "k" }, { name: ".wh.keep" }]);
    assertEquals(ls(root), [".wh.keep", "keep"]);
  });
});

function exists(p: string): boolean {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

Deno.test("applyTar: a directory's mode is not applied through a symlink planted later", async () => {
  await withTempDir(async (tmp) => {
    const root = `${tmp}/rootfs`, victim = `${tmp}/victim`;
    Deno.mkdirSync(root);
    Deno.mkdirSync(`${victim}/x`, { recursive: true });
    Deno.chmodSync(`${victim}/x`, 0o755);
    // d/ and d/x/ first (their metadata is applied at the end), then d replaced by a link out.
    await apply(root, [
      { name: "d/", type: "dir", mode: 0o755 },
      { name: "d/x/", type: "dir", mode: 0o4777 },
      { name: "d", type: "symlink", linkname: victim },
    ]).catch(() => {});
    assertEquals(Deno.statSync(`${victim}/x`).mode! & 0o7777, 0o755);
  });
});

Deno.test("applyTar: a whiteout of '..' or '.' is refused", async () => {
  await withTempDir(async (tmp) => {
    const root = `${tmp}/rootfs`;
    Deno.mkdirSync(`${root}/a`, { recursive: true });
    Deno.writeTextFileSync(`${tmp}/keep`, "x");
    for (const name of ["a/.wh...", "a/.wh.."]) {
      await assertRejects(() => apply(root, [{ name, data: "" }], true), EscapeError);
    }
    assertEquals(Deno.readTextFileSync(`${tmp}/keep`), "x");
    assert(Deno.statSync(`${root}/a`).isDirectory);
  });
});

Deno.test("applyTar: a later entry replaces whatever an earlier one made at its path, of any type", async () => {
  await withTempDir(async (tmp) => {
    const root = `${tmp}/rootfs`;
    Deno.mkdirSync(root);
    Deno.writeTextFileSync(`${tmp}/victim`, "original");
    await apply(root, [
      { name: "f2d", data: "a file first" },
      { name: "f2d", type: "dir" },
      { name: "d2f", type: "dir" },
      { name: "d2f/child", data: "x" },
      { name: "d2f", data: "a file now" },
      { name: "f2s", data: "a file first" },
      { name: "f2s", type: "symlink", linkname: "target" },
      { name: "s2p", type: "symlink", linkname: `${tmp}/victim` },
      { name: "s2p", type: "fifo" },
      { name: "src", data: "linked" },
      { name: "s2h", type: "symlink", linkname: `${tmp}/victim` },
      { name: "s2h", type: "link", linkname: "src" },
      { name: "d2d", type: "dir", mode: 0o700 },
      { name: "d2d/kept", data: "kept" },
      { name: "d2d", type: "dir", mode: 0o755 },
    ]);
    assert(Deno.lstatSync(`${root}/f2d`).isDirectory);
    assertEquals(Deno.readTextFileSync(`${root}/d2f`), "a file now");
    assertEquals(Deno.readLinkSync(`${root}/f2s`), "target");
    assert(Deno.lstatSync(`${root}/s2p`).isFifo, "the fifo replaced the symlink");
    assertEquals(Deno.readTextFileSync(`${root}/s2h`), "linked");
    assertEquals(Deno.lstatSync(`${root}/s2h`).nlink, 2);
    // A directory met again is kept with what is in it, and takes the later mode.
    assertEquals(Deno.readTextFileSync(`${root}/d2d/kept`), "kept");
    assertEquals(Deno.statSync(`${root}/d2d`).mode! & 0o777, 0o755);
    assertEquals(Deno.readTextFileSync(`${tmp}/victim`), "original");
  });
});
