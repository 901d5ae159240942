// Unit tests of capsule ps's table (cli/process.ts): runc's contract, ps(1) lines filtered to
// the container's pids.
import { assertEquals } from "../helpers.ts";
import { psLinesOf } from "../../cli/process.ts";
import { CapsuleError } from "../../runtime/errors.ts";

const EF = `UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 05:36 ?        00:00:01 /sbin/init
root         812     700  0 05:40 pts/0    00:00:00 sh
1000         813     812  0 05:40 pts/0    00:00:00 sleep 1h
root        8120       1  0 05:41 ?        00:00:00 other
`;

Deno.test("ps: the header and the container's lines, matched on the PID column only", () => {
  assertEquals(
    psLinesOf(EF, [812, 813], ["-ef"]).split("\n"),
    [EF.split("\n")[0], EF.split("\n")[2], EF.split("\n")[3]],
  );
  // 812 is also a PPID and a prefix of 8120: neither matches.
  assertEquals(psLinesOf(EF, [700], ["-ef"]).split("\n").length, 1);
});

Deno.test("ps: other options move the PID column (ps -e -x)", () => {
  const ex = "    PID TTY      STAT   TIME COMMAND\n      1 ?        Ss     0:01 /sbin/init\n" +
    "    812 pts/0    Ss+    0:00 sh\n";
  assertEquals(psLinesOf(ex, [812], ["-e", "-x"]).split("\n").length, 2);
});

Deno.test("ps: options without a PID column are an error naming them", () => {
  let err: unknown;
  try {
    psLinesOf("CMD\nsh\n", [1], ["-o", "cmd"]);
  } catch (e) {
    err = e;
  }
  assertEquals(err instanceof CapsuleError, true);
  assertEquals((err as Error).message.includes("ps -o cmd prints no PID column"), true);
});
