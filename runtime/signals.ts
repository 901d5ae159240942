import { CapsuleError } from "./errors.ts";

/** Linux signal numbers (x86_64 and aarch64 agree on these). */
export const SIGNALS: Readonly<Record<string, number>> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  ILL: 4,
  TRAP: 5,
  ABRT: 6,
  IOT: 6,
  BUS: 7,
  FPE: 8,
  KILL: 9,
  USR1: 10,
  SEGV: 11,
  USR2: 12,
  PIPE: 13,
  ALRM: 14,
  TERM: 15,
  STKFLT: 16,
  CHLD: 17,
  CONT: 18,
  STOP: 19,
  TSTP: 20,
  TTIN: 21,
  TTOU: 22,
  URG: 23,
  XCPU: 24,
  XFSZ: 25,
  VTALRM: 26,
  PROF: 27,
  WINCH: 28,
  IO: 29,
  POLL: 29,
  PWR: 30,
  SYS: 31,
};

/** "TERM", "SIGTERM", "sigterm", "15", "RTMIN+3", "0" (no signal) -> signal number; else an error. */
export function parseSignal(value: string): number {
  const s = value.trim();
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    // 0 sends nothing: it checks that the process exists (kill(2)), as `runc kill ID 0` does.
    if (n >= 0 && n <= 64) return n;
  } else {
    const name = s.toUpperCase().replace(/^SIG/, "");
    if (name in SIGNALS) return SIGNALS[name];
    const rt = /^RTMIN(?:\+(\d+))?$/.exec(name) ?? /^RTMAX(?:-(\d+))?$/.exec(name);
    if (rt) {
      const n = name.startsWith("RTMIN") ? 34 + Number(rt[1] ?? 0) : 64 - Number(rt[1] ?? 0);
      if (n >= 34 && n <= 64) return n;
    }
  }
  throw new CapsuleError(
    `Invalid signal ${JSON.stringify(value)}: give a name (TERM, SIGKILL) or a number from 0 to 64`,
  );
}

/** Signal number -> "SIGTERM" (for messages). */
export function signalName(n: number): string {
  for (const [k, v] of Object.entries(SIGNALS)) if (v === n) return `SIG${k}`;
  return `signal ${n}`;
}
