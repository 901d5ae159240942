// The image store on disk, and what the run path needs of it (no tar code here):
//   <store>/images/<key>/{rootfs/, image.json}        an imported image, never written after
//   <store>/images/<key>/image.json                    a pulled (layered) image: its layers
//                                                      are named in image.json (`lowers`)
//   <store>/images/.tmp-<pid>-<rand>/                  an import or pull in progress
//   <store>/layers/<hex>/{diff/, layer.json}           one image layer, extracted with overlay
//                                                      whiteouts, named by its diff id (the
//                                                      sha256 of the uncompressed tar); shared
//                                                      by every image that has it
//   <store>/layers/.tmp-<pid>-<rand>/                  a layer being pulled
//   <store>/containers/<id>/{config.json, container.json, upper/, work/, merged/}
//   <store>/volumes/<name>/                            a named volume (outlives containers)
//   <store>/volumes/_anon/<id>/<n>/                    anonymous volumes of one container
import { MNT_DETACH } from "../runtime/consts.ts";
import { CapsuleError } from "../runtime/errors.ts";
import { privateDir } from "../runtime/state.ts";
import * as libc from "../ffi/libc.ts";
import { parseReference, ReferenceError, shortName } from "./reference.ts";

/** Image and volume names: what container ids allow (no "/", no ".." can reach a path). */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export function validateName(name: string, what = "image name"): string {
  if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
    throw new CapsuleError(
      `Invalid ${what} ${JSON.stringify(name)}: use 1-128 letters, digits, '_', '.' or '-', ` +
        `starting with a letter or digit`,
    );
  }
  return name;
}

/**
 * The directory name an image is kept under (<store>/images/<key>): the image's short name
 * ("redis", "redis:7", "registry.example:5000/team/app:1.2", "redis@sha256:...") where it is
 * a plain file name, else that name percent-encoded ("redis%3A7"). "redis", "redis:latest"
 * and "docker.io/library/redis:latest" are one key. A name of the older, wider pattern that
 * is no image reference (upper case) is its own key, so images stored before stay reachable.
 * Throws a CapsuleError naming the value when it is neither.
 */
export function imageKey(name: string): string {
  try {
    const short = shortName(parseReference(name));
    const key = NAME_PATTERN.test(short) ? short : encodeURIComponent(short);
    if (key.length > 255) {
      throw new CapsuleError(
        `Invalid image name "${name}": too long to keep (${key.length} bytes as a file name, ` +
          `at most 255); use a shorter name or tag`,
      );
    }
    return key;
  } catch (e) {
    if (!(e instanceof ReferenceError)) throw e;
    if (typeof name === "string" && NAME_PATTERN.test(name)) return name;
    throw new CapsuleError(
      `Invalid image name ${JSON.stringify(name)}: ${e.why}; an image name is a reference ` +
        `such as redis, redis:7 or registry.example:5000/team/app:1.2`,
    );
  }
}

/** The name an image is recorded and shown under (short form, see imageKey). */
export function imageName(name: string): string {
  try {
    return shortName(parseReference(name));
  } catch {
    imageKey(name); // throws for a name that is neither
    return name;
  }
}

/** What capsule keeps of an image's config (docker/OCI `config` field names). */
export interface ImageConfig {
  /** "KEY=value" strings: the container's environment, under `image run --env`. */
  Env?: string[];
  /** argv prefix of the container's program; `image run --entrypoint` replaces it. */
  Entrypoint?: string[] | null;
  /** Default arguments after Entrypoint; a command given to `image run` replaces them. */
  Cmd?: string[] | null;
  /** The program's working directory (absolute); empty or unset: "/". */
  WorkingDir?: string;
  /**
   * User to run as: "uid", "uid:gid", "name" or "name:group", names resolved in the image's
   * /etc/passwd and /etc/group; empty or unset: root.
   */
  User?: string;
  /** Ports the image declares ("80/tcp": {}); informative only, nothing is published from it. */
  ExposedPorts?: Record<string, unknown>;
  /** Labels, copied into the container's config.json `annotations`. */
  Labels?: Record<string, string> | null;
  /**
   * Signal that stops the container ("SIGQUIT"), passed on as the annotation
   * org.opencontainers.image.stopSignal.
   */
  StopSignal?: string;
}

