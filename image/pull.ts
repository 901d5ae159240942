// `capsule image pull REF`: an image from an OCI registry. The manifest (an index or manifest
// list is resolved to the platform's manifest), the config blob and the layers are fetched
// with image/registry.ts; each layer is checked against its digest (compressed) and its diff
// id (uncompressed) while it streams into a temporary directory, where capsule's own
// extraction (image/extract.ts) writes it with overlay whiteouts. A verified layer is renamed
// to <store>/layers/<diff id>: stored once, shared by every image that has it, and kept when
// a later layer fails, so a pull run again after an interrupt fetches only what is missing.
// Nothing unverified or half-written is ever kept: the image's record is written last.
import { CapsuleError } from "../runtime/errors.ts";
import { privateDir, writeFileAtomic } from "../runtime/state.ts";
import { type Credentials, defaultAuthFile, lookupCredentials } from "./auth.ts";
import { decompress, DecompressError } from "./decompress.ts";
import { applyTar, EscapeError } from "./extract.ts";
import { treeSize } from "./import.ts";
import {
  DIGEST,
  fullName,
  parseReference,
  type Reference,
  ReferenceError,
  shortName,
} from "./reference.ts";
import { type FetchedManifest, MEDIA, Registry, RegistryError } from "./registry.ts";
import {
  collectLayers,
  exists,
  type ImageConfig,
  imageKey,
  type ImageRecord,
  ownTree,
  paths,
  readImage,
  storeDir,
} from "./store.ts";
import { ChunkReader, readTar, TarError } from "./tar.ts";
import { nodeHash } from "./hash.ts";

/** The platform to pick from an index: os/architecture[/variant]. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Parses "linux/amd64" or "linux/arm64/v8"; default: linux and this machine's architecture. */
export function parsePlatform(s?: string): Platform {
  if (s === undefined) {
    const arch = { x86_64: "amd64", aarch64: "arm64" }[Deno.build.arch] ?? Deno.build.arch;
    return { os: "linux", architecture: arch };
  }
  const parts = s.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9_.-]+$/i.test(p))) {
    throw new CapsuleError(
      `Invalid --platform "${s}": expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8`,
    );
  }
  return normalizePlatform({ os: parts[0], architecture: parts[1], variant: parts[2] });
}

/**
 * containerd's platform normalization (as docker and podman apply it): aarch64 is arm64, whose
 * default variant v8 is the same as none; x86_64/x86-64 are amd64; armhf/armel are arm v7/v6;
 * names compare lower-case.
 */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  let arch = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase();
  if (arch === "aarch64" || arch === "arm64") {
    arch = "arm64";
    if (variant === "8" || variant === "v8") variant = undefined;
  } else if (arch === "x86_64" || arch === "x86-64") arch = "amd64";
  else if (arch === "armhf") [arch, variant] = ["arm", "v7"];
  else if (arch === "armel") [arch, variant] = ["arm", "v6"];
  else if (arch === "arm" && variant && /^\d$/.test(variant)) variant = `v${variant}`;
  return { os, architecture: arch, variant };
}

/** "os/architecture[/variant]". */
export function platformString(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
}

/** Layers and config of one manifest, checked for shape. Throws naming the reference. */
export function checkManifest(m: FetchedManifest, what: string): {
  config: Descriptor;
  layers: Descriptor[];
} {
  const bad = (why: string): never => {
    throw new RegistryError(`Cannot pull ${what}: manifest ${m.digest} is malformed (${why})`);
  };
  const desc = (d: unknown, where: string): Descriptor => {
    const o = d as Record<string, unknown> | null;
    if (typeof o !== "object" || o === null) bad(`${where} is not an object`);
    if (typeof o!.digest !== "string" || !DIGEST.test(o!.digest)) {
      bad(`${where} has no sha256 digest`);
    }
    if (typeof o!.size !== "number" || !Number.isSafeInteger(o!.size) || (o!.size as number) < 0) {
      bad(`${where} has no valid size`);
    }
    return o as unknown as Descriptor;
  };
  if (m.json.schemaVersion !== 2) {
    bad(`schemaVersion ${JSON.stringify(m.json.schemaVersion)}; only schema 2 is read`);
  }
  const config = desc(m.json.config, "config");
  if (!Array.isArray(m.json.layers)) bad("no layers");
  const layers = (m.json.layers as unknown[]).map((l, i) => desc(l, `layer ${i + 1}`));
  if (layers.length === 0) bad("no layers");
  if (layers.length > 125) bad(`${layers.length} layers; at most 125 are read`);
  for (const l of layers) {
    if (l.mediaType && !/tar/.test(l.mediaType)) {
      throw new RegistryError(
        `Cannot pull ${what}: it is not a container image (a layer is ${l.mediaType})`,
      );
    }
  }
  return { config, layers };
}

