// Networks on disk. Definitions outlive a reboot, as docker's do: <store>/networks/<name>.json
// (written atomically; name, subnet, gateway, driver, bridge, options), with the lock for
// network create/delete beside them. A network being deleted is <name>.json.deleting until its
// bridge and rules are gone, so a delete killed midway is still listed and finished later.
// Run-time state lives under --root (a tmpfs, empty after a reboot): the address pool
// <root>/_networks/<name>/ips/<ip> and published host ports <root>/_networks/_ports/<proto>-<port>
// (each file holding the owning container's id, made with O_EXCL). "_networks" starts with "_",
// which no container id does, so `capsule list` never sees it.
import { CapsuleError } from "../runtime/errors.ts";
import { exists, writeFileAtomic } from "../runtime/state.ts";

export const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const DEFAULT_NETWORK = "capsule_bridge0";

/**
 * A network's definition, <store>/networks/<name>.json: kept across reboots (as docker's), its
 * bridge made again when a container joins.
 */
export interface NetworkRecord {
  /** The network's name (`NETWORK_NAME`: 1-64 of A-Z a-z 0-9 _ . -, a letter or digit first). */
  name: string;
  /** Only "bridge": a Linux bridge on the host, containers joined by veth pairs. */
  driver: "bridge";
  /** IPv4 subnet in CIDR form ("10.77.0.0/24"): given at create, or the first free default. */
  subnet: string;
  /** The bridge's own address in the subnet, the containers' default route ("10.77.0.1"). */
  gateway: string;
  /**
   * Name of the host's bridge interface: the network's name when that is a valid, free
   * interface name, else "capbr" and 8 hex digits of a hash of it.
   */
  bridge: string;
  /** When the network was created, ISO 8601. */
  created: string;
  /** Driver options (none are defined yet; kept so that a definition round-trips). */
  options?: Record<string, string>;
  /** Set by `list`/`show` on a network whose delete was interrupted (not stored). */
  deleting?: boolean;
}

/** Throws unless `name` is a valid network name: checked before it reaches any path. */
export function validateNetworkName(name: string): string {
  if (typeof name !== "string" || !NETWORK_NAME.test(name)) {
    throw new CapsuleError(
      `Invalid network name ${JSON.stringify(name)}: use 1-64 letters, digits, '_', '.' or '-', ` +
        `starting with a letter or digit`,
    );
  }
  return name;
}

export class NetworkStore {
  /** Run-time state (leases, ports): <root>/_networks. */
  readonly dir: string;
  /** Definitions and the lock: <store>/networks, or the run-time dir when no store is given. */
  readonly defs: string;
  constructor(readonly root: string, store?: string) {
    this.dir = `${root}/_networks`;
    this.defs = store === undefined ? this.dir : `${store}/networks`;
    if (this.defs !== this.dir) this.#migrate();
  }

