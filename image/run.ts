// `image run`, `image destroyc`, `image delete` and volumes: the library side of the image
// commands (the CLI parses and prints). Runs on the container start path: no tar code.
import type { Runtime } from "../runtime/container.ts";
import { CapsuleError } from "../runtime/errors.ts";
import { validateId } from "../runtime/ids.ts";
import { stringifyJson } from "../runtime/json.ts";
import type { Mount } from "../runtime/spec.ts";
import { privateDir, sameDir, writeFileAtomic } from "../runtime/state.ts";
import type { ImageRunOptions } from "./mod.ts";
import { buildSpec, parseVolumes, type RunFlags, type Volume, volumeMount } from "./runspec.ts";
import {
  collectLayers,
  type ContainerInfo,
  destroyContainerFiles,
  exists,
  imageKey,
  imageLowers,
  imageName,
  type ImageRecord,
  listContainerInfos,
  liveUsers,
  ownTree,
  paths,
  readContainerInfo,
  readImage,
  storeDir,
  unmountAll,
  validateName,
} from "./store.ts";
import { MNT_DETACH, MS } from "../runtime/consts.ts";
import { EXIT_FILE } from "../runtime/state.ts";
import { type LogLimits, validLimits } from "../runtime/log_writer.ts";
import * as libc from "../ffi/libc.ts";
import { escapeLowerDir } from "../runtime/exe_seal.ts";
import { openDir, openUnder, readUpTo, statFd } from "./confined.ts";

export interface Needs {
  id?: string;
  network?: boolean;
  image?: boolean;
  root?: string;
}
export type OpenRuntime = (needs: Needs) => Promise<Runtime>;

export interface RunRequest extends RunFlags {
  store: string;
  root: string;
  volumes: string[];
  detach?: boolean;
  rm?: boolean;
  /** The network extension's options (--network, -p, --link), if any. */
  network?: unknown;
  /** Detached: the log's rotation (default: runtime/log_writer.ts LOG_DEFAULTS). */
  log?: LogLimits;
  /** Keep `log` in container.json for `image start` (it was given: --log-max-size/-files). */
  keepLog?: boolean;
}

/** The most capsule reads of an image's /etc/passwd or /etc/group (as the init: 4 MiB). */
export const MAX_IMAGE_FILE = 4 << 20;

/** EAGAIN from openat2 (a rename raced a ".." walk): tried again this many times. */
const AGAIN = 8;

/**
 * The file `rel` of the image open as `root` (its one directory, or its layers' overlay), as
 * the container will see it: resolved inside the image (RESOLVE_IN_ROOT: an absolute or ".."
 * link stays in it, a link to itself is a loop), a regular file only (a whiteout, FIFO,
 * device or directory is none). Throws CapsuleError for one over MAX_IMAGE_FILE.
 */
function readImageFile(root: number, rel: string): string | undefined {
  let fd: number | undefined;
  for (let i = 0; fd === undefined; i++) {
    try {
      fd = openUnder(root, rel, "in-root");
    } catch (e) {
      if (e instanceof libc.SysError && e.code === "EAGAIN" && i < AGAIN) continue;
      if (e instanceof libc.SysError) return undefined;
      throw e;
    }
  }
  try {
    const st = statFd(fd);
    if (!st.isFile) return undefined;
    const { data, more } = readUpTo(fd, MAX_IMAGE_FILE);
    if (more || st.size > MAX_IMAGE_FILE) {
      throw new CapsuleError(
        `The image's /${rel} is larger than 4 MiB (${st.size} bytes), more than capsule ` +
          `reads: give the user as numbers (-u UID:GID)`,
      );
    }
    return new TextDecoder().decode(data);
  } finally {
    libc.close(fd);
  }
}

/**
 * Files of the image (`rels`, relative to its root, e.g. "etc/passwd") as the container will
 * see them, or undefined for one it has not as a regular file: read from the image's one
 * directory, or from a read-only overlay of its layers (`lowers`, top first: whiteouts, opaque
 * directories and links across layers as the container's root has them) mounted detached
 * (fsmount: reachable by no path, gone when its fd is closed). Never through a symlink out
 * of the image (see readImageFile). Throws CapsuleError.
 */
export function imageFiles(lowers: string[], rels: string[]): (string | undefined)[] {
  let root: number;
  try {
    root = lowers.length === 1 ? openDir(lowers[0]) : layersView(lowers);
  } catch (e) {
    throw new CapsuleError(
      `Cannot read the image's /${rels.join(" and /")}: cannot open its ${
        lowers.length === 1 ? `directory ${lowers[0]}` : `${lowers.length} layers`
      }: ${(e as Error).message}`,
    );
  }
  try {
    return rels.map((rel) => readImageFile(root, rel));
  } finally {
    libc.close(root);
  }
}

