// The OCI lifecycle commands: spec, create, start, run, state, list, kill, delete.
import { CapsuleError, NotFoundError, UsageError } from "../runtime/errors.ts";
import { ID_PATTERN, validateId } from "../runtime/ids.ts";
import { parseJson } from "../runtime/json.ts";
import { parseSignal } from "../runtime/signals.ts";
import { exists, sameDir } from "../runtime/state.ts";
import { OCI_VERSION } from "../runtime/version.ts";
import type { CommandDef, FlagDef, Globals, Parsed } from "./types.ts";
import {
  listenFdsOption,
  listFlags,
  pidFileOption,
  preserveFdsOption,
  printJson,
  table,
} from "./output.ts";
import { openRuntime } from "./runtime.ts";
import type { OciState, Runtime } from "../runtime/container.ts";

const bundleFlag = {
  name: "bundle",
  short: "b",
  type: "string",
  arg: "DIR",
  help: "bundle directory (default: current directory)",
} as const;
const pidFileFlag = {
  name: "pid-file",
  type: "string",
  arg: "FILE",
  help: "write the container's init pid to FILE",
} as const;
const noPivotFlag = {
  name: "no-pivot",
  type: "boolean",
  help: "use MS_MOVE + chroot instead of pivot_root (for ramdisks)",
} as const;
const consoleFlag = {
  name: "console-socket",
  type: "string",
  arg: "PATH",
  help: "unix socket that receives the pty master (needs process.terminal)",
} as const;
const preserveFdsFlag = {
  name: "preserve-fds",
  type: "string",
  arg: "N",
  help: "pass the caller's fds 3 to 3+N-1 on to the container's program",
} as const;
/** -t of stop and image restart (docker's grace period). */
export const graceFlag: FlagDef = {
  name: "time",
  short: "t",
  type: "string",
  arg: "SECONDS",
  help: "grace period before SIGKILL (default 10)",
};

/**
 * The grace period `-t` gives, in seconds (undefined: the default). Throws UsageError for a
 * value that is not a number of seconds.
 */
export function graceSeconds(flags: Parsed["flags"]): number | undefined {
  const t = flags.time as string | undefined;
  if (t === undefined) return undefined;
  if (!/^\d+(\.\d+)?$/.test(t)) {
    throw new UsageError(`Invalid --time "${t}": expected seconds, e.g. -t 10`);
  }
  return Number(t);
}

/** -f of delete and image destroyc. */
export const forceFlag: FlagDef = {
  name: "force",
  short: "f",
  type: "boolean",
  help: "kill a created or running container first",
};

export const networkFlags: FlagDef[] = [
  {
    name: "network",
    short: "n",
    type: "string",
    arg: "NAME",
    help: "attach to a bridge network (capsule network create)",
  },
  {
    name: "publish",
    short: "p",
    type: "list",
    arg: "[[IP:][HOST]:]CTR[/PROTO]",
    help: "publish a container port on the host (no HOST: a free one; ranges LOW-HIGH)",
  },
  {
    name: "link",
    type: "list",
    arg: "ID:ALIAS",
    help: "make ALIAS resolve to that container inside this one",
  },
];

/** The network extension's options from --network/-p/--link, or undefined when none given. */
export function networkOptions(
  flags: Parsed["flags"],
): { name?: string; ports: string[]; links: string[] } | undefined {
  const name = flags.network as string | undefined;
  const ports = (flags.publish as string[] | undefined) ?? [];
  const links = (flags.link as string[] | undefined) ?? [];
  if (name === undefined && !ports.length && !links.length) return undefined;
  return { name, ports, links };
}

const ignored = (name: string) => ({
  name,
  type: "boolean" as const,
  help: "accepted for runc compatibility",
  hidden: true,
});

/**
 * A stopped container's state with the exit status its waiter kept (image containers run
 * detached: runtime/waiter.ts), as `exitCode`; others unchanged.
 */
async function withExitStatus(r: Runtime, s: OciState): Promise<OciState> {
  if (s.status !== "stopped") return s;
  const { readExitStatus } = await import("../runtime/waiter.ts");
  const x = readExitStatus(r.store.dir(s.id));
  return x ? { ...s, exitCode: x.exitCode } : s;
}

