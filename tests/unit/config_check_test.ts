// runtime/config_check.ts, the zod-free fast path of config.json validation, against zod's
// schema in runtime/config.ts: every path of the schema is in the fixture below, and every
// mutation of every value (wrong type, out of range, removed) gets the same verdict and the
// same message from checkConfig (fast path, zod when it refuses) as from validateConfig (zod).
import { schema, validateConfig } from "../../runtime/config.ts";
import { schemaAccepts } from "../../runtime/config_check.ts";
import { checkConfig } from "../../runtime/validate.ts";
import { parseJson, stringifyJson } from "../../runtime/json.ts";
import { defaultSpec, rootlessSpec, type Spec, starterSpec } from "../../runtime/spec.ts";
import { assert, assertEquals } from "./helpers.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const hook = { path: "/bin/h", args: ["h", "a"], env: ["A=1"], timeout: 5 };
/** A config with every field the schema names (and one it does not). */
const RICH: Json = {
  ociVersion: "1.2.0",
  process: {
    terminal: false,
    consoleSize: { height: 24, width: 80 },
    user: { uid: 1, gid: 2, umask: 18, additionalGids: [3, 4] },
    args: ["sh", "-c", "true"],
    env: ["PATH=/bin", "A="],
    cwd: "/",
    capabilities: {
      bounding: ["CAP_KILL"],
      effective: ["CAP_KILL"],
      inheritable: [],
      permitted: ["CAP_KILL"],
      ambient: [],
    },
    rlimits: [
      { type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 },
      // uint64 past 2^53-1, as parseJson reads it: exact (a bigint).
      { type: "RLIMIT_CORE", hard: 18446744073709551615n, soft: 18446744073709551614n },
    ],
    noNewPrivileges: true,
    oomScoreAdj: 100,
  },
  root: { path: "rootfs", readonly: true },
  hostname: "h",
  domainname: "d",
  mounts: [{ destination: "/proc", type: "proc", source: "proc", options: ["nosuid"] }],
  hooks: {
    prestart: [hook],
    createRuntime: [hook],
    createContainer: [hook],
    startContainer: [hook],
    poststart: [hook],
    poststop: [hook],
  },
  annotations: { a: "b" },
  linux: {
    namespaces: [{ type: "pid" }, { type: "uts" }, { type: "mount" }, {
      type: "network",
      path: "/nonexistent/ns/net",
    }],
    devices: [{ type: "c", path: "/dev/x", major: 1, minor: 3, fileMode: 438, uid: 0, gid: 0 }],
    cgroupsPath: "/a/b",
    uidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
    gidMappings: [{ containerID: 0, hostID: 1000, size: 1 }],
    resources: { memory: { limit: 1000000 } },
    rootfsPropagation: "rslave",
    maskedPaths: ["/proc/kcore"],
    readonlyPaths: ["/proc/sys"],
    sysctl: { "net.ipv4.ip_forward": "1" },
    seccomp: {
      defaultAction: "SCMP_ACT_ERRNO",
      defaultErrnoRet: 1,
      architectures: ["SCMP_ARCH_X86_64"],
      flags: [],
      syscalls: [{
        names: ["read"],
        action: "SCMP_ACT_ALLOW",
        errnoRet: 1,
        args: [
          { index: 0, value: 1, valueTwo: 2, op: "SCMP_CMP_EQ" },
          {
            index: 1,
            value: 18446744073709551615n,
            valueTwo: -9223372036854775808n,
            op: "SCMP_CMP_EQ",
          },
        ],
      }],
    },
  },
  unknownField: { tolerated: true },
};

/** Every path of a zod schema: object keys, `[]` for array items, `{}` for record values. */
function schemaPaths(s: Json, at: string, out: string[]): string[] {
  const def = s._zod.def;
  switch (def.type) {
    case "object":
      for (const [k, v] of Object.entries(def.shape)) {
        out.push(`${at}.${k}`);
        schemaPaths(v, `${at}.${k}`, out);
      }
      break;
    case "optional":
      schemaPaths(def.innerType, at, out);
      break;
    case "array":
      schemaPaths(def.element, `${at}[]`, out);
      break;
    case "record":
      schemaPaths(def.valueType, `${at}{}`, out);
      break;
  }
  return out;
}

