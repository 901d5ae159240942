// Printing and logging for the CLI: tables, JSON, and runc's --log/--log-format contract.

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

export class Logger {
  constructor(
    readonly file?: string,
    readonly format: "text" | "json" = "text",
    readonly debugOn = false,
  ) {}

  #write(level: string, msg: string): void {
    if (!this.file) return;
    const time = new Date().toISOString();
    const line = this.format === "json"
      ? JSON.stringify({ level, msg, time })
      : `time="${time}" level=${level} msg=${JSON.stringify(msg)}`;
    try {
      Deno.writeTextFileSync(this.file, line + "\n", { append: true, create: true });
    } catch { /* the log is best effort: the error still reaches stderr */ }
  }

  error(msg: string): void {
    this.#write("error", msg);
  }

  debug(msg: string): void {
    if (!this.debugOn) return;
    this.#write("debug", msg);
    if (!this.file) console.error(`capsule: debug: ${msg}`);
  }
}