  /** Definitions an older capsule kept under --root move to the store (once). */
  #migrate(): void {
    let names: string[];
    try {
      names = [...Deno.readDirSync(this.dir)].filter((e) => e.isFile && e.name.endsWith(".json"))
        .map((e) => e.name);
    } catch {
      return;
    }
    for (const f of names) {
      if (!NETWORK_NAME.test(f.slice(0, -5))) continue;
      try {
        Deno.mkdirSync(this.defs, { recursive: true, mode: 0o700 });
        if (!exists(`${this.defs}/${f}`)) {
          writeFileAtomic(`${this.defs}/${f}`, Deno.readTextFileSync(`${this.dir}/${f}`));
        }
        Deno.removeSync(`${this.dir}/${f}`);
      } catch { /* a concurrent command moved it */ }
    }
  }

  file(name: string): string {
    return `${this.defs}/${validateNetworkName(name)}.json`;
  }

  /** The record of a network whose delete began (renamed aside; see `delete`). */
  deletingFile(name: string): string {
    return `${this.file(name)}.deleting`;
  }

  ipsDir(name: string): string {
    return `${this.dir}/${validateNetworkName(name)}/ips`;
  }

  get portsDir(): string {
    return `${this.dir}/_ports`;
  }

  read(name: string): NetworkRecord | undefined {
    return this.#readFile(name, this.file(name));
  }

  /** The record of a half-deleted network, if `delete` was interrupted. */
  readDeleting(name: string): NetworkRecord | undefined {
    return this.#readFile(name, this.deletingFile(name));
  }

  #readFile(name: string, file: string): NetworkRecord | undefined {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
    try {
      return JSON.parse(text) as NetworkRecord;
    } catch (e) {
      throw new CapsuleError(
        `State of network "${name}" (${file}) is damaged: ${(e as Error).message}; remove ` +
          `the file and create the network again`,
      );
    }
  }

  load(name: string): NetworkRecord {
    const n = this.read(name);
    if (!n) {
      throw new CapsuleError(
        `Network "${name}" does not exist: create it with "capsule network create ${name} ` +
          `--subnet CIDR", or see "capsule network list"`,
      );
    }
    return n;
  }

  write(n: NetworkRecord): void {
    Deno.mkdirSync(this.defs, { recursive: true, mode: 0o700 });
    const { deleting: _, ...rec } = n;
    writeFileAtomic(this.file(n.name), JSON.stringify(rec, null, 2) + "\n");
  }

  /**
   * Removes the pool directory, then the record (live and set-aside): what is left after a
   * crash here is a record, which a later delete finishes.
   */
  remove(name: string): void {
    try {
      Deno.removeSync(`${this.dir}/${validateNetworkName(name)}`, { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    for (const f of [this.file(name), this.deletingFile(name)]) {
      try {
        Deno.removeSync(f);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }

  /** The defined networks; with `deleting`, half-deleted ones too (marked `deleting: true`). */
  list(opts: { deleting?: boolean } = {}): NetworkRecord[] {
    const out: NetworkRecord[] = [];
    try {
      for (const e of Deno.readDirSync(this.defs)) {
        if (!e.isFile) continue;
        const gone = e.name.endsWith(".json.deleting");
        if (!e.name.endsWith(".json") && !(gone && opts.deleting)) continue;
        const name = e.name.slice(0, gone ? -14 : -5);
        if (!NETWORK_NAME.test(name)) continue;
        try {
          const n = gone ? this.readDeleting(name) : this.read(name);
          // A record both live and aside: the delete is undone (the live one counts).
          if (gone && n && exists(this.file(name))) continue;
          if (n) out.push(gone ? { ...n, deleting: true } : n);
        } catch { /* damaged: shown by show/delete */ }
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Runs `fn` holding the networks' lock: a directory made by rename (so it always holds the
   * owner's pid), taken over when its owner is dead.
   */
  async withLock<T>(fn: () => Promise<T> | T): Promise<T> {
    Deno.mkdirSync(this.defs, { recursive: true, mode: 0o700 });
    const lock = `${this.defs}/_lock`;
    const deadline = Date.now() + 30_000;
    for (let delay = 1;; delay = Math.min(delay * 2, 50)) {
      const tmp = `${this.defs}/_lock.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}`;
      Deno.mkdirSync(tmp);
      Deno.writeTextFileSync(`${tmp}/pid`, `${Deno.pid} ${startTime(Deno.pid)}`);
      try {
        Deno.renameSync(tmp, lock);
        break;
      } catch {
        Deno.removeSync(tmp, { recursive: true });
      }
      const owner = readOwner(lock);
      if (owner && !alive(owner)) {
        // Stale: move it aside (only one taker wins the rename), then check what was moved.
        const aside = `${this.defs}/_lock.stale.${crypto.randomUUID().slice(0, 8)}`;
        try {
          Deno.renameSync(lock, aside);
          const moved = readOwner(aside);
          if (moved && alive(moved)) {
            try {
              Deno.renameSync(aside, lock); // a live owner's: give it back
            } catch { /* it will find its lock gone; nothing better to do */ }
          } else Deno.removeSync(aside, { recursive: true });
        } catch { /* someone else took it over */ }
        continue;
      }
      if (Date.now() > deadline) {
        throw new CapsuleError(
          `Timed out waiting for the network lock ${lock} (held by pid ${owner?.pid ?? "?"})`,
        );
      }
      await new Promise((r) => setTimeout(r, delay));
    }
    try {
      return await fn();
    } finally {
      try {
        Deno.removeSync(lock, { recursive: true });
      } catch { /* already gone */ }
    }
  }
}

function startTime(pid: number): string {
  try {
    const t = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return t.slice(t.lastIndexOf(")") + 2).split(" ")[19] ?? "";
  } catch {
    return "";
  }
}

function readOwner(dir: string): { pid: number; start: string } | undefined {
  try {
    const [pid, start] = Deno.readTextFileSync(`${dir}/pid`).trim().split(" ");
    return { pid: Number(pid), start: start ?? "" };
  } catch {
    return undefined;
  }
}

function alive(o: { pid: number; start: string }): boolean {
  const s = startTime(o.pid);
  return s !== "" && (o.start === "" || s === o.start);
}