/** Every path of a JSON value, in the same notation, and the concrete paths to mutate. */
function valuePaths(v: Json, at: string, keys: (string | number)[], out: Map<string, Json[]>) {
  if (Array.isArray(v)) {
    v.forEach((x, i) => valuePaths(x, `${at}[]`, [...keys, i], out));
  } else if (v && typeof v === "object") {
    for (const [k, x] of Object.entries(v)) {
      const p = out.has(`${at}{}`) || at.endsWith("annotations") || at.endsWith("sysctl")
        ? `${at}{}`
        : `${at}.${k}`;
      out.set(p, [...(out.get(p) ?? []), [...keys, k]]);
      valuePaths(x, p, [...keys, k], out);
    }
  }
  return out;
}

Deno.test("config_check: the fixture covers every path of config.ts's schema", () => {
  const covered = new Set(valuePaths(RICH, "", [], new Map()).keys());
  const missing = schemaPaths(schema, "", []).filter((p) => !covered.has(p));
  assertEquals(missing, [], "add these fields to RICH (and to config_check.ts's copy)");
});

Deno.test("config_check: the common configs take the fast path", () => {
  for (const c of [RICH, defaultSpec(), starterSpec(), rootlessSpec(1000, 1000)]) {
    assert(schemaAccepts(parseJson(stringifyJson(c))), stringifyJson(c));
  }
  assertEquals(schema.safeParse(RICH).success, true);
});

const VALUES: Json[] = [
  null,
  true,
  false,
  0,
  -0,
  -1,
  1,
  1.5,
  5,
  64,
  1001,
  -1001,
  0xffffffff,
  2 ** 32,
  2 ** 53,
  1e400, // JSON.parse's Infinity
  // Integer literals past 2^53-1, as parseJson reads them (bigints): the uint64 and int64 ends.
  9007199254740993n,
  9999999999999999999n,
  2n ** 63n - 1n,
  2n ** 63n,
  -(2n ** 63n),
  -(2n ** 63n) - 1n,
  2n ** 64n - 1n,
  2n ** 64n,
  18446744073709552000n, // 2^64 as JSON.stringify wrote the double
  "",
  "x",
  "/x",
  "1.2.0",
  "pid",
  "c",
  "rslave",
  "RLIMIT_X",
  "K=V",
  "=V",
  "a".repeat(65),
  [],
  [""],
  ["x"],
  ["/x"],
  [1],
  [-1],
  [null],
  [{}],
  {},
  { a: "b" },
  { a: 1 },
];

async function outcome(f: () => Spec | Promise<Spec>): Promise<string> {
  try {
    return `ok ${stringifyJson(await f())}`;
  } catch (e) {
    return `error ${(e as Error).message}`;
  }
}

Deno.test("config_check: every mutation of every value gets zod's verdict and message", async () => {
  const paths = valuePaths(RICH, "", [], new Map());
  let fast = 0, refused = 0, n = 0;
  for (const concrete of paths.values()) {
    for (const keys of concrete) {
      for (const value of [undefined, ...VALUES]) {
        const m = structuredClone(RICH);
        let o = m;
        for (const k of keys.slice(0, -1)) o = o[k];
        if (value === undefined) delete o[keys.at(-1)];
        else o[keys.at(-1)] = value;
        n++;
        if (schemaAccepts(m)) {
          fast++;
          assert(schema.safeParse(m).success, `fast path accepts what zod refuses: ${keys}`);
        } else if (!schema.safeParse(m).success) refused++;
        const file = "/b/config.json";
        assertEquals(
          await outcome(() => checkConfig(structuredClone(m), file)),
          await outcome(() => validateConfig(structuredClone(m), file)),
          `${keys.join(".")} = ${stringifyJson(value)}`,
        );
      }
    }
  }
  // Both verdicts occur (the test would prove nothing if one side were always taken).
  assert(fast > 100 && refused > 100, `fast ${fast}, refused by both ${refused}, of ${n}`);
});

Deno.test("config_check: a non-object config goes to zod, with its message", async () => {
  for (const raw of [null, [], "x", 1]) {
    assertEquals(schemaAccepts(raw), false);
    assertEquals(
      await outcome(() => checkConfig(raw)),
      await outcome(() => validateConfig(raw)),
    );
  }
});
