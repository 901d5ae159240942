// Unit tests of cli/output.ts: the --log/--debug line formats (runc's), tables.
import { assertEquals, assertMatch } from "../helpers.ts";
import { Logger, table } from "../../cli/output.ts";

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
