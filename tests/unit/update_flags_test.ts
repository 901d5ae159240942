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

Deno.test("update: integers past 2^53-1 are exact, from a --resources file and from the flags, as runc reads them", async () => {
  const file = Deno.makeTempFileSync();
  try {
    Deno.writeTextFileSync(
      file,
      '{"memory": {"limit": 9223372036854775807, "swap": -1}, "cpu": {"realtimePeriod": ' +
        '18446744073709551615}, "hugepageLimits": [{"pageSize": "2MB", "limit": 18446744073709551614}]}',
    );
    const r = await resourcesFromFlags(flagsOf(["-r", file]));
    assertEquals(r.memory, { limit: 9223372036854775807n, swap: -1 });
    assertEquals(r.cpu, { realtimePeriod: 18446744073709551615n });
    assertEquals(r.hugepageLimits, [{ pageSize: "2MB", limit: 18446744073709551614n }]);
  } finally {
    Deno.removeSync(file);
  }
  const f = await resourcesFromFlags(flagsOf([
    "--memory",
    "9223372036854775807",
    "--memory-swap",
    "9223372036854775807",
    "--pids-limit",
    "9223372036854775807",
    "--cpu-quota",
    "-9223372036854775808",
    "--cpu-rt-period",
    "18446744073709551615",
  ]));
  assertEquals(f.memory, { limit: 9223372036854775807n, swap: 9223372036854775807n });
  assertEquals(f.pids, { limit: 9223372036854775807n });
  assertEquals(f.cpu, { quota: -9223372036854775808n, realtimePeriod: 18446744073709551615n });
});
