// The monitor's log writing (runtime/log_writer.ts, runtime/native/monitor.c) and reading across its rotated files
// (runtime/log_files.ts), without root: a pipe written here, files in a temp directory.
import { assert, assertEquals, assertNotEquals } from "./helpers.ts";
import * as libc from "../../ffi/libc.ts";
import { openLog } from "../../runtime/log_writer.ts";
import { nsexecPath } from "../../runtime/nsexec.ts";
import { followStep, printLog, rotatedNames, tailStart } from "../../runtime/log_files.ts";

// The monitor (runtime/native/monitor.c) is in capsule's native helper: `deno task build`.
const helper = (() => {
  try {
    nsexecPath();
    return true;
  } catch {
    return false;
  }
})();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for `file` to appear (the monitor's LOG.done), at most 5 s. */
async function appears(file: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      Deno.statSync(file);
      return;
    } catch { /* not yet */ }
    await sleep(25);
  }
  throw new Error(`${file} did not appear`);
}

/** The pid of the monitor of `root`, if one runs. */
function monitorOf(root: string): number | undefined {
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      if (argv.startsWith(`capsule-nsexec\0monitor\0serve\0${root}\0`)) return Number(e.name);
    } catch { /* gone */ }
  }
  return undefined;
}

/** Waits until the monitor of `root` has gone (its socket removed, its process ended). */
async function monitorGone(root: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const sock = [...Deno.readDirSync(root)].some((e) => e.name.startsWith(".monitor-"));
    const pid = monitorOf(root);
    let live = false;
    if (pid) {
      try {
        const st = Deno.readTextFileSync(`/proc/${pid}/stat`);
        live = !st.slice(st.lastIndexOf(")") + 2).startsWith("Z");
      } catch { /* gone */ }
    }
    if (!sock && !live) return;
    await sleep(25);
  }
  throw new Error(`the monitor of ${root} did not exit`);
}

/** A temp root with a directory `c` for the logs (the monitor's files stay in the root). */
function tempRoot(): { root: string; dir: string } {
  const root = Deno.makeTempDirSync();
  Deno.mkdirSync(`${root}/c`);
  return { root, dir: `${root}/c` };
}

/** Writes `lines` "line N" lines (N from 1) through the monitor; resolves once it wrote them. */
async function writeThrough(
  root: string,
  path: string,
  limits: { maxSize: number; maxFiles: number },
  lines: number,
  chunk = 1000,
): Promise<void> {
  const { fd, done } = openLog(path, limits, root);
  assert(libc.isCloexec(fd), "the write end must be close-on-exec until the spawn");
  try {
    for (let i = 1; i <= lines; i += chunk) {
      let text = "";
      for (let j = i; j < i + chunk && j <= lines; j++) text += `line ${j}\n`;
      libc.writeAll(fd, new TextEncoder().encode(text) as Uint8Array<ArrayBuffer>);
    }
  } finally {
    libc.close(fd);
  }
  await appears(done);
}

/** The logs in `dir` and their sizes (LOG.done files left out). */
function files(dir: string): Map<string, number> {
  return new Map(
    [...Deno.readDirSync(dir)].filter((e) => !e.name.endsWith(".done")).map((
      e,
    ) => [e.name, Deno.statSync(`${dir}/${e.name}`).size]),
  );
}

function collect(): { write: (b: Uint8Array) => void; text: () => string } {
  const parts: Uint8Array[] = [];
  return {
    write: (b) => parts.push(b.slice()),
    text: () => new TextDecoder().decode(new Uint8Array(parts.flatMap((p) => [...p]))),
  };
}

