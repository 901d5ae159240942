// Unit tests of runtime/state.ts in a temp directory (never /var/run): atomic writes, the
// claim race, reading damaged or partial state, and status derived from the kernel.
import {
  absolutePath,
  type ContainerRecord,
  EXEC_FIFO,
  initAlive,
  isoTime,
  procStat,
  sameDir,
  STATE_FILE,
  StateStore,
  writeFileAtomic,
} from "../../runtime/state.ts";
import { CapsuleError, NotFoundError } from "../../runtime/errors.ts";
import { userName } from "../../runtime/query.ts";
import { buildProcessPlan } from "../../runtime/plan.ts";
import {
  assert,
  assertEquals,
  assertStringIncludes,
  assertThrows,
  withTempDir,
} from "./helpers.ts";

function record(id: string, over: Partial<ContainerRecord> = {}): ContainerRecord {
  return {
    ociVersion: "1.2.0",
    id,
    pid: 0,
    pidStartTime: "0",
    bundle: "/bundles/x",
    rootfs: "/bundles/x/rootfs",
    created: new Date(0).toISOString(),
    annotations: {},
    ...over,
  };
}

/** A record whose init is this very test process (alive, with its real start time). */
function selfRecord(id: string, over: Partial<ContainerRecord> = {}): ContainerRecord {
  const st = procStat(Deno.pid);
  assert(st, "procStat(Deno.pid) must see this process");
  return record(id, { pid: Deno.pid, pidStartTime: st.startTime, ...over });
}

function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

// ---------------------------------------------------------------------------------------------
// writeFileAtomic

Deno.test("writeFileAtomic: writes, replaces, and leaves no temp file behind", () =>
  withTempDir((dir) => {
    const p = `${dir}/state.json`;
    writeFileAtomic(p, "first");
    assertEquals(Deno.readTextFileSync(p), "first");
    writeFileAtomic(p, "second, longer than the first");
    assertEquals(Deno.readTextFileSync(p), "second, longer than the first");
    writeFileAtomic(p, "3");
    assertEquals(Deno.readTextFileSync(p), "3", "shorter content leaves no old tail");
    assertEquals(names(dir), ["state.json"]);
  }));

Deno.test("writeFileAtomic: replacing keeps a reader's open file intact (a rename, not a rewrite)", () =>
  withTempDir((dir) => {
    const p = `${dir}/f`;
    writeFileAtomic(p, "old content");
    const before = Deno.statSync(p).ino;
    writeFileAtomic(p, "new");
    assert(Deno.statSync(p).ino !== before, "a new inode: the file was replaced by rename");
  }));

Deno.test("writeFileAtomic: a failure throws and leaves no temp file", () =>
  withTempDir((dir) => {
    // The target is a non-empty directory: rename(2) of a file over it fails.
    Deno.mkdirSync(`${dir}/target/sub`, { recursive: true });
    assertThrows(() => writeFileAtomic(`${dir}/target`, "x"));
    assertEquals(names(dir), ["target"]);
    // Missing parent directory.
    assertThrows(() => writeFileAtomic(`${dir}/nope/f`, "x"));
    assertEquals(names(dir), ["target"]);
  }));

// ---------------------------------------------------------------------------------------------
// claim / read / ids / remove

Deno.test("StateStore.claim: creates <root>/<id>; a second claim of the id fails", () =>
  withTempDir((dir) => {
    const store = new StateStore(`${dir}/root`); // the root does not exist yet
    const d = store.claim("web");
    assertEquals(d, `${dir}/root/web`);
    assert(Deno.statSync(d).isDirectory, "dir created");
    const e = assertThrows(() => store.claim("web"), CapsuleError, "already exists");
    assertStringIncludes(e.message, "web");
  }));

Deno.test("StateStore.claim: an invalid id is refused before any path is built", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    for (const id of ["../escape", "a/b", "..", ""]) {
      assertThrows(() => store.claim(id), CapsuleError);
    }
    assertEquals(names(dir), []);
  }));

Deno.test("StateStore.claim: of 10 concurrent claims of one id exactly one wins", () =>
  withTempDir(async (dir) => {
    const store = new StateStore(dir);
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => Promise.resolve().then(() => store.claim("race"))),
    );
    const won = results.filter((r) => r.status === "fulfilled");
    const lost = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
    assertEquals(won.length, 1);
    assertEquals(lost.length, 9);
    for (const r of lost) assert(r.reason instanceof CapsuleError, String(r.reason));
  }));

