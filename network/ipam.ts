// IPv4 subnets and address allocation, CNI host-local style: one file per allocated address
// (<dir>/<ip>, holding the container id), created with O_EXCL, so that any number of
// concurrent creates never get the same address and no lock is needed.
import { CapsuleError } from "../runtime/errors.ts";

export interface Subnet {
  /** Network address as a 32-bit unsigned number. */
  base: number;
  prefix: number;
}

export function parseIp(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const p = m.slice(1).map(Number);
  if (p.some((x, i) => x > 255 || (m[i + 1].length > 1 && m[i + 1][0] === "0"))) return undefined;
  return ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
}

export function formatIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

export function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function formatSubnet(s: Subnet): string {
  return `${formatIp(s.base)}/${s.prefix}`;
}

/**
 * IPv4 ranges that no bridge network may use (docker refuses them too, or they cannot work):
 * `unicast: false` for those whose addresses no interface may have as its own ("this
 * network", multicast, reserved with the limited broadcast address), the others being the
 * host's own already (loopback) or meaningful on one link only (link-local).
 */
export const RESERVED_RANGES: readonly { range: string; what: string; unicast: boolean }[] = [
  { range: "0.0.0.0/8", what: '"this network"', unicast: false },
  { range: "127.0.0.0/8", what: "loopback: the host's own addresses", unicast: true },
  { range: "169.254.0.0/16", what: "link-local", unicast: true },
  { range: "224.0.0.0/4", what: "multicast", unicast: false },
  { range: "240.0.0.0/4", what: "reserved, and the broadcast address", unicast: false },
];

const reserved = () =>
  RESERVED_RANGES.map((r) => {
    const [ip, prefix] = r.range.split("/");
    return { ...r, subnet: { base: parseIp(ip)!, prefix: Number(prefix) } };
  });

/** The reserved range (RESERVED_RANGES) that `s` overlaps, undefined if none. */
export function reservedRange(s: Subnet): { range: string; what: string } | undefined {
  const r = reserved().find((r) => overlaps(s, r.subnet));
  return r && { range: r.range, what: r.what };
}

/**
 * Is `ip` an address that no interface may have as its own: in 0.0.0.0/8, 224.0.0.0/4
 * (multicast) or 240.0.0.0/4?
 */
export function notUnicast(ip: number): boolean {
  return reserved().some((r) => !r.unicast && contains(r.subnet, ip));
}

/** Parses "10.1.0.0/24" for a bridge network: /16 to /30, the network address given exactly. */
export function parseSubnet(text: string): Subnet {
  const m = /^([0-9.]+)\/(\d{1,2})$/.exec(text);
  const ip = m ? parseIp(m[1]) : undefined;
  if (!m || ip === undefined) {
    throw new CapsuleError(
      `Invalid subnet "${text}": write an IPv4 network in CIDR form, e.g. 10.89.0.0/24`,
    );
  }
  const prefix = Number(m[2]);
  if (prefix < 16 || prefix > 30) {
    throw new CapsuleError(`Invalid subnet "${text}": the prefix must be /16 to /30`);
  }
  const base = (ip & mask(prefix)) >>> 0;
  if (base !== ip) {
    throw new CapsuleError(
      `Invalid subnet "${text}": host bits are set; did you mean ${formatIp(base)}/${prefix}?`,
    );
  }
  return { base, prefix };
}

export function broadcast(s: Subnet): number {
  return (s.base | (~mask(s.prefix) >>> 0)) >>> 0;
}

export function contains(s: Subnet, ip: number): boolean {
  return ((ip & mask(s.prefix)) >>> 0) === s.base;
}

export function overlaps(a: Subnet, b: Subnet): boolean {
  const p = Math.min(a.prefix, b.prefix);
  return ((a.base & mask(p)) >>> 0) === ((b.base & mask(p)) >>> 0);
}

/** The gateway: the given one (a host address of the subnet) or the first host address. */
export function gatewayOf(s: Subnet, given?: string): number {
  if (given === undefined) return s.base + 1;
  const gw = parseIp(given);
  if (gw === undefined || !contains(s, gw) || gw === s.base || gw === broadcast(s)) {
    throw new CapsuleError(
      `Invalid gateway "${given}": use a host address inside ${formatSubnet(s)}`,
    );
  }
  return gw;
}

export interface Pool {
  /** Directory of the allocation files. */
  dir: string;
  subnet: Subnet;
  gateway: number;
}

/** Is this allocation left by a container that no longer exists? Decided by the caller. */
export type StaleCheck = (ip: string, owner: string) => boolean;

/**
 * Reserves a free address for `owner`. Candidates are tried in order from the lowest; a
 * concurrent allocation that wins a file just makes this one move on. When the pool is full,
 * allocations that `stale` says are leftovers are reclaimed once.
 */
export function allocate(pool: Pool, owner: string, stale?: StaleCheck): string {
  Deno.mkdirSync(pool.dir, { recursive: true });
  for (let pass = 0; pass < 2; pass++) {
    const used = new Set(listAllocations(pool.dir).map((a) => a.ip));
    const last = broadcast(pool.subnet);
    for (let n = pool.subnet.base + 1; n < last; n++) {
      if (n === pool.gateway) continue;
      const ip = formatIp(n);
      if (used.has(ip)) continue;
      try {
        Deno.writeTextFileSync(`${pool.dir}/${ip}`, owner, { createNew: true });
        return ip;
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
    }
    if (pass === 0 && stale) {
      let freed = 0;
      for (const a of listAllocations(pool.dir)) {
        if (stale(a.ip, a.owner) && release(pool.dir, a.ip, a.owner)) freed++;
      }
      if (!freed) break;
    } else break;
  }
  throw new CapsuleError(
    `No free address left in ${formatSubnet(pool.subnet)}: delete containers on that network ` +
      `or create a network with a larger subnet`,
  );
}

/** Frees `ip` if `owner` still holds it; true if it was freed. */
export function release(dir: string, ip: string, owner: string): boolean {
  if (parseIp(ip) === undefined) return false;
  return releaseFile(dir, ip, owner);
}

/**
 * Frees the reservation file `name` (an address, or a published port such as "tcp-8080") if
 * `owner` still holds it; true if it was freed.
 */
export function releaseFile(dir: string, name: string, owner: string): boolean {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) return false;
  try {
    if (Deno.readTextFileSync(`${dir}/${name}`).trim() !== owner) return false;
    Deno.removeSync(`${dir}/${name}`);
    return true;
  } catch {
    return false;
  }
}

export function listAllocations(dir: string): { ip: string; owner: string }[] {
  const out: { ip: string; owner: string }[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (!e.isFile || parseIp(e.name) === undefined) continue;
      try {
        out.push({ ip: e.name, owner: Deno.readTextFileSync(`${dir}/${e.name}`).trim() });
      } catch { /* released meanwhile */ }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) => parseIp(a.ip)! - parseIp(b.ip)!);
}
