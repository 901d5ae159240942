// `capsule image create NAME FILE`: imports a flat rootfs tarball (docker/podman export), a
// docker-archive (docker save, podman save --format docker-archive) or an OCI image layout
// (directory or oci-archive), gzip- or zstd-compressed or not. It extracts into a temporary
// directory under the store and renames it into place at the end: an interrupted or failed
// import leaves no half image. Only this command loads the tar code.
import { CapsuleError } from "../runtime/errors.ts";
import { ChunkReader, entryPath, readTar, type TarEntry, TarError } from "./tar.ts";
import { type ApplyStats, applyTar, EscapeError, SparseWriter } from "./extract.ts";
import { decompress, DecompressError, sniff } from "./decompress.ts";
import {
  exists,
  type ImageConfig,
  imageName,
  type ImageRecord,
  paths,
  readImage,
  storeDir,
} from "./store.ts";

import { sha256Of, sha256Stream, type StreamHash } from "./hash.ts";
import { kindOf, openDir, openUnder, reopen, statFd } from "./confined.ts";
import * as libc from "../ffi/libc.ts";

/** Bytes read and the rate, on one line of a terminal (stdout only when it is one). */
export class Progress {
  done = 0;
  #start = Date.now();
  #last = 0;
  #enc = new TextEncoder();
  constructor(readonly total: number, readonly on: boolean) {}
  add(n: number): void {
    this.done += n;
    if (!this.on) return;
    const now = Date.now();
    if (now - this.#last < 100) return;
    this.#last = now;
    this.#draw(now);
  }
  #draw(now: number): void {
    const mb = (n: number) => (n / 1e6).toFixed(1);
    const secs = Math.max((now - this.#start) / 1000, 0.001);
    const frac = this.total ? Math.min(this.done / this.total, 1) : 0;
    const width = 30;
    const bar = "#".repeat(Math.round(frac * width)).padEnd(width, " ");
    const line = `\r[${bar}] ${mb(this.done)}/${mb(this.total)} MB  ${mb(this.done / secs)} MB/s  `;
    Deno.stdout.writeSync(this.#enc.encode(line));
  }
  end(): void {
    if (!this.on) return;
    this.#draw(Date.now());
    Deno.stdout.writeSync(this.#enc.encode("\n"));
  }
}

export interface Interrupt {
  aborted: boolean;
}

function interrupted(): Error {
  return new DOMException("import interrupted", "AbortError");
}

/**
 * The bytes of a file region as chunks; `skip(n)` moves on without reading (for the tar
 * index of an uncompressed archive). A chunk is valid until the next one is asked for: then
 * its buffer is read into again (so that reading gigabytes leaves no garbage for the collector).
 */
class FileSource implements AsyncIterable<Uint8Array> {
  #pos: number;
  #end: number;
  constructor(
    readonly path: string,
    offset = 0,
    size = Infinity,
    readonly opts: {
      chunk?: number;
      progress?: Progress;
      hash?: StreamHash;
      signal?: Interrupt;
      /** Read the next chunk while the caller works on this one (default true). */
      readAhead?: boolean;
      /** Opens the file (default: by `path`). */
      open?: () => Promise<Deno.FsFile>;
    } = {},
  ) {
    this.#pos = offset;
    this.#end = offset + size;
  }
  skip(n: number): void {
    this.#pos += n;
  }
  /**
   * Two buffers, reused: chunk k is read into one while the caller works on chunk k-1 in the
   * other (a read is an async op, done on another thread while the import writes files on this
   * one). The caller is done with a chunk once it asks for the next (see ChunkReader), so the
   * buffer it had is free for the read after next. A `skip` discards the read ahead.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    const f = await (this.opts.open?.() ?? Deno.open(this.path));
    const size = this.opts.chunk ?? 1 << 20;
    const ahead = this.opts.readAhead ?? true;
    const bufs = [new Uint8Array(size), new Uint8Array(size)];
    let next = 0;
    /** Where the file's offset is (a read moves it): a seek only after a skip. */
    let at = -1;
    let pending: { pos: number; buf: Uint8Array; read: Promise<number | null> } | undefined;
    const start = (pos: number) => {
      const want = Math.min(size, this.#end - pos);
      if (want <= 0) return undefined;
      const buf = bufs[next];
      next ^= 1;
      const read = (async () => {
        if (at !== pos) await f.seek(pos, Deno.SeekMode.Start);
        at = pos;
        const n = await f.read(buf.subarray(0, want));
        at = pos + (n ?? 0);
        return n;
      })();
      return { pos, buf, read };
    };
    try {
      for (;;) {
        if (this.opts.signal?.aborted) throw interrupted();
        if (pending?.pos !== this.#pos) {
          await pending?.read.catch(() => {});
          pending = start(this.#pos);
        }
        if (!pending) return;
        const { buf, read } = pending;
        pending = undefined;
        const n = await read;
        if (n === null || n === 0) return;
        this.#pos += n;
        if (ahead) pending = start(this.#pos);
        const chunk = buf.subarray(0, n);
        await this.opts.hash?.update(chunk);
        this.opts.progress?.add(n);
        yield chunk;
      }
    } finally {
      await pending?.read.catch(() => {});
      f.close();
    }
  }
}

/** The chunks of `src`, each given to `hash` (when there is one) before it is handed on. */
async function* tap(
  src: AsyncIterable<Uint8Array>,
  hash: StreamHash | undefined,
): AsyncGenerator<Uint8Array> {
  for await (const c of src) {
    await hash?.update(c);
    yield c;
  }
}

/** Entries after a probe: the ones already taken, then the rest of the generator. */
async function* chain(head: TarEntry[], rest: AsyncGenerator<TarEntry>): AsyncGenerator<TarEntry> {
  yield* head;
  yield* rest;
}

/** First files of image archives: docker save (old and new layouts), podman save, OCI. */
const ARCHIVE_NAME =
  /^(manifest\.json|index\.json|oci-layout|repositories|blobs\/.*|[0-9a-f]{64}([./].*)?|[^/]+\/(layer\.tar|json|VERSION))$/;

// ---- archives: a tar index or a directory, read by path ----------------------------------

interface ArchiveSource {
  /** Whether it has `path` (throws CapsuleError for one it refuses: see dirSource). */
  has(path: string): boolean;
  read(path: string): Promise<Uint8Array>;
  chunks(path: string, extra?: { hash?: StreamHash }): AsyncIterable<Uint8Array>;
  size(path: string): number;
}

interface IndexEntry {
  offset: number;
  size: number;
  type: string;
  linkname: string;
}

/** An uncompressed tar read by seeking: headers are scanned, data is read where needed. */
async function tarIndex(
  file: string,
  progress: Progress,
  signal: Interrupt,
): Promise<ArchiveSource> {
  const index = new Map<string, IndexEntry>();
  const reader = new ChunkReader(
    new FileSource(file, 0, Infinity, { chunk: 64 << 10, readAhead: false }),
  );
  try {
    for await (const e of readTar(reader)) {
      const parts = entryPath(e.header.name);
      if (!parts?.length) continue;
      index.set(parts.join("/"), {
        offset: e.offset,
        size: e.header.size,
        type: e.header.type,
        linkname: e.header.linkname,
      });
    }
  } finally {
    // The reader stops at the end marker, not the file's end: close the file now (a library
    // caller imports many archives in one process).
    await reader.cancel();
  }
  const resolve = (path: string, depth = 0): IndexEntry => {
    const parts = entryPath(path);
    const key = parts?.join("/") ?? "";
    const e = index.get(key);
    if (!e || !parts) throw new CapsuleError(`Cannot import ${file}: it has no "${path}"`);
    if ((e.type === "symlink" || e.type === "link") && depth < 8) {
      // docker save links identical layers to one copy ("../<id>/layer.tar").
      const base = e.type === "symlink" ? parts.slice(0, -1).join("/") + "/" : "";
      const target = e.linkname.startsWith("/") ? e.linkname : base + e.linkname;
      const norm: string[] = [];
      for (const p of target.split("/")) {
        if (p === "..") norm.pop();
        else if (p && p !== ".") norm.push(p);
      }
      return resolve(norm.join("/"), depth + 1);
    }
    if (e.type !== "file") throw new CapsuleError(`Cannot import ${file}: "${path}" is not a file`);
    return e;
  };
  return {
    has: (p) => {
      try {
        resolve(p);
        return true;
      } catch {
        return false;
      }
    },
    size: (p) => resolve(p).size,
    read: async (p) => {
      const e = resolve(p);
      const out = new Uint8Array(e.size);
      let at = 0;
      for await (const c of new FileSource(file, e.offset, e.size)) {
        out.set(c, at);
        at += c.length;
      }
      if (at !== e.size) throw new TarError(`"${p}" ends early`, true);
      return out;
    },
    chunks: (p, extra) => {
      const e = resolve(p);
      return new FileSource(file, e.offset, e.size, { progress, hash: extra?.hash, signal });
    },
  };
}

/**
 * An unpacked archive directory (docker save's, an OCI layout). Every file is opened beneath
 * the directory's fd (openat2 RESOLVE_BENEATH, no magic links): a symlink that stays inside
 * it is followed (docker before 25 links a repeated layer to "../<id>/layer.tar"), one that
 * leads out (absolute, or ".." past the top) is refused, and so is anything not a regular
 * file (a FIFO would hang the read, a device be read): a CapsuleError naming the file. The
 * directory is opened once; `close` when done.
 */
function dirSource(
  dir: string,
  what: string,
  progress: Progress,
  signal: Interrupt,
): ArchiveSource & { close(): void } {
  const root = openDir(dir);
  /** An O_PATH fd on the regular file `p` and its size; undefined when there is none. */
  const find = (p: string): { fd: number; size: number } | undefined => {
    const parts = entryPath(p);
    if (!parts?.length) throw new CapsuleError(`Cannot import ${what}: invalid path "${p}"`);
    let fd: number | undefined;
    for (let tries = 0; fd === undefined; tries++) {
      try {
        fd = openUnder(root, parts.join("/"), "beneath");
      } catch (e) {
        if (!(e instanceof libc.SysError)) throw e;
        if (e.code === "EAGAIN" && tries < 8) continue; // a rename raced the walk
        if (e.code === "ENOENT" || e.code === "ENOTDIR") return undefined;
        if (e.code === "EXDEV") {
          throw new CapsuleError(
            `Refusing to import ${what}: "${p}" leads out of the directory (a symlink to an ` +
              `absolute path or above the directory); copy the file into it instead`,
          );
        }
        if (e.code === "ELOOP") {
          throw new CapsuleError(
            `Cannot import ${what}: "${p}": too many levels of symbolic links (or a link ` +
              `through /proc)`,
          );
        }
        throw new CapsuleError(`Cannot import ${what}: cannot open "${p}": ${e.message}`);
      }
    }
    let st: Deno.FileInfo;
    try {
      st = statFd(fd);
    } catch (e) {
      libc.close(fd);
      throw e;
    }
    if (!st.isFile) {
      libc.close(fd);
      throw new CapsuleError(
        `Refusing to import ${what}: "${p}" is ${kindOf(st)}, not a regular file`,
      );
    }
    return { fd, size: st.size };
  };
  const need = (p: string) => {
    const f = find(p);
    if (!f) throw new CapsuleError(`Cannot import ${what}: it has no "${p}"`);
    return f;
  };
  /** The file `p` open for reading (its O_PATH fd closed). */
  const open = async (p: string) => {
    const { fd } = need(p);
    try {
      return await reopen(fd);
    } finally {
      libc.close(fd);
    }
  };
  return {
    has: (p) => {
      const f = find(p);
      if (f) libc.close(f.fd);
      return f !== undefined;
    },
    size: (p) => {
      const { fd, size } = need(p);
      libc.close(fd);
      return size;
    },
    read: async (p) => {
      const f = await open(p);
      try {
        return await readAll(f);
      } finally {
        f.close();
      }
    },
    chunks: (p, extra) =>
      new FileSource(p, 0, Infinity, {
        progress,
        hash: extra?.hash,
        signal,
        open: () => open(p),
      }),
    close: () => libc.close(root),
  };
}

/** The rest of `f` (left open). */
async function readAll(f: Deno.FsFile): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const buf = new Uint8Array(64 << 10);
    const n = await f.read(buf);
    if (n === null) break;
    parts.push(buf.subarray(0, n));
    total += n;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

async function readJson<T>(src: ArchiveSource, path: string, what: string): Promise<T> {
  let bytes: Uint8Array;
  try {
    bytes = await src.read(path);
  } catch (e) {
    if (e instanceof CapsuleError) throw e;
    throw new CapsuleError(`Cannot import ${what}: cannot read "${path}": ${(e as Error).message}`);
  }
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new CapsuleError(
      `Cannot import ${what}: "${path}" is not valid JSON: ${(e as Error).message}`,
    );
  }
}

interface Layer {
  path: string;
  /** Verified while reading when set (OCI blobs are named by their digest). */
  digest?: string;
  /** The digest of the layer's tar once decompressed (config.rootfs.diff_ids), verified too. */
  diffId?: string;
}

interface Plan {
  format: ImageRecord["format"];
  id: string;
  digest: string;
  config: ImageConfig;
  layers: Layer[];
  layerIds: string[];
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/**
 * The layers with their diff_ids (image config `rootfs.diff_ids`: the sha256 of each layer's
 * uncompressed tar, in order; docker, podman and the OCI image spec write one per layer), which
 * applyLayers checks. A config without the list is taken as it is; one whose list does not
 * name each layer once, or names one with something not a sha256 digest, is refused.
 */
function withDiffIds(
  layers: Layer[],
  config: { rootfs?: { diff_ids?: unknown } } | undefined,
  what: string,
): Layer[] {
  const ids = config?.rootfs?.diff_ids;
  if (ids === undefined || ids === null) return layers;
  if (!Array.isArray(ids) || ids.length !== layers.length) {
    throw new CapsuleError(
      `Cannot import ${what}: its image config's rootfs.diff_ids lists ` +
        `${Array.isArray(ids) ? ids.length : "no"} layer digests for ${layers.length} layers`,
    );
  }
  return layers.map((l, i) => {
    if (typeof ids[i] !== "string" || !DIGEST.test(ids[i])) {
      throw new CapsuleError(
        `Cannot import ${what}: rootfs.diff_ids[${i}] ${
          JSON.stringify(ids[i])
        } is not a sha256 digest`,
      );
    }
    return { ...l, diffId: ids[i] };
  });
}

function pickConfig(raw: Record<string, unknown> | undefined): ImageConfig {
  const c = (raw?.config ?? {}) as Record<string, unknown>;
  const out: ImageConfig = {};
  const keys = ["Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts", "Labels"];
  for (const k of [...keys, "StopSignal"]) {
    if (c[k] !== undefined && c[k] !== null) (out as Record<string, unknown>)[k] = c[k];
  }
  return out;
}

async function dockerPlan(src: ArchiveSource, what: string): Promise<Plan> {
  const manifest = await readJson<{ Config: string; Layers: string[] }[]>(
    src,
    "manifest.json",
    what,
  );
  if (!Array.isArray(manifest) || manifest.length === 0) {
    throw new CapsuleError(`Cannot import ${what}: manifest.json names no image`);
  }
  if (manifest.length > 1) {
    throw new CapsuleError(
      `Cannot import ${what}: it holds ${manifest.length} images; save one image per archive`,
    );
  }
  const m = manifest[0];
  if (typeof m.Config !== "string" || !Array.isArray(m.Layers)) {
    throw new CapsuleError(`Cannot import ${what}: manifest.json has no Config or Layers`);
  }
  const configBytes = await src.read(m.Config);
  const config = JSON.parse(new TextDecoder().decode(configBytes));
  const manifestBytes = await src.read("manifest.json");
  return {
    format: "docker-archive",
    id: await sha256Of(configBytes),
    digest: await sha256Of(manifestBytes),
    config: pickConfig(config),
    layers: withDiffIds(m.Layers.map((path) => ({ path })), config, what),
    layerIds: (config?.rootfs?.diff_ids as string[] | undefined) ?? [],
  };
}

const INDEX_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
];

interface Descriptor {
  mediaType?: string;
  digest: string;
  platform?: { os?: string; architecture?: string };
}

async function ociPlan(src: ArchiveSource, what: string): Promise<Plan> {
  const blob = (d: string) => {
    if (!DIGEST.test(d)) throw new CapsuleError(`Cannot import ${what}: invalid digest "${d}"`);
    return `blobs/sha256/${d.slice(7)}`;
  };
  const verified = async (d: string) => {
    const bytes = await src.read(blob(d));
    if (await sha256Of(bytes) !== d) {
      throw new CapsuleError(`Cannot import ${what}: blob ${d} does not match its digest`);
    }
    return bytes;
  };
  const arch = Deno.build.arch === "aarch64" ? "arm64" : "amd64";
  const choose = (list: Descriptor[], where: string): Descriptor => {
    if (!Array.isArray(list) || !list.length) {
      throw new CapsuleError(`Cannot import ${what}: ${where} lists no manifest`);
    }
    return list.find((d) => d.platform?.os === "linux" && d.platform?.architecture === arch) ??
      list[0];
  };
  let desc = choose(
    (await readJson<{ manifests: Descriptor[] }>(src, "index.json", what)).manifests,
    "index.json",
  );
  let manifestBytes = await verified(desc.digest);
  let manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  for (
    let i = 0;
    i < 4 && (INDEX_TYPES.includes(manifest.mediaType ?? desc.mediaType) || manifest.manifests);
    i++
  ) {
    desc = choose(manifest.manifests, desc.digest);
    manifestBytes = await verified(desc.digest);
    manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  }
  if (!manifest.config?.digest || !Array.isArray(manifest.layers)) {
    throw new CapsuleError(
      `Cannot import ${what}: manifest ${desc.digest} has no config or layers`,
    );
  }
  const configBytes = await verified(manifest.config.digest);
  const config = JSON.parse(new TextDecoder().decode(configBytes));
  return {
    format: "oci",
    id: manifest.config.digest,
    digest: desc.digest,
    config: pickConfig(config),
    layers: withDiffIds(
      (manifest.layers as Descriptor[]).map((l) => ({ path: blob(l.digest), digest: l.digest })),
      config,
      what,
    ),
    layerIds: (config?.rootfs?.diff_ids as string[] | undefined) ??
      (manifest.layers as Descriptor[]).map((l) => l.digest),
  };
}

async function archivePlan(src: ArchiveSource, what: string): Promise<Plan> {
  if (src.has("index.json") && src.has("oci-layout")) return await ociPlan(src, what);
  if (src.has("manifest.json")) return await dockerPlan(src, what);
  if (src.has("index.json")) return await ociPlan(src, what);
  throw new CapsuleError(
    `Cannot import ${what}: it is neither a root file system tarball nor an image archive ` +
      `(no manifest.json or index.json)`,
  );
}

/** What the layers wrote: the image's size when nothing was removed (see `imageSize`). */
interface Tally {
  bytes: number;
  removed: boolean;
}

function addTally(t: Tally, s: ApplyStats): void {
  t.bytes += s.bytes;
  t.removed ||= s.removed;
}

/**
 * The size `image list` shows: the sum of the regular files' sizes, a hard-linked file once.
 * When nothing was removed that is what the extraction counted (each file it created, a hard
 * link none); after a whiteout or a replaced entry, a walk of the tree (`treeSize`). The walk
 * is an lstat per file: 0.2-0.3 s of a 32,000-file import.
 */
function imageSize(rootfs: string, t: Tally): number {
  return t.removed ? treeSize(rootfs) : t.bytes;
}

async function applyLayers(
  src: ArchiveSource,
  plan: Plan,
  rootfs: string,
  signal: Interrupt,
  what: string,
): Promise<Tally> {
  const tally: Tally = { bytes: 0, removed: false };
  for (const [i, layer] of plan.layers.entries()) {
    const size = src.size(layer.path);
    const hash = layer.digest ? await sha256Stream(size) : undefined;
    // An uncompressed layer's diff_id is its digest: one hash then.
    const diff = layer.diffId && layer.diffId !== layer.digest
      ? await sha256Stream(size)
      : undefined;
    const name = `layer ${i + 1}/${plan.layers.length} ("${layer.path}")`;
    const reader = new ChunkReader(tap(decompress(src.chunks(layer.path, { hash })), diff));
    let digest: string | undefined, diffId: string | undefined;
    try {
      addTally(
        tally,
        await applyTar(readTar(reader, { layer: true }), rootfs, { layer: true, signal }),
      );
      await reader.drain();
      digest = await hash?.digest();
      diffId = await diff?.digest();
    } catch (e) {
      if (e instanceof TarError || e instanceof DecompressError) {
        throw new CapsuleError(`Cannot import ${what}: ${name}: ${e.message}`);
      }
      throw e;
    } finally {
      hash?.close();
      diff?.close();
      await reader.cancel(); // the layer's file, when it failed halfway
    }
    if (hash && digest !== layer.digest) {
      throw new CapsuleError(`Cannot import ${what}: ${name} does not match its digest`);
    }
    if (diff && diffId !== layer.diffId) {
      throw new CapsuleError(
        `Cannot import ${what}: ${name} does not match its diff_id in the image config ` +
          `(${layer.diffId}; its uncompressed tar is ${diffId})`,
      );
    }
  }
  return tally;
}

// ---- the import ---------------------------------------------------------------------------

/** Sum of regular file sizes under dir (hard links once): what `image list` shows. */
export function treeSize(dir: string): number {
  let total = 0;
  const seen = new Set<string>();
  // A directory the archive gave no permissions, imported without root, cannot be read or
  // searched: its files go uncounted (the import itself succeeded; root reads any directory).
  const denied = <T>(f: () => T): T | undefined => {
    try {
      return f();
    } catch (e) {
      if (e instanceof Deno.errors.PermissionDenied) return undefined;
      throw e;
    }
  };
  const walk = (d: string) => {
    for (const e of denied(() => [...Deno.readDirSync(d)]) ?? []) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) walk(p);
      else if (e.isFile) {
        const st = denied(() => Deno.lstatSync(p));
        if (!st) continue;
        if (st.nlink !== null && st.nlink > 1) {
          const key = `${st.dev}:${st.ino}`;
          if (seen.has(key)) continue;
          seen.add(key);
        }
        total += st.size;
      }
    }
  };
  walk(dir);
  return total;
}

/** Removes temporary import directories whose importer is gone (killed with SIGKILL). */
function sweepStale(images: string): void {
  try {
    for (const e of Deno.readDirSync(images)) {
      const m = e.name.match(/^\.tmp-(\d+)-/);
      if (!m) continue;
      if (exists(`/proc/${m[1]}`)) continue;
      try {
        Deno.removeSync(`${images}/${e.name}`, { recursive: true });
      } catch { /* another sweep */ }
    }
  } catch { /* no images yet */ }
}

export interface ImportOptions {
  store: string;
  name: string;
  file: string;
  /** Draw a progress bar on stdout (default: when stdout is a terminal). */
  progress?: boolean;
}

/** Imports an image; returns its record. Nothing stays behind on failure or Ctrl-C. */
export async function importImage(o: ImportOptions): Promise<ImageRecord> {
  const name = imageName(o.name);
  const finalDir = paths.image(o.store, o.name);
  if (exists(finalDir)) {
    throw new CapsuleError(
      `Image name "${o.name}" is taken; delete that image first ("capsule image delete ${o.name}") ` +
        `or choose another name`,
    );
  }
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(o.file);
  } catch {
    throw new CapsuleError(`Cannot import "${o.file}": no such file`);
  }
  const file = Deno.realPathSync(o.file);
  const what = `"${o.file}"`;
  const images = storeDir(o.store, "images");
  sweepStale(images);
  const tmp = `${images}/.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  Deno.mkdirSync(tmp, { mode: 0o700 });
  const rootfs = `${tmp}/rootfs`;
  Deno.mkdirSync(rootfs, { mode: 0o755 });
  const signal: Interrupt = { aborted: false };
  const onSignal = () => signal.aborted = true;
  const sigs = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const s of sigs) Deno.addSignalListener(s, onSignal);
  const progress = new Progress(
    info.isFile ? info.size : 0,
    (o.progress ?? Deno.stdout.isTerminal()) && info.isFile,
  );
  try {
    let plan: Plan, tally: Tally;
    if (info.isDirectory) {
      const src = dirSource(file, what, progress, signal);
      try {
        plan = await archivePlan(src, what);
        tally = await applyLayers(src, plan, rootfs, signal, what);
      } finally {
        src.close();
      }
    } else {
      ({ plan, tally } = await importFile(file, what, rootfs, tmp, progress, signal));
    }
    progress.end();
    const record: ImageRecord = {
      name,
      id: plan.id,
      created: new Date().toISOString(),
      size: imageSize(rootfs, tally),
      digest: plan.digest,
      format: plan.format,
      source: file,
      config: plan.config,
      layers: plan.layerIds,
    };
    try {
      Deno.removeSync(`${tmp}/archive.tar`);
    } catch { /* none */ }
    Deno.writeTextFileSync(`${tmp}/image.json`, JSON.stringify(record, null, 2) + "\n");
    if (signal.aborted) throw interrupted();
    try {
      Deno.renameSync(tmp, finalDir);
    } catch (e) {
      if (exists(finalDir)) {
        throw new CapsuleError(
          `Image name "${o.name}" was taken while importing; nothing was kept`,
        );
      }
      throw e;
    }
    return readImage(o.store, o.name);
  } catch (e) {
    if (progress.on) Deno.stdout.writeSync(new TextEncoder().encode("\n"));
    if (e instanceof DOMException && e.name === "AbortError") {
      throw new CapsuleError(`Import of ${what} interrupted; nothing was kept`);
    }
    if (e instanceof EscapeError) {
      throw new CapsuleError(`Refusing to import ${what}: ${e.message}; nothing was kept`);
    }
    if (e instanceof TarError) {
      throw new CapsuleError(
        `Cannot import ${what}: ${e.message}${
          e.truncated || e.entry
            ? ""
            : "; capsule reads a rootfs tarball (docker export), a docker-archive or an OCI archive"
        }`,
      );
    }
    if (e instanceof DecompressError) throw new CapsuleError(`Cannot import ${what}: ${e.message}`);
    throw e;
  } finally {
    for (const s of sigs) Deno.removeSignalListener(s, onSignal);
    try {
      Deno.removeSync(tmp, { recursive: true });
    } catch { /* renamed into place */ }
  }
}

/** A tar file: flat rootfs (streamed straight into rootfs) or an image archive. */
async function importFile(
  file: string,
  what: string,
  rootfs: string,
  tmp: string,
  progress: Progress,
  signal: Interrupt,
): Promise<{ plan: Plan; tally: Tally }> {
  const hash = await sha256Stream(Deno.statSync(file).size);
  try {
    return await importStream(file, what, rootfs, tmp, { progress, signal, hash });
  } finally {
    hash.close();
  }
}

async function importStream(
  file: string,
  what: string,
  rootfs: string,
  tmp: string,
  read: { progress: Progress; signal: Interrupt; hash: StreamHash },
): Promise<{ plan: Plan; tally: Tally }> {
  const { progress, signal, hash } = read;
  const raw = new FileSource(file, 0, Infinity, { progress, hash, signal });
  const head = new Uint8Array(4);
  {
    const f = Deno.openSync(file);
    f.readSync(head);
    f.close();
  }
  const compressed = sniff(head) !== "none";
  const reader = new ChunkReader(decompress(raw));
  const entries = readTar(reader);
  // The first entry that is not a directory tells a rootfs from an archive (directories
  // carry no data: they can wait in `taken` while the stream goes on).
  const taken: TarEntry[] = [];
  let archive = false;
  try {
    for (;;) {
      const r = await entries.next();
      if (r.done) break;
      taken.push(r.value);
      if (r.value.header.type === "dir") continue;
      const parts = entryPath(r.value.header.name);
      archive = parts !== null && ARCHIVE_NAME.test(parts.join("/"));
      break;
    }
    if (!archive) {
      const stats = await applyTar(chain(taken, entries), rootfs, { signal });
      await reader.drain();
      const digest = await hash.digest();
      const plan: Plan = {
        format: "rootfs",
        id: digest,
        digest,
        config: {},
        layers: [],
        layerIds: [digest],
      };
      return { plan, tally: { bytes: stats.bytes, removed: stats.removed } };
    }
  } finally {
    // Read to its end, stopped after the probe, or failed halfway: the file is closed.
    await reader.cancel();
  }
  hash.close();
  let tarFile = file;
  if (compressed) {
    // A compressed archive is read by seeking: decompress it once into the temp directory.
    tarFile = `${tmp}/archive.tar`;
    const out = Deno.openSync(tarFile, { write: true, createNew: true, mode: 0o600 });
    try {
      const again = new FileSource(file, 0, Infinity, { signal });
      const w = new SparseWriter(out);
      for await (const c of decompress(again)) w.write(c);
      w.end();
    } finally {
      out.close();
    }
  }
  const src = await tarIndex(tarFile, progress, signal);
  const plan = await archivePlan(src, what);
  return { plan, tally: await applyLayers(src, plan, rootfs, signal, what) };
}
