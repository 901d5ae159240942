// create (runtime spec "create"): the container is set up and its init waits on exec.fifo
// until start. The work is the list of named steps in STEPS, run in order; when one fails, the
// init is killed and every step that began is undone in reverse (so a failed create leaves
// nothing behind: no state directory, cgroup, address or mount). The init's side is
// runtime/native/init.c.
import { close as closeFd } from "../ffi/libc.ts";
import type { RuntimeContext } from "./context.ts";
import {
  applyLimits,
  cgroupPaths,
  destroyCgroups,
  makeCgroups,
  nestedParents,
} from "./create_cgroups.ts";
import {
  awaitInit,
  buildPlan,
  cloneInit,
  closeGate,
  closeMaster,
  extensionsCreated,
  makeFifoAndChannel,
  mapUserNamespace,
  prepareUserNamespace,
  spawnTheInit,
} from "./create_init.ts";
import { checkConfig } from "./validate.ts";
import { refuseUnappliedProcess } from "./config_check.ts";
import { type CreateOptions, Creating } from "./create_state.ts";
import { CapsuleError } from "./errors.ts";
import { runHooks } from "./hooks.ts";
import type { HelperProcess } from "./helper_process.ts";
import { callerFds } from "./spawn.ts";
import { bindRootfsOnHost, releaseHostMount } from "./host_mount.ts";
import { validateId } from "./ids.ts";
import { parseJson } from "./json.ts";
import { keepConfigProcess, writeExecPlan } from "./exec.ts";
import { ociState } from "./query.ts";
import type { Spec } from "./spec.ts";
import { OCI_VERSION } from "./version.ts";
import { type ContainerRecord, isoTime, LOG_FILE, procStat, writePidFile } from "./state.ts";

export type { CreateOptions };

/** A created container: its record, the init's process, the pty master when run keeps it. */
export interface Created {
  record: ContainerRecord;
  child: HelperProcess;
  master?: number;
}

/** One step of create: `undo` runs when a later step (or this one, halfway) fails. */
interface Step {
  /** What is done once it ran: the --debug line. */
  name: string;
  /** More for the --debug line, e.g. a pid. */
  detail?(c: Creating): string;
  run(c: Creating): void | Promise<void>;
  undo?(c: Creating): void | Promise<void>;
}

/** The init's mounts, the hooks before its pivot_root (create_init.ts), then "ready". */
const INIT_READY: Step = {
  name: "init ready (namespaces, mounts, hooks, pivot_root)",
  run: awaitInit,
  undo: closeMaster,
};

const STEPS: Step[] = [
  { name: "state directory claimed", run: claimStateDir, undo: removeStateDir },
  { name: "exec fifo and channel made", run: makeFifoAndChannel },
  { name: "user namespace prepared", run: prepareUserNamespace, undo: closeGate },
  // The init is killed before any undo runs (see createContainer).
  { name: "init spawned", run: spawnTheInit, detail: (c) => ` (pid ${c.child!.pid})` },
  { name: "id maps written", run: mapUserNamespace },
  { name: "state written", run: writeRecord },
  { name: "config.json validated", run: validateSpec },
  { name: "extensions prepared", run: prepareExtensions, undo: deleteExtensions },
  // As late as the plan allows: a cgroup mkdir waits for the kernel's cgroup_mutex, which the
  // warm-up's migration (cgroup_warm.ts) holds through an RCU grace period (~8 ms, up to 15).
  { name: "cgroups made", run: makeCgroups, undo: destroyCgroups },
  { name: "plan built", run: buildPlan },
  { name: "rootfs bound on the host (no mount namespace)", run: bindHost, undo: unbindHost },
  // Without a user namespace: the helper joins the cgroup and clones the init (its pid back).
  { name: "init cloned", run: cloneInit },
  { name: "limits applied", run: applyLimits },
  INIT_READY,
  // Run by now when the init stopped for the hooks before its pivot_root (awaitInit).
  { name: "extensions attached", run: extensionsCreated },
  { name: "created", run: markCreated },
];

