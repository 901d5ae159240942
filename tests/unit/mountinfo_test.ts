// Unit tests of runtime/mountinfo.ts: parsing /proc/self/mountinfo.
import { parseMountinfo } from "../../runtime/mountinfo.ts";
import { assertEquals } from "./helpers.ts";

const TEXT = [
  "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
  "23 22 0:21 / /proc rw,nosuid - proc proc rw",
  "24 22 0:5 / /a\\040dir rw - tmpfs tmpfs rw",
  "25 22 0:40 /sub /srv/b/rootfs rw master:3 - ext4 /dev/vdb rw",
  "26 25 0:41 / /srv/b/rootfs/proc rw - proc proc rw",
  "27 22 0:42 / /srv/other rw - tmpfs tmpfs rw",
  "28 27 0:43 / /srv/other/deep rw - tmpfs tmpfs rw",
  "garbage",
  "",
].join("\n");

Deno.test("parseMountinfo: ids, root, unescaped mount point, fs type after the separator", () => {
  const t = parseMountinfo(TEXT);
  assertEquals(t.length, 7);
  assertEquals(t[2], { id: 24, parent: 22, root: "/", mountPoint: "/a dir", fsType: "tmpfs" });
  assertEquals(t[3], {
    id: 25,
    parent: 22,
    root: "/sub",
    mountPoint: "/srv/b/rootfs",
    fsType: "ext4",
  });
});
