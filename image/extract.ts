// Safe extraction of a tar stream into a directory: a flat rootfs, or one image layer on top
// of the ones before it (whiteouts). Nothing lands outside the directory: entries with ".."
// are refused, parents are resolved component by component with lstat, and a symlink met on
// the way is followed only inside the directory (an absolute target from its root, as in a
// chroot); one that climbs out refuses the archive. The last component is never followed: an
// existing entry is removed first (once an exclusive create found it there), files are created with O_EXCL.
import { entryPath, type TarEntry, type TarHeader } from "./tar.ts";
import { FdFile, lchown, lsetxattr, lutimes, makeNode } from "./sys.ts";

/** The archive tries to write outside the image directory. */
export class EscapeError extends Error {
  override name = "EscapeError";
}

export interface ApplyOptions {
  /** An image layer: `.wh.NAME` removes NAME, `.wh..wh..opq` empties the directory. */
  layer?: boolean;
  /**
   * With `layer`: keep the whiteouts in overlayfs form instead of applying them (the layer
   * is extracted into a directory of its own, to be stacked as a lowerdir): `.wh.NAME`
   * becomes a 0/0 character device NAME, `.wh..wh..opq` the `trusted.overlay.opaque=y`
   * attribute of its directory. Needs root (mknod, trusted.* attributes).
   */
  overlayWhiteouts?: boolean;
  /** Set owners (root only); default: when running as root. */
  owners?: boolean;
  /** Checked between entries: set `aborted` to stop (Ctrl-C). */
  signal?: { aborted: boolean };
}

export interface ApplyStats {
  entries: number;
  /** Entries skipped: unknown types, devices without privilege. */
  skipped: number;
  /** Extended attributes the file system refused. */
  xattrsSkipped: number;
  /** Bytes of the regular files this stream created (their sizes, holes included). */
  bytes: number;
  /**
   * Something was removed (a whiteout, an entry that replaced another): `bytes` of this and
   * earlier streams may then count files that are gone, and only a walk of the tree is exact.
   */
  removed: boolean;
}

const MAX_LINKS = 40;

/** What a directory entry sets once its directory is complete. */
type DirMeta = Pick<TarHeader, "uid" | "gid" | "mode" | "mtime" | "mtimeNs">;
const OPAQUE = new TextEncoder().encode("y");

