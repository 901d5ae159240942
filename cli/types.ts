// The CLI's shared types: commands, flags, parsed arguments and the global options. A leaf
// module (it imports nothing), so that command modules never import the tree that includes
// them (cli/main.ts).

/** One flag of a command. */
export interface FlagDef {
  name: string;
  short?: string;
  /** boolean, string, or list (repeatable string). */
  type: "boolean" | "string" | "list";
  help: string;
  /** Placeholder shown in help, e.g. DIR. */
  arg?: string;
  hidden?: boolean;
  /**
   * A string flag that may be given once (a network's one subnet): a second is a UsageError
   * naming both values, where other string flags keep the last (Go's flag package does, and
   * runc's callers rely on it).
   */
  once?: boolean;
}

/** A command of the tree: its flags and arguments, and `run` (or subcommands). */
export interface CommandDef {
  name: string;
  aliases?: string[];
  summary: string;
  /** e.g. "<container-id> [signal]" */
  usage?: string;
  flags?: FlagDef[];
  /** Positional arguments: at least / at most. */
  args?: [min: number, max: number];
  /** After this many positionals, everything else is positional (the program and its flags). */
  stopAfter?: number;
  subcommands?: CommandDef[];
  run?: (ctx: Parsed) => Promise<number | void> | number | void;
}

/** A command line parsed against its command: flags by name, positionals, the command path. */
export interface Parsed {
  flags: Record<string, string | boolean | string[] | undefined>;
  args: string[];
  command: CommandDef;
  path: string[];
}

/** What commands log through (cli/output.ts's Logger): errors, and --debug lines. */
export interface Log {
  /** capsule --debug was given. */
  readonly debugOn: boolean;
  error(msg: string): void;
  /** A failure that does not fail the command (stderr, and --log as level=warning). */
  warn(msg: string): void;
  debug(msg: string): void;
}

/** Global options as the commands see them. */
export interface Globals {
  root: string;
  /** --root was given on the command line (not the default). */
  rootGiven?: boolean;
  /** Persistent data: images, volumes (the root holds run-time state only). */
  store: string;
  logger: Log;
}

/** What each command module exports: its commands, given the global options (lazily). */
export type CommandFactory = (g: () => Globals) => CommandDef[];
