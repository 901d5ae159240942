// Processes in a container: exec, ps, log.
import { CapsuleError, UsageError } from "../runtime/errors.ts";
import { parseJson } from "../runtime/json.ts";
import type { Process, Spec } from "../runtime/spec.ts";
import type { CommandDef, Globals, Parsed } from "./types.ts";
import { ExitWith, formatFlag, pidFileOption, preserveFdsOption } from "./output.ts";
import { openRuntime } from "./runtime.ts";

function parseUser(v: string): { uid: number; gid: number } {
  const m = /^(\d+)(?::(\d+))?$/.exec(v.trim());
  if (!m) throw new CapsuleError(`Invalid user "${v}": use UID or UID:GID (numbers)`);
  const uid = Number(m[1]), gid = Number(m[2] ?? m[1]);
  // Refused here as written (a number past 2^53-1 would be named rounded).
  if (uid > 0xffffffff || gid > 0xffffffff) {
    throw new CapsuleError(`Invalid user "${v}": a uid or gid is at most 4294967295`);
  }
  return { uid, gid };
}

function parseGid(v: string): number {
  if (!/^\d+$/.test(v.trim()) || Number(v) > 0xffffffff) {
    throw new CapsuleError(`Invalid --additional-gids "${v}": use a group id (a whole number)`);
  }
  return Number(v);
}

/** config.json's process.user of a bundle (uid/gid 0 when it has none). */
function configUser(bundle: string): { uid: number; gid: number; additionalGids?: number[] } {
  let cfg: Spec;
  try {
    cfg = parseJson(Deno.readTextFileSync(`${bundle}/config.json`)) as Spec;
  } catch (e) {
    throw new CapsuleError(`Cannot read ${bundle}/config.json: ${(e as Error).message}`);
  }
  const u = cfg.process?.user;
  return { uid: u?.uid ?? 0, gid: u?.gid ?? 0, additionalGids: u?.additionalGids ?? [] };
}

/** A --process file: the process it holds, validated, and its bytes as read. */
async function readProcessFile(path: string): Promise<{ process: Process; bytes: Uint8Array }> {
  let raw: unknown;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
    raw = parseJson(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new CapsuleError(`Invalid process file "${path}": ${(e as Error).message}`);
  }
  // As runc reads it, by config.json's rules for its process (exec.ts processFromFile).
  const { processFromFile } = await import("../runtime/exec.ts");
  return { process: await processFromFile(raw, `process file ${path}`), bytes };
}

/** All of `b` to stdout (a pipe may take less per write). */
function toStdout(b: Uint8Array): void {
  for (let off = 0; off < b.length;) off += Deno.stdout.writeSync(b.subarray(off));
}

/**
 * runc's `ps`: the header of ps(1)'s output and the lines whose PID column is one of `pids`
 * (host pids). Throws a CapsuleError when the options left out the PID column.
 */
export function psLinesOf(output: string, pids: number[], argv: string[]): string {
  const [header = "", ...lines] = output.split("\n").filter((l) => l.trim());
  const col = header.trim().split(/\s+/).indexOf("PID");
  if (col < 0) {
    throw new CapsuleError(
      `ps ${argv.join(" ")} prints no PID column: choose options that do (e.g. -ef)`,
    );
  }
  const want = new Set(pids);
  const keep = lines.filter((l) => want.has(Number(l.trim().split(/\s+/)[col])));
  return [header, ...keep].join("\n");
}

