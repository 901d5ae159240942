// The native front end's reading of a --process file no exec kept (runtime/native/process_delta.c
// process_records) against the CLI's (cli/process.ts readProcessFile: TextDecoder, parseJson;
// exec.ts processFromFile and fileProcess; plan.ts buildProcessPlan; nsexec.ts's records). For
// every file, mutations of real ones included, the C reading must give the CLI's records byte for
// byte, or decline (the CLI then reads the file); it must never take a file the CLI refuses. A
// probe built from the helper's sources (fixtures/process_records_probe.c) answers for all cases
// in one process.
import { fileProcess, processFromFile } from "../../runtime/exec.ts";
import { CAPABILITIES, RLIMITS } from "../../runtime/consts.ts";
import { encodeNsexecParts } from "../../runtime/nsexec.ts";
import { buildProcessPlan } from "../../runtime/plan.ts";
import type { SeccompFilter } from "../../runtime/seccomp.ts";
import type { Process } from "../../runtime/spec.ts";
import { NSEXEC_SOURCES } from "../../scripts/build.ts";
import { parseJson } from "../../runtime/json.ts";
import { assert, assertEquals } from "./helpers.ts";

const repo = new URL("../../", import.meta.url).pathname;

/** Builds the probe into `dir`; its path. */
async function buildProbe(dir: string): Promise<string> {
  const cc = Deno.env.get("CC") || "gcc";
  const objs = await new Deno.Command(cc, {
    args: [
      "-O1",
      "-c",
      "-Dmain=capsule_nsexec_main",
      ...NSEXEC_SOURCES.map((f) => `${repo}runtime/native/${f}`),
    ],
    cwd: dir,
  }).output();
  assert(objs.success, new TextDecoder().decode(objs.stderr));
  const out = `${dir}/probe`;
  const link = await new Deno.Command(cc, {
    args: [
      "-O1",
      "-o",
      out,
      `${repo}tests/unit/fixtures/process_records_probe.c`,
      ...NSEXEC_SOURCES.map((f) => `${dir}/${f.replace(/\.c$/, ".o")}`),
    ],
  }).output();
  assert(link.success, new TextDecoder().decode(link.stderr));
  return out;
}

const u32 = (n: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};

/** The probe's answers for `cases` ([base records, file bytes]): records, or undefined (NULL). */
async function probe(
  path: string,
  cases: [Uint8Array, Uint8Array][],
): Promise<(Uint8Array | undefined)[]> {
  const parts: Uint8Array[] = [];
  for (const [base, file] of cases) parts.push(u32(base.length), base, u32(file.length), file);
  const input = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    input.set(p, off);
    off += p.length;
  }
  const child = new Deno.Command(path, { stdin: "piped", stdout: "piped", stderr: "inherit" })
    .spawn();
  const writer = child.stdin.getWriter();
  const written = writer.write(input).then(() => writer.close());
  const out = await child.output();
  await written;
  assert(out.success, `the probe failed (status ${out.code})`);
  const view = new DataView(out.stdout.buffer, out.stdout.byteOffset, out.stdout.length);
  const answers: (Uint8Array | undefined)[] = [];
  for (let at = 0; at < out.stdout.length;) {
    if (view.getUint32(at, true) === 0) {
      answers.push(undefined);
      at += 4;
    } else {
      const len = view.getUint32(at + 4, true);
      answers.push(out.stdout.slice(at + 8, at + 8 + len));
      at += 8 + len;
    }
  }
  assertEquals(answers.length, cases.length);
  return answers;
}

/** A container's process as create recorded it, and its seccomp filter. */
interface Base {
  process: Process;
  seccomp?: SeccompFilter;
}

/** exec.plan's process records for `base` (exec.ts writeExecPlan: commandProcess, no command). */
function planProcess(b: Base): Uint8Array {
  const proc: Process = {
    ...b.process,
    terminal: false,
    args: [],
    cwd: b.process.cwd ?? "/",
    user: b.process.user ?? { uid: 0, gid: 0 },
  };
  return processRecords(proc, b);
}

/** The process records exec.ts hands the helper for `proc` in a container of `b`. */
function processRecords(proc: Process, b: Base): Uint8Array {
  return encodeNsexecParts({
    pid: 1,
    pidStartTime: "1",
    namespaces: [],
    cgroupProcs: [],
    process: { ...buildProcessPlan(proc), seccomp: b.seccomp },
    setsid: false,
    detach: false,
  }).process;
}

