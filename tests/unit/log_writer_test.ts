// The log writer (runtime/log_writer.ts) and reading across its rotated files
// (runtime/log_files.ts), without root: a pipe written here, files in a temp directory.
import { assert, assertEquals } from "./helpers.ts";
import * as libc from "../../ffi/libc.ts";
import { openLog } from "../../runtime/log_writer.ts";
import { followStep, printLog, rotatedNames, tailStart } from "../../runtime/log_files.ts";

const perl = (() => {
  try {
    return Deno.statSync("/usr/bin/perl").isFile;
  } catch {
    return false;
  }
})();

async function gone(pid: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return;
    } catch {
      return;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`log writer ${pid} did not exit`);
}

/** Writes `lines` "line N" lines (N from 1) through a log writer; resolves once it exited. */
async function writeThrough(
  path: string,
  limits: { maxSize: number; maxFiles: number },
  lines: number,
  chunk = 1000,
): Promise<void> {
  const { fd, writerPid } = openLog(path, limits);
  assert(writerPid, "no log writer started");
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
  await gone(writerPid);
}

function files(dir: string): Map<string, number> {
  return new Map(
    [...Deno.readDirSync(dir)].map((e) => [e.name, Deno.statSync(`${dir}/${e.name}`).size]),
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
  ignore: !perl,
  fn: async () => {
    const dir = Deno.makeTempDirSync();
    try {
      const log = `${dir}/c.log`;
      await writeThrough(log, { maxSize: 4096, maxFiles: 3 }, 20000);
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
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "log writer: max-files 1 replaces the file; a max-size below a read cuts at max-size",
  ignore: !perl,
  fn: async () => {
    const dir = Deno.makeTempDirSync();
    try {
      await writeThrough(`${dir}/a.log`, { maxSize: 1000, maxFiles: 1 }, 5000);
      const f = files(dir);
      assertEquals([...f.keys()], ["a.log"]);
      assert(f.get("a.log")! <= 1000);
      assert(Deno.readTextFileSync(`${dir}/a.log`).endsWith("line 5000\n"));
      // Lines longer than max-size: each file is cut at exactly max-size.
      const { fd, writerPid } = openLog(`${dir}/b.log`, { maxSize: 100, maxFiles: 2 });
      libc.writeAll(fd, new Uint8Array(1000).fill(120) as Uint8Array<ArrayBuffer>);
      libc.close(fd);
      await gone(writerPid!);
      assertEquals(files(dir).get("b.log"), 100);
      assertEquals(files(dir).get("b.log.1"), 100);
      // 0: never rotated.
      await writeThrough(`${dir}/c.log`, { maxSize: 0, maxFiles: 2 }, 3000);
      assert(!files(dir).has("c.log.1"));
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "log writer: holds nothing but the pipe's read end and the log, in a session of its own",
  ignore: !perl,
  fn: async () => {
    const dir = Deno.makeTempDirSync();
    // What a caller has open without close-on-exec (create's channel end to the init).
    const [a, b] = libc.socketpair();
    const { fd, writerPid } = openLog(`${dir}/c.log`, { maxSize: 100, maxFiles: 2 });
    try {
      const pid = writerPid!;
      for (let i = 0; i < 200; i++) {
        if (Deno.readTextFileSync(`/proc/${pid}/cmdline`).startsWith("capsule-log ")) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      assertEquals(Deno.readTextFileSync(`/proc/${pid}/cmdline`), `capsule-log ${dir}/c.log\0`);
      const held = [...Deno.readDirSync(`/proc/${pid}/fd`)].map((e) =>
        Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`)
      ).sort();
      assertEquals(held.filter((l) => l.startsWith("socket:")), []);
      assertEquals(held.filter((l) => l === "/dev/null").length, 3);
      assertEquals(held.filter((l) => l.startsWith("pipe:")).length, 1);
      assertEquals(held.filter((l) => l === `${dir}/c.log`).length, 1);
      assertEquals(held.length, 5);
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      assertEquals(fields[3], String(pid), "not a session leader"); // the session id
      assertEquals(Deno.readLinkSync(`/proc/${pid}/cwd`), "/");
    } finally {
      libc.close(a);
      libc.close(b);
      libc.close(fd);
      await gone(writerPid!);
      Deno.removeSync(dir, { recursive: true });
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