/** An image in the store: <store>/images/<key>/image.json, beside its rootfs/ when not layered. */
export interface ImageRecord {
  /** The name it was imported or pulled under, in short form ("redis:7", see imageName). */
  name: string;
  /** sha256 of the image config (archives) or of the tarball (flat rootfs). */
  id: string;
  /**
   * ISO 8601 time: the image config's `created` for a pull that has one, else when it was
   * imported or pulled.
   */
  created: string;
  /** Bytes of regular files in rootfs (hard links counted once). */
  size: number;
  /** sha256 of the manifest (archives) or of the tarball. */
  digest: string;
  /**
   * Where it came from: a flat rootfs tarball, a `docker save` archive, an OCI image layout,
   * or a registry (`image pull`).
   */
  format: "rootfs" | "docker-archive" | "oci" | "registry";
  /** The archive's path (imports) or the full reference pulled ("docker.io/library/redis:7"). */
  source: string;
  /** The image config's run defaults; empty for a flat rootfs. */
  config: ImageConfig;
  /** Layer digests, bottom first (diff ids or blob digests). */
  layers: string[];
  /**
   * Layered images only (pulled): the <store>/layers/<hex> directories, bottom first. An
   * image without it has its own rootfs/ directory.
   */
  lowers?: string[];
  /** Pulled images: "os/architecture[/variant]" of the manifest chosen. */
  platform?: string;
}

/** container.json: what `image run` made for a container (read by destroyc, delete, rm). */
export interface ContainerInfo {
  id: string;
  image: string;
  imageId: string;
  created: string;
  /** The state root the container was created under. */
  root: string;
  rm: boolean;
  /** Layer names (hex) under the container's root when the image is layered: kept while it is. */
  lowers?: string[];
  volumes: {
    kind: "bind" | "named" | "anon";
    source: string;
    destination: string;
    name?: string;
  }[];
  /** The network extension's options it was run with (--network, -p, --link): image start. */
  network?: unknown;
  /**
   * --log-max-size (bytes, 0: never rotate) and --log-max-files given at `image run`, kept for
   * `image start`; absent: the defaults (runtime/waiter.ts LOG_DEFAULTS).
   */
  log?: { maxSize: number; maxFiles: number };
}

export const paths = {
  images: (store: string) => `${store}/images`,
  image: (store: string, name: string) => `${store}/images/${imageKey(name)}`,
  layers: (store: string) => `${store}/layers`,
  layer: (store: string, hex: string) => {
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new CapsuleError(`Invalid layer name "${hex}"`);
    return `${store}/layers/${hex}`;
  },
  containers: (store: string) => `${store}/containers`,
  container: (store: string, id: string) =>
    `${store}/containers/${validateName(id, "container id")}`,
  volumes: (store: string) => `${store}/volumes`,
  volume: (store: string, name: string) => `${store}/volumes/${validateName(name, "volume name")}`,
  anon: (store: string, id: string) => `${store}/volumes/_anon/${validateName(id, "container id")}`,
};

import { exists } from "../runtime/state.ts";
export { exists };

/**
 * Makes (or tightens) the store and one of its top-level directories 0700 and returns the
 * latter's path: a container writes into volumes and its writable layer (a setuid-root file
 * among them), so no other local user may traverse the store (docker keeps /var/lib/docker
 * 0710 root). Called by every command that creates something in the store, so a store made
 * by an older capsule, or a directory made by hand, is fixed too. Throws CapsuleError (see
 * privateDir) for a store that is not capsule's own.
 */
export function storeDir(store: string, sub: "images" | "containers" | "volumes"): string {
  privateDir(store, "--store", storeOwns);
  const dir = `${store}/${sub}`;
  privateDir(dir, `--store directory`, ownTree);
  return dir;
}

/** The entries capsule makes at the top of a store (privateDir's `owns` for `--store`). */
const STORE_ENTRIES = new Set(["images", "containers", "volumes", "layers", "networks"]);

