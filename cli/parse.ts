// A small command-line parser, written for capsule's needs instead of a framework: it costs
// nothing at start-up (every import on the container start path costs milliseconds), and it
// parses the way runc's callers expect: `--flag value`, `--flag=value`, `-f value`, booleans,
// repeatable flags, `--` ends the options, and commands like `exec` or `image run` stop at the
// first argument after which everything belongs to the container's program.
import { UsageError } from "../runtime/errors.ts";
import type { CommandDef, FlagDef, Parsed } from "./types.ts";

export type { CommandDef, FlagDef, Parsed } from "./types.ts";

function findFlag(defs: FlagDef[], token: string): FlagDef | undefined {
  if (token.startsWith("--")) return defs.find((f) => f.name === token.slice(2));
  // Go's flag package (runc) also accepts -name for long names.
  const name = token.slice(1);
  return defs.find((f) => f.short === name) ?? defs.find((f) => f.name === name && name.length > 1);
}

/**
 * `-abc` as one-letter flags a, b, c (docker's `-it`), when it is no flag of its own: every
 * letter a short flag, all but the last boolean. Undefined otherwise.
 */
function splitCombined(defs: FlagDef[], tok: string): FlagDef[] | undefined {
  if (!/^-[A-Za-z]{2,}$/.test(tok)) return undefined;
  const out: FlagDef[] = [];
  for (const ch of tok.slice(1)) {
    const d = defs.find((f) => f.short === ch);
    if (!d) return undefined;
    out.push(d);
  }
  return out.slice(0, -1).every((d) => d.type === "boolean") ? out : undefined;
}

/** Parses argv against one command's flags. Unknown flags are a UsageError. */
export function parseFlags(
  argv: string[],
  defs: FlagDef[],
  stopAfter?: number,
  where = "capsule",
): { flags: Parsed["flags"]; args: string[] } {
  const flags: Parsed["flags"] = {};
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i];
    if (stopAfter !== undefined && args.length >= stopAfter) {
      args.push(...argv.slice(i));
      break;
    }
    if (tok === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (tok.length < 2 || !tok.startsWith("-") || /^-\d+$/.test(tok)) {
      args.push(tok);
      continue;
    }
    const eq = tok.indexOf("=");
    const key = eq > 0 ? tok.slice(0, eq) : tok;
    let def = findFlag(defs, key);
    if (!def) {
      const combined = eq < 0 ? splitCombined(defs, tok) : undefined;
      if (!combined) throw new UsageError(`${where}: unknown flag ${key}`);
      // Docker's -it, -dt, -de K=V: every letter but the last a boolean; the last as -x alone.
      for (const b of combined.slice(0, -1)) flags[b.name] = true;
      def = combined[combined.length - 1];
    }
    if (def.type === "boolean") {
      if (eq > 0) {
        const v = tok.slice(eq + 1);
        if (v !== "true" && v !== "false") {
          throw new UsageError(`${where}: flag ${key} takes true or false, not "${v}"`);
        }
        flags[def.name] = v === "true";
      } else flags[def.name] = true;
      continue;
    }
    let value: string;
    if (eq > 0) value = tok.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) throw new UsageError(`${where}: flag ${key} needs a value`);
      value = argv[++i];
    }
    if (def.type === "list") {
      const cur = (flags[def.name] as string[] | undefined) ?? [];
      cur.push(value);
      flags[def.name] = cur;
    } else if (def.once && flags[def.name] !== undefined) {
      throw new UsageError(
        `${where}: --${def.name} is given twice ("${flags[def.name]}", "${value}"): give it once`,
      );
    } else flags[def.name] = value;
  }
  return { flags, args };
}

export function helpText(cmd: CommandDef, path: string[], globals: FlagDef[]): string {
  const lines: string[] = [];
  const full = path.join(" ");
  lines.push(`${full}${cmd.summary ? ` - ${cmd.summary}` : ""}`, "");
  if (cmd.subcommands?.length) {
    lines.push(`Usage: ${full} [global options] <command> [options] [arguments]`, "", "Commands:");
    const w = Math.max(...cmd.subcommands.map((c) => c.name.length));
    for (const c of cmd.subcommands) lines.push(`  ${c.name.padEnd(w)}  ${c.summary}`);
    lines.push("", `Run "${full} <command> --help" for a command's options.`);
  } else {
    lines.push(
      `Usage: ${full}${cmd.flags?.length ? " [options]" : ""}${cmd.usage ? ` ${cmd.usage}` : ""}`,
    );
  }
  const show = [...(cmd.flags ?? []), ...(path.length === 1 ? globals : [])].filter((f) =>
    !f.hidden
  );
  if (show.length) {
    lines.push("", path.length === 1 ? "Global options:" : "Options:");
    const label = (f: FlagDef) =>
      `${f.short ? `-${f.short}, ` : "    "}--${f.name}${
        f.type === "boolean" ? "" : ` ${f.arg ?? "VALUE"}`
      }`;
    const w = Math.max(...show.map((f) => label(f).length));
    for (const f of show) {
      lines.push(`  ${label(f).padEnd(w)}  ${f.help}${f.type === "list" ? " (repeatable)" : ""}`);
    }
  }
  return lines.join("\n");
}