/** The CLI's records for the file `bytes` in a container of `b`; undefined when it refuses it. */
async function cliRecords(bytes: Uint8Array, b: Base): Promise<Uint8Array | undefined> {
  try {
    const raw = parseJson(new TextDecoder().decode(bytes));
    const proc = fileProcess(await processFromFile(raw, "process file"), b.process);
    if (proc.terminal) return undefined; // the front end never takes a terminal's
    if (!proc.cwd?.startsWith("/")) return undefined;
    return processRecords(proc, b);
  } catch {
    return undefined;
  }
}

const CAPS = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE"];

const BASES: Base[] = [
  {
    process: {
      args: ["sleep", "1000"],
      env: ["PATH=/bin"],
      cwd: "/",
      user: { uid: 0, gid: 0 },
      capabilities: { bounding: CAPS, effective: CAPS, permitted: CAPS },
      rlimits: [{ type: "RLIMIT_NOFILE", soft: 1024, hard: 4096 }],
      noNewPrivileges: true,
      oomScoreAdj: 100,
    },
    seccomp: { program: btoa("\x06\x00\x00\x00\x00\x00\xff\x7f"), flags: 4 },
  },
  { process: { args: ["sh"], cwd: "/", user: { uid: 0, gid: 0 } } },
];

/** Process files as engines write them (containerd's: the container's process, args replaced). */
const SEEDS: Record<string, unknown>[] = [
  {
    terminal: false,
    user: { uid: 1000, gid: 1000, additionalGids: [10, 20], umask: 18 },
    args: ["/bin/sh", "-c", "echo hi"],
    env: [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "HOSTNAME=web",
      "TERM=xterm",
    ],
    cwd: "/srv",
    capabilities: {
      bounding: CAPS,
      effective: CAPS,
      permitted: ["cap_chown", "CAP_kill"],
      inheritable: [],
      ambient: ["CAP_NET_BIND_SERVICE"],
    },
    rlimits: [{ type: "RLIMIT_NOFILE", hard: 1048576, soft: 1048576 }, {
      type: "RLIMIT_CORE",
      hard: 0,
      soft: 0,
    }],
    noNewPrivileges: true,
    oomScoreAdj: -999,
    apparmorProfile: "",
    consoleSize: { height: 24, width: 80 },
    selinuxLabel: "",
    scheduler: { policy: "SCHED_OTHER" },
  },
  { args: ["true"], cwd: "/" },
  { user: { uid: 0, gid: 0, umask: 63 }, args: ["true"], env: [], cwd: "/", rlimits: [] },
  {
    user: { uid: 65534, gid: 65534 },
    args: ["id"],
    cwd: "/tmp",
    capabilities: {},
    oomScoreAdj: 1000,
  },
];

/** Values put in place of each value of a seed; `@N:text` is the number literal `text`. */
const ALTERNATES: unknown[] = [
  null,
  true,
  false,
  0,
  1,
  -1,
  "@N:1.0",
  "@N:1e3",
  "@N:-0",
  "@N:0.5",
  2147483647,
  2147483648,
  4294967295,
  4294967296,
  9007199254740993,
  -1000,
  -1001,
  1001,
  "",
  "x",
  "/",
  "/abs",
  "rel",
  "A=1",
  "=x",
  "CAP_SYS_ADMIN",
  "cap_sys_admin",
  "CAP_NOPE",
  "RLIMIT_NPROC",
  "RLIMIT_NOPE",
  "rlimit_nproc",
  "a\u0000b",
  "é\u{1F600}",
  [],
  [""],
  ["x"],
  ["A=1", "B="],
  ["=x"],
  ["CAP_MKNOD", "cap_bpf"],
  ["CAP_NOPE"],
  [1, 2],
  [-1],
  [{}],
  [{ type: "RLIMIT_NPROC", soft: 10, hard: 5 }],
  [{ type: "RLIMIT_NPROC", soft: 5, hard: 10 }],
  [{ type: "RLIMIT_NOPE", soft: 5, hard: 10 }],
  [{ type: "RLIMIT_AS", soft: "@N:1e3", hard: 10000 }],
  // uint64 limits past 2^53-1, read exactly by the CLI (parseJson): 2^64-1 is unlimited.
  "@N:9007199254740993",
  "@N:9223372036854775807",
  "@N:18446744073709551614",
  "@N:18446744073709551615",
  "@N:18446744073709552000",
  "@N:18446744073709551616000",
  [{ type: "RLIMIT_CPU", soft: "@N:18446744073709551614", hard: "@N:18446744073709551615" }],
  [{ type: "RLIMIT_CPU", soft: "@N:18446744073709551615", hard: "@N:18446744073709551614" }],
  [{ type: "RLIMIT_CORE", soft: 0, hard: "@N:9223372036854775807" }],
  {},
  { uid: 1, gid: 2 },
  { uid: 1 },
  { height: 1, width: 2 },
  { bounding: ["CAP_KILL"] },
];