/**
 * An fd on a read-only overlay of `lowers` (top first) that no path reaches: fsmount'ed
 * detached; fsconfig takes a string of at most 255 bytes, so a longer list goes one layer at
 * a time ("lowerdir+", Linux 6.8). Where neither works (an older kernel), mount(2) (a page of
 * options) on a new temporary directory of capsule's own, opened, then detached at once (the
 * fd keeps the mount). Throws SysError.
 */
function layersView(lowers: string[]): number {
  const joined = lowers.map(escapeLowerDir).join(":");
  try {
    return libc.fsmountReadOnly("overlay", [
      ...(joined.length < 256
        ? [["lowerdir", joined] as [string, string]]
        : lowers.map((l) => ["lowerdir+", l] as [string, string])),
      ["xino", "off"],
    ]);
  } catch { /* mount(2) below */ }
  const at = Deno.makeTempDirSync({ prefix: "capsule-layers-" });
  try {
    libc.mount(
      "overlay",
      at,
      "overlay",
      MS.RDONLY | MS.NOSUID | MS.NODEV,
      `lowerdir=${joined},xino=off`,
    );
    try {
      return openDir(at);
    } finally {
      libc.umount2(at, MNT_DETACH);
    }
  } finally {
    Deno.removeSync(at);
  }
}

/**
 * The image's /etc/passwd and /etc/group for the user `user` (-u, or the image's User) names:
 * none read when there is no user, or it is given as UID:GID numbers.
 */
function userFiles(
  lowers: string[],
  user: string | undefined,
): { passwd?: string; group?: string } {
  if (!user || /^\d+:\d+$/.test(user)) return {};
  const [passwd, group] = imageFiles(lowers, ["etc/passwd", "etc/group"]);
  return { passwd, group };
}

/**
 * The image's merged tree for reading (copy-up into new volumes): its one directory, or a
 * read-only overlay of its layers mounted at `at` (unmount with unmountAll(at)).
 */
function mergedView(lowers: string[], at: string): string {
  if (lowers.length === 1) return lowers[0];
  Deno.mkdirSync(at, { recursive: true, mode: 0o700 });
  try {
    libc.mount("overlay", at, "overlay", MS.RDONLY | MS.NODEV, `lowerdir=${lowers.join(":")}`);
  } catch (e) {
    throw new CapsuleError(`Cannot mount the image's layers at ${at}: ${(e as Error).message}`);
  }
  return at;
}

/** capsule's own RLIMIT_NOFILE, or undefined if it cannot be read. */
function ownNofile(): [bigint, bigint] | undefined {
  try {
    return libc.getrlimit(7);
  } catch {
    return undefined;
  }
}

/** A short random id, like docker's (12 hex digits). */
export function randomId(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 12);
}

/** Host directories of the volumes; named and anonymous ones are made here. */
function volumeSources(
  store: string,
  id: string,
  vols: Volume[],
  lower: string,
): { mounts: Mount[]; info: ContainerInfo["volumes"] } {
  const mounts: Mount[] = [];
  const info: ContainerInfo["volumes"] = [];
  vols.forEach((v, n) => {
    let source: string;
    let fresh = false;
    if (v.kind === "bind") {
      source = v.source;
    } else if (v.kind === "named") {
      storeDir(store, "volumes");
      source = paths.volume(store, v.name);
      fresh = !exists(source);
      // The volume itself keeps a mode the container's users can use; the 0700 directories
      // above it keep other host users out.
      if (fresh) Deno.mkdirSync(source, { mode: 0o755 });
    } else {
      privateDir(`${storeDir(store, "volumes")}/_anon`, "--store directory", ownTree);
      privateDir(paths.anon(store, id), "--store directory", ownTree);
      source = `${paths.anon(store, id)}/${n}`;
      fresh = true;
      Deno.mkdirSync(source, { recursive: true, mode: 0o755 });
    }
    // A new volume starts with what the image has at that path (as docker's copy-up).
    if (fresh) copyUp(`${lower}${v.destination}`, lower, source);
    mounts.push(volumeMount(v, source));
    info.push({
      kind: v.kind,
      source,
      destination: v.destination,
      ...(v.kind === "named" ? { name: v.name } : {}),
    });
  });
  return { mounts, info };
}

/**
 * The real path of `path` (absolute) also when it does not exist yet: its deepest existing
 * ancestor's real path, then the rest as given.
 */
