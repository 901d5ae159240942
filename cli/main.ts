// The command tree. Commands are thin: parse, call the library (mod.ts), print.
import { CapsuleError, NotFoundError, UsageError } from "../runtime/errors.ts";
import { SysError } from "../ffi/libc.ts";
import { helpText, parseFlags } from "./parse.ts";
import type { CommandDef, FlagDef, Globals, Parsed } from "./types.ts";
import { ExitWith, Logger } from "./output.ts";
import { OCI_VERSION, VERSION } from "../runtime/version.ts";
import { absolutePath, DEFAULT_ROOT } from "../runtime/state.ts";
import { DEFAULT_STORE, defaultRoot } from "../lib/open.ts";

export const GLOBAL_FLAGS: FlagDef[] = [
  {
    name: "root",
    type: "string",
    arg: "DIR",
    help: `where container state lives (default ${DEFAULT_ROOT})`,
  },
  {
    name: "store",
    type: "string",
    arg: "DIR",
    help: `where images and volumes live (default ${DEFAULT_STORE})`,
  },
  {
    name: "log",
    type: "string",
    arg: "FILE",
    help: "also write errors (and --debug lines) to FILE",
  },
  { name: "log-format", type: "string", arg: "FORMAT", help: "format of --log: text or json" },
  { name: "debug", type: "boolean", help: "log what capsule does, with timings" },
  { name: "version", short: "v", type: "boolean", help: "print the version" },
  { name: "help", short: "h", type: "boolean", help: "show help" },
  {
    name: "systemd-cgroup",
    type: "boolean",
    help: "accepted for runc compatibility; capsule drives cgroupfs",
    hidden: true,
  },
  { name: "rootless", type: "string", help: "accepted for runc compatibility", hidden: true },
  { name: "criu", type: "string", help: "accepted for runc compatibility", hidden: true },
];

/** One module of top-level commands (cli/lifecycle.ts...): a function of the globals. */
type CommandGroup = (globals: () => Globals) => CommandDef[];

/**
 * The command modules, each with the names and aliases of its top-level commands (in help's
 * order). A command line loads only the module of its command: loading all five cost every
 * call about 1 ms more (`capsule --version`, n=150: 22.6 against 21.8 ms with one module).
 * Help, a bare `capsule` and an unknown name load them all. tests/unit/cli_groups_test.ts checks
 * these names against the modules' own.
 */
export const COMMAND_GROUPS: { names: string[]; load: () => Promise<CommandGroup> }[] = [
  {
    names: ["spec", "features", "create", "start", "run", "state", "list", "ls", "kill", "stop"]
      .concat(["delete", "rm"]),
    load: async () => (await import("./lifecycle.ts")).lifecycleCommands,
  },
  {
    names: ["exec", "ps", "log", "logs"],
    load: async () => (await import("./process.ts")).processCommands,
  },
  {
    names: ["update", "pause", "resume", "events"],
    load: async () => (await import("./resources.ts")).resourceCommands,
  },
  {
    names: ["network"],
    load: async () => (await import("./network.ts")).networkCommands,
  },
  {
    names: ["image", "volume"],
    load: async () => (await import("./image.ts")).imageCommands,
  },
];

/** The command tree with the group of `name` (a top-level command), or with all of them. */
export async function tree(globals: () => Globals, name?: string): Promise<CommandDef> {
  const one = COMMAND_GROUPS.find((grp) => name !== undefined && grp.names.includes(name));
  const groups = await Promise.all((one ? [one] : COMMAND_GROUPS).map((grp) => grp.load()));
  return {
    name: "capsule",
    summary: "run OCI containers on Linux (a runc-compatible runtime, on Deno)",
    subcommands: groups.flatMap((make) => make(globals)),
  };
}

function versionText(): string {
  return `capsule version ${VERSION}\nspec: ${OCI_VERSION}\ndeno: ${Deno.version.deno}`;
}

/**
 * Whether `e`, or what caused it (an ExitWith's error too), is a write to a pipe whose reader
 * is gone (EPIPE).
 */
export function brokenPipe(e: unknown): boolean {
  for (let x = e, n = 0; x && n < 5; x = (x as Error).cause, n++) {
    if (x instanceof Deno.errors.BrokenPipe) return true;
    if (x instanceof SysError && x.code === "EPIPE") return true;
  }
  return false;
}

/**
 * Refuses a state root or store that exists and is not a directory (a file at --root's path):
 * every command would otherwise fail on its first read below it. A missing one is made when a
 * command first writes there. Throws CapsuleError naming the flag and the path.
 */
function notADirectory(path: string, flag: string): void {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(path);
  } catch {
    return; // missing (made when needed), or unreachable: the command says why
  }
  if (!st.isDirectory) {
    throw new CapsuleError(
      `${flag} "${path}" is not a directory: give ${flag} a directory (it is made when missing)`,
    );
  }
}

