// Reading containers without changing them: status, OCI state (runtime spec "State"), list,
// the container's processes (ps). Status is derived from the kernel each time (state.ts).
import type { CgroupStats } from "./cgroups/mod.ts";
import type { RuntimeContext } from "./context.ts";
import { NotFoundError } from "./errors.ts";
import { OCI_VERSION } from "./version.ts";
import { type ContainerRecord, initAlive, type Status } from "./state.ts";

/** The OCI state of a container (runtime spec "State"), plus capsule's fields (ip, detail). */
export interface OciState {
  /** The runtime spec version of the state's shape. */
  ociVersion: string;
  /** Container id. */
  id: string;
  /**
   * creating, created, running, paused or stopped; "unknown" only in `list`, for a container
   * whose state.json is damaged (see `error`).
   */
  status: Status | "unknown";
  /** Host pid of the container's process; 0 once stopped. */
  pid: number;
  /** Absolute bundle directory. */
  bundle: string;
  /** Absolute root filesystem path. */
  rootfs: string;
  /** When it was created, ISO 8601 UTC. */
  created: string;
  /**
   * In `list`, the user owning the container's state directory, by name from the host's
   * /etc/passwd ("#UID" when it has none), as runc's list; "" elsewhere (runc's state).
   */
  owner: string;
  /** config.json's annotations. */
  annotations: Record<string, string>;
  /** Extensions' summaries (`ip`, `network`, `image`) and, with detail, `detail`. */
  [k: string]: unknown;
}

/** The container's status now: the init's liveness, the fifo, the cgroup's freezer. */
export function status(ctx: RuntimeContext, rec: ContainerRecord): Status {
  const cg = ctx.cgroups;
  return ctx.store.status(
    rec,
    cg && rec.cgroupPaths ? (r) => cg.isFrozen(r.cgroupPaths!) : undefined,
  );
}

/** The OCI state of a record in a given status (what hooks get on stdin). */
export function ociState(rec: ContainerRecord, status: Status): OciState {
  return {
    ociVersion: rec.ociVersion,
    id: rec.id,
    status,
    pid: status === "stopped" ? 0 : rec.pid,
    bundle: rec.bundle,
    rootfs: rec.rootfs,
    created: rec.created,
    owner: "",
    annotations: rec.annotations,
  };
}

/** The OCI state of a container, plus capsule's fields from extensions (ip...). */
export function state(ctx: RuntimeContext, id: string, detail = false): OciState {
  const rec = ctx.store.load(id);
  const st = status(ctx, rec);
  const out = ociState(rec, st);
  for (const v of Object.values(rec.ext ?? {})) {
    if (v && typeof v === "object" && "summary" in v) {
      Object.assign(out, (v as { summary: object }).summary);
    }
  }
  if (detail) {
    let stats: CgroupStats | undefined;
    if (st !== "stopped" && rec.cgroupPaths && ctx.cgroups) {
      try {
        stats = ctx.cgroups.stats(rec.cgroupPaths);
      } catch { /* the cgroup went away meanwhile */ }
    }
    out.detail = {
      pidStartTime: rec.pidStartTime,
      cgroupPaths: rec.cgroupPaths ?? {},
      stats,
      logFile: rec.logFile,
      ext: rec.ext ?? {},
      config: `${rec.bundle}/config.json`,
    };
  }
  return out;
}

/**
 * Every container under the root. A directory a crash left half-made is listed as stopped; one
 * whose state.json is damaged as `unknown`, with `error` naming the file and what is wrong (it
 * may still run: `delete -f` finds it from its id), never hidden.
 */
