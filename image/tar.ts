// A streaming tar reader: ustar, pax (local and global headers, xattrs) and GNU long names,
// over any stream of byte chunks (a file, a gzip DecompressionStream). Pure: no file system
// access, no imports, so it is unit-tested with crafted bytes. Only `image create` loads it.

export type EntryType =
  | "file"
  | "link"
  | "symlink"
  | "char"
  | "block"
  | "dir"
  | "fifo"
  | "other";

export interface TarHeader {
  /** The path as stored (after pax/GNU long-name overrides), not yet normalized. */
  name: string;
  type: EntryType;
  /** The raw type flag, for errors. */
  flag: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch (fractional with pax). */
  mtime: number;
  /** With a pax mtime that has a fraction: the same time exactly, in nanoseconds. */
  mtimeNs?: bigint;
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from pax SCHILY.xattr.* / LIBARCHIVE.xattr.* records. */
  xattrs: Record<string, Uint8Array>;
}

/** Thrown for input that is not a tar archive or ends early; the caller names the file. */
export class TarError extends Error {
  override name = "TarError";
  /**
   * `truncated`: the input ends early. `entry`: the input is tar, one entry of it is what
   * capsule refuses (so no "capsule reads ..." hint about the archive's format).
   */
  constructor(message: string, readonly truncated = false, readonly entry = false) {
    super(message);
  }
}

/**
 * Reads exact byte counts from a stream of chunks without copying the large bodies: file data
 * is handed on as subarrays of the chunks it arrived in. It asks the source for the next
 * chunk only when the current one is used up, and what it hands out (the result of `read`,
 * the pieces given to a `pipe` sink) is valid only until the next call on the reader: the
 * source may then release the chunk's memory (image/decompress.ts, image/import.ts).
 */
export class ChunkReader {
  #it: AsyncIterator<Uint8Array>;
  #buf: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #done = false;
  /** Bytes consumed so far. */
  offset = 0;

  #seek?: (n: number) => void;

  /** A source with a `skip(n)` method (a file) skips entry data without reading it. */
  constructor(source: AsyncIterable<Uint8Array> & { skip?: (n: number) => void }) {
    this.#it = source[Symbol.asyncIterator]();
    if (typeof source.skip === "function") this.#seek = (n) => source.skip!(n);
  }

  async #more(): Promise<boolean> {
    while (this.#pos >= this.#buf.length) {
      if (this.#done) return false;
      const r = await this.#it.next();
      if (r.done) {
        this.#done = true;
        return false;
      }
      this.#buf = r.value;
      this.#pos = 0;
    }
    return true;
  }