/** privateDir's `owns` for a store: only the entries capsule makes there (STORE_ENTRIES). */
export const storeOwns = (_dir: string, name: string): boolean => STORE_ENTRIES.has(name);

/** privateDir's `owns` for a directory inside a store capsule owns: all of it is capsule's. */
export const ownTree = (): boolean => true;

/** The image's record; a CapsuleError naming what to do when there is none. */
export function readImage(store: string, name: string): ImageRecord {
  const dir = paths.image(store, name);
  let text: string;
  try {
    text = Deno.readTextFileSync(`${dir}/image.json`);
  } catch {
    const alias = byDigest(store, name);
    if (alias) return alias;
    throw new CapsuleError(
      `Image "${name}" does not exist in ${store}; see "capsule image list", pull it with ` +
        `"capsule image pull ${name}", or import it with "capsule image create ${name} FILE.tar"`,
    );
  }
  try {
    const rec = JSON.parse(text) as ImageRecord;
    if (typeof rec.name !== "string" || imageKey(rec.name) !== imageKey(name)) {
      throw new Error("its name does not match");
    }
    if (typeof rec.id !== "string") throw new Error("fields missing");
    if (
      rec.lowers !== undefined &&
      (!Array.isArray(rec.lowers) || !rec.lowers.every((l) => /^[0-9a-f]{64}$/.test(l)))
    ) {
      throw new Error("its layer list is invalid");
    }
    rec.config ??= {};
    return rec;
  } catch (e) {
    throw new CapsuleError(
      `Image "${name}" is damaged (${dir}/image.json: ${(e as Error).message}); ` +
        `delete it with "capsule image delete -f ${name}" and import it again`,
    );
  }
}

/**
 * `repo@sha256:...` when the image was pulled by tag: the record of that repository whose
 * manifest digest it is (as docker finds an image by its repo digest).
 */
function byDigest(store: string, name: string): ImageRecord | undefined {
  let want: ReturnType<typeof parseReference>;
  try {
    want = parseReference(name);
  } catch {
    return undefined;
  }
  if (!want.digest) return undefined;
  const repo = shortName({ ...want, digest: undefined, tag: "latest" });
  return listImages(store).find((r) => {
    if (r.digest !== want.digest) return false;
    try {
      return shortName({ ...parseReference(r.name), digest: undefined, tag: "latest" }) === repo;
    } catch {
      return false;
    }
  });
}

