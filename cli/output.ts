// Printing and logging for the CLI: tables, JSON, and runc's --log/--log-format contract.
import { isoTime } from "../runtime/state.ts";
import { CapsuleError, UsageError } from "../runtime/errors.ts";
import type { FlagDef, Log } from "./types.ts";

/**
 * A failure that exits with its own status instead of 1: `exec` fails with 255, as runc's does,
 * so that its own failures are told apart from the program's exit statuses (1..254).
 */
export class ExitWith extends Error {
  constructor(readonly code: number, readonly error: Error) {
    super(error.message, { cause: error });
  }
}

/**
 * --preserve-fds's value: a whole number of fds (runc's flag), undefined for none or 0. Throws
 * a UsageError (exit 2) otherwise; whether the fds are open is checked by the runtime.
 */
export function preserveFdsOption(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const text = String(value);
  if (!/^\d{1,9}$/.test(text)) {
    throw new UsageError(
      `Invalid --preserve-fds "${text}": give how many fds after stderr to pass on (3, 4, ...)`,
    );
  }
  return Number(text) || undefined;
}

/**
 * systemd socket activation (sd_listen_fds(3)): LISTEN_FDS when LISTEN_PID names this process
 * (the fds from 3 are then its listening sockets, for the container), as runc's run/create.
 */
export function listenFdsOption(): number | undefined {
  const pid = Deno.env.get("LISTEN_PID"), n = Deno.env.get("LISTEN_FDS");
  if (!pid || !n || Number(pid) !== Deno.pid || !/^\d{1,9}$/.test(n)) return undefined;
  return Number(n) || undefined;
}

/**
 * --pid-file's value, checked before anything is made: its directory must exist (the file is
 * written once the process runs, too late to fail cleanly). Returns it; CapsuleError otherwise.
 */
export function pidFileOption(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const path = String(value);
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
  let isDir = false;
  try {
    isDir = Deno.statSync(dir).isDirectory;
  } catch { /* missing or unreachable */ }
  if (!isDir || path.endsWith("/")) {
    throw new CapsuleError(
      `Invalid --pid-file "${path}": directory "${dir}" does not exist; create it or choose another`,
    );
  }
  return path;
}

export function printJson(value: unknown): void {
  console.log(JSON.stringify(value, null, 2));
}

/** Left-aligned columns separated by at least three spaces, like Go's tabwriter in runc. */
export function table(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all.map((r) =>
    r.map((c, i) => i === r.length - 1 ? c : (c ?? "").padEnd(widths[i] + 3)).join("").trimEnd()
  )
    .join("\n");
}

/**
 * runc's --log contract: lines `time="..." level=error msg="..."` (text) or
 * `{"level","msg","time"}` (json) appended to --log FILE. --debug lines go there too, or,
 * without --log, to stderr in the same format (as runc's do; errors keep capsule's one-line
 * "capsule: ..." on stderr).
 */
export class Logger implements Log {
  constructor(
    readonly file?: string,
    readonly format: "text" | "json" = "text",
    readonly debugOn = false,
    /** Where a line goes without --log (stderr; a test passes its own). */
    readonly stderr: (line: string) => void = (line) => console.error(line),
  ) {}

  /** One line in the chosen format, without the newline. */
  line(level: string, msg: string): string {
    const time = isoTime();
    return this.format === "json"
      ? JSON.stringify({ level, msg, time })
      : `time="${time}" level=${level} msg=${JSON.stringify(msg)}`;
  }

  #write(level: string, msg: string): void {
    if (!this.file) return;
    const line = this.line(level, msg);
    try {
      Deno.writeTextFileSync(this.file, line + "\n", { append: true, create: true });
    } catch { /* the log is best effort: the error still reaches stderr */ }
  }

  error(msg: string): void {
    this.#write("error", msg);
  }

  /**
   * What failed without failing the command (a poststart/poststop hook): a `capsule: warning:`
   * line on stderr, and a level=warning line in --log, where engines read runc's warnings.
   */
  warn(msg: string): void {
    this.#write("warning", msg);
    this.stderr(`capsule: warning: ${msg}`);
  }

  debug(msg: string): void {
    if (!this.debugOn) return;
    if (this.file) this.#write("debug", msg);
    else this.stderr(this.line("debug", msg));
  }
}

/**
 * A listing as every list command prints it: a table (default), `--format json`, or with
 * `-q` only the first column. An unknown format is an error naming it.
 */
export function printListing<T>(
  flags: Record<string, unknown>,
  items: T[],
  headers: string[],
  row: (item: T) => string[],
): void {
  const format = (flags.format as string | undefined) ?? "table";
  if (flags.quiet) {
    for (const item of items) console.log(row(item)[0]);
  } else if (format === "json") {
    printJson(items);
  } else if (format === "table") {
    console.log(table(headers, items.map(row)));
  } else {
    throw new CapsuleError(`Invalid format "${format}": use table or json`);
  }
}

/** The --format and -q flags of list commands. */
export const formatFlag: FlagDef = {
  name: "format",
  short: "f",
  type: "string",
  arg: "FORMAT",
  help: "table or json",
};
export const listFlags: FlagDef[] = [
  formatFlag,
  { name: "quiet", short: "q", type: "boolean", help: "print only the first column" },
];