type Path = (string | number)[];

/** Every path to a value in `v` (the root excluded). */
function paths(v: unknown, at: Path = []): Path[] {
  if (v === null || typeof v !== "object") return [];
  const out: Path[] = [];
  for (const [k, child] of Object.entries(v as Record<string, unknown>)) {
    const p = [...at, Array.isArray(v) ? Number(k) : k];
    out.push(p, ...paths(child, p));
  }
  return out;
}

/** A deep copy of `v` with the value at `path` replaced (`undefined`: removed). */
function replaced(v: unknown, path: Path, value: unknown): unknown {
  const copy = structuredClone(v) as Record<string | number, unknown>;
  let o = copy;
  for (const k of path.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  const last = path[path.length - 1];
  if (value === undefined) {
    if (Array.isArray(o)) o.splice(last as number, 1);
    else delete o[last];
  } else {
    o[last] = value;
  }
  return copy;
}

/** JSON text of `v`, the `@N:` strings written as the number literals they name. */
function text(v: unknown, indent?: number): string {
  return JSON.stringify(v, null, indent).replace(/"@N:([^"]*)"/g, "$1");
}

/** A small deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The files of the test: the seeds as they are, and mutated. */
function files(): string[] {
  const out: string[] = [];
  const enc = (s: string) => out.push(s);
  for (const seed of SEEDS) {
    enc(text(seed));
    enc(text(seed, 2) + "\n");
    enc("\ufeff" + text(seed));
    for (const p of paths(seed)) {
      enc(text(replaced(seed, p, undefined)));
      for (const alt of ALTERNATES) enc(text(replaced(seed, p, alt)));
    }
    for (
      const key of ["zzz", "args", "user", "cwd", "env", "capabilities", "rlimits", "terminal"]
    ) {
      for (const alt of ALTERNATES.slice(0, 8)) enc(text({ ...seed, [key]: alt }));
    }
    const t = text(seed);
    // A key of the process twice (JSON.parse keeps the last), or written with an escape.
    enc(`{"args":["dup"],${t.slice(1)}`);
    enc(`{"zzz":1,"zzz":2,${t.slice(1)}`);
    enc(t.replace('"args"', '"\\u0061rgs"').replace('"cwd"', '"c\\u0077d"'));
    enc(
      t.replace('"cwd":"', '"cwd":"\\/').replace('"args":["', '"args":["\\u00e9\\ud83d\\ude00\\t'),
    );
    enc(t.replace('"args":["', '"args":["\\ud800'));
    enc(t.replace('"args":["', '"args":["\\u0000'));
    enc(t.replace("{", "{ \t\r\n").replace(/,/g, " ,\n "));
    enc(t + "x");
    enc(t + "}");
    enc("[" + t + "]");
    // Cut short, and bytes changed (seeded: the same cases on every run).
    for (let i = 1; i < t.length; i += Math.max(1, Math.floor(t.length / 40))) enc(t.slice(0, i));
    const r = rng(t.length);
    const chars = '{}[]",:0123456789-.eE \\/ufalsetrunAZ\u00e9';
    for (let k = 0; k < 200; k++) {
      const a = [...t];
      const n = 1 + Math.floor(r() * 3);
      for (let m = 0; m < n; m++) {
        a[Math.floor(r() * a.length)] = chars[Math.floor(r() * chars.length)];
      }
      enc(a.join(""));
    }
  }
  for (const name of CAPABILITIES) {
    enc(text({ args: ["x"], cwd: "/", capabilities: { ambient: [name.toLowerCase()] } }));
  }
  for (const name of Object.keys(RLIMITS)) {
    enc(text({ args: ["x"], cwd: "/", rlimits: [{ type: name, soft: 1, hard: 2 }] }));
  }
  return out;
}