/**
 * Creates a container; the init waits for `start`. With `foreground` (capsule run), a
 * terminal may be kept here instead of going to a console socket. Throws CapsuleError naming
 * the container and the reason (bad id, bundle or config.json, busy cgroup, the init's error);
 * nothing of the container is left then.
 */
export async function createContainer(
  ctx: RuntimeContext,
  id: string,
  opts: CreateOptions,
  foreground: boolean,
): Promise<Created> {
  const { bundle, raw, text } = readBundle(id, opts);
  // Before any fd of create's own is open (see callerFds).
  const listen = opts.listenFds ?? 0, preserve = opts.preserveFds ?? 0;
  const passFds = listen + preserve
    ? callerFds(
      listen + preserve,
      `Cannot create container "${id}"`,
      [listen ? `LISTEN_FDS=${listen}` : "", preserve ? `--preserve-fds ${preserve}` : ""]
        .filter(Boolean).join(" and "),
    )
    : undefined;
  const c = new Creating(ctx, id, opts, foreground, bundle, raw);
  c.passFds = passFds;
  c.configText = text;
  const begun: Step[] = [];
  try {
    for (const s of STEPS) {
      begun.push(s);
      await s.run(c);
      c.step(s.name + (s.detail?.(c) ?? ""));
    }
    return { record: c.record, child: c.child!, master: c.master };
  } catch (e) {
    // The init dies before anything is undone: a cgroup with a process in it cannot be
    // removed, and an extension must not undo what a live init still uses.
    if (c.child) {
      try {
        c.child.kill("SIGKILL");
      } catch { /* gone */ }
      await c.child.status;
    }
    await c.firstStage?.status; // the helper that cloned the init: it ended at once
    for (const s of begun.reverse()) {
      try {
        await s.undo?.(c);
      } catch { /* best effort: report the first error */ }
    }
    // Runtime spec "Lifecycle": a failed prestart, createRuntime or createContainer hook goes
    // on at delete and the poststop hooks (warnings only), as runc does for a failed create.
    if (c.spec?.hooks?.poststop?.length && begun.includes(INIT_READY)) {
      await runHooks(
        "poststop",
        c.spec.hooks.poststop,
        ociState(c.record, "stopped"),
        (m) => ctx.warn(m),
      );
    }
    throw e;
  } finally {
    if (c.fd >= 0) closeFd(c.fd);
    c.idLock?.close(); // after the undo: a waiting delete finds a container, or nothing
  }
}

function realDir(path: string, what: string): string {
  try {
    const real = Deno.realPathSync(path);
    if (!Deno.statSync(real).isDirectory) throw new Error("not a directory");
    return real;
  } catch {
    throw new CapsuleError(`${what} "${path}" is not a directory`);
  }
}

/** The bundle's real path and its config.json, parsed but not yet validated. */
function readBundle(
  id: string,
  opts: CreateOptions,
): { bundle: string; raw: Spec; text: string } {
  validateId(id);
  const bundle = realDir(opts.bundle ?? Deno.cwd(), "Bundle");
  let text: string;
  try {
    text = Deno.readTextFileSync(`${bundle}/config.json`);
  } catch {
    throw new CapsuleError(
      `Cannot create container "${id}": bundle "${bundle}" has no config.json`,
    );
  }
  try {
    return { bundle, raw: parseJson(text) as Spec, text };
  } catch (e) {
    throw new CapsuleError(
      `Invalid ${bundle}/config.json: not valid JSON: ${(e as Error).message}`,
    );
  }
}

function claimStateDir(c: Creating): void {
  c.dir = c.ctx.store.claim(c.id);
  // Nobody waits on a directory this create just made, but a delete -f may have taken it in
  // between: then it is gone, and so is this create.
  c.idLock = c.ctx.store.lock(c.id);
  if (!c.idLock) {
    c.dir = "";
    throw new CapsuleError(
      `Cannot create container "${c.id}": its state directory was removed as it was made ` +
        `(a delete of the id ran at the same time)`,
    );
  }
}