function isIndex(m: FetchedManifest): boolean {
  return m.mediaType === MEDIA.ociIndex || m.mediaType === MEDIA.dockerList ||
    (Array.isArray(m.json.manifests) && !Array.isArray(m.json.layers));
}

/** Picks the platform's entry of an index (a variant only when asked for one). */
export function choosePlatform(
  m: FetchedManifest,
  p: Platform,
  what: string,
): Descriptor {
  const list = m.json.manifests;
  if (!Array.isArray(list) || list.length === 0) {
    throw new RegistryError(`Cannot pull ${what}: index ${m.digest} lists no manifest`);
  }
  const entries = list as Descriptor[];
  const want = normalizePlatform(p);
  const match = entries.filter((d) => {
    if (!d || typeof d !== "object" || !d.platform?.os || !d.platform.architecture) return false;
    const have = normalizePlatform(d.platform as Platform);
    return have.os === want.os && have.architecture === want.architecture &&
      (want.variant === undefined || have.variant === want.variant);
  });
  if (match.length === 0) {
    const have = entries.filter((d) =>
      d?.platform?.os && d.platform.architecture && d.platform.os !== "unknown"
    )
      .map((d) => platformString(d.platform as Platform));
    throw new RegistryError(
      `Cannot pull ${what}: no image for platform ${platformString(p)} (the index has ${
        have.length ? have.join(", ") : "no platforms"
      }); choose one with --platform`,
    );
  }
  // Without a variant asked for, arm64 prefers v8 as docker does; otherwise the first.
  return match.find((d) => d.platform?.variant === "v8") ?? match[0];
}

// ---- progress ------------------------------------------------------------------------------

/**
 * One line per layer: on a terminal, bars redrawn in place (at most every 100 ms); else a
 * line when a layer starts and one when it ends.
 */
export class PullProgress {
  #rows: { id: string; text: string; done: number; total: number; start: number }[] = [];
  #drawn = 0;
  #last = 0;
  constructor(readonly tty: boolean, readonly out: (s: string) => void) {}
  line(text: string): void {
    if (this.tty) {
      this.#erase();
      this.out(text + "\n");
      this.#draw(true);
    } else this.out(text + "\n");
  }
  add(id: string, total: number): number {
    this.#rows.push({ id, text: "waiting", done: 0, total, start: Date.now() });
    return this.#rows.length - 1;
  }
  set(row: number, text: string, log = true): void {
    this.#rows[row].text = text;
    if (!this.tty) {
      if (log) this.out(`${this.#rows[row].id}: ${text}\n`);
    } else this.#draw(true);
  }
  bytes(row: number, n: number): void {
    const r = this.#rows[row];
    if (r.done === 0) r.start = Date.now();
    r.done += n;
    if (this.tty) this.#draw(false);
  }
  #erase(): void {
    if (this.#drawn) this.out(`\x1b[${this.#drawn}A\x1b[J`);
    this.#drawn = 0;
  }
  #draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.#last < 100) return;
    this.#last = now;
    const mb = (n: number) => (n / 1e6).toFixed(1);
    const lines = this.#rows.map((r) => {
      if (r.text !== "downloading") return `${r.id}: ${r.text}`;
      const frac = r.total ? Math.min(r.done / r.total, 1) : 0;
      const bar = "#".repeat(Math.round(frac * 24)).padEnd(24, " ");
      const secs = Math.max((now - r.start) / 1000, 0.001);
      return `${r.id}: [${bar}] ${mb(r.done)}/${mb(r.total)} MB ${mb(r.done / secs)} MB/s`;
    });
    this.#erase();
    this.out(lines.map((l) => `\x1b[2K${l}\n`).join(""));
    this.#drawn = lines.length;
  }
  end(): void {
    if (this.tty) this.#draw(true);
  }
}