/**
 * Image containers kept in the store (`image run` without --rm) whose run-time state under
 * this --root is gone (a reboot emptied it, or its directory was deleted), as stopped states
 * with their image: `list` shows them as `docker ps -a` shows kept containers, and
 * `image start` runs them again. `only`: that id alone. Reads nothing of the image code when
 * the store holds no container.
 */
async function keptImageContainers(
  g: Globals,
  except: Set<string>,
  only?: string,
): Promise<OciState[]> {
  try {
    Deno.statSync(`${g.store}/containers`);
  } catch {
    return [];
  }
  const { listContainerInfos, readContainerInfo, paths } = await import("../image/store.ts");
  const { readExitStatus } = await import("../runtime/waiter.ts");
  let infos;
  if (only === undefined) infos = listContainerInfos(g.store);
  else {
    const one = ID_PATTERN.test(only) ? readContainerInfo(g.store, only) : undefined;
    infos = one ? [one] : [];
  }
  const out: OciState[] = [];
  for (const info of infos) {
    if (typeof info.id !== "string" || !ID_PATTERN.test(info.id)) continue;
    if (except.has(info.id) || !sameDir(info.root ?? g.root, g.root)) continue;
    if (typeof info.image !== "string") continue;
    const bundle = paths.container(g.store, info.id);
    let annotations: Record<string, string> = {};
    try {
      const config = parseJson(Deno.readTextFileSync(`${bundle}/config.json`));
      annotations = (config as { annotations?: Record<string, string> }).annotations ?? {};
    } catch { /* shown without */ }
    // A foreground run's exit status, kept in the store (image/run.ts).
    const exit = readExitStatus(bundle);
    out.push({
      ociVersion: OCI_VERSION,
      id: info.id,
      pid: 0,
      status: "stopped",
      bundle,
      rootfs: `${bundle}/merged`,
      created: typeof info.created === "string" ? info.created : "",
      owner: "",
      annotations,
      image: info.image,
      ...(exit ? { exitCode: exit.exitCode } : {}),
    });
  }
  return out;
}

/**
 * The image container `id` kept in the store, if any: its image, the --root its state lives
 * under (saved at image run) and whether that is this command's --root.
 */
async function keptInfo(
  g: Globals,
  id: string,
): Promise<{ image: string; root: string; sameRoot: boolean } | undefined> {
  try {
    Deno.statSync(`${g.store}/containers`);
  } catch {
    return undefined;
  }
  if (!ID_PATTERN.test(id)) return undefined;
  const { readContainerInfo } = await import("../image/store.ts");
  const info = readContainerInfo(g.store, id);
  if (!info || typeof info.image !== "string") return undefined;
  const root = typeof info.root === "string" ? info.root : g.root;
  return { image: info.image, root, sameRoot: sameDir(root, g.root) };
}

/**
 * What to tell a user who named `id` in a command (`path`, e.g. ["capsule","kill"]) that
 * found no run-time state, when `id` is an image container kept in the store (stopped:
 * `image run` without -d or --rm, or a reboot emptied --root): a CapsuleError saying it is
 * stopped and what runs it again or removes it (docker's words for a stopped container),
 * instead of "does not exist". Undefined when the store keeps no such container.
 */
export async function keptContainerError(
  g: Globals,
  id: string,
  path: string[],
): Promise<CapsuleError | undefined> {
  const info = await keptInfo(g, id);
  if (!info) return undefined;
  const { paths } = await import("../image/store.ts");
  const saved = info.root;
  if (!info.sameRoot) {
    // "does not exist" stays in it: engines (containerd) match on those words.
    return new CapsuleError(
      `container "${id}" does not exist under --root ${g.root}: an image container of that ` +
        `id (from image "${info.image}") keeps its state under --root ${saved}; give ` +
        `"--root ${saved}"`,
    );
  }
  const kept = `Container "${id}" is stopped (kept, from image "${info.image}")`;
  const again = `"capsule image start ${id}" runs it again`;
  const command = path.slice(1).join(" ");
  if (command === "log") {
    const { readExitStatus } = await import("../runtime/waiter.ts");
    const dir = paths.container(g.store, id);
    const { readDeleted } = await import("../image/run.ts");
    const deleted = readDeleted(dir);
    const foreground = readExitStatus(dir) !== undefined;
    return new CapsuleError(
      `Container "${id}" has no log: ` +
        (deleted
          ? `"capsule delete ${id}" removed its run-time state and its log (${deleted})`
          : foreground
          ? "it ran in the foreground (image run without -d), its output went to the terminal"
          : `its log was under --root ${g.root}, which was emptied (a reboot does that)`) +
        `; it is stopped (kept, from image "${info.image}"): ${again} detached, with a log`,
    );
  }
  if (command === "delete") {
    return new CapsuleError(
      `${kept}, with no run-time state to delete: "capsule image destroyc ${id}" removes it ` +
        `(its writable layer and anonymous volumes), ${again}`,
    );
  }
  return new CapsuleError(
    `${kept}, not running: ${again}, "capsule image destroyc ${id}" removes it`,
  );
}

