// Resource commands: update, pause, resume, events.
import { CapsuleError, UsageError } from "../runtime/errors.ts";
import { parseJson } from "../runtime/json.ts";
import type { CgroupStats, LinuxResources } from "../runtime/cgroups/mod.ts";
import type { CommandDef, Globals } from "./types.ts";
import { openRuntime } from "./runtime.ts";

/**
 * A whole number flag, exact: a bigint past 2^53-1 (the runtime spec's int64 and uint64 fields;
 * validateResources checks each one's range, as runc reads them).
 */
function int(flag: string, v: string | undefined): number | bigint | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v.trim())) {
    throw new CapsuleError(`Invalid --${flag} "${v}": expected a whole number`);
  }
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : BigInt(v.trim());
}

/** Builds LinuxResources from update's flags (or a --resources file, as podman sends it). */
export async function resourcesFromFlags(
  flags: Record<string, unknown>,
): Promise<LinuxResources> {
  const { parseMemory } = await import("../runtime/cgroups/mod.ts");
  let r: LinuxResources = {};
  const file = flags.resources as string | undefined;
  if (file) {
    let text: string;
    try {
      text = file === "-"
        ? await new Response(Deno.stdin.readable).text()
        : Deno.readTextFileSync(file);
    } catch (e) {
      throw new CapsuleError(`Cannot read resources file "${file}": ${(e as Error).message}`);
    }
    try {
      r = parseJson(text) as LinuxResources;
      if (typeof r !== "object" || r === null || Array.isArray(r)) {
        throw new Error("not a JSON object");
      }
    } catch (e) {
      throw new CapsuleError(`Invalid resources file "${file}": ${(e as Error).message}`);
    }
  }
  const s = (k: string) => flags[k] as string | undefined;
  // A plain byte count past 2^53-1 (runc's int64) is exact; parseMemory's units stay below.
  const mem = (k: string) =>
    s(k) === undefined
      ? undefined
      : /^\s*\d{16,}\s*$/.test(s(k)!)
      ? int(k, s(k))
      : parseMemory(s(k)!, `--${k}`);
  const memory = {
    ...r.memory,
    ...defined({
      limit: mem("memory"),
      swap: mem("memory-swap"),
      reservation: mem("memory-reservation"),
    }),
  };
  const cpu = {
    ...r.cpu,
    ...defined({
      // runc names it --cpu-share; capsule's --cpu-shares is the same.
      shares: int("cpu-shares", s("cpu-shares")) ?? int("cpu-share", s("cpu-share")),
      quota: int("cpu-quota", s("cpu-quota")),
      period: int("cpu-period", s("cpu-period")),
      realtimePeriod: int("cpu-rt-period", s("cpu-rt-period")),
      realtimeRuntime: int("cpu-rt-runtime", s("cpu-rt-runtime")),
      cpus: s("cpuset-cpus"),
      mems: s("cpuset-mems"),
    }),
  };
  const pidsLimit = int("pids-limit", s("pids-limit"));
  const blkioWeight = int("blkio-weight", s("blkio-weight"));
  for (const f of ["l3-cache-schema", "mem-bw-schema"]) {
    if (s(f) !== undefined) {
      throw new CapsuleError(`--${f}: Intel RDT is not supported by capsule; leave it out`);
    }
  }
  const out: LinuxResources = { ...r };
  if (Object.keys(memory).length) out.memory = memory;
  if (Object.keys(cpu).length) out.cpu = cpu;
  if (blkioWeight !== undefined) out.blockIO = { ...r.blockIO, weight: blkioWeight };
  if (pidsLimit !== undefined) out.pids = { limit: pidsLimit };
  if (!Object.keys(out).length) {
    throw new UsageError(
      "capsule update: nothing to update: give a limit such as --memory 256m or --resources FILE",
    );
  }
  return out;
}

const UNIT_SECONDS: Record<string, number> = {
  ns: 1e-9,
  us: 1e-6,
  "µs": 1e-6,
  ms: 1e-3,
  s: 1,
  m: 60,
  h: 3600,
};

/**
 * events --interval: a Go duration as runc takes it ("5s", "100ms", "1m30s", "1.5h"), or a
 * plain number of seconds (capsule's older form). Returns seconds (> 0); a CapsuleError
 * naming the value otherwise.
 */