// ---- the pull ------------------------------------------------------------------------------

export interface PullOptions {
  store: string;
  /** The reference as the user wrote it. */
  ref: string;
  /** os/arch[/variant]; default linux/<this machine>. */
  platform?: string;
  /** Plain HTTP (`--tls-verify=false`). */
  insecure?: boolean;
  /** Credentials for this pull (`--creds`); else the auth file's. */
  credentials?: Credentials;
  /** containers-auth.json to read (`--authfile`); default defaultAuthFile(). */
  authFile?: string;
  /** Bars on a terminal; default: when stderr is one. */
  tty?: boolean;
  /** Where progress goes (default stderr). */
  out?: (s: string) => void;
  /** Layers fetched at once (default 3). */
  jobs?: number;
  /** For tests. */
  fetch?: typeof fetch;
}

/** Removes temporary directories whose owner is gone (a pull or import killed with -9). */
function sweep(dir: string): void {
  try {
    for (const e of Deno.readDirSync(dir)) {
      const m = e.name.match(/^\.tmp-(\d+)-/);
      if (!m || exists(`/proc/${m[1]}`)) continue;
      try {
        Deno.removeSync(`${dir}/${e.name}`, { recursive: true });
      } catch { /* another sweep */ }
    }
  } catch { /* none yet */ }
}

function pickConfig(raw: Record<string, unknown>): ImageConfig {
  const c = (raw?.config ?? {}) as Record<string, unknown>;
  const out: ImageConfig = {};
  const keys = [
    "Env",
    "Entrypoint",
    "Cmd",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
    "StopSignal",
  ];
  for (const k of keys) {
    if (c[k] !== undefined && c[k] !== null) (out as Record<string, unknown>)[k] = c[k];
  }
  const strings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === "string");
  for (const k of ["Env", "Entrypoint", "Cmd"] as const) {
    if (out[k] !== undefined && !strings(out[k])) delete out[k];
  }
  for (const k of ["WorkingDir", "User", "StopSignal"] as const) {
    if (out[k] !== undefined && typeof out[k] !== "string") delete out[k];
  }
  return out;
}

/** What <store>/layers/<hex>/layer.json keeps. */
export interface LayerRecord {
  diffId: string;
  /** The compressed blob it came from. */
  blob: string;
  mediaType?: string;
  /** Bytes of regular files in diff/. */
  size: number;
  created: string;
}

interface Ctx {
  reg: Registry;
  what: string;
  store: string;
  progress: PullProgress;
  interrupt: { aborted: boolean };
}