Deno.test("process_records: the C reading of a --process file gives the CLI's records, or leaves the file to the CLI", async () => {
  const dir = await Deno.makeTempDir({ prefix: "capsule-process-records-" });
  try {
    const path = await buildProbe(dir);
    const te = new TextEncoder();
    const texts = files();
    const cases: [Uint8Array, Uint8Array][] = [];
    const expected: (Uint8Array | undefined)[] = [];
    for (const b of BASES) {
      const base = planProcess(b);
      for (const t of texts) {
        const bytes = te.encode(t);
        cases.push([base, bytes]);
        expected.push(await cliRecords(bytes, b));
      }
    }
    // Bytes that are not UTF-8 in a string: TextDecoder reads U+FFFD, the C reading declines.
    const bad = te.encode(text(SEEDS[1]).replace('"true"', '"tr__e"'));
    bad.set([0xc3, 0x28], bad.indexOf(0x5f));
    cases.push([planProcess(BASES[0]), bad]);
    expected.push(await cliRecords(bad, BASES[0]));
    const answers = await probe(path, cases);
    let taken = 0, valid = 0;
    for (let i = 0; i < cases.length; i++) {
      const what = () => new TextDecoder().decode(cases[i][1]);
      if (expected[i]) valid++;
      if (!answers[i]) continue;
      taken++;
      assert(expected[i] !== undefined, `the C reading took a file the CLI refuses: ${what()}`);
      assertEquals(Array.from(answers[i]!), Array.from(expected[i]!), `records of ${what()}`);
    }
    // Each seed is taken as it is (plainly written files are the C reading's to take), and so are
    // most files the CLI takes.
    for (let b = 0; b < BASES.length; b++) {
      for (const seed of SEEDS) {
        const i = b * texts.length + texts.indexOf(text(seed));
        assert(answers[i] !== undefined, `the C reading declined ${text(seed)}`);
      }
    }
    assert(taken > valid * 0.8, `the C reading took ${taken} of the ${valid} files the CLI takes`);
    console.log(
      `${cases.length} files: the CLI takes ${valid}, the C reading ${taken}, all the same`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("processFromFile: an AppArmor profile or an SELinux label (of any type) is refused, as create refuses it (capsule applies none, as runc fails on them here); an empty one or null is none", async () => {
  const cases: [string, unknown, string][] = [
    ["apparmorProfile", "docker-default", "capsule applies no AppArmor profile"],
    ["apparmorProfile", ["docker-default"], "capsule applies no AppArmor profile"],
    ["selinuxLabel", "system_u:system_r:container_t:s0", "capsule applies no SELinux label"],
    ["selinuxLabel", { user: "system_u" }, "capsule applies no SELinux label"],
    ["selinuxLabel", 1, "capsule applies no SELinux label"],
  ];
  for (const [key, value, why] of cases) {
    const file = { args: ["true"], cwd: "/", [key]: value };
    let said = "";
    try {
      await processFromFile(file, "process file p.json");
    } catch (e) {
      said = (e as Error).message;
    }
    assertEquals(
      said,
      `Invalid process file p.json: process.${key}: ${why}; drop it to run without it`,
    );
    for (const empty of ["", null]) {
      const none = await processFromFile({ ...file, [key]: empty }, "p.json");
      assertEquals(none.args, ["true"]);
    }
  }
});

Deno.test("processFromFile: an unknown capability or rlimit is refused naming the process file, not config.json", async () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ capabilities: { bounding: ["CAP_NOPE"] } }, "process.capabilities.bounding"],
    [{ rlimits: [{ type: "RLIMIT_NOPE", soft: 1, hard: 1 }] }, "process.rlimits"],
    [{ rlimits: [{ type: "RLIMIT_NOFILE", soft: 2, hard: 1 }] }, "process.rlimits"],
  ];
  for (const [change, field] of cases) {
    let said = "";
    try {
      await processFromFile({ args: ["true"], cwd: "/", ...change }, "process file p.json");
    } catch (e) {
      said = (e as Error).message;
    }
    assert(said.startsWith(`Invalid process file p.json: ${field}`), said);
  }
});

Deno.test("fileProcess: what the file leaves out comes from the container: capabilities, rlimits and oomScoreAdj (the engine's own score never reaches the program)", () => {
  const base: Process = {
    args: ["sleep"],
    cwd: "/",
    user: { uid: 0, gid: 0 },
    capabilities: { bounding: ["CAP_KILL"] },
    rlimits: [{ type: "RLIMIT_NOFILE", soft: 1, hard: 2 }],
    oomScoreAdj: 100,
  };
  const file: Process = { args: ["true"], cwd: "/", user: { uid: 0, gid: 0 } };
  const p = fileProcess(file, base);
  assertEquals([p.capabilities, p.rlimits, p.oomScoreAdj], [
    base.capabilities,
    base.rlimits,
    100,
  ]);
  assertEquals(fileProcess({ ...file, oomScoreAdj: -5 }, base).oomScoreAdj, -5);
});