Deno.test("StateStore.claim: of 6 processes claiming one id at once exactly one wins", () =>
  withTempDir(async (dir) => {
    const mod = new URL("../../runtime/state.ts", import.meta.url).href;
    const code = `import { StateStore } from ${JSON.stringify(mod)};
      try { new StateStore(${JSON.stringify(dir)}).claim("race"); console.log("won"); }
      catch (e) { console.log("lost " + e.name); }`;
    const outs = await Promise.all(
      Array.from({ length: 6 }, () =>
        new Deno.Command(Deno.execPath(), {
          args: ["eval", "--no-config", code],
          stdout: "piped",
          stderr: "piped",
        }).output()),
    );
    const lines = outs.map((o) => new TextDecoder().decode(o.stdout).trim()).sort();
    assertEquals(lines.filter((l) => l === "won").length, 1, lines.join(" | "));
    assertEquals(lines.filter((l) => l === "lost CapsuleError").length, 5, lines.join(" | "));
  }));

Deno.test("StateStore: write then read returns the record", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    store.claim("c1");
    const rec = record("c1", {
      pid: 1234,
      annotations: { a: "b" },
      ext: { net: { ip: "10.0.0.2" } },
    });
    store.write(rec);
    assertEquals(store.read("c1"), rec);
    assertEquals(store.load("c1"), rec);
    assertEquals(names(`${dir}/c1`), [STATE_FILE]);
  }));

Deno.test("StateStore: the recorded process keeps integers past 2^53-1 exact (rlimits, unknown fields), written and read back; 2^64 as an older capsule wrote it reads as unlimited", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    store.claim("big");
    const process = {
      args: ["sh"],
      cwd: "/",
      user: { uid: 0, gid: 0 },
      rlimits: [{ type: "RLIMIT_CPU", soft: 18446744073709551614n, hard: 18446744073709551615n }],
      scheduler: { policy: "SCHED_DEADLINE", runtime: 9007199254740993n },
    };
    const rec = record("big", {
      exec: { process },
      hooks: { poststop: [{ path: "/h", x: 2n ** 64n - 1n } as never] },
    });
    store.write(rec);
    const text = Deno.readTextFileSync(`${dir}/big/${STATE_FILE}`);
    assertStringIncludes(text, '"soft": 18446744073709551614');
    assertStringIncludes(text, '"runtime": 9007199254740993');
    assertEquals(store.read("big"), rec);
    // A record of before: RLIM_INFINITY as JSON.stringify wrote the double 2^64.
    Deno.writeTextFileSync(
      `${dir}/big/${STATE_FILE}`,
      text.replace("18446744073709551615", "18446744073709552000"),
    );
    const old = store.read("big")!.exec!.process;
    assertEquals(buildProcessPlan(old).rlimits, [
      { resource: 0, soft: "18446744073709551614", hard: "18446744073709551615" },
    ]);
  }));

Deno.test("StateStore.read: a claimed dir without state.json -> undefined; load -> CapsuleError", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    store.claim("half");
    assertEquals(store.read("half"), undefined);
    const e = assertThrows(() => store.load("half"), CapsuleError);
    assert(!(e instanceof NotFoundError), "the container exists, half-made");
  }));

Deno.test("StateStore.read: an unknown id -> NotFoundError (also when the root is missing)", () =>
  withTempDir((dir) => {
    assertThrows(() => new StateStore(dir).read("ghost"), NotFoundError, "ghost");
    assertThrows(() => new StateStore(`${dir}/missing`).read("ghost"), NotFoundError);
    assertThrows(() => new StateStore(dir).load("ghost"), NotFoundError);
  }));

Deno.test("StateStore.read: damaged state is a CapsuleError (not NotFound) naming the file", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    const cases: [string, string][] = [
      ["trunc", '{"id": "trunc", "pid": 1'],
      ["empty", ""],
      ["wrongid", JSON.stringify(record("other", { pid: 1 }))],
      ["nopid", JSON.stringify({ ...record("nopid"), pid: "12" })],
      ["nulljson", "null"],
    ];
    for (const [id, text] of cases) {
      store.claim(id);
      Deno.writeTextFileSync(`${dir}/${id}/${STATE_FILE}`, text);
      const e = assertThrows(() => store.read(id), CapsuleError, STATE_FILE);
      assert(!(e instanceof NotFoundError), `${id}: damaged is not missing`);
      assertStringIncludes(e.message, id);
    }
  }));

