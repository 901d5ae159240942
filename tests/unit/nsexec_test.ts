// capsule-nsexec's two ends without root: the plan exec.ts writes (runtime/nsexec.ts), the
// answers it reads, and what the helper binary (dist/capsule-nsexec, built by tests/run.sh)
// says of a plan it cannot carry out.
import * as libc from "../../ffi/libc.ts";
import {
  decodeRecords,
  encodeNsexecParts,
  encodeNsexecPlan,
  framed,
  nsexecPath,
  readNsexecAnswer,
} from "../../runtime/nsexec.ts";
import {
  execInstance,
  helperStamp,
  readExecProcesses,
  writeExecProcess,
} from "../../runtime/exec.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assert, assertEquals, assertThrows } from "./helpers.ts";
import { basePlan } from "./nsexec_fixtures.ts";

/** The records of an encoded plan, as nsexec.c reads them: [tag, data] in order. */
function records(plan: Uint8Array): [string, Uint8Array][] {
  assertEquals(new DataView(plan.buffer, plan.byteOffset).getUint32(0, true), plan.length - 4);
  const out = decodeRecords(plan.subarray(4));
  assert(out, "records cut short");
  return out.map(([t, d]) => [t, d.slice()]);
}

const u64 = (b: Uint8Array, at = 0) => new DataView(b.buffer).getBigUint64(at, true);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("nsexec plan: every field as a tagged record, numbers u64 LE, strings UTF-8", () => {
  const recs = records(encodeNsexecPlan(basePlan()));
  const all = (tag: string) => recs.filter(([t]) => t === tag).map(([, d]) => d);
  const one = (tag: string) => {
    const found = all(tag);
    assertEquals(found.length, 1, `record ${tag}`);
    return found[0];
  };
  assertEquals(u64(one("p")), 4242n);
  assertEquals(text(one("X")), "123456");
  assertEquals(all("n").map(text), ["user", "pid", "mnt"]);
  assertEquals(all("c").map(text), ["/sys/fs/cgroup/pids/capsule/x/cgroup.procs"]);
  assertEquals([u64(one("u")), u64(one("g"))], [1000n, 100n]);
  assertEquals(all("G").map((d) => u64(d)), [10n, 11n]);
  assertEquals(u64(one("m")), 0o027n);
  assertEquals([u64(one("N")), u64(one("s")), u64(one("x")), u64(one("t"))], [1n, 1n, 0n, 1n]);
  assertEquals(u64(one("O")), 9n);
  assertEquals(BigInt.asIntN(64, u64(one("o"))), -500n);
  assertEquals([u64(one("w")), u64(one("w"), 8)], [24n, 80n]);
  const rl = one("l");
  assertEquals([u64(rl), u64(rl, 8), u64(rl, 16)], [7n, 1024n, 2n ** 64n - 1n]);
  assertEquals(u64(one("B")), (1n << 33n) | 1n);
  assertEquals([u64(one("E")), u64(one("P")), u64(one("I")), u64(one("A"))], [1n, 1n, 0n, 0n]);
  assertEquals(one("S").length, 8);
  assertEquals(text(one("d")), "/work");
  assertEquals(all("a").map(text), ["sh", "-c", "echo ü"]);
  assertEquals(all("e").map(text), ["PATH=/bin", "A=b"]);
  assertEquals(all("f").map((d) => u64(d)), [3n, 4n]);
  assertEquals(u64(one("L")), 2n);
});

Deno.test("nsexec plan: a NUL byte in an argument or variable is refused, naming it", () => {
  const p = basePlan();
  p.process.args = ["echo", "a\0b"];
  assertThrows(() => encodeNsexecPlan(p), CapsuleError, 'Invalid value "a\\0b"');
  const q = basePlan();
  q.process.env = ["X=\0"];
  assertThrows(() => encodeNsexecPlan(q), CapsuleError, "NUL byte");
});