function realish(path: string): string {
  const parts = (path.startsWith("/") ? path : `${Deno.cwd()}/${path}`).split("/").filter((c) =>
    c !== "" && c !== "."
  );
  for (let n = parts.length; n >= 0; n--) {
    try {
      const base = Deno.realPathSync(`/${parts.slice(0, n).join("/")}`).replace(/\/$/, "");
      return `${base}/${parts.slice(n).join("/")}`.replace(/\/$/, "") || "/";
    } catch { /* missing: try its parent */ }
  }
  return path;
}

/**
 * Whether `path` or a directory above it is the directory `dir` (by device and inode: the
 * same directory reached through a bind mount of it elsewhere).
 */
function sameInode(path: string, dir: string): boolean {
  let d: Deno.FileInfo;
  try {
    d = Deno.statSync(dir);
  } catch {
    return false;
  }
  for (let p = path; p.length > 1; p = p.slice(0, p.lastIndexOf("/")) || "/") {
    try {
      const st = Deno.statSync(p);
      if (st.dev === d.dev && st.ino === d.ino) return true;
    } catch { /* missing: its parent */ }
  }
  return false;
}

/**
 * A -v bind's host path: `real` is its real path (symlinks resolved), also when it does not
 * exist yet (the real path of its deepest existing ancestor, then the rest); `missing` the
 * directories to make for it, outermost first. A relative source (`./data`, `../x`) is taken
 * relative to `cwd` (the caller's working directory, as docker's CLI does). Throws CapsuleError
 * for a path inside the store (an image's rootfs or layers, a container's writable layer:
 * capsule's own, never the user's directory) or inside the state root `root` (its exec.plan
 * files are trusted by the native front end), compared by real paths (also of a store or root
 * not made yet) and by inode (the same directory bound elsewhere); a directory that holds
 * either (`-v /:/host`) is taken, as docker takes it; a missing part with "..", a dangling
 * symlink,
 * or a path whose real path names another directory than the kernel reaches through it (a
 * magic link such as /proc/PID/root: its text "/" is not the directory it leads to).
 */
export function resolveBindSource(
  source: string,
  store: string,
  cwd: string = Deno.cwd(),
  root?: string,
): { real: string; missing: string[] } {
  if (source.startsWith("~")) {
    throw new CapsuleError(
      `Volume host path "${source}": "~" is not expanded; give the directory's full path`,
    );
  }
  const abs = source.startsWith("/") ? source : `${cwd}/${source}`;
  const parts = abs.split("/").filter((c) => c !== "" && c !== ".");
  let real: string | undefined;
  let n = parts.length;
  for (; n >= 0; n--) {
    const p = `/${parts.slice(0, n).join("/")}`;
    let st: Deno.FileInfo;
    try {
      st = Deno.statSync(p);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        throw new CapsuleError(`Volume host path "${source}": ${p}: ${(e as Error).message}`);
      }
      let link: string | undefined;
      try {
        link = Deno.lstatSync(p).isSymlink ? Deno.readLinkSync(p) : undefined;
      } catch { /* missing: try its parent */ }
      if (link !== undefined) {
        throw new CapsuleError(
          `Volume host path "${source}": ${p} is a symlink to "${link}", which does not exist; ` +
            `make its target first or give another path`,
        );
      }
      continue;
    }
    // What the kernel reaches (st) must be what the real path names: a magic link (the
    // root or cwd of another process under /proc) reads as a host path it does not lead to.
    let rst: Deno.FileInfo | undefined;
    try {
      real = Deno.realPathSync(p);
      rst = Deno.statSync(real);
    } catch { /* changed meanwhile: refused below */ }
    if (!rst || rst.dev !== st.dev || rst.ino !== st.ino) {
      throw new CapsuleError(
        `Volume host path "${source}": ${p} is not the host's ${real ?? "path"} it reads as ` +
          `(a path through /proc/PID/root or another magic link); give the directory's path ` +
          `on the host instead`,
      );
    }
    break;
  }
  const rest = parts.slice(n);
  if (rest.some((c) => c === "..")) {
    throw new CapsuleError(
      `Volume host path "${source}" does not exist and has ".." in its missing part; ` +
        `give it without them`,
    );
  }
  const base = (real ?? "/").replace(/\/$/, "");
  const missing = rest.map((_, i) => `${base}/${rest.slice(0, i + 1).join("/")}`);
  const full = rest.length ? missing[missing.length - 1] : base || "/";
  for (
    const [dir, name, why] of [
      [store, "store", "every image's layers and every container's writable layer"],
      ...(root === undefined ? [] : [[
        root,
        "state root",
        "the containers' run-time state, which capsule trusts",
      ]]),
    ]
  ) {
    const real = realish(dir);
    // A directory that holds it (`-v /:/host`, `-v /run:/run`) is the user's to give, as
    // docker takes it: such a container reaches the whole host anyway.
    const inside = full === real || full.startsWith(`${real}/`) || sameInode(full, real);
    if (!inside) continue;
    throw new CapsuleError(
      `Volume host path "${source}" (${full}) is inside capsule's ${name} ${real} ` +
        `(--${name === "store" ? "store" : "root"}), which holds ${why}: ` +
        `give a directory of your own, or a named volume (-v NAME:/path)`,
    );
  }
  return { real: full, missing };
}

