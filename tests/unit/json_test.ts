// runtime/json.ts: config.json's integers read exactly (the runtime spec's int64 and uint64
// fields go past 2^53-1, where JSON.parse reads the nearest double), and written back exactly.
import { parseJson, stringifyJson } from "../../runtime/json.ts";
import { assertEquals, assertThrows } from "./helpers.ts";

Deno.test("parseJson: an integer literal past 2^53-1 is a bigint of its exact value; the others are JSON.parse's", () => {
  const text = `{"limit": 9223372036854775807, "min": -9223372036854775808,
    "u64": 18446744073709551615, "past": 184467440737095516160, "safe": 9007199254740991,
    "unsafe": 9007199254740993, "neg": -9007199254740993, "small": 1024, "minus": -1,
    "zero": -0, "frac": 12345678901234567.5, "exp": 1.8446744073709552e19, "big": 1e400,
    "s": "18446744073709551615", "list": [9223372036854775807, 1, 2.5, null, true]}`;
  const v = parseJson(text) as Record<string, unknown>;
  assertEquals(v.limit, 9223372036854775807n);
  assertEquals(v.min, -9223372036854775808n);
  assertEquals(v.u64, 18446744073709551615n);
  assertEquals(v.past, 184467440737095516160n);
  assertEquals(v.safe, 9007199254740991); // the largest safe integer stays a number
  assertEquals(v.unsafe, 9007199254740993n);
  assertEquals(v.neg, -9007199254740993n);
  assertEquals(v.small, 1024);
  assertEquals(v.minus, -1);
  assertEquals(Object.is(v.zero, -0), true);
  // A fraction or an exponent is a double, as JSON.parse reads it (the schema judges it).
  assertEquals(v.frac, 12345678901234567.5);
  assertEquals(v.exp, 2 ** 64);
  assertEquals(v.big, Infinity);
  assertEquals(v.s, "18446744073709551615"); // strings are never numbers
  assertEquals(v.list, [9223372036854775807n, 1, 2.5, null, true]);
});

Deno.test("parseJson: a text without a run of 16 digits is JSON.parse's; bad JSON throws its SyntaxError", () => {
  const text = '{"a": [1, -2, 3.5e3, "123456789012345"], "b": {"c": 123456789012345}}';
  assertEquals(parseJson(text), JSON.parse(text));
  // 16 digits in a string only: the same values too.
  const s = '{"id": "1234567890123456789", "n": 5}';
  assertEquals(parseJson(s), JSON.parse(s));
  for (const bad of ["", "{", '{"a": 12345678901234567890,}', "[1] x"]) {
    assertThrows(() => parseJson(bad), SyntaxError);
  }
});

Deno.test("stringifyJson: a bigint is written as its exact integer and read back the same; without one, JSON.stringify's text", () => {
  const v = {
    limit: 9223372036854775807n,
    neg: -9223372036854775808n,
    u64: 18446744073709551615n,
    list: [1, 18446744073709551614n, "x"],
    nested: { n: 2.5, b: 12n },
  };
  const text = stringifyJson(v);
  assertEquals(
    text,
    '{"limit":9223372036854775807,"neg":-9223372036854775808,"u64":18446744073709551615,' +
      '"list":[1,18446744073709551614,"x"],"nested":{"n":2.5,"b":12}}',
  );
  assertEquals(parseJson(text), { ...v, nested: { n: 2.5, b: 12 } });
  assertEquals(
    stringifyJson({ a: 18446744073709551615n, b: [1, 9223372036854775807n] }, 2),
    '{\n  "a": 18446744073709551615,\n  "b": [\n    1,\n    9223372036854775807\n  ]\n}',
  );
  const plain = { a: [1, "b", null], c: { d: true } };
  assertEquals(stringifyJson(plain), JSON.stringify(plain));
  assertEquals(stringifyJson(plain, 2), JSON.stringify(plain, null, 2));
  assertEquals(stringifyJson(5n), "5");
  // A cycle is still JSON.stringify's TypeError.
  const cyclic: Record<string, unknown> = { n: 1n };
  cyclic.self = cyclic;
  assertThrows(() => stringifyJson(cyclic), TypeError);
});
