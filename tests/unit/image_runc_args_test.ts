// Unit tests of `image runc`'s trailing options (the original tool's spelling).
import { trailingOptions } from "../../cli/image.ts";
import { UsageError } from "../../runtime/errors.ts";
import { assertEquals, assertThrows } from "./helpers.ts";

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
  const q = trailingOptions(["echo hi  there", "--name", "x"]);
  assertEquals([q.command, q.flags], [["echo", "hi", "there"], { name: "x" }]);
  assertEquals(trailingOptions(["--", "ls", "-l", "-d", "/"]), {
    command: ["ls", "-l", "-d", "/"],
    flags: {},
  });
  assertEquals(trailingOptions([]), { command: [], flags: {} });
});

Deno.test("image runc: an argument after the options, or an option without value, is refused", () => {
  assertThrows(() => trailingOptions(["echo", "-d", "hi"]), UsageError, "comes after the options");
  assertThrows(() => trailingOptions(["echo", "-id"]), UsageError, "needs a value");
  // Each refusal shows the spellings that need no guessing.
  for (const rest of [["echo", "-d", "hi"], ["echo", "-id"], ["sh", "-c", "10", "-n"]]) {
    assertThrows(() => trailingOptions(rest), UsageError, "put -- before the command");
  }
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

Deno.test("image runc: options taken are never silent; a -- before them ends the options", () => {
  // The reviewer's cases: each program flag that is also capsule's is named on stderr.
  for (
    const [rest, command, named] of [
      [["echo", "-e", "abc"], ["echo"], '"-e abc"'],
      [["sh", "-c", "10", "-rm"], ["sh"], '"-c 10 -rm"'],
      [["hostname", "-h", "x"], ["hostname"], '"-h x"'],
    ] as const
  ) {
    const t = trailingOptions([...rest]);
    assertEquals(t.command, [...command]);
    assertEquals(t.note?.includes(`taking ${named} as capsule's options`), true, t.note);
    assertEquals(t.note?.includes('"capsule image runc IMAGE -- CMD ARGS..."'), true, t.note);
    assertEquals(t.note?.includes('"capsule image run [OPTIONS] IMAGE CMD ARGS..."'), true);
    assertEquals(t.note?.includes("\n"), false);
  }
  // A -- anywhere before the first option: dropped, everything else is the program's; after the
  // command (where a program may mean it: grep -- -v f) the drop is said, never silent.
  const late = trailingOptions(["echo", "--", "-p", "80"]);
  assertEquals([late.command, late.flags], [["echo", "-p", "80"], {}]);
  assertEquals(late.note?.includes('dropping the "--" after "echo"'), true, late.note);
  assertEquals(
    trailingOptions(["grep", "--", "-v", "f"]).note?.includes("right after the image"),
    true,
  );
  assertEquals(trailingOptions(["sh", "-x", "--", "-c", "10"]).command, ["sh", "-x", "-c", "10"]);
  // No options taken: nothing to say.
  assertEquals(trailingOptions(["echo", "hi"]).note, undefined);
  assertEquals(trailingOptions(["--", "echo", "-d"]).note, undefined);
});