/**
 * Makes a -v bind's missing host directory `dir` (its parent exists): mode 0755, owned by the
 * caller, as docker does; pushed onto `made`. An existing directory is left as it is.
 */
function makeHostDir(dir: string, made: string[]): void {
  try {
    Deno.mkdirSync(dir, { mode: 0o755 });
  } catch (e) {
    let isDir = false;
    try {
      isDir = e instanceof Deno.errors.AlreadyExists && Deno.statSync(dir).isDirectory;
    } catch { /* a dangling symlink made meanwhile: refused below */ }
    if (isDir) return;
    throw new CapsuleError(
      `Cannot make the volume's host directory ${dir}: ${(e as Error).message}`,
    );
  }
  made.push(dir);
  Deno.chmodSync(dir, 0o755); // whatever the umask
}

/** Copies an image directory into a new volume, when it is a real directory of the image. */
function copyUp(from: string, lower: string, to: string): void {
  // Only a plain directory path inside the image (no symlink on the way can lead out).
  let p = lower;
  for (const c of from.slice(lower.length).split("/").filter(Boolean)) {
    p += `/${c}`;
    try {
      if (!Deno.lstatSync(p).isDirectory) return;
    } catch {
      return;
    }
  }
  if ([...Deno.readDirSync(from)].length === 0) return;
  const st = new Deno.Command("cp", { args: ["-a", `${from}/.`, `${to}/`], stderr: "piped" })
    .outputSync();
  if (!st.success) {
    throw new CapsuleError(
      `Cannot copy ${from} into its new volume: ${new TextDecoder().decode(st.stderr).trim()}`,
    );
  }
}

/**
 * Runs a container from an image: writes its bundle under <store>/containers/<id>, then
 * create + start through the runtime (the image extension mounts the overlay root). Returns
 * the exit status (foreground) or 0 once started (detached).
 */
