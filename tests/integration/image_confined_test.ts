// image run never reaches the host through an image or a -v: the image's user is looked up in
// the image's own /etc/passwd (an `etc` that links to /etc is the image's, a loop, never the
// host's), and a -v of the store, the state root or a directory holding either is refused,
// leaving nothing behind.
import { assertEquals, assertMatch, rootTest, withImage } from "../helpers.ts";

const entries = (dir: string) => {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
};

rootTest(
  "image run: an image whose etc links to /etc never gets the host's users",
  async (root) => {
    await withImage(async (c, _store, tmp) => {
      const h1 = `${tmp}/h1`;
      const cp = await new Deno.Command("cp", { args: ["-a", `${tmp}/rootfs`, h1] }).output();
      assertEquals(cp.success, true);
      Deno.removeSync(`${h1}/etc`, { recursive: true });
      Deno.symlinkSync("/etc", `${h1}/etc`);
      const tar = await new Deno.Command("tar", { args: ["-C", h1, "-cf", `${tmp}/h1.tar`, "."] })
        .output();
      assertEquals(tar.success, true);
      assertEquals((await c("image", "create", "h1", `${tmp}/h1.tar`)).code, 0);
      // root is in the host's /etc/passwd; inside the image /etc is a link to itself.
      const r = await c("image", "run", "--rm", "-u", "root", "h1", "sh", "-c", "id");
      assertEquals(r.code, 1, `the host's /etc/passwd was read: ${r.stdout}`);
      assertMatch(r.stderr, /User "root" is not in the image's \/etc\/passwd/);
      // Numbers need no lookup.
      const n = await c("image", "run", "--rm", "-u", "7:8", "h1", "sh", "-c", "id -u; id -g");
      assertEquals([n.code, n.stdout], [0, "7\n8\n"], n.stderr);
      // The image's own users are still found (busybox's rootfs).
      const b = await c("image", "run", "--rm", "-u", "root", "bb", "id", "-u");
      assertEquals([b.code, b.stdout], [0, "0\n"], b.stderr);
    }, root);
  },
);

rootTest(
  "image run -v: the store and the state root are refused, nothing left",
  async (root) => {
    await withImage(async (c, store, tmp) => {
      Deno.symlinkSync(root, `${tmp}/rootlink`);
      const cases: [string, RegExp][] = [
        [`${store}/images`, /is inside capsule's store/],
        [root, /is inside capsule's state root .*\(--root\)/],
        [`${tmp}/rootlink/sub`, /is inside capsule's state root/],
      ];
      for (const [src, why] of cases) {
        const r = await c("image", "run", "--rm", "--id", "v1", "-v", `${src}:/x`, "bb", "true");
        assertEquals(r.code, 1, `${src}: ${r.stdout}${r.stderr}`);
        assertMatch(r.stderr, why, src);
        assertEquals(entries(`${store}/containers`), [], src);
        assertEquals(entries(root).filter((e) => e === "v1"), [], src);
      }
      assertEquals(entries(`${root}`).includes("sub"), false);
      // A directory of the user's beside them is bound as before.
      Deno.mkdirSync(`${tmp}/data`);
      Deno.writeTextFileSync(`${tmp}/data/f`, "mine\n");
      const ok = await c("image", "run", "--rm", "-v", `${tmp}/data:/x`, "bb", "cat", "/x/f");
      assertEquals([ok.code, ok.stdout], [0, "mine\n"], ok.stderr);
    }, root);
  },
);