Deno.test("StateStore.read: an invalid id is a CapsuleError, nothing outside the root is read", () =>
  withTempDir((dir) => {
    Deno.mkdirSync(`${dir}/root`);
    Deno.mkdirSync(`${dir}/outside`);
    Deno.writeTextFileSync(`${dir}/outside/${STATE_FILE}`, JSON.stringify(record("outside")));
    const store = new StateStore(`${dir}/root`);
    const e = assertThrows(() => store.read("../outside"), CapsuleError);
    assert(!(e instanceof NotFoundError), "rejected as an invalid id");
  }));

Deno.test("StateStore.ids: directories with valid names only, sorted", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    for (const id of ["zeta", "alpha", "m-1.2_x"]) store.claim(id);
    Deno.writeTextFileSync(`${dir}/plainfile`, "");
    Deno.mkdirSync(`${dir}/.hidden`);
    Deno.mkdirSync(`${dir}/-dash`);
    Deno.mkdirSync(`${dir}/with space`);
    Deno.symlinkSync(`${dir}/alpha`, `${dir}/linktodir`);
    assertEquals(store.ids(), ["alpha", "m-1.2_x", "zeta"]);
    assertEquals(new StateStore(`${dir}/missing`).ids(), []);
  }));

Deno.test("StateStore.remove: removes the dir; an unknown id is not an error", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    store.claim("gone");
    store.write(record("gone"));
    store.remove("gone");
    assertEquals(names(dir), []);
    store.remove("gone");
    assertThrows(() => store.read("gone"), NotFoundError);
  }));

// ---------------------------------------------------------------------------------------------
// procStat / status

Deno.test("procStat: this process is running or sleeping, with a numeric start time", () => {
  const st = procStat(Deno.pid);
  assert(st, "found");
  assert(/^\d+$/.test(st.startTime), `start time ${st.startTime}`);
  assert(["R", "S", "D"].includes(st.state), `state ${st.state}`);
  // Field 22 of /proc/<pid>/stat, counted by hand here (the comm field has no spaces).
  const fields = Deno.readTextFileSync(`/proc/${Deno.pid}/stat`).split(") ")[1].split(" ");
  assertEquals(st.startTime, fields[22 - 3]);
  assertEquals(procStat(999999999), undefined);
  assertEquals(procStat(0), undefined);
  assertEquals(procStat(-1), undefined);
});

Deno.test("status: init alive, no exec.fifo -> running", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    store.claim("r");
    const rec = selfRecord("r");
    assert(initAlive(rec), "alive");
    assertEquals(store.status(rec), "running");
  }));

Deno.test("status: init alive and exec.fifo present -> created", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    store.claim("c");
    Deno.writeTextFileSync(`${dir}/c/${EXEC_FIFO}`, "");
    assertEquals(store.status(selfRecord("c")), "created");
  }));

Deno.test("status: a live pid with another start time (a recycled pid) -> stopped", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    store.claim("s");
    const real = procStat(Deno.pid)!.startTime;
    const rec = selfRecord("s", { pidStartTime: String(Number(real) + 1) });
    assertEquals(initAlive(rec), false);
    assertEquals(store.status(rec), "stopped");
    Deno.writeTextFileSync(`${dir}/s/${EXEC_FIFO}`, "");
    assertEquals(store.status(rec), "stopped", "a leftover fifo does not make it created");
  }));

Deno.test("status: creating: true with a live init -> creating; with a dead one -> stopped", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    store.claim("k");
    Deno.writeTextFileSync(`${dir}/k/${EXEC_FIFO}`, "");
    assertEquals(store.status(selfRecord("k", { creating: true })), "creating");
    assertEquals(store.status(record("k", { pid: 999999999, creating: true })), "stopped");
  }));

