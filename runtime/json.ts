// JSON with exact integers. The runtime spec's int64 and uint64 fields (memory limits, rlimits,
// seccomp argument values) go past 2^53-1, where JSON.parse gives the nearest double: another
// number than the file's. runc (Go) reads them exactly; so does capsule, with parseJson, and it
// writes them back exactly with stringifyJson.

/** A run of 16 digits: no integer literal past 2^53-1 (9007199254740991, 16 digits) is shorter. */
const LONG_RUN = /\d{16}/;
const INTEGER = /^-?\d+$/;

/**
 * JSON.parse that keeps integers exact: an integer literal (no fraction, no exponent) past
 * 2^53-1 in magnitude is a bigint of its exact value, as Go reads an int64 or uint64; every
 * other value is JSON.parse's (a literal with a fraction or an exponent stays a double). For
 * config.json, a --process file and a resources file, and for what capsule writes from them.
 * Plain JSON.parse, without a reviver, unless the text holds a run of 16 digits. Throws
 * JSON.parse's SyntaxError.
 */
export function parseJson(text: string): unknown {
  return LONG_RUN.test(text) ? JSON.parse(text, exactInteger) : JSON.parse(text);
}

/** JSON.parse's reviver with the literal's source text (V8: JSON.parse source text access). */
function exactInteger(_key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value !== "number" || Number.isSafeInteger(value)) return value;
  const source = context?.source;
  return source !== undefined && INTEGER.test(source) ? BigInt(source) : value;
}

/**
 * JSON.stringify that writes a bigint (parseJson's) as its exact integer, which parseJson reads
 * back as the same bigint, where JSON.stringify throws a TypeError. The replacer runs only when
 * there is one: JSON.stringify's speed otherwise. Other TypeErrors (a cycle) are thrown.
 */
export function stringifyJson(value: unknown, space?: number): string {
  try {
    return JSON.stringify(value, null, space);
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
    return JSON.stringify(value, exactBigint, space);
  }
}

/** JSON.rawJSON (V8; TC39's JSON.parse source text access), not in TypeScript's lib yet. */
const rawJSON = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

function exactBigint(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? rawJSON(value.toString()) : value;
}