export async function runImage(req: RunRequest, open: OpenRuntime): Promise<number> {
  const image = readImage(req.store, req.image);
  validateId(req.id);
  const vols = parseVolumes(req.volumes);
  // Host directories a -v names that do not exist yet: made once the checks below passed
  // (docker makes a missing -v source), removed again if the container never ran.
  const toMake: string[] = [];
  for (const v of vols) {
    if (v.kind !== "bind") continue;
    const { real, missing } = resolveBindSource(v.source, req.store, undefined, req.root);
    v.source = real;
    toMake.push(...missing);
  }
  const dir = paths.container(req.store, req.id);
  if (exists(dir)) {
    throw new CapsuleError(
      `Container "${req.id}" already exists in ${req.store} (its writable layer is kept until ` +
        `"capsule image destroyc ${req.id}"); remove it or choose another --id`,
    );
  }
  if (exists(`${req.root}/${req.id}`)) {
    throw new CapsuleError(
      `Cannot create container "${req.id}": a container with that id already exists ` +
        `(delete it first, or choose another id)`,
    );
  }
  const lowers = imageLowers(req.store, image);
  // The spec is built before anything is made: a bad flag leaves nothing behind.
  const probe = buildSpec({
    config: image.config,
    flags: req,
    rootfs: `${dir}/merged`,
    mounts: [],
    hostEnv: (k) => Deno.env.get(k),
    nofile: ownNofile(),
    ...userFiles(lowers, req.user ?? image.config.User),
  });
  storeDir(req.store, "containers");
  try {
    Deno.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new CapsuleError(
        `Container "${req.id}" already exists in ${req.store}; choose another --id`,
      );
    }
    throw e;
  }
  let started = false;
  const made: string[] = [];
  try {
    for (const d of toMake) makeHostDir(d, made);
    let volumes: ReturnType<typeof volumeSources>;
    const view = `${dir}/image`;
    try {
      const copies = vols.some((v) => v.kind !== "bind");
      const lower = copies ? mergedView(lowers, view) : lowers[0];
      volumes = volumeSources(req.store, req.id, vols, lower);
    } finally {
      if (lowers.length > 1) {
        unmountAll(view);
        try {
          Deno.removeSync(view);
        } catch { /* never made */ }
      }
    }
    const { mounts, info } = volumes;
    const spec = { ...probe, mounts: [...probe.mounts!, ...mounts] };
    const record: ContainerInfo = {
      id: req.id,
      image: image.name,
      imageId: image.id,
      created: new Date().toISOString(),
      root: req.root,
      rm: req.rm === true,
      ...(image.lowers ? { lowers: image.lowers } : {}),
      volumes: info,
      ...(req.network !== undefined ? { network: req.network } : {}),
      ...(req.log && req.keepLog ? { log: req.log } : {}),
    };
    writeFileAtomic(`${dir}/container.json`, JSON.stringify(record, null, 2) + "\n");
    // Exact integers: an unlimited --ulimit is 18446744073709551615, a bigint (runspec.ts).
    writeFileAtomic(`${dir}/config.json`, stringifyJson(spec, 2) + "\n");
    const rt = await open({ image: true, network: req.network !== undefined });
    const ext: Record<string, unknown> = {
      image: { image: image.name, rm: req.rm === true } satisfies ImageRunOptions,
    };
    if (req.network !== undefined) ext.network = req.network;
    if (req.detach) {
      const code = await rt.run(req.id, { bundle: dir, detach: true, ext, log: req.log });
      started = true;
      console.log(req.id);
      return code;
    }
    started = true;
    return keepExit(dir, await rt.run(req.id, { bundle: dir, ext }), req.rm === true);
  } catch (e) {
    // A container that never ran leaves nothing (its writable layer holds nothing of the user).
    const ran = started && /deleted, but cleanup reported/.test(String((e as Error)?.message));
    if (!ran && !exists(`${req.root}/${req.id}/state.json`)) {
      try {
        destroyContainerFiles(req.store, req.id);
      } catch { /* report the first error */ }
      for (const d of made.reverse()) {
        try {
          Deno.removeSync(d); // only while empty: what the user put there stays
        } catch { /* not empty, or gone */ }
      }
    }
    throw e;
  }
}

/**
 * A foreground run's exit status, kept with the container in the store (its run-time state
 * is deleted when it exits): `list` shows the kept container as `stopped (exit N)`, as
 * docker ps -a does. Returns `code`.
 */
function keepExit(dir: string, code: number, rm: boolean): number {
  if (rm || !exists(dir)) return code;
  try {
    writeFileAtomic(
      `${dir}/${EXIT_FILE}`,
      JSON.stringify({
        exitCode: code,
        signal: code > 128 ? code - 128 : 0,
        finishedAt: new Date().toISOString(),
      }) + "\n",
    );
  } catch { /* the status is shown without it */ }
  return code;
}

/**
 * In a kept container's store directory: `capsule delete` removed its run-time state (and with
 * it its log), `{ "deletedAt": ISO 8601 }`. Gone when it runs again.
 */
export const DELETED_FILE = "deleted.json";

/**
 * After `capsule delete` of an image container kept in the store (`dir`, its store
 * directory; nothing when --rm removed it): its last exit status (`exit`, from its state
 * directory, now gone) is kept there for `list`, and DELETED_FILE says what became of its log.
 */
export function keepDeleted(dir: string, exit: { exitCode: number } | undefined): void {
  if (!exists(`${dir}/container.json`)) return;
  try {
    if (exit) writeFileAtomic(`${dir}/${EXIT_FILE}`, JSON.stringify(exit) + "\n");
    writeFileAtomic(
      `${dir}/${DELETED_FILE}`,
      JSON.stringify({ deletedAt: new Date().toISOString() }) + "\n",
    );
  } catch { /* shown without them */ }
}

/** When `capsule delete` removed the run-time state of the kept container in `dir`, if it did. */
export function readDeleted(dir: string): string | undefined {
  try {
    const v = JSON.parse(Deno.readTextFileSync(`${dir}/${DELETED_FILE}`));
    return typeof v?.deletedAt === "string" ? v.deletedAt : undefined;
  } catch {
    return undefined;
  }
}

/** Drops a kept exit status (and a delete's mark): the container runs again. */
function forgetExit(dir: string): void {
  for (const f of [EXIT_FILE, DELETED_FILE]) {
    try {
      Deno.removeSync(`${dir}/${f}`);
    } catch { /* none kept */ }
  }
}