/**
 * `list` as runc prints it: a table `ID PID STATUS BUNDLE CREATED OWNER`, then capsule's
 * columns when a container has a value: `IP`, `IMAGE`, `PORTS` (docker ps's
 * `0.0.0.0:8080->80/tcp, ...`); `-q` the ids; `--format json` one line: an array of states
 * with runc's keys in runc's order (ociVersion, id, pid, status, bundle, rootfs, created,
 * annotations, owner), then capsule's own (ip, network, ports, image, exitCode), added, never
 * renamed.
 */
export function printContainers(flags: Parsed["flags"], states: OciState[]): void {
  const format = (flags.format as string | undefined) ?? "table";
  if (format !== "table" && format !== "json") {
    throw new CapsuleError(`Invalid format "${format}": use table or json`);
  }
  if (flags.quiet) {
    for (const s of states) console.log(s.id);
    return;
  }
  if (format === "json") {
    const runcOrder = states.map((s) => {
      const { ociVersion, id, pid, status, bundle, rootfs, created, annotations, owner, ...own } =
        s;
      return { ociVersion, id, pid, status, bundle, rootfs, created, annotations, owner, ...own };
    });
    console.log(JSON.stringify(runcOrder));
    return;
  }
  const withIp = states.some((s) => s.ip);
  const withImage = states.some((s) => s.image);
  const ports = (s: OciState) =>
    Array.isArray(s.ports) ? s.ports.filter((p) => typeof p === "string") : [];
  const withPorts = states.some((s) => ports(s).length);
  const headers = [
    "ID",
    "PID",
    "STATUS",
    "BUNDLE",
    "CREATED",
    "OWNER",
    ...(withIp ? ["IP"] : []),
    ...(withImage ? ["IMAGE"] : []),
    ...(withPorts ? ["PORTS"] : []),
  ];
  console.log(table(
    headers,
    states.map((s) => [
      s.id,
      String(s.pid),
      typeof s.exitCode === "number" ? `${s.status} (exit ${s.exitCode})` : s.status,
      s.bundle,
      s.created,
      s.owner,
      ...(withIp ? [String(s.ip ?? "")] : []),
      ...(withImage ? [String(s.image ?? "")] : []),
      ...(withPorts ? [ports(s).join(", ")] : []),
    ]),
  ));
}

