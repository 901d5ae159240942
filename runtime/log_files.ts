// Reading a detached container's (or exec's) log across the files its log writer rotates
// (log_writer.ts): LOG is the current one, LOG.1 the one before, LOG.2 older still, ...
// What `capsule log` prints, as `docker logs` does: the rotated files oldest first, then the
// current one; `--tail N` counts lines across them; following goes on across a rotation
// (tail -F). Memory stays bounded: everything is read in 64 KiB chunks.

const CHUNK = 65536;

/** One open file of a log: its fd (rotation renames files, never changes what is open). */
export interface OpenLogFile {
  file: Deno.FsFile;
  /** The inode, to know it again under another name after a rotation. */
  ino: number;
  size: number;
}

/**
 * The rotated files of `base` (a file name without directory) among the directory entries
 * `names`, oldest first: base.3, base.2, base.1 (those that exist; "base.01" or "base.x" are
 * not its). Pure.
 */
export function rotatedNames(base: string, names: Iterable<string>): string[] {
  const found: [number, string][] = [];
  for (const n of names) {
    if (!n.startsWith(`${base}.`)) continue;
    const k = n.slice(base.length + 1);
    if (/^[1-9]\d{0,5}$/.test(k)) found.push([Number(k), n]);
  }
  return found.sort((a, b) => b[0] - a[0]).map(([, n]) => n);
}

/**
 * Opens the log at `path` and its rotated files, oldest first, the current one last (when it
 * exists: `current` says so). Opened first, read after: a rotation meanwhile changes nothing
 * of what is read.
 */
export function openLogFiles(path: string): { files: OpenLogFile[]; current: boolean } {
  const slash = path.lastIndexOf("/");
  const dir = path.slice(0, slash), base = path.slice(slash + 1);
  let names: string[] = [];
  try {
    names = [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch { /* no directory: no files */ }
  const files: OpenLogFile[] = [];
  for (const name of rotatedNames(base, names)) {
    const f = openFile(`${dir}/${name}`);
    if (f) files.push(f);
  }
  const cur = openFile(path);
  if (cur) files.push(cur);
  return { files, current: cur !== undefined };
}

function openFile(path: string): OpenLogFile | undefined {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path);
  } catch {
    return undefined;
  }
  const st = file.statSync();
  return { file, ino: st.ino ?? 0, size: st.size };
}

/**
 * Where the last `lines` lines of the files (their `sizes`, in order, read as one) begin: a
 * file index and an offset in it. A newline at the very end does not begin a line. With
 * fewer lines, the start of the first file. `readAt(i, offset, buf)` fills `buf` from file
 * `i` at `offset` and returns the bytes read. Reads backwards, 64 KiB at a time.
 */
export function tailStart(
  sizes: number[],
  lines: number,
  readAt: (file: number, offset: number, buf: Uint8Array) => number,
): { file: number; offset: number } {
  const last = sizes.length - 1;
  if (lines <= 0) return { file: Math.max(0, last), offset: last < 0 ? 0 : sizes[last] };
  const buf = new Uint8Array(CHUNK);
  let first = true, count = 0;
  for (let f = last; f >= 0; f--) {
    for (let end = sizes[f]; end > 0;) {
      const start = Math.max(0, end - CHUNK);
      const n = Math.min(readAt(f, start, buf.subarray(0, end - start)), end - start);
      for (let i = n - 1; i >= 0; i--) {
        if (buf[i] === 10 && !first && ++count >= lines) return { file: f, offset: start + i + 1 };
        first = false;
      }
      end = start;
    }
  }
  return { file: 0, offset: 0 };
}

/** Reads `f` from `offset` into `buf`; the bytes read (fewer at the end of the file). */
export function readAt(f: Deno.FsFile, offset: number, buf: Uint8Array): number {
  f.seekSync(offset, Deno.SeekMode.Start);
  let got = 0;
  while (got < buf.length) {
    const n = f.readSync(buf.subarray(got));
    if (!n) break;
    got += n;
  }
  return got;
}

/** Copies `f` from where it stands to its end into `write`; returns the bytes copied. */
export function drain(f: Deno.FsFile, write: (b: Uint8Array) => void): number {
  const buf = new Uint8Array(CHUNK);
  let total = 0;
  for (;;) {
    const n = f.readSync(buf);
    if (!n) return total;
    write(buf.subarray(0, n));
    total += n;
  }
}

/**
 * Prints a log (see the module comment) into `write`: the last `tail` lines, or all. Returns
 * the newest file printed, open at its end, for `follow` (the current one; a rotated one when
 * the writer had renamed the current one away and not yet begun the next); undefined when
 * there is none yet.
 */
export function printLog(
  path: string,
  tail: number | undefined,
  write: (b: Uint8Array) => void,
): OpenLogFile | undefined {
  const { files } = openLogFiles(path);
  let start = { file: 0, offset: 0 };
  if (tail !== undefined) {
    start = tailStart(files.map((f) => f.size), tail, (i, off, b) => readAt(files[i].file, off, b));
  }
  for (let i = 0; i < files.length; i++) {
    if (i >= start.file) {
      files[i].file.seekSync(i === start.file ? start.offset : 0, Deno.SeekMode.Start);
      drain(files[i].file, write);
    } else {
      files[i].file.seekSync(0, Deno.SeekMode.End);
    }
    if (i < files.length - 1) files[i].file.close();
  }
  return files[files.length - 1];
}

/**
 * One step of following the log at `path` (tail -F): prints what `cur` (the newest file
 * printed so far) gained; when `path` is now another file (rotated), finishes `cur`, prints
 * the files rotated since in full (those younger than `cur` that still exist), then the new
 * current one from its start. Between the writer's rename and its new file there is no
 * current one: the newest rotated file printed is followed meanwhile, so nothing is printed
 * twice. Returns the file to follow next and the bytes printed.
 */
export function followStep(
  path: string,
  cur: OpenLogFile | undefined,
  write: (b: Uint8Array) => void,
): { cur: OpenLogFile | undefined; printed: number } {
  let printed = cur ? drain(cur.file, write) : 0;
  let now: number | undefined;
  try {
    now = Deno.statSync(path).ino ?? 0;
  } catch { /* between a rename and the new file: later */ }
  if (now === undefined || now === cur?.ino) return { cur, printed };
  const { files } = openLogFiles(path);
  if (cur) printed += drain(cur.file, write);
  // The files younger than `cur`: those after it; all of them when it was dropped already
  // (rotated past max-files) or when there was none.
  const seen = cur ? files.findIndex((f) => f.ino === cur.ino) : -1;
  let next = cur;
  for (let i = 0; i < files.length; i++) {
    if (i > seen) {
      printed += drain(files[i].file, write);
      if (next && next !== cur) next.file.close();
      next = files[i];
    } else {
      files[i].file.close();
    }
  }
  if (cur && next !== cur) cur.file.close();
  return { cur: next, printed };
}