/**
 * The --root a kept container's run-time state lives under: the one given at `image run`,
 * saved in its record (`root` when the record has none). `rootGiven`: the user gave --root
 * explicitly; then it must be the saved one, else a CapsuleError names both and what to pass
 * (a container's state, network lease and ports are under one root: starting it under
 * another would make a second, conflicting copy).
 */
export function savedRoot(
  info: ContainerInfo | undefined,
  id: string,
  root: string,
  rootGiven: boolean,
): string {
  const saved = typeof info?.root === "string" ? info.root : root;
  if (rootGiven && !sameDir(saved, root)) {
    throw new CapsuleError(
      `Container "${id}" keeps its state under --root ${saved} (given at image run), not ` +
        `${root}: give "--root ${saved}", or leave --root out (the saved one is used)`,
    );
  }
  return saved;
}

/**
 * `image start ID` (docker start): runs a stopped container from an image again, from its
 * kept writable layer, with the same config.json (volumes, limits) and the same network
 * options (network, published ports, links). Detached (the id is printed) unless `attach`,
 * which returns the program's exit status. The stopped container's runtime state is deleted
 * first (its address is given back, and taken again); a container whose runtime state is gone
 * (after a reboot) starts as well. Its state lives under the --root of image run (savedRoot:
 * `rootGiven` and another root throw). Throws CapsuleError for an unknown id, a container
 * that is not stopped, one run with --rm, a deleted image, or a host port another container
 * publishes meanwhile (the extensions' `check`: refused before anything changes).
 */
export async function startContainer(
  store: string,
  root: string,
  id: string,
  attach: boolean,
  open: OpenRuntime,
  rootGiven = false,
): Promise<number> {
  validateId(id);
  const info = readContainerInfo(store, id);
  const dir = paths.container(store, id);
  if (!info || !exists(`${dir}/config.json`)) {
    throw new CapsuleError(
      `No container "${id}" from an image in ${store}; see "capsule list" (run one with ` +
        `"capsule image run")`,
    );
  }
  if (info.rm) {
    throw new CapsuleError(
      `Container "${id}" was run with --rm: it is removed when it stops, not started again`,
    );
  }
  const stateRoot = savedRoot(info, id, root, rootGiven);
  readImage(store, info.image); // a clear error if the image was deleted meanwhile
  const rt = await open({ id, image: true, network: info.network !== undefined, root: stateRoot });
  if (exists(`${stateRoot}/${id}`)) {
    const rec = rt.store.read(id);
    if (rec) {
      const status = rt.status(rec);
      if (status !== "stopped") {
        throw new CapsuleError(
          `Container "${id}" is ${status}; "capsule image start" starts a stopped one ` +
            `(stop it first with "capsule stop ${id}")`,
        );
      }
    }
  } else {
    // No state, but processes in its cgroup: its state directory was deleted while it ran.
    const cg = rt.cgroups, paths = cg?.paths(undefined, id);
    let left: number[] = [];
    try {
      left = cg && paths ? cg.pids(paths) : [];
    } catch { /* no such cgroup */ }
    if (left.length) {
      throw new CapsuleError(
        `Container "${id}" has no state under ${stateRoot} but processes in its cgroup ` +
          `(${left.slice(0, 5).join(", ")}): its state was deleted while it ran; ` +
          `"capsule image destroyc -f ${id}" kills them and removes the container`,
      );
    }
  }
  // Every -v bind is checked again (its path was a real path at image run: a symlink put in
  // its way since, into the store or elsewhere, is refused, not followed by the mount), and a
  // host directory removed meanwhile is made again, as docker start does.
  const toMake: string[] = [];
  for (const v of info.volumes ?? []) {
    if (v.kind !== "bind" || typeof v.source !== "string") continue;
    const { real, missing } = resolveBindSource(v.source, store, undefined, stateRoot);
    if (real !== v.source) {
      throw new CapsuleError(
        `Volume host path "${v.source}" of container "${id}" now leads to ${real}: a symlink ` +
          `was put in its way since "image run"; restore the directory, or remove the ` +
          `container ("capsule image destroyc ${id}") and run it again with the path you mean`,
      );
    }
    toMake.push(...missing);
  }
  for (const d of toMake) makeHostDir(d, []);
  const ext: Record<string, unknown> = {
    image: { image: info.image, rm: false } satisfies ImageRunOptions,
  };
  if (info.network !== undefined) ext.network = info.network;
  // What another container holds now (a host port it publishes since this one stopped) is
  // refused before the stopped run's state (exit status, log) goes: a refused start changes
  // nothing.
  for (const x of rt.extensions) await x.check?.(id, ext[x.name]);
  forgetExit(dir);
  // The old run's state goes (its address is given back, and taken again); without one (a
  // reboot emptied --root, or its directory was deleted), what the id still holds goes too:
  // a lease, a published port, the overlay mount.
  await rt.delete(id, { force: true, sweep: true });
  if (!attach) {
    // The log limits given at image run, else (undefined) the defaults.
    const log = validLimits(info.log) ? info.log : undefined;
    const code = await rt.run(id, { bundle: dir, detach: true, ext, log });
    console.log(id);
    return code;
  }
  return keepExit(dir, await rt.run(id, { bundle: dir, ext }), false);
}

