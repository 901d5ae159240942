// Unit tests of `image runc`'s trailing options (the original tool's spelling).
import { trailingOptions } from "../../cli/image.ts";
import { UsageError } from "../../runtime/errors.ts";
import { assertEquals, assertThrows } from "./fake_rootfs_ops.ts";

Deno.test("image runc: options after the command, single-dash long names", () => {
  const t = trailingOptions([
    "redis-server",
    "--appendonly",
    "yes",
    "-id",
    "r1",
    "-d",
    "-p",
    "6379:6379",
    "-v",
    "/srv/r:/data",
    "-link",
    "db:db",
  ]);
  // --appendonly is not an option of image run: it stays the program's.
  assertEquals(t.command, ["redis-server", "--appendonly", "yes"]);
  assertEquals(t.flags, {
    id: "r1",
    detach: true,
    publish: ["6379:6379"],
    volume: ["/srv/r:/data"],
    link: ["db:db"],
  });
});

Deno.test("image runc: one quoted command is split; -- keeps a command whole", () => {
  assertEquals(trailingOptions(["echo hi  there", "--name", "x"]), {
    command: ["echo", "hi", "there"],
    flags: { name: "x" },
  });
  assertEquals(trailingOptions(["--", "ls", "-l", "-d", "/"]), {
    command: ["ls", "-l", "-d", "/"],
    flags: {},
  });
  assertEquals(trailingOptions([]), { command: [], flags: {} });
});

Deno.test("image runc: an argument after the options, or an option without value, is refused", () => {
  assertThrows(() => trailingOptions(["echo", "-d", "hi"]), UsageError, "comes after the options");
  assertThrows(() => trailingOptions(["echo", "-id"]), UsageError, "needs a value");
});

Deno.test("image runc: -p after the command is capsule's; after -- it is the program's", () => {
  const t = trailingOptions(["echo", "-p", "80"]);
  assertEquals(t.command, ["echo"]);
  assertEquals(t.flags.publish, ["80"]);
  assertEquals(trailingOptions(["--", "echo", "-p", "80"]), {
    command: ["echo", "-p", "80"],
    flags: {},
  });
});