/** Runs the CLI; returns the exit status (never throws for user errors). */
export async function main(argv: string[]): Promise<number> {
  let logger = new Logger();
  let g: Globals | undefined;
  const path = ["capsule"];
  try {
    // Global options come before the command name.
    let i = 0;
    const globalArgv: string[] = [];
    while (i < argv.length && argv[i].startsWith("-") && argv[i] !== "--") {
      const def = GLOBAL_FLAGS.find((f) =>
        argv[i] === `--${f.name}` || argv[i] === `-${f.name}` ||
        argv[i].startsWith(`--${f.name}=`) ||
        (f.short && argv[i] === `-${f.short}`)
      );
      globalArgv.push(argv[i]);
      if (def && def.type !== "boolean" && !argv[i].includes("=")) {
        if (i + 1 >= argv.length) throw new UsageError(`capsule: flag ${argv[i]} needs a value`);
        globalArgv.push(argv[++i]);
      }
      i++;
    }
    const { flags } = parseFlags(globalArgv, GLOBAL_FLAGS);
    const fmt = (flags["log-format"] as string | undefined) ?? "text";
    if (fmt !== "text" && fmt !== "json") {
      throw new UsageError(`capsule: --log-format takes text or json, not "${fmt}"`);
    }
    logger = new Logger(flags.log as string | undefined, fmt, flags.debug === true);
    g = {
      // Absolute once, here: a relative --root means the caller's directory (as runc takes
      // it), also where it is saved (an image container's record) or passed on (a waiter).
      root: flags.root !== undefined ? absolutePath(flags.root as string) : defaultRoot(),
      rootGiven: flags.root !== undefined,
      // The same for --store: its paths are saved in containers' state (the overlay's).
      store: flags.store !== undefined ? absolutePath(flags.store as string) : DEFAULT_STORE,
      logger,
    };
    if (flags.version) {
      console.log(versionText());
      return 0;
    }
    let rest = argv.slice(i);
    let cmd = await tree(() => g!, flags.help ? undefined : rest[0]);
    while (cmd.subcommands) {
      const name = rest[0];
      if (
        name === undefined || name === "help" || name === "--help" || name === "-h" || flags.help
      ) {
        const topic = name === "help" ? cmd.subcommands.find((c) => c.name === rest[1]) : undefined;
        console.log(helpText(topic ?? cmd, topic ? [...path, topic.name] : path, GLOBAL_FLAGS));
        return name === undefined && !flags.help ? 2 : 0;
      }
      const next = cmd.subcommands.find((c) => c.name === name || c.aliases?.includes(name));
      if (!next) {
        throw new UsageError(
          `${path.join(" ")}: unknown command "${name}" (see "${path.join(" ")} --help")`,
        );
      }
      cmd = next;
      path.push(next.name);
      rest = rest.slice(1);
    }
    if (
      rest.includes("--help") || rest.includes("-h") && !cmd.flags?.some((f) => f.short === "h")
    ) {
      const stop = cmd.stopAfter;
      const before = stop === undefined
        ? rest
        : rest.slice(0, rest.findIndex((a) => !a.startsWith("-")) + 1 || rest.length);
      if (stop === undefined || before.includes("--help") || before.includes("-h")) {
        console.log(helpText(cmd, path, GLOBAL_FLAGS));
        return 0;
      }
    }
    const where = path.join(" ");
    const parsed = parseFlags(
      rest,
      [...(cmd.flags ?? []), { name: "help", type: "boolean", help: "" }],
      cmd.stopAfter,
      where,
    );
    const [min, max] = cmd.args ?? [0, 0];
    if (parsed.args.length < min) {
      throw new UsageError(
        `${where}: expects ${cmd.usage ?? `${min} argument(s)`}; see "${where} --help"`,
      );
    }
    if (parsed.args.length > max) {
      throw new UsageError(
        `${where}: unexpected argument "${parsed.args[max]}"; see "${where} --help"`,
      );
    }
    notADirectory(g.root, "--root");
    notADirectory(g.store, "--store");
    const ctx: Parsed = { flags: parsed.flags, args: parsed.args, command: cmd, path };
    const code = await cmd.run!(ctx);
    return typeof code === "number" ? code : 0;
  } catch (caught) {
    let e = caught;
    // Whoever read our output is gone (`capsule log ID | head -1`): end quietly, as a C
    // program killed by SIGPIPE would (128 + 13); Deno ignores the signal and gives EPIPE.
    if (brokenPipe(e)) return 141;
    let failCode = 1;
    if (e instanceof ExitWith) [e, failCode] = [e.error, e.code];
    // "does not exist" for an image container the store keeps stopped: what to do instead.
    if (e instanceof NotFoundError && g) {
      try {
        const { keptContainerError } = await import("./lifecycle.ts");
        e = await keptContainerError(g, e.id, path) ?? e;
      } catch { /* the first error stands */ }
    }
    if (e instanceof UsageError) {
      // "capsule create: ..." already names the program; others get the prefix.
      console.error(/^capsule\b/.test(e.message) ? e.message : `capsule: ${e.message}`);
      logger.error(e.message);
      return 2;
    }
    if (e instanceof CapsuleError || e instanceof SysError) {
      console.error(`capsule: ${e.message}`);
      logger.error(e.message);
      return failCode;
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      const msg = `${(e as Error).message} (capsule must run as root)`;
      console.error(`capsule: ${msg}`);
      logger.error(msg);
      return failCode;
    }
    // The machine's own condition (a full disk or /dev/full, a quota, an I/O error, a read-only
    // file system): not a bug of capsule's, so no stack; its message names it. Other errno
    // errors that reach here (ENOENT, EACCES...) are cases capsule failed to handle: stack kept.
    const code = (e as { code?: unknown })?.code;
    if (
      e instanceof Error && typeof code === "string" &&
      /^(ENOSPC|EDQUOT|EIO|EFBIG|EROFS)$/.test(code)
    ) {
      console.error(`capsule: ${e.message}`);
      logger.error(e.message);
      return failCode;
    }
    // Anything else is a bug: keep the stack.
    console.error(`capsule: internal error: ${(e as Error)?.stack ?? e}`);
    logger.error(String((e as Error)?.message ?? e));
    return 1;
  }
}