function frame(type: string, data: Uint8Array = new Uint8Array()): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(5 + data.length);
  out[0] = type.charCodeAt(0);
  new DataView(out.buffer).setUint32(1, data.length, true);
  out.set(data, 5);
  return out;
}

function pidBytes(pid: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(pid), true);
  return b;
}

Deno.test("nsexec answer: the terminal (SCM_RIGHTS), then the pid, then EOF", () => {
  const [a, b] = libc.socketpair(true);
  const [r, w] = libc.pipe2();
  try {
    libc.sendFd(a, r, frame("T"));
    libc.writeAll(a, frame("P", pidBytes(31337)));
    libc.close(a);
    const answer = readNsexecAnswer(b);
    assertEquals(answer.pid, 31337);
    assertEquals(answer.error, undefined);
    assert(answer.master !== undefined && answer.master !== r, "the fd came through as a new one");
    // It is the same pipe: what is written at w is read at the received fd.
    libc.writeAll(w, new TextEncoder().encode("x"));
    const got = new Uint8Array(1);
    assertEquals(libc.read(answer.master!, got), 1);
    libc.close(answer.master!);
  } finally {
    for (const fd of [b, r, w]) libc.close(fd);
  }
});

Deno.test("nsexec answer: an error frame is the reason; a frame cut short throws", () => {
  const [a, b] = libc.socketpair(true);
  libc.writeAll(a, frame("E", new TextEncoder().encode('exec: "nope": executable file not found')));
  libc.close(a);
  assertEquals(readNsexecAnswer(b), { error: 'exec: "nope": executable file not found' });
  libc.close(b);
  const [c, d] = libc.socketpair(true);
  libc.writeAll(c, frame("P", pidBytes(1)).slice(0, 7));
  libc.close(c);
  assertThrows(() => readNsexecAnswer(d), CapsuleError, "cut short");
  libc.close(d);
  const [e, f] = libc.socketpair(true);
  libc.writeAll(e, frame("Z"));
  libc.close(e);
  assertThrows(() => readNsexecAnswer(f), CapsuleError, 'unknown type "Z"');
  libc.close(f);
});