export function lifecycleCommands(globals: () => Globals): CommandDef[] {
  const rt = (id?: string, network = false) => openRuntime(globals(), { id, network });
  // create and run make the state: there is none yet to name extensions (each state.json
  // looked for and missing cost a thrown NotFound, the first 0.4 ms).
  const fresh = (network: boolean) => openRuntime(globals(), { network });
  return [
    {
      name: "spec",
      summary: "write runc's starter config.json (an interactive sh) in the bundle directory",
      flags: [bundleFlag, {
        name: "rootless",
        type: "boolean",
        help: "for an unprivileged user: a user namespace that maps you to root",
      }],
      run: async ({ flags }) => {
        const dir = (flags.bundle as string | undefined) ?? ".";
        const path = `${dir}/config.json`;
        // The starter configs load here only (not on run's path: spec.ts is ~10 KB).
        const { rootlessSpec, starterSpec } = await import("../runtime/spec.ts");
        try {
          const spec = flags.rootless ? rootlessSpec(Deno.uid()!, Deno.gid()!) : starterSpec();
          Deno.writeTextFileSync(path, JSON.stringify(spec, null, 2) + "\n", {
            createNew: true,
          });
        } catch (e) {
          if (e instanceof Deno.errors.AlreadyExists) {
            throw new CapsuleError(
              `File "${path}" already exists; remove it first to write a new one`,
            );
          }
          if (e instanceof Deno.errors.NotFound) {
            throw new CapsuleError(`Bundle directory "${dir}" does not exist`);
          }
          if (e instanceof Deno.errors.NotADirectory) {
            throw new CapsuleError(`Bundle "${dir}" is not a directory: give -b a directory`);
          }
          // Read-only, no room, no permission: the system's word, naming the file.
          throw new CapsuleError(`Cannot write ${path}: ${(e as Error).message}`);
        }
      },
    },
    {
      name: "features",
      summary: "print what this runtime supports (the OCI features document, as runc features)",
      flags: [],
      run: async () => {
        const { features } = await import("../runtime/features.ts");
        printJson(features());
      },
    },
    {
      name: "create",
      summary: "create a container (its program waits for start)",
      usage: "<container-id>",
      args: [1, 1],
      flags: [
        bundleFlag,
        pidFileFlag,
        {
          name: "tty",
          short: "t",
          type: "boolean",
          help: "give the program a terminal (relayed in the foreground)",
        },
        consoleFlag,
        noPivotFlag,
        ...networkFlags,
        ignored("no-new-keyring"),
        preserveFdsFlag,
      ],
      run: async ({ flags, args }) => {
        const ext = networkOptions(flags);
        await (await fresh(!!ext)).create(args[0], {
          ext: ext ? { network: ext } : undefined,
          consoleSocket: flags["console-socket"] as string | undefined,
          tty: flags.tty === true ? true : undefined,
          bundle: flags.bundle as string | undefined,
          pidFile: pidFileOption(flags["pid-file"]),
          noPivot: flags["no-pivot"] === true,
          preserveFds: preserveFdsOption(flags["preserve-fds"]),
          listenFds: listenFdsOption(),
        });
      },
    },
    {
      name: "start",
      summary: "start a created container",
      usage: "<container-id>",
      args: [1, 1],
      run: async ({ args }) => {
        await (await rt(args[0])).start(args[0]);
      },
    },
    {
      name: "run",
      summary: "create and start a container; in the foreground, wait and delete it",
      usage: "<container-id>",
      args: [1, 1],
      flags: [
        bundleFlag,
        ...networkFlags,
        {
          name: "detach",
          short: "d",
          type: "boolean",
          help: "return once started; output goes to the container's log",
        },
        pidFileFlag,
        {
          name: "tty",
          short: "t",
          type: "boolean",
          help: "give the program a terminal (relayed in the foreground)",
        },
        consoleFlag,
        noPivotFlag,
        ignored("no-new-keyring"),
        preserveFdsFlag,
        {
          name: "keep",
          type: "boolean",
          help: "in the foreground, leave the stopped container for delete",
        },
      ],
      run: async ({ flags, args }) => {
        const ext = networkOptions(flags);
        if (flags.detach === true) {
          // Detached: run again under a waiter that keeps the exit status (runtime/waiter.ts).
          const w = await import("../runtime/waiter.ts");
          if (!Deno.env.get(w.WAITED_ENV) && w.waiterAvailable()) {
            validateId(args[0]);
            return await w.runUnderWaiter(args[0], `${globals().root}/${args[0]}`);
          }
        }
        return await (await fresh(!!ext)).run(args[0], {
          ext: ext ? { network: ext } : undefined,
          consoleSocket: flags["console-socket"] as string | undefined,
          tty: flags.tty === true ? true : undefined,
          bundle: flags.bundle as string | undefined,
          pidFile: pidFileOption(flags["pid-file"]),
          detach: flags.detach === true,
          noPivot: flags["no-pivot"] === true,
          keep: flags.keep === true,
          preserveFds: preserveFdsOption(flags["preserve-fds"]),
          listenFds: listenFdsOption(),
        });
      },
    },
    {
      name: "state",
      summary: "print the state of a container (OCI state JSON)",
      usage: "<container-id>",
      args: [1, 1],
      flags: [{
        name: "detail",
        short: "d",
        type: "boolean",
        help: "add cgroup paths, log file and extension data",
      }],
      run: async ({ flags, args }) => {
        const r = await rt(args[0]);
        let st: OciState;
        try {
          st = r.state(args[0], flags.detail === true);
        } catch (e) {
          // A kept image container whose run-time state is gone (after a reboot).
          const kept = e instanceof NotFoundError
            ? await keptImageContainers(globals(), new Set(), args[0])
            : [];
          if (!kept.length) throw e;
          st = kept[0];
        }
        printJson(await withExitStatus(r, st));
      },
    },
    {
      name: "list",
      aliases: ["ls"],
      summary: "list containers",
      flags: listFlags,
      run: async ({ flags }) => {
        const r = await rt();
        // No cgroup hierarchy to read (`ip netns exec` hides them): no container's status can
        // be told; said once, not once for each container listed as unknown.
        if (r.store.ids().length) void r.cgroups;
        const all = await Promise.all(r.list().map((st) => withExitStatus(r, st)));
        all.push(...await keptImageContainers(globals(), new Set(all.map((s) => s.id))));
        printContainers(flags, all);
        // A damaged state is listed as unknown; what is wrong, and the way out, go to stderr.
        for (const s of all) {
          if (s.error && flags.format !== "json") console.error(`capsule: ${s.error}`);
        }
      },
    },
    {
      name: "kill",
      summary: "send a signal to a container's init (default SIGTERM)",
      usage: "<container-id> [signal]",
      args: [1, 2],
      flags: [{
        name: "all",
        short: "a",
        type: "boolean",
        help: "signal every process of the container",
      }],
      run: async ({ flags, args }: Parsed) => {
        (await rt(args[0])).kill(args[0], parseSignal(args[1] ?? "TERM"), flags.all === true);
      },
    },
    {
      name: "stop",
      summary: "stop containers: the stop signal (default SIGTERM), a grace period, then SIGKILL",
      usage: "<container-id>...",
      args: [1, Infinity],
      flags: [graceFlag, {
        name: "signal",
        short: "s",
        type: "string",
        arg: "SIG",
        help: "stop signal (default: the image's StopSignal, else SIGTERM)",
      }, {
        // The waiter of a detached image container (runtime/waiter.ts), once it saw the init
        // PID (started at START) exit: give back its ports and address, if the state is still
        // that run's; nothing is stopped.
        name: "exited",
        type: "string",
        arg: "PID:START",
        help: "internal: the init PID:START exited; release what that run held",
        hidden: true,
      }],
      run: async ({ flags, args }: Parsed) => {
        const timeout = graceSeconds(flags);
        const signal = flags.signal === undefined ? undefined : parseSignal(flags.signal as string);
        if (flags.exited !== undefined) {
          const m = /^([1-9]\d{0,9}):(\d{1,20})$/.exec(flags.exited as string);
          if (!m || args.length !== 1) {
            throw new UsageError(`Invalid --exited "${flags.exited}": expected PID:START, one id`);
          }
          const r = await rt(args[0]);
          await r.releaseStopped(args[0], { pid: Number(m[1]), startTime: m[2] });
          return;
        }
        let failed = 0;
        for (const id of args) {
          try {
            const r = await rt(id);
            const before = r.store.read(id);
            await r.stop(id, {
              timeout,
              signal,
            });
            // An image container is kept stopped: its ports and address go now, as docker's
            // stop (image start takes them again); only this run's, should another begin.
            if (before?.ext?.image !== undefined) {
              await r.releaseStopped(id, { pid: before.pid, startTime: before.pidStartTime });
            }
            console.log(id);
          } catch (e) {
            // A kept image container is stopped already: no error, as docker's stop.
            if (e instanceof NotFoundError && (await keptInfo(globals(), id))?.sameRoot) {
              console.log(id);
              continue;
            }
            const kept = e instanceof NotFoundError
              ? await keptContainerError(globals(), id, ["capsule", "stop"])
              : undefined;
            if (args.length === 1) throw kept ?? e;
            console.error(`capsule: ${(kept ?? e as Error).message}`);
            failed++;
          }
        }
        if (failed) return 1;
      },
    },
    {
      name: "delete",
      aliases: ["rm"],
      summary: "delete a stopped container and everything it holds",
      usage: "<container-id>",
      args: [1, 1],
      flags: [forceFlag],
      run: async ({ flags, args }) => {
        const id = args[0], g = globals();
        // An image container kept in the store: its exit status (in the state directory
        // that goes now) is kept there, and its log's fate, for list and log to tell.
        const kept = `${g.store}/containers/${id}`;
        const isKept = ID_PATTERN.test(id) && exists(`${kept}/container.json`);
        const exit = isKept
          ? (await import("../runtime/waiter.ts")).readExitStatus(`${g.root}/${id}`)
          : undefined;
        await (await rt(id)).delete(id, { force: flags.force === true });
        if (isKept) (await import("../image/run.ts")).keepDeleted(kept, exit);
      },
    },
  ];
}