export function parseInterval(v: string): number {
  const text = v.trim();
  let seconds = NaN;
  if (/^\d+(\.\d+)?$/.test(text)) seconds = Number(text);
  else if (/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(text)) {
    seconds = 0;
    for (const [, n, , unit] of text.matchAll(/(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
      seconds += Number(n) * UNIT_SECONDS[unit];
    }
  }
  if (!(seconds > 0) || !Number.isFinite(seconds)) {
    throw new CapsuleError(
      `Invalid --interval "${v}": give a duration such as 5s, 100ms or 1m (or seconds)`,
    );
  }
  return seconds;
}

function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

const str = (name: string, help: string, arg = "VALUE") => ({
  name,
  type: "string" as const,
  help,
  arg,
});

export function resourceCommands(globals: () => Globals): CommandDef[] {
  const rt = (id?: string) => openRuntime(globals(), { id });
  return [
    {
      name: "update",
      summary: "change the resource limits of a running container",
      usage: "<container-id>",
      args: [1, 1],
      flags: [
        {
          ...str("resources", "OCI linux.resources JSON file (- for stdin)", "FILE"),
          short: "r",
        },
        str("blkio-weight", "block IO weight, 10-1000 (v2: converted to io.weight)", "N"),
        str("memory", "memory limit, e.g. 512m", "BYTES"),
        str("memory-swap", "memory + swap limit (-1 unlimited)", "BYTES"),
        str("memory-reservation", "soft memory limit", "BYTES"),
        str("cpu-shares", "relative cpu weight (v2: converted to cpu.weight)", "N"),
        { ...str("cpu-share", "runc's name of --cpu-shares", "N"), hidden: true },
        str("cpu-rt-period", "realtime period in microseconds (cgroup v1)", "US"),
        str("cpu-rt-runtime", "realtime runtime in microseconds (cgroup v1)", "US"),
        str("cpu-quota", "cpu time per period, in microseconds (-1 unlimited)", "US"),
        str("cpu-period", "cpu period in microseconds", "US"),
        str("cpuset-cpus", "cpus to run on, e.g. 0-1", "LIST"),
        str("cpuset-mems", "memory nodes, e.g. 0", "LIST"),
        str("pids-limit", "maximum number of processes (-1 unlimited)", "N"),
        // runc 1.1 accepts and ignores these (kernel memory accounting is gone); so does capsule.
        { ...str("kernel-memory", "ignored (as by runc 1.1)", "BYTES"), hidden: true },
        { ...str("kernel-memory-tcp", "ignored (as by runc 1.1)", "BYTES"), hidden: true },
        { ...str("l3-cache-schema", "Intel RDT: not supported", "SCHEMA"), hidden: true },
        { ...str("mem-bw-schema", "Intel RDT: not supported", "SCHEMA"), hidden: true },
      ],
      run: async ({ flags, args }) => {
        const resources = await resourcesFromFlags(flags);
        (await rt(args[0])).update(args[0], resources);
      },
    },
    {
      name: "pause",
      summary: "freeze every process of a container",
      usage: "<container-id>",
      args: [1, 1],
      run: async ({ args }) => (await rt(args[0])).pause(args[0]),
    },
    {
      name: "resume",
      summary: "thaw a paused container",
      usage: "<container-id>",
      args: [1, 1],
      run: async ({ args }) => (await rt(args[0])).resume(args[0]),
    },
    {
      name: "events",
      summary: "print a container's resource usage (--stats), or stream stats and OOM events",
      usage: "<container-id>",
      args: [1, 1],
      flags: [
        { name: "stats", type: "boolean", help: "print the stats once and exit" },
        str(
          "interval",
          "time between stats, as runc takes it: 5s, 100ms, 1m30s (default 5s)",
          "DURATION",
        ),
      ],
      run: async ({ flags, args }) => {
        const r = await rt(args[0]);
        const { runcStatsJson } = await import("../runtime/cgroups/mod.ts");
        const id = args[0];
        const emitStats = (s: CgroupStats) =>
          console.log(runcStatsJson(s, (data) => ({ type: "stats", id, data })));
        if (flags.stats) {
          emitStats(r.stats(id));
          return;
        }
        const interval = parseInterval((flags.interval as string | undefined) ?? "5s");
        let ooms = r.stats(id).oomKillCount;
        let next = 0;
        for (;;) {
          const rec = r.store.read(id);
          if (!rec || r.status(rec) === "stopped") return;
          const st = r.stats(id);
          if (st.oomKillCount > ooms) console.log(JSON.stringify({ type: "oom", id }));
          ooms = st.oomKillCount;
          if (Date.now() >= next) {
            emitStats(st);
            next = Date.now() + interval * 1000;
          }
          await new Promise((res) => setTimeout(res, 200));
        }
      },
    },
  ];
}
