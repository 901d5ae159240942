// Unit tests of cli/output.ts: the --log/--debug line formats (runc's), tables.
import { assertEquals, assertMatch } from "../helpers.ts";
import { Logger, pidFileOption, table } from "../../cli/output.ts";
import { CapsuleError } from "../../runtime/errors.ts";

Deno.test("Logger: --debug without --log writes runc's text lines to stderr", () => {
  const lines: string[] = [];
  const log = new Logger(undefined, "text", true, (l) => lines.push(l));
  log.debug('create: "init spawned"');
  assertEquals(lines.length, 1);
  assertMatch(
    lines[0],
    /^time="\d{4}-\d\d-\d\dT[0-9:.]+Z" level=debug msg="create: \\"init spawned\\""$/,
  );
});

Deno.test("Logger: --debug --log-format json without --log writes JSON lines to stderr", () => {
  const lines: string[] = [];
  new Logger(undefined, "json", true, (l) => lines.push(l)).debug("step");
  const o = JSON.parse(lines[0]);
  assertEquals([o.level, o.msg, typeof o.time], ["debug", "step", "string"]);
});

Deno.test("Logger: with --log, debug lines go to the file only; without --debug, none", () => {
  const file = Deno.makeTempFileSync();
  try {
    const lines: string[] = [];
    new Logger(file, "text", true, (l) => lines.push(l)).debug("to the file");
    new Logger(undefined, "text", false, (l) => lines.push(l)).debug("nowhere");
    assertEquals(lines, []);
    assertMatch(Deno.readTextFileSync(file), /level=debug msg="to the file"\n$/);
  } finally {
    Deno.removeSync(file);
  }
});

Deno.test("table: columns padded like Go's tabwriter", () => {
  assertEquals(table(["A", "BB"], [["xyz", "1"]]), "A     BB\nxyz   1");
});

Deno.test("pidFileOption: a --pid-file whose directory is missing is refused up front", () => {
  assertEquals(pidFileOption(undefined), undefined);
  assertEquals(pidFileOption("pid.txt"), "pid.txt");
  assertEquals(pidFileOption("/tmp/capsule.pid"), "/tmp/capsule.pid");
  for (const bad of ["/nonexistent/dir/pid", "/tmp/", "/etc/hostname/pid"]) {
    let err: unknown;
    try {
      pidFileOption(bad);
    } catch (e) {
      err = e;
    }
    assertEquals(err instanceof CapsuleError, true, bad);
    assertMatch((err as Error).message, /^Invalid --pid-file ".*": directory ".*" does not exist/);
  }
});