export function list(ctx: RuntimeContext): OciState[] {
  const out: OciState[] = [];
  const blank = (id: string, status: OciState["status"]): OciState => ({
    ociVersion: OCI_VERSION,
    id,
    status,
    pid: 0,
    bundle: "",
    rootfs: "",
    created: "",
    owner: "",
    annotations: {},
  });
  let passwd: string | undefined;
  const ownerOf = (id: string): string => {
    let uid: number | null;
    try {
      uid = Deno.statSync(ctx.store.dir(id)).uid;
    } catch {
      return ""; // deleted meanwhile
    }
    if (uid === null) return "";
    try {
      passwd ??= Deno.readTextFileSync("/etc/passwd");
    } catch {
      passwd = "";
    }
    return userName(passwd, uid);
  };
  for (const id of ctx.store.ids()) {
    const one = listOne(ctx, id, blank);
    if (one) out.push({ ...one, owner: ownerOf(id) });
  }
  return out;
}

/** One container of `list`: its state, a blank one (half-made or damaged), or none (gone). */
function listOne(
  ctx: RuntimeContext,
  id: string,
  blank: (id: string, status: OciState["status"]) => OciState,
): OciState | undefined {
  let rec: ContainerRecord | undefined;
  try {
    rec = ctx.store.read(id);
  } catch (e) {
    if (e instanceof NotFoundError) return; // deleted meanwhile
    return { ...blank(id, "unknown"), error: (e as Error).message };
  }
  if (!rec) return blank(id, "stopped");
  try {
    return state(ctx, id);
  } catch (e) {
    if (!(e instanceof NotFoundError)) return { ...blank(id, "unknown"), error: String(e) };
  }
}

/** The name of `uid` in an /etc/passwd text (name:pw:uid:...), or "#UID" (runc's list). */
export function userName(passwd: string, uid: number): string {
  for (const line of passwd.split("\n")) {
    const f = line.split(":");
    if (f.length >= 3 && f[2] !== "" && Number(f[2]) === uid && f[0]) return f[0];
  }
  return `#${uid}`;
}

/** The host pids of every process of the container (cgroup, else its PID namespace). */
export function pids(ctx: RuntimeContext, rec: ContainerRecord): number[] {
  const cg = ctx.cgroups;
  if (cg && rec.cgroupPaths && Object.keys(rec.cgroupPaths).length) {
    try {
      return cg.pids(rec.cgroupPaths);
    } catch { /* fall back to the namespace */ }
  }
  if (!initAlive(rec)) return [];
  let ns: string;
  try {
    ns = Deno.readLinkSync(`/proc/${rec.pid}/ns/pid`);
  } catch {
    return [];
  }
  if (ns === Deno.readLinkSync("/proc/self/ns/pid")) return [rec.pid];
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readLinkSync(`/proc/${e.name}/ns/pid`) === ns) out.push(Number(e.name));
    } catch { /* exited meanwhile */ }
  }
  return out;
}

/** One process of a container, as `capsule ps` shows it. */
export interface ProcessInfo {
  /** Host pid. */
  pid: number;
  /** Pid inside the container's PID namespace. */
  cpid: number;
  /** Its uid as the host sees it. */
  uid: number;
  /** Its command line, or [name] for a kernel thread or a zombie. */
  command: string;
}

/** The processes of a container: host pid, pid inside, uid, command line. */
export function processes(ctx: RuntimeContext, id: string): ProcessInfo[] {
  const rec = ctx.store.load(id);
  const out = [];
  for (const pid of pids(ctx, rec).sort((a, b) => a - b)) {
    try {
      const status = Deno.readTextFileSync(`/proc/${pid}/status`);
      const nspid = /^NSpid:\s*(.*)$/m.exec(status)?.[1].trim().split(/\s+/) ?? [String(pid)];
      const uid = Number(/^Uid:\s*(\d+)/m.exec(status)?.[1] ?? -1);
      let command = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter(Boolean)
        .join(" ");
      if (!command) command = `[${/^Name:\s*(.*)$/m.exec(status)?.[1] ?? "?"}]`;
      out.push({ pid, cpid: Number(nspid.at(-1)), uid, command });
    } catch { /* exited meanwhile */ }
  }
  return out;
}
