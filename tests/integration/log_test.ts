// Detached containers' logs (issue 15): the root's monitor reads the container's stdout and
// stderr from a pipe and rotates by rename before each write (runtime/log_writer.ts,
// runtime/native/monitor.c), so a fast writer never overshoots --log-max-size; `capsule log`
// reads across the rotated files.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  capsuleCommand,
  makeBundle,
  monitorLeaves,
  removeAll,
  rootNames,
  rootTest,
  sleep,
  waitFor,
  withImage,
} from "../helpers.ts";

/** Sizes of `<log>` and its rotated files `<log>.N` that exist now, by name. */
function logFiles(log: string): Map<string, number> {
  const dir = log.slice(0, log.lastIndexOf("/")), base = log.slice(dir.length + 1);
  const out = new Map<string, number>();
  for (const e of Deno.readDirSync(dir)) {
    if (e.name !== base && !e.name.startsWith(`${base}.`)) continue;
    try {
      out.set(e.name, Deno.statSync(`${dir}/${e.name}`).size);
    } catch { /* rotated away meanwhile */ }
  }
  return out;
}

/**
 * Pids of the processes that hold `path` open for writing (the root's monitor, while it writes
 * the log). A reader (`log -f`, which opens the log at each read) is not a writer: counted, it
 * made a sample that fell within its read see two.
 */
function holders(path: string): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    try {
      for (const f of Deno.readDirSync(`/proc/${e.name}/fd`)) {
        try {
          if (Deno.readLinkSync(`/proc/${e.name}/fd/${f.name}`) !== path) continue;
          const info = Deno.readTextFileSync(`/proc/${e.name}/fdinfo/${f.name}`);
          const flags = parseInt(/^flags:\s*([0-7]+)/m.exec(info)?.[1] ?? "0", 8);
          if ((flags & 3) === 0) continue; // O_RDONLY
        } catch {
          continue; // closed meanwhile
        }
        pids.push(Number(e.name));
        break;
      }
    } catch { /* gone */ }
  }
  return pids;
}

/**
 * How many processes hold the log open once one does (the monitor closes and reopens it at each
 * rotation: a sample may fall in between); never more than one in any sample. At most 2 s.
 */
async function oneWriter(log: string): Promise<number> {
  let n = 0;
  for (let i = 0; i < 200 && n === 0; i++) {
    n = holders(log).length;
    assert(n <= 1, `log writers: ${holders(log)}`);
    if (n === 0) await sleep(10);
  }
  return n;
}

/** Samples the log's files every 100 ms for `ms`, asserting every bound each time. */
async function watchBounded(log: string, ms: number, maxSize: number, maxFiles: number) {
  let rotations = 0;
  for (const end = Date.now() + ms; Date.now() < end;) {
    const files = logFiles(log);
    for (const [name, size] of files) {
      assert(size <= maxSize, `${name} is ${size} bytes (max ${maxSize})`);
    }
    assert(files.size <= maxFiles, `${files.size} log files: ${[...files.keys()]}`);
    if (files.size > 1) rotations++;
    await sleep(100);
  }
  assert(rotations > 0, "the log was never rotated");
}

/** "line N" lines of a log, in order: each one more than the last (the first may be cut). */
function assertConsecutive(text: string, what: string): number {
  const lines = text.split("\n").slice(1, -1); // the first may have lost its start
  assert(lines.length > 100, `${what}: only ${lines.length} lines`);
  let prev = -1;
  for (const l of lines) {
    const m = /^line (\d+)$/.exec(l);
    assert(m, `${what}: unexpected line ${JSON.stringify(l)}`);
    const n = Number(m[1]);
    assert(prev < 0 || n === prev + 1, `${what}: line ${n} after ${prev}`);
    prev = n;
  }
  return prev;
}

const COUNTER = 'i=0; while :; do i=$((i+1)); echo "line $i"; done';

