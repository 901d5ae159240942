// Unit tests of image/run.ts imageFiles: the image's /etc/passwd and /etc/group as the
// container will see them, resolved inside the image (never on the host through a symlink),
// regular files only, at most 4 MiB; an image of layers read through their overlay (root).
import { imageFiles, MAX_IMAGE_FILE } from "../../image/run.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assertEquals, assertThrows, withTempDir } from "./helpers.ts";

const HOST_PASSWD = Deno.readTextFileSync("/etc/passwd");

function write(path: string, text: string): void {
  Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  Deno.writeTextFileSync(path, text);
}

Deno.test("image files: a symlinked /etc is resolved inside the image, never the host's", async () => {
  await withTempDir((tmp) => {
    // etc -> /etc: inside the image, a link to itself (podman: too many levels of symlinks).
    Deno.mkdirSync(`${tmp}/loop`);
    Deno.symlinkSync("/etc", `${tmp}/loop/etc`);
    assertEquals(imageFiles([`${tmp}/loop`], ["etc/passwd", "etc/group"]), [undefined, undefined]);
    // etc -> the image's own directory spelled as a host path, and etc -> ../../../../etc: both
    // are looked up inside the image (where the first is missing and the second a loop).
    for (const [name, target] of [["abs", `${tmp}/abs/real`], ["up", "../../../../../../etc"]]) {
      const l = `${tmp}/${name}`;
      write(`${l}/real/passwd`, "img:x:7:7::/:/bin/sh\n");
      Deno.symlinkSync(target, `${l}/etc`);
      const [p] = imageFiles([l], ["etc/passwd"]);
      assertEquals(p === HOST_PASSWD, false, `${name}: the host's /etc/passwd was read`);
      assertEquals(p, undefined, name);
    }
    // An absolute link inside the image resolves inside the image (as in the container).
    const l = `${tmp}/inroot`;
    write(`${l}/real/passwd`, "img:x:7:7::/:/bin/sh\n");
    Deno.mkdirSync(`${l}/etc`);
    Deno.symlinkSync("/real/passwd", `${l}/etc/passwd`);
    Deno.symlinkSync("../../../../../../real/passwd", `${l}/etc/group`);
    assertEquals(imageFiles([l], ["etc/passwd", "etc/group"]), [
      "img:x:7:7::/:/bin/sh\n",
      "img:x:7:7::/:/bin/sh\n",
    ]);
  });
});

Deno.test("image files: only a regular file is read (a FIFO does not hang, a directory is none)", async () => {
  await withTempDir((tmp) => {
    Deno.mkdirSync(`${tmp}/etc`);
    new Deno.Command("mkfifo", { args: [`${tmp}/etc/passwd`] }).outputSync();
    Deno.mkdirSync(`${tmp}/etc/group`);
    assertEquals(imageFiles([tmp], ["etc/passwd", "etc/group", "etc/none"]), [
      undefined,
      undefined,
      undefined,
    ]);
  });
});

Deno.test("image files: one over 4 MiB is refused, naming it", async () => {
  await withTempDir((tmp) => {
    write(`${tmp}/etc/group`, "root:x:0:\n");
    const f = Deno.openSync(`${tmp}/etc/passwd`, { write: true, create: true });
    f.truncateSync(MAX_IMAGE_FILE + 1);
    f.close();
    assertThrows(
      () => imageFiles([tmp], ["etc/passwd"]),
      CapsuleError,
      "The image's /etc/passwd is larger than 4 MiB",
    );
    Deno.truncateSync(`${tmp}/etc/passwd`, MAX_IMAGE_FILE);
    assertEquals(imageFiles([tmp], ["etc/group"]), ["root:x:0:\n"]);
    assertEquals(imageFiles([tmp], ["etc/passwd"])[0]?.length, MAX_IMAGE_FILE);
  });
});

Deno.test({
  name: "image files: layers are read as their overlay (top first, whiteouts, links across layers)",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await withTempDir((tmp) => {
      const [top, mid, base] = [`${tmp}/top`, `${tmp}/mid`, `${tmp}/base`];
      write(`${base}/etc/passwd`, "base:x:1:1::/:/bin/sh\n");
      write(`${base}/etc/group`, "base:x:1:\n");
      write(`${base}/usr/share/passwd`, "shared:x:5:5::/:/bin/sh\n");
      // mid: passwd replaced, group whited out (overlay form: a 0/0 character device).
      write(`${mid}/etc/passwd`, "mid:x:2:2::/:/bin/sh\n");
      const mk = new Deno.Command("mknod", { args: [`${mid}/etc/group`, "c", "0", "0"] })
        .outputSync();
      assertEquals(mk.success, true);
      Deno.mkdirSync(top);
      assertEquals(imageFiles([top, mid, base], ["etc/passwd", "etc/group"]), [
        "mid:x:2:2::/:/bin/sh\n",
        undefined,
      ]);
      // top: passwd is an absolute link to a file of the base layer: read from there.
      write(`${top}/etc/.keep`, "");
      Deno.symlinkSync("/usr/share/passwd", `${top}/etc/passwd`);
      assertEquals(imageFiles([top, mid, base], ["etc/passwd"]), ["shared:x:5:5::/:/bin/sh\n"]);
      // top: etc -> /etc replaces the directory: a loop inside the image, never the host's.
      Deno.removeSync(`${top}/etc`, { recursive: true });
      Deno.symlinkSync("/etc", `${top}/etc`);
      assertEquals(imageFiles([top, mid, base], ["etc/passwd", "etc/group"]), [
        undefined,
        undefined,
      ]);
    });
  },
});

Deno.test({
  name: "image files: many layers (a lowerdir longer than fsconfig's 255 bytes) are read too",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    await withTempDir((tmp) => {
      const lowers = Array.from({ length: 8 }, (_, i) => `${tmp}/${String(i).repeat(60)}`);
      for (const l of lowers) Deno.mkdirSync(l);
      write(`${lowers[7]}/etc/passwd`, "deep:x:9:9::/:/bin/sh\n");
      write(`${lowers[3]}/etc/group`, "mid:x:3:\n");
      assertEquals(imageFiles(lowers, ["etc/passwd", "etc/group"]), [
        "deep:x:9:9::/:/bin/sh\n",
        "mid:x:3:\n",
      ]);
    });
  },
});
