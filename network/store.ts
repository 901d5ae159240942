// Networks on disk: <root>/_networks/<name>.json (written atomically), the address pool
// <root>/_networks/<name>/ips/<ip>, published host ports <root>/_networks/_ports/<proto>-<port>
// (each holding the container id, made with O_EXCL), and a lock for network create/delete.
// "_networks" starts with "_", which no container id does, so `capsule list` never sees it.
import { CapsuleError } from "../runtime/errors.ts";
import { writeFileAtomic } from "../runtime/state.ts";

export const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const DEFAULT_NETWORK = "capsule_bridge0";

export interface NetworkRecord {
  name: string;
  driver: "bridge";
  subnet: string;
  gateway: string;
  bridge: string;
  created: string;
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
  readonly dir: string;
  constructor(readonly root: string) {
    this.dir = `${root}/_networks`;
  }

  file(name: string): string {
    return `${this.dir}/${validateNetworkName(name)}.json`;
  }

  ipsDir(name: string): string {
    return `${this.dir}/${validateNetworkName(name)}/ips`;
  }

  get portsDir(): string {
    return `${this.dir}/_ports`;
  }

  read(name: string): NetworkRecord | undefined {
    let text: string;
    try {
      text = Deno.readTextFileSync(this.file(name));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return undefined;
      throw e;
    }
    try {
      return JSON.parse(text) as NetworkRecord;
    } catch (e) {
      throw new CapsuleError(
        `State of network "${name}" (${this.file(name)}) is damaged: ${(e as Error).message}`,
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
    Deno.mkdirSync(this.ipsDir(n.name), { recursive: true, mode: 0o700 });
    writeFileAtomic(this.file(n.name), JSON.stringify(n, null, 2) + "\n");
  }

  /** Removes the record first (new containers stop joining), then the pool directory. */
  remove(name: string): void {
    try {
      Deno.removeSync(this.file(name));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    try {
      Deno.removeSync(`${this.dir}/${validateNetworkName(name)}`, { recursive: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }

  list(): NetworkRecord[] {
    const out: NetworkRecord[] = [];
    try {
      for (const e of Deno.readDirSync(this.dir)) {
        if (!e.isFile || !e.name.endsWith(".json")) continue;
        const name = e.name.slice(0, -5);
        if (!NETWORK_NAME.test(name)) continue;
        try {
          const n = this.read(name);
          if (n) out.push(n);
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
    Deno.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const lock = `${this.dir}/_lock`;
    const deadline = Date.now() + 30_000;
    for (let delay = 1;; delay = Math.min(delay * 2, 50)) {
      const tmp = `${this.dir}/_lock.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}`;
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
        const aside = `${this.dir}/_lock.stale.${crypto.randomUUID().slice(0, 8)}`;
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
