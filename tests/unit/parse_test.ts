// Unit tests of cli/parse.ts: the flag parser (Go flag / runc conventions) and help text.
import { type CommandDef, type FlagDef, helpText, parseFlags } from "../../cli/parse.ts";
import { UsageError } from "../../runtime/errors.ts";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "./helpers.ts";

const DEFS: FlagDef[] = [
  { name: "bundle", short: "b", type: "string", help: "path to the bundle", arg: "DIR" },
  { name: "detach", short: "d", type: "boolean", help: "detach from the container" },
  { name: "env", short: "e", type: "list", help: "set an environment variable", arg: "KEY=VAL" },
  { name: "pid-file", type: "string", help: "write the pid here", arg: "FILE" },
  { name: "tty", short: "t", type: "boolean", help: "allocate a terminal" },
  { name: "secret", type: "boolean", help: "not shown", hidden: true },
];

Deno.test("parseFlags: --flag value and --flag=value", () => {
  assertEquals(parseFlags(["--bundle", "/b", "ctr"], DEFS), {
    flags: { bundle: "/b" },
    args: ["ctr"],
  });
  assertEquals(parseFlags(["--bundle=/b", "ctr"], DEFS), {
    flags: { bundle: "/b" },
    args: ["ctr"],
  });
  // Only the first '=' splits: the value may hold more.
  assertEquals(parseFlags(["--bundle=/a=b"], DEFS).flags.bundle, "/a=b");
  // An empty value after '=' is a value.
  assertEquals(parseFlags(["--bundle="], DEFS).flags.bundle, "");
});

Deno.test("parseFlags: short flags take their value from the next argument", () => {
  assertEquals(parseFlags(["-b", "/b", "ctr"], DEFS), { flags: { bundle: "/b" }, args: ["ctr"] });
  assertEquals(parseFlags(["-b=/b"], DEFS).flags.bundle, "/b");
});

Deno.test("parseFlags: single-dash long names are accepted (Go's flag package does)", () => {
  assertEquals(parseFlags(["-bundle", "/b", "-detach"], DEFS).flags, {
    bundle: "/b",
    detach: true,
  });
  assertEquals(parseFlags(["-pid-file=/p"], DEFS).flags, { "pid-file": "/p" });
});

Deno.test("parseFlags: a value that starts with '-' is still the value of the flag before it", () => {
  assertEquals(parseFlags(["--bundle", "-weird-dir"], DEFS).flags.bundle, "-weird-dir");
});

Deno.test("parseFlags: booleans need no value; --bool=true/false set them explicitly", () => {
  assertEquals(parseFlags(["-d", "ctr"], DEFS), { flags: { detach: true }, args: ["ctr"] });
  assertEquals(parseFlags(["--detach", "ctr"], DEFS).flags.detach, true);
  assertEquals(parseFlags(["--detach=false", "ctr"], DEFS), {
    flags: { detach: false },
    args: ["ctr"],
  });
  assertEquals(parseFlags(["--detach=true"], DEFS).flags.detach, true);
  // A boolean does not swallow the next argument.
  assertEquals(parseFlags(["--tty", "false"], DEFS), { flags: { tty: true }, args: ["false"] });
});

Deno.test("parseFlags: --bool=<not true/false> is a UsageError", () => {
  assertThrows(() => parseFlags(["--detach=yes"], DEFS), UsageError, "--detach");
});

Deno.test("parseFlags: flags not given are absent", () => {
  const r = parseFlags(["ctr"], DEFS);
  assertEquals(r.flags.detach, undefined);
  assertEquals(r.flags.bundle, undefined);
  assertEquals(Object.keys(r.flags), []);
});

Deno.test("parseFlags: a list flag repeats and keeps order; a string flag keeps the last", () => {
  const r = parseFlags(["-e", "A=1", "--env", "B=2", "--env=C=3", "ctr"], DEFS);
  assertEquals(r.flags.env, ["A=1", "B=2", "C=3"]);
  assertEquals(r.args, ["ctr"]);
  assertEquals(parseFlags(["-b", "/x", "-b", "/y"], DEFS).flags.bundle, "/y");
});

Deno.test("parseFlags: flags and positionals may be interleaved", () => {
  assertEquals(parseFlags(["ctr", "-d", "extra", "--bundle", "/b"], DEFS), {
    flags: { detach: true, bundle: "/b" },
    args: ["ctr", "extra"],
  });
});

Deno.test("parseFlags: '--' ends the options; everything after is positional", () => {
  assertEquals(parseFlags(["-d", "--", "--bundle", "-x", "--"], DEFS), {
    flags: { detach: true },
    args: ["--bundle", "-x", "--"],
  });
});

Deno.test("parseFlags: an unknown flag is a UsageError naming it", () => {
  assertThrows(() => parseFlags(["--nope"], DEFS), UsageError, "--nope");
  assertThrows(() => parseFlags(["-z"], DEFS), UsageError, "-z");
  assertThrows(() => parseFlags(["--nope=1"], DEFS), UsageError, "--nope");
  // The error names the command it came from.
  assertThrows(
    () => parseFlags(["--nope"], DEFS, undefined, "capsule run"),
    UsageError,
    "capsule run",
  );
});