/** Fetches, verifies and extracts one layer into <store>/layers/<hex>. */
async function pullLayer(ctx: Ctx, desc: Descriptor, diffId: string, row: number): Promise<void> {
  const hex = diffId.slice(7);
  const layers = paths.layers(ctx.store);
  const tmp = `${layers}/.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  let body: ReadableStreamDefaultReader<Uint8Array> | undefined;
  Deno.mkdirSync(tmp, { mode: 0o700 });
  try {
    Deno.mkdirSync(`${tmp}/diff`, { mode: 0o755 });
    Deno.chmodSync(`${tmp}/diff`, 0o755);
    const res = await ctx.reg.blob(desc.digest);
    ctx.progress.set(row, "downloading");
    const blobHash = await nodeHash();
    const diffHash = await nodeHash();
    let n = 0;
    body = res.body!.getReader();
    const reader0 = body;
    const progress = ctx.progress;
    /** One chunk of the blob, counted and hashed (also after the tar reader gave up). */
    const take = async (): Promise<Uint8Array | undefined> => {
      const r = await reader0.read();
      if (r.done) return undefined;
      n += r.value.length;
      if (n > desc.size) {
        throw new CapsuleError(
          `Cannot pull ${ctx.what}: layer ${desc.digest} is larger than its manifest says ` +
            `(${desc.size} bytes); nothing was kept`,
        );
      }
      blobHash.update(r.value);
      progress.bytes(row, r.value.length);
      return r.value;
    };
    const counted = async function* () {
      for (let c = await take(); c; c = await take()) yield c;
    };
    const plain = async function* () {
      for await (const c of decompress(counted())) {
        diffHash.update(c);
        yield c;
      }
    };
    const reader = new ChunkReader(plain());
    try {
      await applyTar(readTar(reader, { layer: true }), `${tmp}/diff`, {
        layer: true,
        overlayWhiteouts: true,
        signal: ctx.interrupt,
      });
      await reader.drain();
    } catch (e) {
      if (e instanceof TarError || e instanceof DecompressError) {
        // A digest mismatch explains a broken stream better than the tar error does: read
        // the rest of the blob (at most its declared size) to tell.
        while (await take());
        if (`sha256:${blobHash.digest("hex")}` !== desc.digest) throw digestError(ctx, desc);
        throw new CapsuleError(
          `Cannot pull ${ctx.what}: layer ${desc.digest}: ${e.message}; nothing was kept`,
        );
      }
      if (e instanceof EscapeError) {
        while (await take());
        if (`sha256:${blobHash.digest("hex")}` !== desc.digest) throw digestError(ctx, desc);
        throw new CapsuleError(
          `Refusing to pull ${ctx.what}: layer ${desc.digest}: ${e.message}; nothing was kept`,
        );
      }
      throw e;
    }
    if (n !== desc.size) {
      throw new CapsuleError(
        `Cannot pull ${ctx.what}: layer ${desc.digest} ended after ${n} of ${desc.size} bytes ` +
          `(connection lost?); nothing was kept, pull again`,
      );
    }
    if (`sha256:${blobHash.digest("hex")}` !== desc.digest) throw digestError(ctx, desc);
    const gotDiff = `sha256:${diffHash.digest("hex")}`;
    if (gotDiff !== diffId) {
      throw new CapsuleError(
        `Cannot pull ${ctx.what}: layer ${desc.digest} unpacks to ${gotDiff}, not the diff id ` +
          `${diffId} its config names; nothing was kept`,
      );
    }
    const rec: LayerRecord = {
      diffId,
      blob: desc.digest,
      mediaType: desc.mediaType,
      size: treeSize(`${tmp}/diff`),
      created: new Date().toISOString(),
    };
    Deno.writeTextFileSync(`${tmp}/layer.json`, JSON.stringify(rec, null, 2) + "\n");
    if (ctx.interrupt.aborted) throw new DOMException("interrupted", "AbortError");
    try {
      Deno.renameSync(tmp, `${layers}/${hex}`);
    } catch (e) {
      // Another pull stored the same layer meanwhile: theirs is as good as ours.
      if (!exists(`${layers}/${hex}/layer.json`)) throw e;
    }
    ctx.progress.set(row, `done (${(n / 1e6).toFixed(1)} MB)`);
  } catch (e) {
    if (e instanceof CapsuleError || ctx.interrupt.aborted) throw e;
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    // The connection broke while streaming (reset, timeout, a body that fails to read).
    throw new CapsuleError(
      `Cannot pull ${ctx.what}: fetching layer ${desc.digest} failed (${
        (e as Error).message
      }); nothing was kept, pull again`,
    );
  } finally {
    body?.cancel().catch(() => {});
    try {
      Deno.removeSync(tmp, { recursive: true });
    } catch { /* renamed into place */ }
  }
}

function digestError(ctx: Ctx, desc: Descriptor): CapsuleError {
  return new CapsuleError(
    `Cannot pull ${ctx.what}: layer ${desc.digest} does not match its digest (corrupt in the ` +
      `registry or in transit); nothing was kept`,
  );
}

/** A layer is present when its directory has its record (written before the rename). */
function layerPresent(store: string, hex: string): boolean {
  return exists(`${paths.layer(store, hex)}/layer.json`);
}

/** Reads a blob of at most `max` bytes and checks its digest. */
async function smallBlob(reg: Registry, d: Descriptor, what: string, max: number) {
  if (d.size > max) {
    throw new RegistryError(`Cannot pull ${what}: its config is too large (${d.size} bytes)`);
  }
  const res = await reg.blob(d.digest);
  const parts: Uint8Array[] = [];
  let n = 0;
  try {
    for await (const c of res.body ?? []) {
      n += c.length;
      if (n > d.size) break;
      parts.push(c);
    }
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new RegistryError(
      `Cannot pull ${what}: fetching its config failed (${(e as Error).message})`,
    );
  }
  const bytes = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    bytes.set(p.subarray(0, Math.min(p.length, n - at)), at);
    at += p.length;
  }
  const h = await nodeHash();
  if (n !== d.size || `sha256:${h.update(bytes).digest("hex")}` !== d.digest) {
    throw new RegistryError(
      `Cannot pull ${what}: its config blob does not match its digest ${d.digest}`,
    );
  }
  return bytes;
}

/**
 * Pulls an image into the store under its short name ("redis:7"); returns its record.
 * Errors (CapsuleError, naming the reference): an invalid reference, 404, auth refused, no
 * such platform, a malformed or too large manifest, a digest mismatch, the registry
 * unreachable, an interrupt. Then nothing of the image is kept; layers that were complete
 * and verified stay for the next pull (and are removed by `image delete` if none uses them).
 */
export async function pullImage(o: PullOptions): Promise<ImageRecord> {
  let ref: Reference;
  try {
    ref = parseReference(o.ref);
  } catch (e) {
    if (e instanceof ReferenceError) throw new CapsuleError(e.message);
    throw e;
  }
  const name = shortName(ref);
  const what = fullName(ref);
  if (Deno.uid() !== 0) {
    throw new CapsuleError(
      `Cannot pull ${what}: image pull needs root (layers keep overlayfs whiteouts, which are ` +
        `device nodes and trusted.* attributes); run it with sudo`,
    );
  }
  const key = imageKey(name);
  const imageDir = `${paths.images(o.store)}/${key}`;
  let previous: ImageRecord | undefined;
  if (exists(imageDir)) {
    previous = readImage(o.store, name);
    if (!previous.lowers) {
      throw new CapsuleError(
        `Image name "${name}" is taken by an imported image; delete it first ` +
          `("capsule image delete ${name}") or pull under another name`,
      );
    }
  }
  const platform = parsePlatform(o.platform);
  const credentials = o.credentials ??
    lookupCredentials(o.authFile ?? defaultAuthFile(), ref.domain);
  const abort = new AbortController();
  const interrupt = { aborted: false };
  let signalled = false;
  const onSignal = () => {
    signalled = true;
    interrupt.aborted = true;
    abort.abort();
  };
  const sigs = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const s of sigs) Deno.addSignalListener(s, onSignal);
  const out = o.out ?? ((s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s)));
  const progress = new PullProgress(o.tty ?? Deno.stderr.isTerminal(), out);
  const reg = new Registry(ref, {
    insecure: o.insecure,
    credentials,
    signal: abort.signal,
    fetch: o.fetch,
  });
  const layersDir = paths.layers(o.store);
  let lock: Deno.FsFile | undefined;
  try {
    progress.line(`Pulling ${what} (${platformString(platform)})`);
    let manifest = await reg.manifest(ref.digest ?? ref.tag ?? "latest");
    const topDigest = manifest.digest;
    let chosen = platformString(platform);
    if (isIndex(manifest)) {
      const d = choosePlatform(manifest, platform, what);
      if (d.platform) chosen = platformString(d.platform as Platform);
      manifest = await reg.manifest(d.digest);
      if (isIndex(manifest)) {
        throw new RegistryError(`Cannot pull ${what}: index ${d.digest} names another index`);
      }
    }
    const { config: configDesc, layers } = checkManifest(manifest, what);
    const configBytes = await smallBlob(reg, configDesc, what, 8 << 20);
    let config: Record<string, unknown>;
    try {
      config = JSON.parse(new TextDecoder().decode(configBytes));
    } catch (e) {
      throw new RegistryError(
        `Cannot pull ${what}: its config ${configDesc.digest} is not JSON (${
          (e as Error).message
        })`,
      );
    }
    const cfgPlatform = { os: config.os, architecture: config.architecture };
    if (
      typeof cfgPlatform.os === "string" && typeof cfgPlatform.architecture === "string" &&
      (cfgPlatform.os !== platform.os || cfgPlatform.architecture !== platform.architecture)
    ) {
      throw new RegistryError(
        `Cannot pull ${what}: the image is for ${cfgPlatform.os}/${cfgPlatform.architecture}, ` +
          `not ${platformString(platform)}; choose it with --platform`,
      );
    }
    const diffIds = (config.rootfs as { diff_ids?: unknown } | undefined)?.diff_ids;
    if (
      !Array.isArray(diffIds) || diffIds.length !== layers.length ||
      !diffIds.every((d) => typeof d === "string" && DIGEST.test(d))
    ) {
      throw new RegistryError(
        `Cannot pull ${what}: its config ${configDesc.digest} has no valid rootfs.diff_ids ` +
          `for its ${layers.length} layers`,
      );
    }
    // The store and what a container can write into stay closed to other users (0700).
    storeDir(o.store, "images");
    Deno.mkdirSync(layersDir, { recursive: true, mode: 0o700 });
    privateDir(layersDir, "--store directory", ownTree);
    sweep(layersDir);
    sweep(paths.images(o.store));
    // A shared lock: `image delete` collects unused layers only under the exclusive one.
    lock = await Deno.open(`${layersDir}/.lock`, { create: true, write: true, mode: 0o600 });
    await lock.lock(false);
    const ctx: Ctx = { reg, what, store: o.store, progress, interrupt };
    const todo: { desc: Descriptor; diffId: string; row: number }[] = [];
    const seen = new Set<string>();
    layers.forEach((desc, i) => {
      const diffId = diffIds[i] as string;
      const row = progress.add(desc.digest.slice(7, 19), desc.size);
      if (layerPresent(o.store, diffId.slice(7))) progress.set(row, "already present");
      else if (seen.has(diffId)) progress.set(row, "same as another layer", false);
      else todo.push({ desc, diffId, row });
      seen.add(diffId);
    });
    // Several layers at once; the first failure stops the others (their temp dirs go).
    let failed: unknown;
    const queue = [...todo];
    const worker = async () => {
      for (let job = queue.shift(); job; job = queue.shift()) {
        if (failed !== undefined) return;
        try {
          await pullLayer(ctx, job.desc, job.diffId, job.row);
        } catch (e) {
          if (failed === undefined) failed = e;
          interrupt.aborted = true;
          abort.abort();
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, o.jobs ?? 3) }, worker));
    if (failed !== undefined) throw failed;
    if (interrupt.aborted) throw new DOMException("interrupted", "AbortError");
    progress.end();
    const lowers = (diffIds as string[]).map((d) => d.slice(7));
    let size = 0;
    for (const hex of lowers) {
      try {
        size += JSON.parse(Deno.readTextFileSync(`${paths.layer(o.store, hex)}/layer.json`)).size;
      } catch { /* counted as 0 */ }
    }
    const record: ImageRecord = {
      name,
      id: configDesc.digest,
      created: typeof config.created === "string" ? config.created : new Date().toISOString(),
      size,
      digest: ref.digest ?? topDigest,
      format: "registry",
      source: what,
      config: pickConfig(config),
      layers: diffIds as string[],
      lowers,
      platform: chosen,
    };
    const text = JSON.stringify(record, null, 2) + "\n";
    if (previous) {
      writeFileAtomic(`${imageDir}/image.json`, text); // the tag moves to the new image
    } else {
      const tmp = `${paths.images(o.store)}/.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
      Deno.mkdirSync(tmp, { mode: 0o700 });
      try {
        Deno.writeTextFileSync(`${tmp}/image.json`, text);
        Deno.renameSync(tmp, imageDir);
      } catch (e) {
        if (!exists(imageDir)) throw e;
        // Pulled by another process meanwhile: replace its record if it is layered.
        if (!readImage(o.store, name).lowers) {
          throw new CapsuleError(`Image name "${name}" was taken while pulling; nothing was kept`);
        }
        writeFileAtomic(`${imageDir}/image.json`, text);
      } finally {
        try {
          Deno.removeSync(tmp, { recursive: true });
        } catch { /* renamed */ }
      }
    }
    if (previous && previous.id !== record.id) {
      lock.close();
      lock = undefined;
      try {
        collectLayers(o.store); // the old image's layers, if nothing else uses them
      } catch { /* they wait for the next delete */ }
    }
    return readImage(o.store, name);
  } catch (e) {
    progress.end();
    if (signalled) {
      throw new CapsuleError(
        `Pull of ${what} interrupted; no image was kept (complete layers stay for the next pull)`,
      );
    }
    throw e;
  } finally {
    for (const s of sigs) Deno.removeSignalListener(s, onSignal);
    lock?.close();
  }
}