/**
 * `image destroyc ID`: deletes the container (killing it first with `force`) and its
 * image-side data: writable layer, anonymous volumes. Named volumes and host dirs stay. The
 * state is under the --root of image run (savedRoot: `rootGiven` and another root throw).
 */
export async function destroyContainer(
  store: string,
  root: string,
  id: string,
  force: boolean,
  open: OpenRuntime,
  rootGiven = false,
): Promise<void> {
  validateId(id);
  const info = readContainerInfo(store, id);
  const dir = paths.container(store, id);
  const stateRoot = savedRoot(info, id, root, rootGiven);
  const hasState = exists(`${stateRoot}/${id}`);
  if (!info && !exists(dir) && !hasState) {
    throw new CapsuleError(
      `No container "${id}" from an image in ${store}; see "capsule list" and "capsule image list"`,
    );
  }
  if (hasState) {
    const rt = await open({ id, image: true, root: stateRoot });
    const rec = rt.store.read(id);
    if (rec) {
      const status = rt.status(rec);
      if (status !== "stopped" && !force) {
        throw new CapsuleError(
          `Container "${id}" is ${status}; stop it first ("capsule stop ${id}") or use -f`,
        );
      }
    }
    await rt.delete(id, { force: true });
  } else if (info) {
    // Its state is gone (a deleted directory): what the id still holds goes with it.
    const rt = await open({ image: true, network: info.network !== undefined, root: stateRoot });
    await rt.delete(id, { force: true, sweep: true });
  }
  destroyContainerFiles(store, id);
}

/**
 * `image delete NAME`: refused while containers use the image (CapsuleError naming them).
 * Returns false when there was no such image and `force` (nothing done, no error), else true.
 */
export function deleteImage(store: string, root: string, name: string, force: boolean): boolean {
  let key = imageKey(name);
  let dir = `${paths.images(store)}/${key}`;
  let shown = name;
  if (!exists(dir)) {
    if (force) return false;
    // The error naming what to do, or the image named by its repository digest.
    shown = readImage(store, name).name;
    key = imageKey(shown);
    dir = `${paths.images(store)}/${key}`;
  } else {
    try {
      shown = readImage(store, name).name;
    } catch { /* damaged: removed all the same */ }
  }
  const live = [...new Set([...liveUsers(root, shown), ...liveUsers(root, name)])];
  if (live.length) {
    throw new CapsuleError(
      `Image "${shown}" is used by container${live.length > 1 ? "s" : ""} ${
        live.map((c) => `"${c}"`).join(", ")
      }; delete ${live.length > 1 ? "them" : "it"} first ("capsule image destroyc -f ${live[0]}")`,
    );
  }
  const kept = listContainerInfos(store).filter((c) => {
    try {
      return imageKey(c.image) === key;
    } catch {
      return false;
    }
  });
  if (kept.length && !force) {
    throw new CapsuleError(
      `Image "${shown}" is under the kept writable layer of container${
        kept.length > 1 ? "s" : ""
      } ${kept.map((c) => `"${c.id}"`).join(", ")}; remove ${
        kept.length > 1 ? "them" : "it"
      } with "capsule image destroyc ${kept[0].id}", ` +
        `or use -f to remove ${kept.length > 1 ? "those layers" : "that layer"} with the image`,
    );
  }
  for (const c of kept) {
    if (exists(`${c.root}/${c.id}`)) {
      throw new CapsuleError(
        `Image "${shown}" is used by container "${c.id}" (state in ${c.root}); delete it first`,
      );
    }
    destroyContainerFiles(store, c.id);
  }
  // Rename first: a half-removed image is never listed or run.
  const trash = `${paths.images(store)}/.tmp-${Deno.pid}-rm-${crypto.randomUUID().slice(0, 8)}`;
  Deno.renameSync(dir, trash);
  Deno.removeSync(trash, { recursive: true });
  try {
    collectLayers(store);
  } catch { /* unused layers wait for the next delete */ }
  return true;
}