function removeStateDir(c: Creating): void {
  if (c.dir) c.ctx.store.remove(c.id); // never one that another create claimed
}

/** The record, marked `creating`: from here on, a crash is undone by delete -f. */
function writeRecord(c: Creating): void {
  c.record = {
    ociVersion: OCI_VERSION,
    id: c.id,
    pid: c.pid,
    pidStartTime: procStat(c.pid)?.startTime ?? "",
    ...(c.child && c.child.pid !== c.pid ? { waitPid: c.child.pid } : {}),
    bundle: c.bundle,
    rootfs: "",
    created: isoTime(),
    annotations: {},
    creating: true,
    creatorPid: Deno.pid,
    creatorStartTime: procStat(Deno.pid)?.startTime ?? "",
  };
  const paths = cgroupPaths(c);
  if (paths) c.record.cgroupPaths = paths;
  const parents = nestedParents(c, paths);
  if (parents.length) c.record.cgroupParents = parents;
  c.save();
}

/**
 * config.json against the schema (validate.ts: zod only for a config its fast check refuses),
 * and what capsule itself needs.
 */
async function validateSpec(c: Creating): Promise<void> {
  const spec = c.spec = await checkConfig(c.raw, `${c.bundle}/config.json`);
  if (c.opts.tty !== undefined) spec.process!.terminal = c.opts.tty;
  c.terminal = spec.process!.terminal === true;
  if (c.terminal && !c.opts.consoleSocket && !c.foreground) {
    throw new CapsuleError(
      `Cannot create container "${c.id}": process.terminal is true, so give --console-socket ` +
        `(or run it in the foreground with "capsule run")`,
    );
  }
  // runc's rule: the pty master goes to a console socket only when there is a pty and nobody
  // in the foreground to relay it.
  if (c.opts.consoleSocket && (!c.terminal || c.foreground)) {
    throw new CapsuleError(
      `Cannot create container "${c.id}": --console-socket ${c.opts.consoleSocket} is used ` +
        `only with process.terminal true in a detached container (create or run -d); ` +
        (c.terminal ? `drop it to attach the terminal here` : `set process.terminal or drop it`),
    );
  }
  if (!(spec.linux?.namespaces ?? []).some((n) => n.type === "mount")) refuseSharedMountNs(c);
  refuseUnsupported(c);
  if (!c.userNs && (spec.linux?.namespaces ?? []).some((n) => n.type === "user")) {
    throw new CapsuleError(
      `Cannot create container "${c.id}": joining a user namespace by path is not supported; ` +
        `let capsule make one (linux.namespaces {"type": "user"} with uid/gid mappings)`,
    );
  }
  c.record.annotations = spec.annotations ?? {};
  c.record.hooks = { poststart: spec.hooks?.poststart, poststop: spec.hooks?.poststop };
  if (c.opts.detach && !c.terminal) {
    c.record.logFile = `${c.dir}/${LOG_FILE}`;
    c.record.logLimits = c.logLimits;
    c.record.logDone = c.logDone;
  }
}

/**
 * What capsule cannot give, refused naming the field rather than ignored (runtime spec: an
 * unsupported value is an error; runc refuses each of these on a host like this one): RDMA
 * limits (no rdma controller is driven), Intel RDT, an SELinux mount label, and what
 * config_check.ts refuseUnappliedProcess refuses of the process (an AppArmor profile, an SELinux
 * label).
 */
function refuseUnsupported(c: Creating): void {
  refuseUnappliedProcess(c.spec.process, `${c.bundle}/config.json`);
  const linux = (c.spec.linux ?? {}) as Record<string, unknown>;
  const resources = (linux.resources ?? {}) as Record<string, unknown>;
  const fields: [string, boolean, string][] = [
    [
      "linux.resources.rdma",
      Object.keys((resources.rdma ?? {}) as object).length > 0,
      "capsule sets no RDMA limits",
    ],
    ["linux.intelRdt", linux.intelRdt !== undefined, "capsule does not support Intel RDT"],
    [
      "linux.mountLabel",
      linux.mountLabel !== undefined && linux.mountLabel !== null && linux.mountLabel !== "",
      "capsule applies no SELinux label",
    ],
  ];
  for (const [field, set, why] of fields) {
    if (!set) continue;
    throw new CapsuleError(
      `Invalid ${c.bundle}/config.json: ${field}: ${why}; drop it to run without it`,
    );
  }
}