/** Runs the built helper on `plan` (raw bytes) and returns its answer and exit status. */
async function runHelper(plan: Uint8Array<ArrayBuffer>): Promise<{ error?: string; code: number }> {
  const [mine, theirs] = libc.socketpair();
  libc.setCloexec(mine, true);
  try {
    const child = new Deno.Command(nsexecPath(), {
      args: [String(theirs)],
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    libc.close(theirs);
    libc.writeAll(mine, plan);
    const answer = readNsexecAnswer(mine);
    const st = await child.output();
    return { error: answer.error, code: st.code };
  } finally {
    libc.close(mine);
  }
}

Deno.test("capsule-nsexec: a plan it cannot carry out is refused in one line, exit 1", async () => {
  const cases: [string, Uint8Array<ArrayBuffer>, RegExp][] = [
    ["unknown record", frame("?"), /unknown record/],
    [
      "no pid",
      (() => {
        const p = encodeNsexecPlan(basePlan());
        const recs = records(p).filter(([t]) => t !== "p");
        const body = recs.flatMap(([t, d]) => [...frame(t, d)]);
        const out = new Uint8Array(4 + body.length);
        new DataView(out.buffer).setUint32(0, body.length, true);
        out.set(body, 4);
        return out;
      })(),
      /lacks the pid/,
    ],
    // A pid that is no process: its namespaces cannot be opened.
    [
      "no such init",
      (() => {
        const p = basePlan();
        p.pid = 2 ** 22 + 7;
        p.cgroupProcs = [];
        p.process.oomScoreAdj = undefined;
        p.logFd = undefined;
        return encodeNsexecPlan(p);
      })(),
      /cannot open \/proc\/4194311\/ns\/user: open: no such file or directory/,
    ],
  ];
  for (const [what, plan, want] of cases) {
    let bytes = plan;
    if (what === "unknown record") {
      bytes = new Uint8Array(4 + plan.length);
      new DataView(bytes.buffer).setUint32(0, plan.length, true);
      bytes.set(plan, 4);
    }
    const r = await runHelper(bytes);
    assertEquals(r.code, 1, what);
    assert(want.test(r.error ?? ""), `${what}: ${r.error}`);
  }
});

Deno.test("capsule-nsexec: started by anything but capsule, it exits 2 and does nothing", async () => {
  for (const args of [[], ["x"], ["1"], ["5", "6"]]) {
    const out = await new Deno.Command(nsexecPath(), { args, stderr: "piped", clearEnv: true })
      .output();
    assertEquals(out.code, 2, args.join(" "));
    assert(/started by capsule only/.test(new TextDecoder().decode(out.stderr)));
  }
});

Deno.test("nsexec plan: its header and process parts, put together, are the plan", () => {
  const plan = basePlan();
  const { header, process } = encodeNsexecParts(plan);
  assertEquals(framed(header, process), encodeNsexecPlan(plan));
  assertEquals(decodeRecords(header)!.map(([t]) => t), [
    "p",
    "X",
    "n",
    "n",
    "n",
    "c",
    "s",
    "x",
    "O",
  ]);
  assertEquals(decodeRecords(process)![0][0], "u");
  assertEquals(decodeRecords(process.subarray(0, process.length - 1)), undefined);
});

Deno.test("exec.processes: newest first, each file's bytes once, at most 16, this build's and container's", () => {
  const dir = Deno.makeTempDirSync({ prefix: "capsule-kept-" });
  try {
    const file = `${dir}/exec.processes`;
    const stamp = helperStamp(nsexecPath());
    const me = execInstance({ id: "c1", pid: 42, pidStartTime: "777" });
    const enc = (s: string) => new TextEncoder().encode(s);
    // No exec.plan: the front end takes no exec into this container, so nothing is kept.
    writeExecProcess(dir, me, enc("{}"), enc("r0"));
    assertThrows(() => Deno.statSync(file));
    Deno.writeTextFileSync(`${dir}/exec.plan`, "");
    for (let i = 0; i < 20; i++) writeExecProcess(dir, me, enc(`{"n":${i}}`), enc(`r${i}`));
    writeExecProcess(dir, me, enc(`{"n":10}`), enc("again"));
    const kept = readExecProcesses(file, stamp, me).map(([j, r]) => [text(j), text(r)]);
    assertEquals(kept.length, 16);
    assertEquals(kept.slice(0, 3), [[`{"n":10}`, "again"], [`{"n":19}`, "r19"], [
      `{"n":18}`,
      "r18",
    ]]);
    assertEquals(kept.filter(([j]) => j === `{"n":10}`).length, 1);
    assertEquals(Deno.statSync(file).mode! & 0o777, 0o600);
    // A file over 64 KiB is not kept; another build's file is none.
    writeExecProcess(dir, me, new Uint8Array(65 << 10), enc("big"));
    assertEquals(readExecProcesses(file, stamp, me).length, 16);
    assertEquals(readExecProcesses(file, "0:0:0:0", me), []);
    // Another container's (the same id made again: another init), or a copy in another's: none.
    assertEquals(readExecProcesses(file, stamp, "c1:43:778"), []);
    assertEquals(readExecProcesses(file, stamp, "c2:42:777"), []);
    writeExecProcess(dir, "c1:43:778", enc(`{"n":99}`), enc("new"));
    assertEquals(readExecProcesses(file, stamp, "c1:43:778").length, 1, "the old ones went");
    // Cut short: none.
    const bytes = Deno.readFileSync(file);
    Deno.writeFileSync(file, bytes.subarray(0, bytes.length - 1));
    assertEquals(readExecProcesses(file, stamp, me), []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