/**
 * `image tag SRC DST`: DST names the same image. A pulled image's record is copied (its
 * layers are shared); an imported one's rootfs is copied as hard links (never written, so
 * the two stay independent: either can be deleted). An existing DST that is a pulled image
 * is re-pointed, as docker does; an imported one is refused.
 */
export function tagImage(store: string, src: string, dst: string): ImageRecord {
  const rec = readImage(store, src);
  const dstKey = imageKey(dst);
  const images = paths.images(store);
  const name = imageName(dst);
  const target = `${images}/${dstKey}`;
  if (dstKey === imageKey(rec.name)) return rec;
  const copy: ImageRecord = { ...rec, name };
  const text = JSON.stringify(copy, null, 2) + "\n";
  if (exists(target)) {
    const old = readImage(store, dst);
    if (!old.lowers || !rec.lowers) {
      throw new CapsuleError(
        `Image name "${name}" is taken; delete that image first ("capsule image delete ${name}")`,
      );
    }
    writeFileAtomic(`${target}/image.json`, text);
    collectLayers(store);
    return readImage(store, dst);
  }
  const tmp = `${images}/.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  Deno.mkdirSync(tmp, { mode: 0o700 });
  try {
    if (!rec.lowers) {
      const from = `${paths.image(store, rec.name)}/rootfs`;
      const cp = new Deno.Command("cp", {
        args: ["-a", "--link", "--", from, `${tmp}/rootfs`],
        stderr: "piped",
      }).outputSync();
      if (!cp.success) {
        throw new CapsuleError(
          `Cannot tag "${rec.name}" as "${name}": ${new TextDecoder().decode(cp.stderr).trim()}`,
        );
      }
    }
    Deno.writeTextFileSync(`${tmp}/image.json`, text);
    try {
      Deno.renameSync(tmp, target);
    } catch (e) {
      if (exists(target)) {
        throw new CapsuleError(`Image name "${name}" was taken meanwhile; nothing was changed`);
      }
      throw e;
    }
  } finally {
    try {
      Deno.removeSync(tmp, { recursive: true });
    } catch { /* renamed into place */ }
  }
  return readImage(store, dst);
}

// ---- named volumes ---------------------------------------------------------------------------

/** A named volume, as `capsule volume list` shows it (anonymous volumes are not listed). */
export interface VolumeInfo {
  /** The volume's name (`image run -v NAME:/path`). */
  name: string;
  /** Its directory on the host: <store>/volumes/<name>. */
  path: string;
  /** Ids of the containers made by `image run` that mount it; delete is refused while any. */
  usedBy: string[];
}

export function listVolumes(store: string): VolumeInfo[] {
  const users = new Map<string, string[]>();
  for (const c of listContainerInfos(store)) {
    for (const v of c.volumes) {
      if (v.kind === "named" && v.name) users.set(v.name, [...(users.get(v.name) ?? []), c.id]);
    }
  }
  const out: VolumeInfo[] = [];
  try {
    for (const e of Deno.readDirSync(paths.volumes(store))) {
      if (!e.isDirectory || e.name === "_anon") continue;
      out.push({
        name: e.name,
        path: `${paths.volumes(store)}/${e.name}`,
        usedBy: users.get(e.name) ?? [],
      });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export function createVolume(store: string, name: string): string {
  const path = paths.volume(store, validateName(name, "volume name"));
  storeDir(store, "volumes");
  try {
    Deno.mkdirSync(path, { mode: 0o755 });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new CapsuleError(`Volume "${name}" already exists`);
    }
    throw e;
  }
  return path;
}

/** Removes a named volume (its data: the user asked for it by name), refused while in use. */
export function removeVolume(store: string, name: string): void {
  const path = paths.volume(store, validateName(name, "volume name"));
  if (!exists(path)) {
    throw new CapsuleError(`Volume "${name}" does not exist; see "capsule volume list"`);
  }
  const v = listVolumes(store).find((x) => x.name === name);
  if (v?.usedBy.length) {
    throw new CapsuleError(
      `Volume "${name}" is used by container${v.usedBy.length > 1 ? "s" : ""} ${
        v.usedBy.map((c) => `"${c}"`).join(", ")
      }; remove ${v.usedBy.length > 1 ? "them" : "it"} first ("capsule image destroyc ${
        v.usedBy[0]
      }")`,
    );
  }
  unmountAll(path);
  Deno.removeSync(path, { recursive: true });
}
