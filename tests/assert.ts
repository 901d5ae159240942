// The assertions of every test: thin wrappers over Node's `node:assert/strict` (built into
// Deno), keeping the call signatures the tests were written against. Equality is
// `deepStrictEqual`: key order does not matter, but a key holding `undefined` differs from a
// missing key, a Map or Set is compared by content, and types are never coerced.
import * as nodeAssert from "node:assert/strict";

/** Thrown by every failed assertion (Node's AssertionError). */
export const AssertionError = nodeAssert.AssertionError;

/** Deep strict equality (`node:assert` rules), without throwing. */
export function deepEqual(a: unknown, b: unknown): boolean {
  try {
    nodeAssert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

/** `actual` is truthy. */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  nodeAssert.ok(cond, msg);
}

/** Deep strict equality; `msg` is put before the diff Node prints. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  try {
    nodeAssert.deepStrictEqual(actual, expected);
  } catch (e) {
    if (msg && e instanceof AssertionError) e.message = `${msg}: ${e.message}`;
    throw e;
  }
}

/** Not deeply strictly equal. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, msg);
}

/** `actual` matches `re`. */
export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  try {
    nodeAssert.match(actual, re);
  } catch (e) {
    if (msg && e instanceof AssertionError) e.message = `${msg}: ${e.message}`;
    throw e;
  }
}

/** `actual` contains `part`. */
export function assertStringIncludes(actual: string, part: string, msg?: string): void {
  nodeAssert.equal(typeof actual, "string", msg);
  nodeAssert.ok(
    actual.includes(part),
    `${msg ? msg + ": " : ""}expected ${JSON.stringify(actual)} to include ${JSON.stringify(part)}`,
  );
}

// deno-lint-ignore no-explicit-any
type ErrorClass<E extends Error> = new (...args: any[]) => E;

function checkError<E extends Error>(thrown: unknown, cls?: ErrorClass<E>, includes?: string): E {
  nodeAssert.ok(thrown instanceof Error, `thrown value is not an Error: ${Deno.inspect(thrown)}`);
  if (cls) {
    nodeAssert.ok(
      thrown instanceof cls,
      `expected ${cls.name}, got ${thrown.name}: ${thrown.message}`,
    );
  }
  if (includes !== undefined) {
    nodeAssert.ok(
      thrown.message.includes(includes),
      `expected the message to include ${JSON.stringify(includes)}, got ${
        JSON.stringify(thrown.message)
      }`,
    );
  }
  return thrown as E;
}

/** `fn` throws (an instance of `cls`, with `includes` in its message); returns the error. */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  cls?: ErrorClass<E>,
  includes?: string,
): E {
  let thrown: unknown;
  nodeAssert.throws(fn, (e: unknown) => {
    thrown = e;
    return true;
  });
  return checkError(thrown, cls, includes);
}

/**
 * `fn` fails: its promise rejects, or it throws before making one (an instance of `cls`, with
 * `includes` in the message); returns the error.
 */
export async function assertRejects<E extends Error = Error>(
  fn: () => Promise<unknown>,
  cls?: ErrorClass<E>,
  includes?: string,
): Promise<E> {
  let thrown: unknown;
  await nodeAssert.rejects(async () => await fn(), (e: unknown) => {
    thrown = e;
    return true;
  });
  return checkError(thrown, cls, includes);
}