Deno.test({
  name: "log writer: rotates by rename before a write would pass max-size; files end on lines",
  ignore: !helper,
  fn: async () => {
    const { root, dir } = tempRoot();
    try {
      const log = `${dir}/c.log`;
      await writeThrough(root, log, { maxSize: 4096, maxFiles: 3 }, 20000);
      const f = files(dir);
      assertEquals([...f.keys()].sort(), ["c.log", "c.log.1", "c.log.2"]);
      for (const [name, size] of f) assert(size <= 4096, `${name}: ${size} bytes`);
      assertEquals((Deno.statSync(log).mode! & 0o777).toString(8), "640");
      // Whole lines in each file, consecutive across .2, .1 and the current one, the last
      // one written last.
      const all = ["c.log.2", "c.log.1", "c.log"].map((n) => Deno.readTextFileSync(`${dir}/${n}`));
      for (const t of all) assert(/^(line \d+\n)+$/.test(t), `not whole lines: ${t.slice(0, 40)}`);
      const nums = all.join("").trim().split("\n").map((l) => Number(l.slice(5)));
      nums.forEach((n, i) =>
        assert(i === 0 || n === nums[i - 1] + 1, `line ${n} after ${nums[i - 1]}`)
      );
      assertEquals(nums[nums.length - 1], 20000);
      // log prints them oldest first; --tail counts across the files.
      const out = collect();
      printLog(log, undefined, out.write)?.file.close();
      assertEquals(out.text(), all.join(""));
      const t = collect();
      const n = Deno.readTextFileSync(log).split("\n").length + 5;
      printLog(log, n, t.write)?.file.close();
      assertEquals(t.text().trim().split("\n").length, n);
      assert(t.text().endsWith("line 20000\n"));
    } finally {
      await monitorGone(root);
      Deno.removeSync(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "log writer: max-files 1 replaces the file; a max-size below a read cuts at max-size",
  ignore: !helper,
  fn: async () => {
    const { root, dir } = tempRoot();
    try {
      await writeThrough(root, `${dir}/a.log`, { maxSize: 1000, maxFiles: 1 }, 5000);
      const f = files(dir);
      assertEquals([...f.keys()], ["a.log"]);
      assert(f.get("a.log")! <= 1000);
      assert(Deno.readTextFileSync(`${dir}/a.log`).endsWith("line 5000\n"));
      // Lines longer than max-size: each file is cut at exactly max-size.
      const { fd, done } = openLog(`${dir}/b.log`, { maxSize: 100, maxFiles: 2 }, root);
      libc.writeAll(fd, new Uint8Array(1000).fill(120) as Uint8Array<ArrayBuffer>);
      libc.close(fd);
      await appears(done);
      assertEquals(files(dir).get("b.log"), 100);
      assertEquals(files(dir).get("b.log.1"), 100);
      // 0: never rotated.
      await writeThrough(root, `${dir}/c.log`, { maxSize: 0, maxFiles: 2 }, 3000);
      assert(!files(dir).has("c.log.1"));
    } finally {
      await monitorGone(root);
      Deno.removeSync(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "monitor: one per root for every log, keeps no fd or environment of its callers, " +
    "leaves their session and directory, and exits with its last log",
  ignore: !helper,
  fn: async () => {
    const { root, dir } = tempRoot();
    // What a caller has open without close-on-exec (create's channel end to the init).
    const [a, b] = libc.socketpair();
    const held = (pid: number) =>
      [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) =>
        Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`)
      );
    const first = openLog(`${dir}/c.log`, { maxSize: 100, maxFiles: 2 }, root);
    let second: { fd: number; done: string } | undefined;
    try {
      const pid = monitorOf(root);
      assert(pid, "no monitor of the root");
      const sock = [...Deno.readDirSync(root)].find((e) =>
        /^\.monitor-[0-9a-f]{16}\.sock$/.test(e.name)
      );
      assert(sock, "no socket of the monitor in the root");
      assertEquals((Deno.statSync(`${root}/${sock.name}`).mode! & 0o777).toString(8), "700");
      second = openLog(`${dir}/d.log`, { maxSize: 100, maxFiles: 2 }, root);
      assertEquals(monitorOf(root), pid, "a second monitor for the same root");
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const mine = Deno.readTextFileSync("/proc/self/stat");
      const myFields = mine.slice(mine.lastIndexOf(")") + 2).split(" ");
      assertNotEquals(fields[3], myFields[3], "in the caller's session"); // the session id
      if (Deno.uid() === 0) { // the helper is not dumpable: its /proc entries are root's
        assertEquals(Deno.readLinkSync(`/proc/${pid}/cwd`), "/");
        assertEquals(Deno.readTextFileSync(`/proc/${pid}/environ`), "");
        const fds = held(pid);
        const pair = [a, b].map((f) => Deno.readLinkSync(`/proc/self/fd/${f}`));
        assertEquals(fds.filter((l) => pair.includes(l)), [], "holds the caller's socket");
        assertEquals(fds.filter((l) => l.startsWith("socket:")).length, 1); // its own
        assertEquals(fds.filter((l) => l.startsWith("pipe:")).length, 2);
        assertEquals(fds.filter((l) => l === `${dir}/c.log` || l === `${dir}/d.log`).length, 2);
      }
      libc.close(first.fd);
      await appears(first.done);
      assertEquals(monitorOf(root), pid, "the monitor left with a log still open");
    } finally {
      libc.close(a);
      libc.close(b);
      try {
        libc.close(first.fd);
      } catch { /* closed */ }
      if (second) libc.close(second.fd);
      await monitorGone(root);
      Deno.removeSync(root, { recursive: true });
    }
  },
});

Deno.test("log files: rotated names oldest first, only base.N", () => {
  assertEquals(
    rotatedNames("c.log", [
      "c.log",
      "c.log.1",
      "c.log.10",
      "c.log.2",
      "c.log.01",
      "c.log.x",
      "d.log.3",
    ]),
    ["c.log.10", "c.log.2", "c.log.1"],
  );
  assertEquals(rotatedNames("c.log", []), []);
});

Deno.test("log files: tail counts lines across files, a final newline begins none", () => {
  const data = ["a\nb\n", "", "c\nd", "\ne\n"].map((s) => new TextEncoder().encode(s));
  const read = (i: number, off: number, buf: Uint8Array) => {
    const part = data[i].subarray(off, off + buf.length);
    buf.set(part);
    return part.length;
  };
  const sizes = data.map((d) => d.length);
  const from = (n: number) => {
    const s = tailStart(sizes, n, read);
    return new TextDecoder().decode(
      new Uint8Array([
        ...data[s.file].subarray(s.offset),
        ...data.slice(s.file + 1).flatMap((d) => [...d]),
      ]),
    );
  };
  assertEquals(from(1), "e\n");
  assertEquals(from(2), "d\ne\n"); // "d" ends in the next file
  assertEquals(from(3), "c\nd\ne\n");
  assertEquals(from(4), "b\nc\nd\ne\n");
  assertEquals(from(9), "a\nb\nc\nd\ne\n");
  assertEquals(from(0), "");
  assertEquals(tailStart([], 3, read), { file: 0, offset: 0 });
});

Deno.test("log files: following goes on across rotations, the files between printed once", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const log = `${dir}/c.log`;
    Deno.writeTextFileSync(log, "1\n");
    const out = collect();
    let cur = printLog(log, undefined, out.write);
    Deno.writeTextFileSync(log, "2\n", { append: true });
    cur = followStep(log, cur, out.write).cur;
    // Two rotations between two steps (max-files 3): the file in the middle is printed too.
    Deno.renameSync(log, `${log}.1`);
    Deno.writeTextFileSync(log, "3\n");
    Deno.renameSync(`${log}.1`, `${log}.2`);
    Deno.renameSync(log, `${log}.1`);
    Deno.writeTextFileSync(log, "4\n");
    cur = followStep(log, cur, out.write).cur;
    Deno.writeTextFileSync(log, "5\n", { append: true });
    const last = followStep(log, cur, out.write);
    assertEquals(out.text(), "1\n2\n3\n4\n5\n");
    assertEquals(followStep(log, last.cur, out.write).printed, 0);
    last.cur?.file.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("log files: a step between the writer's rename and its new file prints nothing twice", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const log = `${dir}/c.log`;
    Deno.writeTextFileSync(log, "1\n");
    const out = collect();
    let cur = printLog(log, undefined, out.write);
    Deno.writeTextFileSync(log, "2\n", { append: true });
    // Rotated (max-files 2), and the writer has not made the new file yet.
    Deno.renameSync(log, `${log}.1`);
    cur = followStep(log, cur, out.write).cur;
    Deno.writeTextFileSync(log, "3\n");
    cur = followStep(log, cur, out.write).cur;
    // Again, and printLog itself in that window: it ends with the rotated file, and the next
    // step goes on after it.
    Deno.renameSync(log, `${log}.1`);
    cur?.file.close();
    const again = collect();
    cur = printLog(log, undefined, again.write);
    Deno.writeTextFileSync(log, "4\n");
    cur = followStep(log, cur, again.write).cur;
    cur = followStep(log, cur, out.write).cur;
    cur?.file.close();
    assertEquals(out.text(), "1\n2\n3\n");
    assertEquals(again.text(), "1\n2\n3\n".slice(4) + "4\n");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("--log-max-size: a bad value names the flag and the form expected", async () => {
  const { parseLogOptions } = await import("../../runtime/waiter.ts");
  const { parseMemory } = await import("../../runtime/cgroups/mod.ts");
  for (const bad of ["1x", "-1", "ten"]) {
    let msg = "";
    try {
      parseLogOptions(bad, undefined, parseMemory);
    } catch (e) {
      msg = (e as Error).message;
    }
    assertEquals(
      msg,
      `Invalid --log-max-size "${bad}": expected bytes with an optional unit (k, m, g), ` +
        `e.g. 10m, or 0 to never rotate`,
    );
  }
  assertEquals(parseLogOptions("1k", "2", parseMemory), { maxSize: 1024, maxFiles: 2 });
  assertEquals(parseLogOptions("0", undefined, parseMemory).maxSize, 0);
});