export function listImages(store: string): ImageRecord[] {
  const out: ImageRecord[] = [];
  try {
    for (const e of Deno.readDirSync(paths.images(store))) {
      if (!e.isDirectory || e.name.startsWith(".")) continue;
      try {
        const rec = readImage(store, decodeURIComponent(e.name));
        if (imageKey(rec.name) === e.name) out.push(rec);
      } catch { /* damaged: get/delete name it */ }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export function readContainerInfo(store: string, id: string): ContainerInfo | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${paths.container(store, id)}/container.json`));
  } catch {
    return undefined;
  }
}

/**
 * The directories overlay stacks for an image, top first: its layers' diff/ directories
 * (layered images) or its own rootfs/ (imported ones). Throws when a layer is missing.
 */
export function imageLowers(store: string, rec: ImageRecord): string[] {
  if (!rec.lowers) return [`${paths.image(store, rec.name)}/rootfs`];
  const out = rec.lowers.map((hex) => `${paths.layer(store, hex)}/diff`).reverse();
  for (const d of out) {
    if (!exists(d)) {
      throw new CapsuleError(
        `Image "${rec.name}" is missing its layer ${d}; pull it again ` +
          `("capsule image pull ${rec.name}")`,
      );
    }
  }
  return out;
}

/**
 * Removes the layers no image and no container of the store names any more. Skipped (the
 * layers wait for a later delete) while a pull holds the layers' lock, or when an image
 * record cannot be read (its layers cannot be told apart then). Returns how many went.
 */
export function collectLayers(store: string): number {
  const dir = paths.layers(store);
  if (!exists(dir)) return 0;
  const lock = Deno.openSync(`${dir}/.lock`, { create: true, write: true, mode: 0o600 });
  try {
    if (!lock.tryLockSync(true)) return 0;
    const used = new Set<string>();
    for (const e of Deno.readDirSync(paths.images(store))) {
      if (!e.isDirectory || e.name.startsWith(".")) continue;
      let rec: Partial<ImageRecord>;
      try {
        rec = JSON.parse(Deno.readTextFileSync(`${paths.images(store)}/${e.name}/image.json`));
      } catch {
        return 0;
      }
      for (const l of rec.lowers ?? []) used.add(l);
    }
    for (const c of listContainerInfos(store)) for (const l of c.lowers ?? []) used.add(l);
    let removed = 0;
    for (const e of Deno.readDirSync(dir)) {
      if (!/^[0-9a-f]{64}$/.test(e.name) || used.has(e.name)) continue;
      const trash = `${dir}/.tmp-${Deno.pid}-gc-${e.name.slice(0, 12)}`;
      Deno.renameSync(`${dir}/${e.name}`, trash);
      Deno.removeSync(trash, { recursive: true });
      removed++;
    }
    return removed;
  } finally {
    lock.close();
  }
}

/** Every container made by `image run` that still has its directory (writable layer). */
export function listContainerInfos(store: string): ContainerInfo[] {
  const out: ContainerInfo[] = [];
  try {
    for (const e of Deno.readDirSync(paths.containers(store))) {
      if (!NAME_PATTERN.test(e.name)) continue;
      const info = readContainerInfo(store, e.name);
      if (info) out.push(info);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/** Containers in a state root whose state names this image (`ext.image.image`). */
export function liveUsers(root: string, image: string): string[] {
  const out: string[] = [];
  try {
    for (const e of Deno.readDirSync(root)) {
      try {
        const rec = JSON.parse(Deno.readTextFileSync(`${root}/${e.name}/state.json`));
        if (rec?.ext?.image?.image === image) out.push(e.name);
      } catch { /* not a container, or no state */ }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

function unescapeMount(s: string): string {
  return s.replace(/\\(\d{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

/** Is `path` a mount point in this mount namespace? (mountinfo field 5) */
export function isMounted(path: string): boolean {
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    const mp = line.split(" ")[4];
    if (mp && unescapeMount(mp) === path) return true;
  }
  return false;
}

/**
 * The file system type (mountinfo's fstype, e.g. "ext4", "overlay") of the mount holding
 * `path` (an existing path; symlinks resolved), or undefined when it cannot be told.
 */
export function fsTypeOf(path: string): string | undefined {
  let real: string;
  try {
    real = Deno.realPathSync(path);
  } catch {
    return undefined;
  }
  let best = "", type: string | undefined;
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    const [pre, post] = line.split(" - ");
    const mp = pre?.split(" ")[4];
    if (!mp || !post) continue;
    const m = unescapeMount(mp);
    const under = m === "/" || real === m || real.startsWith(`${m}/`);
    // The last of equal mount points is the one on top.
    if (under && m.length >= best.length) [best, type] = [m, post.split(" ")[0]];
  }
  return type;
}

/** Unmounts every mount stacked on `path` (lazily: a process may still hold it). */
export function unmountAll(path: string): void {
  for (let i = 0; i < 16 && isMounted(path); i++) {
    try {
      libc.umount2(path, MNT_DETACH);
    } catch (e) {
      const code = (e as libc.SysError).code;
      if (code === "EINVAL" || code === "ENOENT") return;
      throw new CapsuleError(`Cannot unmount ${path}: ${(e as Error).message}`);
    }
  }
}

function removeTree(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Removes a container's image-side data: unmounts its root, removes its directory (config,
 * writable layer) and its anonymous volumes. Named volumes and host directories are never
 * touched: the only mount here is the overlay, and it is gone before anything is removed.
 */
export function destroyContainerFiles(store: string, id: string): void {
  const dir = paths.container(store, id);
  unmountAll(`${dir}/merged`);
  if (isMounted(`${dir}/merged`)) {
    throw new CapsuleError(`Cannot remove ${dir}: ${dir}/merged is still mounted`);
  }
  removeTree(dir);
  removeTree(paths.anon(store, id));
}

export function humanSize(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0
    ? `${n} B`
    : `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ${units[i]}`;
}