  /** Exactly n bytes; null at a clean end of input (nothing read); TarError if it ends within. */
  async read(n: number): Promise<Uint8Array | null> {
    if (!(await this.#more())) return null;
    const avail = this.#buf.length - this.#pos;
    if (avail >= n) {
      const out = this.#buf.subarray(this.#pos, this.#pos + n);
      this.#pos += n;
      this.offset += n;
      return out;
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (!(await this.#more())) {
        throw new TarError(`the archive ends early (at byte ${this.offset})`, true);
      }
      const take = Math.min(n - got, this.#buf.length - this.#pos);
      out.set(this.#buf.subarray(this.#pos, this.#pos + take), got);
      this.#pos += take;
      this.offset += take;
      got += take;
    }
    return out;
  }

  /** Hands n bytes to `sink` in pieces (subarrays valid only during the call). */
  async pipe(n: number, sink: (piece: Uint8Array) => void | Promise<void>): Promise<void> {
    let left = n;
    while (left > 0) {
      if (!(await this.#more())) {
        throw new TarError(`the archive ends early (at byte ${this.offset})`, true);
      }
      const take = Math.min(left, this.#buf.length - this.#pos);
      const piece = this.#buf.subarray(this.#pos, this.#pos + take);
      this.#pos += take;
      this.offset += take;
      left -= take;
      await sink(piece);
    }
  }

  async skip(n: number): Promise<void> {
    const buffered = Math.min(n, this.#buf.length - this.#pos);
    this.#pos += buffered;
    this.offset += buffered;
    if (n > buffered && this.#seek && !this.#done) {
      this.#seek(n - buffered);
      this.offset += n - buffered;
      return;
    }
    await this.pipe(n - buffered, () => {});
  }

  /** Reads the rest of the input (so that a digest over all of it is complete). */
  async drain(): Promise<void> {
    while (await this.#more()) {
      this.offset += this.#buf.length - this.#pos;
      this.#pos = this.#buf.length;
    }
  }

  /** Stops reading the source (e.g. after a format probe). */
  async cancel(): Promise<void> {
    this.#done = true;
    await this.#it.return?.();
  }
}

const dec = new TextDecoder();

function cstring(b: Uint8Array): string {
  const end = b.indexOf(0);
  return dec.decode(end < 0 ? b : b.subarray(0, end));
}

/**
 * An octal field, or GNU base-256 (high bit of the first byte set) for large values: big-endian
 * two's complement after that bit, so a first byte 0xff is a negative number (GNU tar writes a
 * time before 1970 so).
 */
export function parseNumber(b: Uint8Array): number {
  if (b[0] & 0x80) {
    const negative = (b[0] & 0x40) !== 0;
    const inv = negative ? 0xff : 0;
    let n = (b[0] ^ inv) & 0x7f;
    for (let i = 1; i < b.length; i++) n = n * 256 + (b[i] ^ inv);
    return negative ? -(n + 1) : n;
  }
  const s = cstring(b).trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarError(`invalid number field "${s}" in a tar header`);
  return parseInt(s, 8);
}

function checksumOk(h: Uint8Array): boolean {
  const stored = cstring(h.subarray(148, 156)).trim();
  if (!/^[0-7]+$/.test(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
  return sum === parseInt(stored, 8);
}

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

const TYPES: Record<string, EntryType> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "1": "link",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "dir",
  "6": "fifo",
};

/** pax records: "LEN key=value\n"... Values are raw bytes (xattrs need not be UTF-8). */
export function parsePax(data: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  let i = 0;
  while (i < data.length) {
    if (data[i] === 0) break;
    const sp = data.indexOf(0x20, i);
    if (sp < 0) throw new TarError("malformed pax header");
    const len = parseInt(dec.decode(data.subarray(i, sp)), 10);
    if (!Number.isFinite(len) || len <= 0 || i + len > data.length) {
      throw new TarError("malformed pax header record length");
    }
    const rec = data.subarray(sp + 1, i + len - 1); // without the trailing newline
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new TarError("malformed pax header record");
    out.set(dec.decode(rec.subarray(0, eq)), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

/** A pax number: decimal digits (a fraction and a sign only where `pattern` allows them). */
function paxNumber(h: TarHeader, key: string, text: string, pattern = /^\d{1,15}$/): number {
  if (!pattern.test(text)) {
    throw new TarError(
      `invalid ${key} "${text.slice(0, 40)}" in a pax header for "${h.name}"`,
      false,
      true,
    );
  }
  return Number(text);
}

function applyPax(h: TarHeader, pax: Map<string, Uint8Array>): void {
  for (const [k, v] of pax) {
    const s = () => dec.decode(v);
    switch (k) {
      case "path":
        h.name = s();
        break;
      case "linkpath":
        h.linkname = s();
        break;
      case "size":
        h.size = paxNumber(h, k, s());
        break;
      case "uid":
        h.uid = paxNumber(h, k, s());
        break;
      case "gid":
        h.gid = paxNumber(h, k, s());
        break;
      case "mtime": {
        // Seconds, with a fraction and before 1970 a sign (POSIX pax, GNU tar). A double
        // keeps ~0.2 us of a recent time: the nanoseconds are kept apart, exactly.
        // Python's tarfile writes str(float): 1e-05 for a time within 0.1 ms of 1970.
        const text = s();
        h.mtime = paxNumber(h, k, text, /^-?\d{1,15}(\.\d{1,20})?(e-\d{1,2})?$/);
        if (text.includes("e")) break;
        const [whole, frac = ""] = text.replace("-", "").split(".");
        const ns = BigInt(whole) * 1_000_000_000n + BigInt((frac + "000000000").slice(0, 9));
        h.mtimeNs = text.startsWith("-") ? -ns : ns;
        break;
      }
      default:
        if (k.startsWith("GNU.sparse.")) throw sparse(h);
        if (k.startsWith("SCHILY.xattr.")) h.xattrs[k.slice(13)] = v;
        else if (k.startsWith("LIBARCHIVE.xattr.")) {
          // base64 of the value, name URL-encoded
          try {
            h.xattrs[decodeURIComponent(k.slice(17))] = Uint8Array.from(
              atob(s()),
              (c) => c.charCodeAt(0),
            );
          } catch { /* malformed: skip */ }
        }
    }
  }
  if (!Number.isSafeInteger(h.size) || h.size < 0) {
    throw new TarError(`invalid size in a pax header for "${h.name}"`);
  }
}

/**
 * A GNU sparse file (type S, or pax GNU.sparse.* records): its data is a map of holes that
 * capsule does not read. Extracted as a plain entry it would be a wrong file (or none).
 */
function sparse(h: TarHeader): TarError {
  return new TarError(
    `"${h.name}" is a GNU sparse file, which capsule does not read; make the archive without ` +
      `sparse entries (GNU tar: without --sparse; bsdtar: --no-read-sparse); holes are kept ` +
      `anyway: runs of zeros are not written`,
    false,
    true,
  );
}

/** uid and gid are 32-bit: a larger value would wrap to another owner (GNU tar refuses it). */
function checkOwner(h: TarHeader): void {
  for (const [what, id] of [["uid", h.uid], ["gid", h.gid]] as const) {
    if (id < 0 || id > 0xffffffff) {
      throw new TarError(
        `"${h.name}" has ${what} ${id}, not 0 to 4294967295 (32 bits)`,
        false,
        true,
      );
    }
  }
}

export interface TarEntry {
  header: TarHeader;
  /** Where the entry's data starts in the (uncompressed) archive. */
  offset: number;
  /** Streams the entry's data to `sink` (once); what is not read is skipped afterwards. */
  pipe(sink: (piece: Uint8Array) => void | Promise<void>): Promise<void>;
  /** The whole data (for small entries: JSON files, pax). */
  bytes(): Promise<Uint8Array>;
}

const pad = (n: number) => (512 - (n % 512)) % 512;

/**
 * The entries of a tar stream, in order. Long-name and pax headers are folded into the entry
 * they describe. Throws TarError when the input is not tar (bad checksum on the first header)
 * or ends before the end-of-archive marker.
 */
export async function* readTar(
  reader: ChunkReader,
  opts: {
    /**
     * An image layer: an archive with no entries (its end marker alone, or no bytes at all) is
     * a layer that changes nothing, as docker saves one, not "not a tar archive".
     */
    layer?: boolean;
  } = {},
): AsyncGenerator<TarEntry> {
  let globalPax = new Map<string, Uint8Array>();
  let localPax: Map<string, Uint8Array> | undefined;
  let longName: string | undefined;
  let longLink: string | undefined;
  let first = true;
  for (;;) {
    const block = await reader.read(512);
    if (block === null) {
      if (first && opts.layer) return;
      if (first) throw new TarError("the file is empty", true);
      throw new TarError("the archive ends without its end marker (truncated?)", true);
    }
    if (isZero(block)) {
      if (first && !opts.layer) {
        throw new TarError("not a tar archive (it starts with an empty block)");
      }
      return; // end of archive (a second zero block and padding may follow: not read)
    }
    if (!checksumOk(block)) {
      throw new TarError(
        first
          ? "not a tar archive (no valid tar header at its start)"
          : `corrupt tar header at byte ${reader.offset - 512}`,
      );
    }
    first = false;
    const flag = String.fromCharCode(block[156]);
    const magic = dec.decode(block.subarray(257, 263));
    const ustar = magic.startsWith("ustar");
    let name = cstring(block.subarray(0, 100));
    const prefix = ustar && magic === "ustar\0" ? cstring(block.subarray(345, 500)) : "";
    if (prefix) name = `${prefix}/${name}`;
    const h: TarHeader = {
      name,
      type: TYPES[flag] ?? "other",
      flag,
      mode: parseNumber(block.subarray(100, 108)) & 0o7777,
      uid: parseNumber(block.subarray(108, 116)),
      gid: parseNumber(block.subarray(116, 124)),
      size: parseNumber(block.subarray(124, 136)),
      mtime: parseNumber(block.subarray(136, 148)),
      linkname: cstring(block.subarray(157, 257)),
      devmajor: ustar ? parseNumber(block.subarray(329, 337)) : 0,
      devminor: ustar ? parseNumber(block.subarray(337, 345)) : 0,
      xattrs: {},
    };
    // Meta entries: their data describes the next entry.
    if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
      if (h.size > 64 << 20) throw new TarError(`oversized ${flag} header (${h.size} bytes)`);
      const data = h.size ? await reader.read(h.size) : new Uint8Array(0);
      if (data === null) throw new TarError("the archive ends early", true);
      // Parsed before the reader moves on: `data` may be a view of a chunk it releases.
      if (flag === "x") localPax = parsePax(data);
      else if (flag === "g") {
        globalPax = new Map([...globalPax, ...parsePax(data)]);
        // Global records add up across headers: bounded as one header is.
        let size = 0;
        for (const [k, v] of globalPax) size += k.length + v.length;
        if (size > 64 << 20) throw new TarError(`oversized global pax headers (${size} bytes)`);
      } else if (flag === "L") longName = cstring(data);
      else longLink = cstring(data);
      await reader.skip(pad(h.size));
      continue;
    }
    if (longName !== undefined) h.name = longName;
    if (longLink !== undefined) h.linkname = longLink;
    if (globalPax.size) applyPax(h, globalPax);
    if (localPax) applyPax(h, localPax);
    longName = longLink = localPax = undefined;
    if (flag === "S") throw sparse(h);
    checkOwner(h);
    // Only these carry data in the archive (a hard link's size is 0 or ignored).
    const dataSize = h.type === "file" || h.type === "other" ? h.size : 0;
    let consumed = false;
    const entry: TarEntry = {
      header: h,
      offset: reader.offset,
      pipe: async (sink) => {
        if (consumed) throw new Error("tar entry data read twice");
        consumed = true;
        await reader.pipe(dataSize, sink);
      },
      bytes: async () => {
        const out = new Uint8Array(dataSize);
        let at = 0;
        await entry.pipe((p) => {
          out.set(p, at);
          at += p.length;
        });
        return out;
      },
    };
    yield entry;
    if (!consumed) {
      consumed = true;
      await reader.skip(dataSize);
    }
    await reader.skip(pad(dataSize));
  }
}

/**
 * The path of an entry relative to the archive's root, as components: "./a//b/" -> [a, b];
 * a leading "/" is dropped (as GNU tar does); "." and "" are skipped. Returns null when a
 * component is "..": such an entry points outside, and the caller refuses it.
 */
export function entryPath(name: string): string[] | null {
  const parts: string[] = [];
  for (const p of name.split("/")) {
    if (p === "" || p === ".") continue;
    if (p === "..") return null;
    parts.push(p);
  }
  return parts;
}

// ---- writing (tests and fixtures only) ---------------------------------------------------

const enc = new TextEncoder();

export interface WriteEntry {
  name: string;
  type?: EntryType | "pax" | "gnulong";
  data?: Uint8Array | string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  /** Write a pax header with these records before the entry. */
  pax?: Record<string, string>;
  /** Use a GNU ././@LongLink entry for a name over 100 bytes. */
  gnuLongName?: boolean;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, "0") + "\0";
}

function header(
  name: string,
  flag: string,
  size: number,
  e: Pick<WriteEntry, "mode" | "uid" | "gid" | "mtime" | "linkname">,
): Uint8Array {
  const h = new Uint8Array(512);
  const put = (s: string | Uint8Array, at: number, len: number) =>
    h.set((typeof s === "string" ? enc.encode(s) : s).subarray(0, len), at);
  put(name, 0, 100);
  put(octal(e.mode ?? (flag === "5" ? 0o755 : 0o644), 8), 100, 8);
  put(octal(e.uid ?? 0, 8), 108, 8);
  put(octal(e.gid ?? 0, 8), 116, 8);
  put(octal(size, 12), 124, 12);
  put(octal(e.mtime ?? 1_700_000_000, 12), 136, 12);
  put("        ", 148, 8);
  put(flag, 156, 1);
  put(e.linkname ?? "", 157, 100);
  put("ustar\0", 257, 6);
  put("00", 263, 2);
  let sum = 0;
  for (const b of h) sum += b;
  put(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8);
  return h;
}

/**
 * The ustar header block (512 bytes) of a regular file of `size` bytes, for archives too
 * large to build in memory: the caller writes the data, padding to 512 and the end blocks.
 */
export function fileHeader(
  name: string,
  size: number,
  e: Pick<WriteEntry, "mode" | "uid" | "gid" | "mtime"> = {},
): Uint8Array {
  return header(name, "0", size, e);
}

function padded(data: Uint8Array): Uint8Array[] {
  return [data, new Uint8Array(pad(data.length))];
}

function paxData(records: Record<string, string>): Uint8Array {
  let out = "";
  for (const [k, v] of Object.entries(records)) {
    const body = ` ${k}=${v}\n`;
    let len = enc.encode(body).length;
    len += String(len).length;
    if (String(len).length !== String(len - String(len).length).length) len++;
    out += `${len}${body}`;
  }
  return enc.encode(out);
}

const FLAGS: Record<string, string> = {
  file: "0",
  link: "1",
  symlink: "2",
  char: "3",
  block: "4",
  dir: "5",
  fifo: "6",
};

/** Builds tar bytes (for tests): ustar headers, optional pax and GNU long-name entries. */
export function buildTar(entries: WriteEntry[], opts: { end?: boolean } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const data = typeof e.data === "string" ? enc.encode(e.data) : (e.data ?? new Uint8Array(0));
    if (e.pax) {
      const pd = paxData(e.pax);
      parts.push(header("PaxHeader", "x", pd.length, {}), ...padded(pd));
    }
    let name = e.name;
    if (e.gnuLongName) {
      const ln = enc.encode(e.name + "\0");
      parts.push(header("././@LongLink", "L", ln.length, {}), ...padded(ln));
      name = e.name.slice(0, 99);
    }
    const flag = FLAGS[e.type ?? "file"] ?? "0";
    parts.push(header(name, flag, flag === "0" ? data.length : 0, e));
    if (flag === "0") parts.push(...padded(data));
  }
  if (opts.end !== false) parts.push(new Uint8Array(1024));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