Deno.test("parseFlags: one-letter flags combine as docker's do (-it, -dt, -de K=V)", () => {
  assertEquals(parseFlags(["-dt", "ctr"], DEFS), {
    flags: { detach: true, tty: true },
    args: ["ctr"],
  });
  // The last letter may take a value, from the next argument.
  assertEquals(parseFlags(["-de", "K=V", "ctr"], DEFS), {
    flags: { detach: true, env: ["K=V"] },
    args: ["ctr"],
  });
  assertEquals(parseFlags(["-tdb", "/b"], DEFS).flags, { tty: true, detach: true, bundle: "/b" });
  // A value flag before the last letter, an unknown letter, or '=': the whole token is unknown.
  assertThrows(() => parseFlags(["-ed", "K=V"], DEFS), UsageError, "unknown flag -ed");
  assertThrows(() => parseFlags(["-dz"], DEFS), UsageError, "unknown flag -dz");
  assertThrows(() => parseFlags(["-dt=true"], DEFS), UsageError, "unknown flag -dt");
  // A single-dash long name is never split (image runc's -id NAME).
  const withId: FlagDef[] = [
    ...DEFS,
    { name: "id", type: "string", help: "id" },
    { name: "interactive", short: "i", type: "boolean", help: "stdin" },
  ];
  assertEquals(parseFlags(["-id", "x"], withId).flags, { id: "x" });
  assertEquals(parseFlags(["-it", "x"], withId), {
    flags: { interactive: true, tty: true },
    args: ["x"],
  });
});

Deno.test("parseFlags: a value flag at the end with no value is a UsageError", () => {
  assertThrows(() => parseFlags(["ctr", "--bundle"], DEFS), UsageError, "--bundle");
  assertThrows(() => parseFlags(["-e"], DEFS), UsageError, "-e");
});

Deno.test("parseFlags: negative numbers and a lone '-' are positionals (kill ctr -9)", () => {
  assertEquals(parseFlags(["ctr", "-9"], DEFS), { flags: {}, args: ["ctr", "-9"] });
  assertEquals(parseFlags(["-15", "-"], DEFS), { flags: {}, args: ["-15", "-"] });
});

Deno.test("parseFlags: stopAfter keeps the program's own flags positional (exec-style)", () => {
  assertEquals(parseFlags(["ctr", "ls", "-l"], DEFS, 1), { flags: {}, args: ["ctr", "ls", "-l"] });
  // Flags before the stop point are still ours; after it, even known flags belong to the program.
  assertEquals(parseFlags(["-t", "ctr", "sh", "-c", "--tty", "-d"], DEFS, 1), {
    flags: { tty: true },
    args: ["ctr", "sh", "-c", "--tty", "-d"],
  });
  // Unknown flags after the stop point are not errors.
  assertEquals(parseFlags(["ctr", "--zzz"], DEFS, 1).args, ["ctr", "--zzz"]);
  // '--' before the stop point still ends options (and is dropped).
  assertEquals(parseFlags(["--", "-d"], DEFS, 1).args, ["-d"]);
  // With stopAfter 2 the second positional is ours too (image run IMAGE ID -- program...).
  assertEquals(parseFlags(["img", "-d", "ctr", "-d"], DEFS, 2), {
    flags: { detach: true },
    args: ["img", "ctr", "-d"],
  });
});

Deno.test("parseFlags: does not modify argv", () => {
  const argv = ["-e", "A=1", "ctr", "--", "x"];
  const copy = [...argv];
  parseFlags(argv, DEFS);
  assertEquals(argv, copy);
});

// ---------------------------------------------------------------------------------------------
// helpText

const RUN: CommandDef = {
  name: "run",
  summary: "create and start a container",
  usage: "<container-id>",
  flags: DEFS,
  args: [1, 1],
};

const GLOBALS: FlagDef[] = [
  { name: "root", type: "string", help: "state directory", arg: "DIR" },
  { name: "debug", type: "boolean", help: "debug output" },
];

Deno.test("helpText: a command's usage line, summary and visible flags", () => {
  const h = helpText(RUN, ["capsule", "run"], GLOBALS);
  assertStringIncludes(h, "capsule run - create and start a container");
  assertStringIncludes(h, "Usage: capsule run [options] <container-id>");
  assertStringIncludes(h, "-b, --bundle DIR");
  assertStringIncludes(h, "path to the bundle");
  assertStringIncludes(h, "-d, --detach");
  assertStringIncludes(h, "--pid-file FILE");
  assert(!h.includes("--detach VALUE"), "a boolean flag shows no argument");
  assert(/--env KEY=VAL +set an environment variable \(repeatable\)/.test(h), "list is repeatable");
  assert(!h.includes("--secret"), "hidden flags are not shown");
  // Below the top level, global options are not repeated.
  assert(!h.includes("--root"), "no global options in a subcommand's help");
});

Deno.test("helpText: the top level lists subcommands and global options", () => {
  const top: CommandDef = {
    name: "capsule",
    summary: "a container runtime",
    subcommands: [RUN, { name: "delete", summary: "delete a container" }],
  };
  const h = helpText(top, ["capsule"], GLOBALS);
  assertStringIncludes(h, "Usage: capsule");
  assertStringIncludes(h, "Commands:");
  assert(/\n\s+run\s+create and start a container/.test(h), "run listed with its summary");
  assert(/\n\s+delete\s+delete a container/.test(h), "delete listed with its summary");
  assertStringIncludes(h, "Global options:");
  assertStringIncludes(h, "--root DIR");
  assertStringIncludes(h, "--debug");
});

Deno.test("helpText: a command without flags has no '[options]' and no options section", () => {
  const h = helpText(
    { name: "state", summary: "show state", usage: "<id>" },
    ["capsule", "state"],
    GLOBALS,
  );
  assertStringIncludes(h, "Usage: capsule state <id>");
  assert(!h.includes("[options]"), "no [options]");
  assert(!h.includes("Options:"), "no options section");
});
