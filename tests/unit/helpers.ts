// Shared helpers of the unit tests: the assertions (tests/assert.ts, on node:assert/strict) and
// a temp directory that is always removed.
export {
  assert,
  assertEquals,
  AssertionError,
  assertMatch,
  assertNotEquals,
  assertRejects,
  assertStringIncludes,
  assertThrows,
  deepEqual,
} from "../assert.ts";

/** Runs `fn` with a fresh temp dir (its real path, no symlinks in it), removed afterwards. */
export async function withTempDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = Deno.realPathSync(await Deno.makeTempDir({ prefix: "capsule-unit-" }));
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