Deno.test("status: while the process that creates it lives, creating, whatever the pid recorded (the helper that cloned the init exits before the init's pid is saved); a crashed creator's record is judged by its init", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    store.claim("k");
    const self = procStat(Deno.pid)!;
    const creator = { creatorPid: Deno.pid, creatorStartTime: self.startTime };
    // The first stage has exited; the record still names it.
    assertEquals(
      store.status(record("k", { pid: 999999999, creating: true, ...creator })),
      "creating",
    );
    assertEquals(store.status(record("k", { pid: 0, creating: true, ...creator })), "creating");
    // The creator is gone (a crash): its init decides, as before.
    const gone = { creatorPid: Deno.pid, creatorStartTime: "1" };
    assertEquals(store.status(record("k", { pid: 999999999, creating: true, ...gone })), "stopped");
    assertEquals(store.status(selfRecord("k", { creating: true, ...gone })), "creating");
    // Once created, the creator's fields mean nothing.
    assertEquals(store.status(record("k", { pid: 999999999, ...creator })), "stopped");
  }));

Deno.test("status: a pid that does not exist -> stopped", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    store.claim("d");
    assertEquals(store.status(record("d", { pid: 999999999, pidStartTime: "1" })), "stopped");
    assertEquals(store.status(record("d", { pid: 0 })), "stopped");
  }));

Deno.test("status: the paused probe is asked only for a live, started init", () =>
  withTempDir((dir) => {
    const store = new StateStore(dir);
    store.claim("p");
    let asked = 0;
    const probe = () => (asked++, true);
    assertEquals(store.status(selfRecord("p"), probe), "paused");
    assertEquals(asked, 1);
    assertEquals(store.status(record("p", { pid: 999999999 }), probe), "stopped");
    assertEquals(asked, 1);
    assertEquals(store.status(selfRecord("p"), () => false), "running");
  }));

Deno.test("list's OWNER: the uid's name in /etc/passwd, else #UID (runc's)", () => {
  const passwd =
    "root:x:0:0:root:/root:/bin/sh\n#comment\nbad\nalice:x:1000:1000::/home/a:/bin/sh\n";
  assertEquals(userName(passwd, 0), "root");
  assertEquals(userName(passwd, 1000), "alice");
  assertEquals(userName(passwd, 1001), "#1001");
  assertEquals(userName("", 0), "#0");
});

Deno.test("absolutePath: a relative --root is the caller's directory, lexically cleaned", () => {
  assertEquals(absolutePath("relroot", "/tmp/x"), "/tmp/x/relroot");
  assertEquals(absolutePath("./a//b/../c/", "/tmp/x"), "/tmp/x/a/c");
  assertEquals(absolutePath("../..", "/tmp"), "/");
  assertEquals(absolutePath("/a//root/", "/tmp"), "/a/root");
});

Deno.test("sameDir: a symlink or // names the same directory; others differ", () => {
  const tmp = Deno.realPathSync(Deno.makeTempDirSync({ prefix: "capsule-samedir-" }));
  try {
    Deno.mkdirSync(`${tmp}/root`);
    Deno.mkdirSync(`${tmp}/other`);
    Deno.symlinkSync(`${tmp}/root`, `${tmp}/link`);
    assertEquals(sameDir(`${tmp}/root`, `${tmp}//root/`), true);
    assertEquals(sameDir(`${tmp}/link`, `${tmp}/root`), true);
    assertEquals(sameDir(`${tmp}/other`, `${tmp}/root`), false);
    // Missing ones compare by their absolute forms.
    assertEquals(sameDir(`${tmp}/gone//x/`, `${tmp}/gone/x`), true);
    assertEquals(sameDir(`${tmp}/gone/x`, `${tmp}/gone/y`), false);
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
});

Deno.test("isoTime: exactly Date's toISOString, across leap days, centuries and the epoch", () => {
  const cases = [
    0,
    Date.UTC(2000, 1, 29, 23, 59, 59, 999),
    Date.UTC(2100, 1, 28, 12, 0, 0, 1),
    Date.UTC(2100, 2, 1),
    Date.UTC(1970, 11, 31, 23, 59, 59, 999),
    Date.UTC(2026, 10, 30, 21, 12, 3, 45),
    Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    Date.UTC(1, 0, 1),
  ];
  let seed = 42;
  for (let i = 0; i < 2000; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    cases.push(Math.floor((seed / 2147483648) * 253402300799999));
  }
  for (const ms of cases) assertEquals(isoTime(ms), new Date(ms).toISOString(), String(ms));
  const before = Date.now();
  const now = Date.parse(isoTime());
  assert(now >= before && now <= Date.now(), "isoTime() is now");
});