export function processCommands(globals: () => Globals): CommandDef[] {
  const rt = (id: string) => openRuntime(globals(), { id });
  /** exec's work; the command turns its failures into exit status 255. */
  const execCommand = async ({ flags, args }: Parsed): Promise<number> => {
    const [id, ...cmd] = args;
    const file = flags.process ? await readProcessFile(flags.process as string) : undefined;
    const process = file?.process;
    if (!process && !cmd.length) {
      throw new UsageError(
        `capsule exec: give the command to run in "${id}" (or --process FILE)`,
      );
    }
    if (process && flags["no-new-privs"]) process.noNewPrivileges = true;
    // Engines (podman's conmon, containerd) pass --pid-file and collect the output
    // themselves: then -d keeps stdio, as runc does.
    const engine = flags["pid-file"] !== undefined;
    const runtime = await rt(id);
    let user: { uid: number; gid: number; additionalGids?: number[] } | undefined = flags.user
      ? parseUser(flags.user as string)
      : undefined;
    const gids = ((flags["additional-gids"] as string[] | undefined) ?? []).map(parseGid);
    if (gids.length) {
      if (process) {
        throw new UsageError(
          `capsule exec: --additional-gids goes with a command, not --process (put them in its user)`,
        );
      }
      // Over the user the exec runs as: -u's, else config.json's.
      user ??= configUser(runtime.store.load(id).bundle);
      user = { ...user, additionalGids: [...(user.additionalGids ?? []), ...gids] };
    }
    const r = await runtime.exec(id, {
      args: cmd,
      env: flags.env as string[] | undefined,
      cwd: flags.cwd as string | undefined,
      user,
      process,
      // Its bytes as they were read: the front end runs the same file's process again (not
      // once --no-new-privs changed it).
      processFile: flags["no-new-privs"] ? undefined : file?.bytes,
      detach: flags.detach === true,
      keepStdio: engine,
      pidFile: pidFileOption(flags["pid-file"]),
      tty: flags.tty === true ? true : undefined,
      consoleSocket: flags["console-socket"] as string | undefined,
      preserveFds: preserveFdsOption(flags["preserve-fds"]),
      cgroup: flags.cgroup as string[] | undefined,
      ignorePaused: flags["ignore-paused"] === true,
    });
    if (r.execId && !engine) console.log(r.execId);
    return r.code ?? 0;
  };
  return [
    {
      name: "exec",
      summary: "run a program in a created or running container",
      usage: "<container-id> <command> [args...]",
      args: [1, Infinity],
      stopAfter: 1,
      flags: [
        {
          name: "detach",
          short: "d",
          type: "boolean",
          help: "return at once; print the exec id (output goes to its log)",
        },
        {
          name: "tty",
          short: "t",
          type: "boolean",
          help: "allocate a pseudo-terminal",
        },
        {
          name: "interactive",
          short: "i",
          type: "boolean",
          help: "keep stdin attached (it always is; accepted for docker's -i and -it)",
        },
        {
          name: "env",
          short: "e",
          type: "list",
          arg: "KEY=VALUE",
          help: "set an environment variable",
        },
        { name: "cwd", type: "string", arg: "DIR", help: "working directory inside the container" },
        { name: "user", short: "u", type: "string", arg: "UID[:GID]", help: "run as this user" },
        {
          name: "additional-gids",
          short: "g",
          type: "list",
          arg: "GID",
          help: "a supplementary group, over the user's",
        },
        {
          name: "pid-file",
          type: "string",
          arg: "FILE",
          help: "write the process's host pid to FILE",
        },
        {
          name: "process",
          short: "p",
          type: "string",
          arg: "FILE",
          help: "an OCI process JSON (args, env, cwd, user...)",
        },
        {
          name: "console-socket",
          type: "string",
          arg: "PATH",
          help: "send the pty master to this unix socket",
        },
        {
          name: "preserve-fds",
          type: "string",
          arg: "N",
          help: "pass the caller's fds 3 to 3+N-1 on to the program",
        },
        { name: "no-new-privs", type: "boolean", help: "set no_new_privileges", hidden: true },
        {
          name: "cgroup",
          type: "list",
          arg: "[CTRL[,CTRL]:]SUB",
          help: "join this sub-cgroup of the container's (all controllers, or the ones named)",
        },
        {
          name: "ignore-paused",
          type: "boolean",
          help: "exec into a paused container too (the program waits until resume)",
        },
      ],
      run: async (ctx) => {
        try {
          return await execCommand(ctx);
        } catch (e) {
          // runc's exec: its own failures exit 255, apart from the program's statuses.
          if (e instanceof UsageError || !(e instanceof Error)) throw e;
          throw new ExitWith(255, e);
        }
      },
    },
    {
      name: "ps",
      summary: "list a container's processes: ps(1) lines (default -ef), or --format json pids",
      usage: "<container-id> [ps options...]",
      args: [1, Infinity],
      stopAfter: 1,
      flags: [formatFlag],
      run: async ({ flags, args }) => {
        const [id, ...psArgs] = args;
        const format = (flags.format as string | undefined) ?? "table";
        if (format !== "table" && format !== "json") {
          throw new CapsuleError(`Invalid format "${format}": use table or json`);
        }
        const pids = (await rt(id)).processes(id).map((p) => p.pid);
        if (format === "json") {
          console.log(JSON.stringify(pids));
          return;
        }
        let out: Deno.CommandOutput;
        const argv = psArgs.length ? psArgs : ["-ef"];
        try {
          out = await new Deno.Command("ps", { args: argv, stdin: "null" }).output();
        } catch (e) {
          throw new CapsuleError(`Cannot run ps(1) (procps): ${(e as Error).message}`);
        }
        const text = new TextDecoder().decode(out.stdout);
        if (!out.success) {
          throw new CapsuleError(
            `ps ${argv.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`,
          );
        }
        console.log(psLinesOf(text, pids, argv));
      },
    },
    {
      name: "log",
      aliases: ["logs"],
      summary: "print the output of a detached container (or of a detached exec)",
      usage: "<container-id>",
      args: [1, 1],
      flags: [
        { name: "exec", type: "string", arg: "EXEC_ID", help: "the output of this detached exec" },
        {
          name: "follow",
          short: "f",
          type: "boolean",
          help: "keep printing until the container stops",
        },
        { name: "tail", type: "string", arg: "N", help: "only the last N lines" },
      ],
      run: async ({ flags, args }) => {
        const id = args[0];
        const runtime = await rt(id);
        const rec = runtime.store.load(id);
        const file = flags.exec ? runtime.execLogFile(id, flags.exec as string) : rec.logFile;
        if (!file) {
          throw new CapsuleError(
            `Container "${id}" has no log: only detached containers (run -d) write one; ` +
              `a created container's output goes where create's stdout went`,
          );
        }
        try {
          Deno.statSync(file);
        } catch {
          if (flags.exec) throw new CapsuleError(`Container "${id}" has no exec "${flags.exec}"`);
        }
        let tail: number | undefined;
        if (flags.tail !== undefined) {
          tail = Number(flags.tail);
          if (!Number.isInteger(tail) || tail < 0) {
            throw new CapsuleError(`Invalid --tail "${flags.tail}": use a whole number`);
          }
        }
        // The rotated files oldest first, then the current one (runtime/log_files.ts).
        const { followStep, printLog } = await import("../runtime/log_files.ts");
        let cur = printLog(file, tail, toStdout);
        if (!flags.follow) {
          cur?.file.close();
          return;
        }
        // Until the container stopped and the monitor wrote its log's last lines (a log held
        // open by an escaped process is given 2 s). A record of a build before the monitor names
        // its log writer process instead.
        const { procStat, exists } = await import("../runtime/state.ts");
        const writer = flags.exec ? undefined : rec.logWriter;
        const doneFile = flags.exec ? undefined : rec.logDone;
        const writerGone = () => {
          if (doneFile) return exists(doneFile);
          const st = writer && procStat(writer.pid);
          return !st || st.startTime !== writer!.startTime || st.state === "Z";
        };
        let stoppedAt = 0;
        for (;;) {
          let done = false;
          if (runtime.status(rec) === "stopped") {
            stoppedAt ||= Date.now();
            const waited = writer || doneFile;
            done = (waited ? writerGone() : false) ||
              Date.now() - stoppedAt > (waited ? 2000 : 300);
          }
          const step = followStep(file, cur, toStdout);
          cur = step.cur;
          if (done) break;
          if (!step.printed) await new Promise((r) => setTimeout(r, 100));
        }
        cur?.file.close();
      },
    },
  ];
}
