// Unit tests of capsule update's flags (cli/resources.ts): runc's names and units.
import { assertEquals } from "../helpers.ts";
import { parseInterval, resourcesFromFlags } from "../../cli/resources.ts";
import { parseFlags } from "../../cli/parse.ts";
import { resourceCommands } from "../../cli/resources.ts";
import { CapsuleError } from "../../runtime/errors.ts";

const update = resourceCommands(() => {
  throw new Error("not used");
}).find((c) => c.name === "update")!;

const flagsOf = (argv: string[]) => parseFlags(argv, update.flags!, undefined, "update").flags;

Deno.test("update: runc's flag names (--cpu-share, --cpu-rt-*, --blkio-weight, -r)", async () => {
  const r = await resourcesFromFlags(flagsOf([
    "--cpu-share",
    "200",
    "--cpu-rt-period",
    "900000",
    "--cpu-rt-runtime",
    "500",
    "--blkio-weight",
    "300",
    "--memory",
    "64m",
  ]));
  assertEquals(r.cpu, { shares: 200, realtimePeriod: 900000, realtimeRuntime: 500 });
  assertEquals(r.blockIO, { weight: 300 });
  assertEquals(r.memory?.limit, 64 * 1024 * 1024);
  const file = Deno.makeTempFileSync();
  try {
    Deno.writeTextFileSync(file, JSON.stringify({ pids: { limit: 10 } }));
    assertEquals((await resourcesFromFlags(flagsOf(["-r", file]))).pids, { limit: 10 });
  } finally {
    Deno.removeSync(file);
  }
});

Deno.test("update: Intel RDT schemas are refused by name", async () => {
  let err: unknown;
  try {
    await resourcesFromFlags(flagsOf(["--l3-cache-schema", "L3:0=f", "--memory", "1m"]));
  } catch (e) {
    err = e;
  }
  assertEquals(err instanceof CapsuleError, true);
  assertEquals((err as Error).message.startsWith("--l3-cache-schema: Intel RDT"), true);
});

Deno.test("events --interval: Go durations as runc takes them, or seconds", () => {
  assertEquals(parseInterval("5s"), 5);
  assertEquals(parseInterval("100ms"), 0.1);
  assertEquals(parseInterval("1m30s"), 90);
  assertEquals(parseInterval("1.5h"), 5400);
  assertEquals(parseInterval("2"), 2);
  for (const bad of ["", "0s", "0", "-1s", "5 s", "5x", "s", "1e3", "Infinity"]) {
    let err: unknown;
    try {
      parseInterval(bad);
    } catch (e) {
      err = e;
    }
    assertEquals(err instanceof CapsuleError, true, bad);
  }
});