/**
 * Without a mount namespace of its own the container is built in the caller's (runtime spec:
 * an unlisted namespace is inherited): what only a private mount namespace can give is
 * refused, naming the field, as runc refuses masked and read-only paths.
 */
function refuseSharedMountNs(c: Creating): void {
  const linux = c.spec.linux ?? {};
  const fields: [string, boolean][] = [
    ["maskedPaths", (linux.maskedPaths?.length ?? 0) > 0],
    ["readonlyPaths", (linux.readonlyPaths?.length ?? 0) > 0],
    ["rootfsPropagation", linux.rootfsPropagation !== undefined],
  ];
  for (const [field, set] of fields) {
    if (!set) continue;
    throw new CapsuleError(
      `Invalid ${c.bundle}/config.json: linux.${field} needs a mount namespace of the ` +
        `container's own: add {"type": "mount"} to linux.namespaces, or drop linux.${field}`,
    );
  }
  if (c.userNs) {
    throw new CapsuleError(
      `Invalid ${c.bundle}/config.json: linux.namespaces: a user namespace needs a mount ` +
        `namespace too (its root cannot mount in the host's): add {"type": "mount"}`,
    );
  }
}

/** No mount namespace: the rootfs is bound (privately) on the host; the init chroots into it. */
function bindHost(c: Creating): void {
  if (!c.plan.hostMountNs) return;
  c.plan.rootfs = bindRootfsOnHost(c.plan.rootfs, c.dir);
}

function unbindHost(c: Creating): void {
  if (c.dir) releaseHostMount(c.dir);
}

/** Each extension's `prepare`, in order: mounts to add, a root to use, data to keep. */
async function prepareExtensions(c: Creating): Promise<void> {
  const record = c.record;
  record.ext = {};
  for (const x of c.ctx.extensions) {
    c.prepared.push(x);
    const save = (data: unknown) => {
      record.ext![x.name] = data;
      c.save();
    };
    const r = await x.prepare?.({ ...c.base, save });
    if (r?.mounts) c.extraMounts.push(...r.mounts);
    if (r?.rootfs) c.spec.root!.path = record.rootfs = r.rootfs;
    if (r?.data !== undefined) {
      record.ext[x.name] = r.data;
      c.save();
    }
  }
}

/** Each extension that began `prepare` is told, in reverse, with what it kept. */
async function deleteExtensions(c: Creating): Promise<void> {
  for (const x of [...c.prepared].reverse()) {
    try {
      await x.deleted?.(c.record, c.record.ext?.[x.name]);
    } catch { /* best effort, as every undo */ }
  }
}

async function markCreated(c: Creating): Promise<void> {
  // The helper that cloned the init ended as it sent the init's pid: reaped, no zombie is left.
  if (c.firstStage && !c.firstStage.poll()) await c.firstStage.status;
  delete c.record.creating;
  delete c.record.creatorPid;
  delete c.record.creatorStartTime;
  c.save();
  // Only the native front end reads it: without it, exec, start and delete run in Deno. A
  // foreground run starts and deletes its container itself: writing the file and removing it
  // cost its `run true` ~1.5 ms (bench/steps.sh, medians of 30), so an exec into one is the CLI's.
  if (!c.foreground) {
    try {
      writeExecPlan(c.ctx, c.record, c.dir);
      c.step("exec.plan written");
      // config.json's own process, as an exec of it would keep it: engines' first exec.
      await keepConfigProcess(c.record, c.dir, c.configText);
      c.step("config.json's process kept");
    } catch (e) {
      c.step(`exec.plan not written (${(e as Error).message})`);
    }
  }
  if (c.opts.pidFile) writePidFile(c.opts.pidFile, c.pid);
}