rootTest(
  "log: a fast writer stays within --log-max-size 64k x 2 files; log and log -f read across rotations",
  async (root) => {
    await withImage(async (c) => {
      const r = await c(
        "image",
        "run",
        "-d",
        "--name",
        "fw",
        "--log-max-size",
        "64k",
        "--log-max-files",
        "2",
        "bb",
        "sh",
        "-c",
        COUNTER,
      );
      assertEquals(r.code, 0, r.stderr);
      const log = `${root}/fw/container.log`;
      // log -f from the start: it follows across the rotations, and returns once stopped.
      const [cmd, ...pre] = capsuleCommand();
      const follow = new Deno.Command(cmd, {
        args: [...pre, "--root", root, "log", "-f", "fw"],
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const followed = follow.output();
      try {
        await watchBounded(log, 3000, 64 * 1024, 2);
        assertEquals(await oneWriter(log), 1, "log writers");
        assertEquals((await c("kill", "fw", "KILL")).code, 0);
        await waitFor(() => holders(log).length === 0, 5000, "the log writer to exit");
        // The newest lines are in container.log, and log prints them all in order.
        const l = await c("log", "fw");
        assertEquals(l.code, 0, l.stderr);
        const last = assertConsecutive(l.stdout, "log");
        assertMatch(Deno.readTextFileSync(log), new RegExp(`(^|\n)line ${last}\n$`));
        const t = await c("log", "--tail", "3", "fw");
        assertEquals(t.stdout, `line ${last - 2}\nline ${last - 1}\nline ${last}\n`);
      } finally {
        await c("delete", "-f", "fw");
      }
      const out = await followed;
      assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
      // Under this rate a file may be rotated away before it is read: in order, maybe gaps.
      const lines = new TextDecoder().decode(out.stdout).split("\n").slice(1, -1);
      assert(lines.length > 100, `log -f printed ${lines.length} lines`);
      let prev = -1;
      for (const line of lines) {
        const m = /^line (\d+)$/.exec(line);
        assert(m && Number(m[1]) > prev, `log -f: ${JSON.stringify(line)} after line ${prev}`);
        prev = Number(m[1]);
      }
      assertEquals((await c("image", "destroyc", "fw")).code, 0);
    }, root);
  },
);

rootTest("log: yes under the default limits stays within 3 x 10 MiB", async (root) => {
  await withImage(async (c) => {
    const r = await c("image", "run", "-d", "--name", "y", "bb", "yes");
    assertEquals(r.code, 0, r.stderr);
    try {
      await watchBounded(`${root}/y/container.log`, 2500, 10 * 1024 * 1024, 3);
      let total = 0;
      for (const size of logFiles(`${root}/y/container.log`).values()) total += size;
      assert(total <= 30 * 1024 * 1024, `the logs hold ${total} bytes`);
    } finally {
      await c("delete", "-f", "y");
    }
    await waitFor(
      () => holders(`${root}/y/container.log`).length === 0,
      5000,
      "the log writer to exit",
    );
    assertEquals((await c("image", "destroyc", "y")).code, 0);
  }, root);
});

rootTest(
  "log: a detached exec's fast writer is bounded by the container's limits",
  async (root) => {
    await withImage(async (c) => {
      const r = await c(
        "image",
        "run",
        "-d",
        "--name",
        "ex",
        "--log-max-size",
        "64k",
        "--log-max-files",
        "2",
        "bb",
        "sleep",
        "1000",
      );
      assertEquals(r.code, 0, r.stderr);
      try {
        const e = await c("exec", "-d", "ex", "sh", "-c", COUNTER);
        assertEquals(e.code, 0, e.stderr);
        const execId = e.stdout.trim();
        assertMatch(execId, /^[0-9a-f]{12}$/);
        const log = `${root}/ex/exec-${execId}.log`;
        await watchBounded(log, 2500, 64 * 1024, 2);
        assertEquals((await c("stop", "-t", "0", "ex")).code, 0);
        await waitFor(() => holders(log).length === 0, 5000, "the exec's log writer to exit");
        const l = await c("log", "--exec", execId, "ex");
        assertEquals(l.code, 0, l.stderr);
        const last = assertConsecutive(l.stdout, "log --exec");
        assertMatch(Deno.readTextFileSync(log), new RegExp(`(^|\n)line ${last}\n$`));
      } finally {
        await c("delete", "-f", "ex");
      }
      assertEquals((await c("image", "destroyc", "ex")).code, 0);
    }, root);
  },
);

rootTest("log: image start starts a new log writer, with the limits of image run", async (root) => {
  await withImage(async (c) => {
    // The first run says hi; the second (its writable layer kept) writes fast.
    const script = `if [ -e /again ]; then ${COUNTER}; fi; touch /again; echo hi; echo err >&2`;
    const r = await c(
      "image",
      "run",
      "-d",
      "--name",
      "st",
      "--log-max-size",
      "64k",
      "--log-max-files",
      "2",
      "bb",
      "sh",
      "-c",
      script,
    );
    assertEquals(r.code, 0, r.stderr);
    const log = `${root}/st/container.log`;
    const stopped = async () => JSON.parse((await c("state", "st")).stdout).status === "stopped";
    await waitFor(stopped, 5000, "the container to exit");
    await waitFor(() => holders(log).length === 0, 5000, "the log writer to exit");
    const l = await c("log", "st");
    assertEquals([l.code, l.stdout], [0, "hi\nerr\n"], l.stderr);
    assertEquals((Deno.statSync(log).mode! & 0o777).toString(8), "640");
    const s = await c("image", "start", "st");
    assertEquals(s.code, 0, s.stderr);
    try {
      await watchBounded(log, 2000, 64 * 1024, 2);
      assertEquals(await oneWriter(log), 1, "log writers");
    } finally {
      await c("stop", "-t", "0", "st");
    }
    await waitFor(() => holders(log).length === 0, 5000, "the second log writer to exit");
    assertEquals((await c("image", "destroyc", "st")).code, 0);
  }, root);
});

rootTest("log: run -d of a bundle; a failed detached create leaves no log writer", async (root) => {
  const good = await makeBundle('i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo "line $i"; done');
  const bad = await makeBundle("true", (s) => {
    (s.linux as Record<string, unknown>).intelRdt = { closID: "x" };
  });
  try {
    const r = await capsule(root, ["run", "-d", "-b", good, "bd"]);
    assertEquals(r.code, 0, r.stderr);
    const log = `${root}/bd/container.log`;
    await waitFor(() => holders(log).length === 0, 5000, "the log writer to exit");
    const l = await capsule(root, ["log", "--tail", "2", "bd"]);
    assertEquals([l.code, l.stdout], [0, "line 2999\nline 3000\n"], l.stderr);
    assertEquals((await capsule(root, ["delete", "bd"])).code, 0);
    // Refused after the init (and the log writer) started: both go.
    const f = await capsule(root, ["run", "-d", "-b", bad, "bf"]);
    assertEquals(f.code, 1, f.stdout);
    assertMatch(f.stderr, /intelRdt/);
    await waitFor(() => holders(`${root}/bf/container.log`).length === 0, 5000, "no log writer");
    assert(await monitorLeaves(root), "the root's monitor stayed with nothing to do");
    assertEquals(rootNames(root), []);
  } finally {
    await removeAll(good, bad);
  }
});