function lstat(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** An error saying that something exists at the path (Deno's, or a SysError's EEXIST). */
function isExists(e: unknown): boolean {
  return e instanceof Deno.errors.AlreadyExists || (e as { code?: string })?.code === "EEXIST";
}

function removeAny(path: string, info: Deno.FileInfo): void {
  Deno.removeSync(path, { recursive: info.isDirectory });
}

/** Bytes per hole candidate: runs of zeros this long, aligned in the file, are not written. */
const HOLE = 64 << 10;

/** True when every byte of b is 0 (eight at a time where aligned). */
export function allZero(b: Uint8Array): boolean {
  let i = 0;
  const head = Math.min(b.length, (8 - (b.byteOffset % 8)) % 8);
  for (; i < head; i++) if (b[i] !== 0) return false;
  const words = (b.length - i) >> 3;
  if (words > 0) {
    const w = new BigUint64Array(b.buffer, b.byteOffset + i, words);
    for (let k = 0; k < words; k++) if (w[k] !== 0n) return false;
    i += words * 8;
  }
  for (; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/** What SparseWriter calls of a file: a Deno.FsFile's synchronous calls, or an FdFile's. */
type SyncFile = {
  writeSync(b: Uint8Array): number;
  seekSync(n: number, whence: Deno.SeekMode.Current): unknown;
  truncateSync(size: number): void;
};

/**
 * Writes a new (empty) file's data in order, synchronously (so nothing waits in memory), and
 * leaves a hole for every HOLE-aligned run of zeros: seeks over it instead of writing it, and
 * sets the size at the end. The file reads back byte for byte the same; a 2 GB file of zeros
 * (a sparse file in the archive, /var/log/lastlog) takes no disk and no write time.
 */
export class SparseWriter {
  #f: SyncFile;
  /** Bytes handed to write() so far: the file's size at the end. */
  size = 0;
  /** Zeros skipped and not yet followed by a write. */
  #pending = 0;
  constructor(f: SyncFile) {
    this.#f = f;
  }
  #put(b: Uint8Array): void {
    if (this.#pending) {
      this.#f.seekSync(this.#pending, Deno.SeekMode.Current);
      this.#pending = 0;
    }
    let off = 0;
    while (off < b.length) off += this.#f.writeSync(b.subarray(off));
  }
  /** The next bytes of the file. */
  write(piece: Uint8Array): void {
    let run = 0; // start of the data not yet written or skipped
    let at = 0;
    while (at < piece.length) {
      const end = Math.min(piece.length, at + HOLE - ((this.size + at) % HOLE));
      const seg = piece.subarray(at, end);
      if (allZero(seg)) {
        if (run < at) this.#put(piece.subarray(run, at));
        this.#pending += seg.length;
        run = end;
      }
      at = end;
    }
    if (run < piece.length) this.#put(piece.subarray(run));
    this.size += piece.length;
  }
  /** Gives the file its full size when it ends with a hole. */
  end(): void {
    if (this.#pending) this.#f.truncateSync(this.size);
    this.#pending = 0;
  }
}

/** Applies the entries of one tar stream to `root` (an existing directory). */
export async function applyTar(
  entries: AsyncIterable<TarEntry>,
  root: string,
  opts: ApplyOptions = {},
): Promise<ApplyStats> {
  const owners = opts.owners ?? Deno.uid() === 0;
  const stats: ApplyStats = { entries: 0, skipped: 0, xattrsSkipped: 0, bytes: 0, removed: false };
  /** Directory paths as named in the archive -> resolved path under root ("" is root). */
  const dirCache = new Map<string, string>();
  /** What this layer wrote (opaque whiteouts keep these). */
  const written = new Set<string>();
  /** Directory metadata, applied last (adding entries changes a directory's mtime). */
  const dirMeta = new Map<string, DirMeta>();
  /** Only what is applied later: not the header (its xattrs can be large). */
  const meta = (h: TarHeader): DirMeta => ({
    uid: h.uid,
    gid: h.gid,
    mode: h.mode,
    mtime: h.mtime,
    mtimeNs: h.mtimeNs,
  });
  const full = (rel: string) => rel ? `${root}/${rel}` : root;

  /** Resolves directory components under root, creating missing ones (mode 755). */
  const resolveDir = (comps: string[], entry: string, create = true): string => {
    const key = comps.join("/");
    const hit = dirCache.get(key);
    if (hit !== undefined) return hit;
    const stack: string[] = [];
    const queue = [...comps];
    let links = 0;
    while (queue.length) {
      const c = queue.shift()!;
      if (c === "" || c === ".") continue;
      if (c === "..") {
        if (!stack.length) {
          throw new EscapeError(
            `entry "${entry}" would be written through a symbolic link that points outside the image`,
          );
        }
        stack.pop();
        continue;
      }
      const path = full([...stack, c].join("/"));
      const info = lstat(path);
      if (!info) {
        if (!create) throw new EscapeError(`entry "${entry}": "${key}" does not exist`);
        Deno.mkdirSync(path, { mode: 0o755 });
        Deno.chmodSync(path, 0o755);
      } else if (info.isSymlink) {
        if (++links > MAX_LINKS) {
          throw new EscapeError(`entry "${entry}": too many levels of symbolic links`);
        }
        const target = Deno.readLinkSync(path);
        if (target.startsWith("/")) stack.length = 0;
        queue.unshift(...target.split("/"));
        continue;
      } else if (!info.isDirectory) {
        if (!create) throw new EscapeError(`entry "${entry}": "${key}" is not a directory`);
        removeAny(path, info);
        stats.removed = true;
        Deno.mkdirSync(path, { mode: 0o755 });
        Deno.chmodSync(path, 0o755);
      }
      stack.push(c);
    }
    const resolved = stack.join("/");
    dirCache.set(key, resolved);
    return resolved;
  };

  /** Removes what is at rel (it may have been a cached directory or a link on a path). */
  const removeAt = (rel: string): boolean => {
    const info = lstat(full(rel));
    if (!info) return false;
    removeAny(full(rel), info);
    stats.removed = true;
    if (info.isDirectory || info.isSymlink) dirCache.clear();
    return true;
  };

  const setMeta = (path: string, h: TarHeader, symlink = false) => {
    if (owners) lchown(path, h.uid, h.gid);
    if (!symlink) Deno.chmodSync(path, h.mode);
    lutimes(path, h.mtime, h.mtimeNs);
  };

  for await (const entry of entries) {
    if (opts.signal?.aborted) throw new DOMException("import interrupted", "AbortError");
    stats.entries++;
    const h = entry.header;
    const parts = entryPath(h.name);
    if (parts === null) {
      throw new EscapeError(`entry "${h.name}" has ".." in its path and would land outside`);
    }
    if (parts.length === 0) {
      if (h.type === "dir") dirMeta.set("", meta(h));
      continue;
    }
    const base = parts[parts.length - 1];
    const parent = resolveDir(parts.slice(0, -1), h.name);
    const join = (name: string) => parent ? `${parent}/${name}` : name;
    if (opts.layer && opts.overlayWhiteouts && base.startsWith(".wh.")) {
      if (base === ".wh..wh..opq") {
        if (lsetxattr(full(parent), "trusted.overlay.opaque", OPAQUE) !== 0) {
          throw new Error(`cannot mark "${h.name}" opaque (trusted.overlay.opaque)`);
        }
      } else if (!base.startsWith(".wh..wh.")) {
        const target = base.slice(4);
        if (target === "" || target === "." || target === ".." || target.includes("/")) {
          throw new EscapeError(`whiteout "${h.name}" names no file of its directory`);
        }
        const rel = join(target);
        removeAt(rel);
        written.add(rel);
        makeNode(full(rel), "char", 0, 0, 0);
      }
      continue;
    }
    if (opts.layer && base.startsWith(".wh.")) {
      if (base === ".wh..wh..opq") {
        for (const child of [...Deno.readDirSync(full(parent))]) {
          const rel = join(child.name);
          if (!written.has(rel)) removeAt(rel);
        }
      } else if (!base.startsWith(".wh..wh.")) {
        const target = base.slice(4);
        if (target === "" || target === "." || target === "..") {
          throw new EscapeError(`whiteout "${h.name}" names no file of its directory`);
        }
        removeAt(join(target));
      }
      continue;
    }
    const rel = join(base);
    const path = full(rel);
    if (opts.layer) written.add(rel);
    // Made exclusively (O_EXCL, mkdir, symlink, link, mknod all fail on anything there, a
    // symlink included, without following it); only then is what is there looked at and
    // removed. Not an lstat first: for a new path (nearly every entry) it throws NotFound, and
    // an exception per entry cost more than the file's own writes (statx and the error object:
    // ~30% of the CPU time of a 740 MB import).
    const fresh = <T>(make: () => T): T => {
      try {
        return make();
      } catch (e) {
        if (!isExists(e)) throw e;
      }
      removeAt(rel);
      return make();
    };
    switch (h.type) {
      case "dir": {
        try {
          Deno.mkdirSync(path, { mode: 0o700 });
        } catch (e) {
          if (!isExists(e)) throw e;
          if (!lstat(path)?.isDirectory) {
            removeAt(rel);
            Deno.mkdirSync(path, { mode: 0o700 });
          }
        }
        if (owners) lchown(path, h.uid, h.gid);
        dirMeta.set(rel, meta(h));
        break;
      }
      case "file": {
        const f = fresh(() => new FdFile(path));
        try {
          const w = new SparseWriter(f);
          await entry.pipe((piece) => w.write(piece));
          w.end();
          stats.bytes += w.size;
          f.finish(owners ? h.uid : undefined, h.gid, h.mode, h.mtime, h.mtimeNs);
        } finally {
          f.close();
        }
        break;
      }
      case "link": {
        const target = entryPath(h.linkname);
        if (target === null || target.length === 0) {
          throw new EscapeError(
            `hard link "${h.name}" points outside the image ("${h.linkname}")`,
          );
        }
        const tparent = resolveDir(target.slice(0, -1), h.name, false);
        const trel = tparent ? `${tparent}/${target[target.length - 1]}` : target[0];
        if (trel === rel) break;
        const tinfo = lstat(full(trel));
        if (!tinfo || tinfo.isDirectory) {
          throw new EscapeError(
            `hard link "${h.name}" names "${h.linkname}", which is not a file in the archive`,
          );
        }
        fresh(() => Deno.linkSync(full(trel), path));
        break;
      }
      case "symlink": {
        fresh(() => Deno.symlinkSync(h.linkname, path));
        setMeta(path, h, true);
        break;
      }
      case "char":
      case "block":
      case "fifo": {
        const type = h.type;
        try {
          fresh(() => makeNode(path, type, h.mode, h.devmajor, h.devminor));
        } catch (e) {
          if ((e as { code?: string }).code === "EPERM") {
            stats.skipped++;
            break;
          }
          throw e;
        }
        setMeta(path, h);
        break;
      }
      default:
        stats.skipped++;
        continue;
    }
    for (const [name, value] of Object.entries(h.xattrs)) {
      // overlayfs reads trusted.overlay.* (opaque, redirect, metacopy) of a lower layer as
      // its own: an archive never sets them (whiteouts are made above, from .wh. entries).
      if (name.startsWith("trusted.overlay.") || lsetxattr(path, name, value) !== 0) {
        stats.xattrsSkipped++;
      }
    }
  }
  // Whether each path is a real directory now (nothing changes them during this loop: chmod,
  // chown and utimes only), so that a parent is looked at once, not once per directory below it.
  const isDir = new Map<string, boolean>();
  for (const [rel, h] of dirMeta) {
    // A later entry may have replaced a parent with a symlink: every component must still be
    // a real directory, or chmod/chown would land on whatever the link points at.
    let cur = "", real = true;
    for (const part of rel ? rel.split("/") : []) {
      cur = cur ? `${cur}/${part}` : part;
      let dir = isDir.get(cur);
      if (dir === undefined) isDir.set(cur, dir = !!lstat(full(cur))?.isDirectory);
      if (!dir) {
        real = false;
        break;
      }
    }
    const path = full(rel);
    const info = lstat(path);
    if (!real || !info?.isDirectory) continue;
    if (owners) lchown(path, h.uid, h.gid);
    Deno.chmodSync(path, h.mode);
    lutimes(path, h.mtime, h.mtimeNs);
  }
  return stats;
}
