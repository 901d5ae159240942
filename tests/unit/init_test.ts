// Unit tests of runtime/init.ts's pure parts: HOME from the container's /etc/passwd.
import { homeFor, withHome } from "../../runtime/init.ts";
import { assertEquals } from "./fake_rootfs_ops.ts";

const PASSWD = [
  "root:x:0:0:root:/root:/bin/sh",
  "# a comment",
  "broken line",
  "app:x:1000:1000::/home/app:/bin/sh",
  "nohome:x:1001:1001:::/bin/sh",
  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
  "",
].join("\n");

Deno.test("homeFor: the uid's home; '/' without an entry, an empty home or a passwd file", () => {
  assertEquals(homeFor(PASSWD, 0), "/root");
  assertEquals(homeFor(PASSWD, 1000), "/home/app");
  assertEquals(homeFor(PASSWD, 65534), "/nonexistent");
  assertEquals(homeFor(PASSWD, 1001), "/");
  assertEquals(homeFor(PASSWD, 4242), "/");
  assertEquals(homeFor(undefined, 0), "/");
  assertEquals(homeFor("x:x::0::/weird:/bin/sh", 0), "/", "an empty uid field is no match");
});

Deno.test("withHome: a set HOME wins; missing or empty HOME comes from passwd, read only then", () => {
  let reads = 0;
  const read = () => {
    reads++;
    return PASSWD;
  };
  assertEquals(withHome(["PATH=/bin", "HOME=/custom"], 0, read), ["PATH=/bin", "HOME=/custom"]);
  assertEquals(reads, 0);
  assertEquals(withHome(["PATH=/bin"], 1000, read), ["PATH=/bin", "HOME=/home/app"]);
  assertEquals(withHome(["HOME=", "PATH=/bin"], 0, read), ["PATH=/bin", "HOME=/root"]);
  assertEquals(withHome([], 7, () => undefined), ["HOME=/"]);
});
