// Unit tests of runtime/ids.ts: container ids that are safe as a single path component.
import { validateId } from "../../runtime/ids.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assertEquals, assertStringIncludes, assertThrows } from "./helpers.ts";

Deno.test("validateId: accepts letters, digits, '_', '.', '-' after a letter or digit", () => {
  for (const id of ["a", "A", "0", "web-1.2_x", "abc..def", "a-", "9.9", "a".repeat(128)]) {
    assertEquals(validateId(id), id);
  }
});

Deno.test("validateId: rejects empty, dot paths, slashes, bad first characters, too long", () => {
  const bad = [
    "",
    ".",
    "..",
    "a/b",
    "/abs",
    "../x",
    ".hidden",
    "-x",
    "_x",
    "a".repeat(129),
    "a b",
    "a\n",
    "\na",
    "a\0",
    "a\tb",
    "é",
    "a:b",
    "a*",
  ];
  for (const id of bad) {
    assertThrows(() => validateId(id), CapsuleError, JSON.stringify(id));
  }
});

Deno.test("validateId: the message says what is allowed and uses the given noun", () => {
  const e = assertThrows(() => validateId("a/b", "image name"), CapsuleError);
  assertStringIncludes(e.message, "image name");
  assertStringIncludes(e.message, "1-128");
});

Deno.test("validateId: a non-string (from untyped JSON) is rejected, not thrown as TypeError", () => {
  for (const v of [undefined, null, 42, ["a"]]) {
    assertThrows(() => validateId(v as unknown as string), CapsuleError);
  }
});
