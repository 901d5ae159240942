// iptables rules, as iptables-restore text. Each network and each container keeps its rules
// in chains of its own (CNI portmap's idea), jumped to from a few shared chains: removing a
// container or a network is "drop the jumps, flush and delete the chain", and a crash leaves
// nothing that a later delete cannot find by name.
import { CapsuleError } from "../runtime/errors.ts";
import { parseIp } from "./ipam.ts";

/** nat: jumped to from PREROUTING and OUTPUT for local destinations; holds per-container jumps. */
export const PORTS_CHAIN = "CAPSULE-PORTS";
/** nat: jumped to from POSTROUTING; holds per-network jumps. */
export const POSTROUTING_CHAIN = "CAPSULE-POSTROUTING";
/** filter: jumped to from the top of FORWARD; holds per-network jumps. */
export const FORWARD_CHAIN = "CAPSULE-FORWARD";

export interface PortMapping {
  /** Host address to match, or undefined for every local address. */
  hostIp?: string;
  hostPort: number;
  containerPort: number;
  proto: "tcp" | "udp";
}

/** 32-bit FNV-1a as 8 hex digits: short unique-enough names for links and chains. */
export function hash8(s: string): string {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

/** 64-bit FNV-1a as 16 hex digits: per-container names that two ids never share in practice. */
export function hash16(s: string): string {
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(s)) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16).padStart(16, "0");
}

export const networkChain = (name: string) => `CAPSULE-N-${hash8(name)}`;
/** 26 characters, under iptables' 28. */
export const containerChain = (id: string) => `CAPSULE-C-${hash16(id)}`;
/** The host end of a container's veth: 15 characters, the kernel's limit. */
export const vethName = (id: string) => `cap${hash16(id).slice(0, 12)}`;

function port(text: string, spec: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) {
    throw new CapsuleError(
      `Invalid port mapping "${spec}": port "${text}" is not a number from 1 to 65535`,
    );
  }
  return n;
}

/** "80" or "8000-8010" as [low, high]. */
function portRange(text: string, spec: string): [number, number] {
  const i = text.indexOf("-");
  if (i < 0) {
    const p = port(text, spec);
    return [p, p];
  }
  const lo = port(text.slice(0, i), spec), hi = port(text.slice(i + 1), spec);
  if (lo > hi) {
    throw new CapsuleError(
      `Invalid port mapping "${spec}": range "${text}" ends below its start; write LOW-HIGH`,
    );
  }
  return [lo, hi];
}

/** Most ports one -p may publish (each is a reservation file and a DNAT rule). */
export const MAX_PORTS_PER_SPEC = 1024;

/**
 * A port the user asked to publish: the host port fixed, or to be chosen (`hostPort`
 * undefined) from `hostRange` (undefined: the kernel's ephemeral range).
 */
export interface PortRequest {
  hostIp?: string;
  hostPort?: number;
  hostRange?: [number, number];
  containerPort: number;
  proto: "tcp" | "udp";
}

/**
 * Parses one -p: `[[HOSTIP:][HOSTPORT]:]CONTAINERPORT[/tcp|/udp]`, docker's forms. A port may
 * be a range `LOW-HIGH`: host and container ranges of one length map one to one; a host range
 * with one container port takes a free port of the range; no host port (`-p 80`,
 * `-p 127.0.0.1::80`) takes a free one of the ephemeral range. Throws CapsuleError naming the
 * spec for anything else.
 */
export function parsePorts(spec: string): PortRequest[] {
  let rest = spec;
  let proto: "tcp" | "udp" = "tcp";
  const slash = rest.lastIndexOf("/");
  if (slash >= 0) {
    const p = rest.slice(slash + 1).toLowerCase();
    if (p !== "tcp" && p !== "udp") {
      throw new CapsuleError(`Invalid port mapping "${spec}": protocol must be tcp or udp`);
    }
    proto = p;
    rest = rest.slice(0, slash);
  }
  const parts = rest.split(":");
  if (parts.length > 3 || parts.some((x, i) => x === "" && i !== parts.length - 2)) {
    throw new CapsuleError(
      `Invalid port mapping "${spec}": write [HOSTIP:][HOSTPORT:]CONTAINERPORT, e.g. -p 8080:80, ` +
        `-p 80, -p 127.0.0.1:8080:80, -p 8000-8001:80-81`,
    );
  }
  let hostIp: string | undefined;
  if (parts.length === 3) {
    hostIp = parts[0];
    if (parseIp(hostIp) === undefined) {
      throw new CapsuleError(`Invalid port mapping "${spec}": "${hostIp}" is not an IPv4 address`);
    }
  }
  const [c0, c1] = portRange(parts[parts.length - 1], spec);
  const host = parts.length >= 2 && parts[parts.length - 2] !== ""
    ? portRange(parts[parts.length - 2], spec)
    : undefined;
  const n = c1 - c0 + 1;
  if (n > MAX_PORTS_PER_SPEC) {
    throw new CapsuleError(
      `Invalid port mapping "${spec}": ${n} ports; at most ${MAX_PORTS_PER_SPEC} per -p`,
    );
  }
  const out: PortRequest[] = [];
  if (!host) {
    for (let c = c0; c <= c1; c++) out.push({ hostIp, containerPort: c, proto });
  } else if (host[1] - host[0] + 1 === n) {
    for (let i = 0; i < n; i++) {
      out.push({ hostIp, hostPort: host[0] + i, containerPort: c0 + i, proto });
    }
  } else if (n === 1) {
    out.push({ hostIp, hostRange: host, containerPort: c0, proto });
  } else {
    throw new CapsuleError(
      `Invalid port mapping "${spec}": the host range has ${host[1] - host[0] + 1} ports and ` +
        `the container range ${n}; give ranges of one length, or one container port`,
    );
  }
  return out;
}

/** Parses a -p that names one fixed host port (`[HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]`). */
export function parsePort(spec: string): PortMapping {
  const r = parsePorts(spec);
  if (r.length !== 1 || r[0].hostPort === undefined) {
    throw new CapsuleError(
      `Invalid port mapping "${spec}": write HOSTPORT:CONTAINERPORT, e.g. -p 8080:80`,
    );
  }
  const { hostIp, hostPort, containerPort, proto } = r[0];
  return { hostIp, hostPort, containerPort, proto };
}

/** How `list`/`state` show a published port: "0.0.0.0:8080->80/tcp", as docker does. */
export function formatPort(p: PortMapping): string {
  return `${p.hostIp ?? "0.0.0.0"}:${p.hostPort}->${p.containerPort}/${p.proto}`;
}

/** Docker's MAC for an address: 02:42 and the four bytes of the IPv4 address. */
export function macOf(ip: string): string {
  const n = parseIp(ip);
  if (n === undefined) throw new CapsuleError(`Invalid IPv4 address "${ip}"`);
  return [
    "02",
    "42",
    ...[n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].map((b) =>
      b.toString(16).padStart(2, "0")
    ),
  ].join(":");
}

/** The iptables-save dump of one table: chains and rules ("-A CHAIN ..." lines). */
export interface TableDump {
  chains: Set<string>;
  rules: { chain: string; line: string }[];
}

export function parseSave(text: string): Record<string, TableDump> {
  const out: Record<string, TableDump> = {};
  let cur: TableDump | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("*")) {
      cur = out[line.slice(1)] = { chains: new Set(), rules: [] };
    } else if (!cur) continue;
    else if (line.startsWith(":")) cur.chains.add(line.slice(1).split(" ")[0]);
    else if (line.startsWith("-A ")) cur.rules.push({ chain: line.split(" ")[1], line });
  }
  return out;
}

function jumpsTo(t: TableDump | undefined, target: string, from?: string): string[] {
  return (t?.rules ?? []).filter((r) =>
    (from === undefined || r.chain === from) && new RegExp(` -j ${target}( |$)`).test(r.line)
  ).map((r) => r.line);
}

export interface NetworkRuleInput {
  name: string;
  bridge: string;
  subnet: string;
}

/**
 * Rules of a network, added to what `current` (iptables-save) has: shared chains and jumps
 * only where missing, the network's own chains declared (created, or flushed) and filled.
 */
export function networkSetup(n: NetworkRuleInput, current: Record<string, TableDump>): string {
  const chain = networkChain(n.name);
  const nat = current.nat, filter = current.filter;
  const l: string[] = ["*nat"];
  for (const c of [PORTS_CHAIN, POSTROUTING_CHAIN]) {
    if (!nat?.chains.has(c)) l.push(`:${c} - [0:0]`);
  }
  l.push(`:${chain} - [0:0]`);
  // Outbound: the subnet leaves through any other interface with the host's address.
  l.push(`-A ${chain} -s ${n.subnet} ! -o ${n.bridge} -j MASQUERADE`);
  // Published ports reached from the host's 127.0.0.1 (needs route_localnet on the bridge).
  l.push(`-A ${chain} -s 127.0.0.0/8 -o ${n.bridge} -j MASQUERADE`);
  // Hairpin: a container reaching a published port (its own or another's) via a host address.
  l.push(`-A ${chain} -s ${n.subnet} -o ${n.bridge} -m conntrack --ctstate DNAT -j MASQUERADE`);
  const local = "-m addrtype --dst-type LOCAL";
  if (!jumpsTo(nat, PORTS_CHAIN, "PREROUTING").length) {
    l.push(`-A PREROUTING ${local} -j ${PORTS_CHAIN}`);
  }
  if (!jumpsTo(nat, PORTS_CHAIN, "OUTPUT").length) l.push(`-A OUTPUT ${local} -j ${PORTS_CHAIN}`);
  if (!jumpsTo(nat, POSTROUTING_CHAIN, "POSTROUTING").length) {
    l.push(`-A POSTROUTING -j ${POSTROUTING_CHAIN}`);
  }
  if (!jumpsTo(nat, chain, POSTROUTING_CHAIN).length) l.push(`-A ${POSTROUTING_CHAIN} -j ${chain}`);
  l.push("COMMIT", "*filter");
  if (!filter?.chains.has(FORWARD_CHAIN)) l.push(`:${FORWARD_CHAIN} - [0:0]`);
  l.push(`:${chain} - [0:0]`);
  l.push(`-A ${chain} -i ${n.bridge} -j ACCEPT`);
  l.push(`-A ${chain} -o ${n.bridge} -j ACCEPT`);
  if (!jumpsTo(filter, FORWARD_CHAIN, "FORWARD").length) l.push(`-I FORWARD 1 -j ${FORWARD_CHAIN}`);
  if (!jumpsTo(filter, chain, FORWARD_CHAIN).length) l.push(`-A ${FORWARD_CHAIN} -j ${chain}`);
  // route_localnet lets 127.0.0.1 reach published ports; it must not let a container reach
  // what the host binds to 127.0.0.1 (raw frames to 127.x: CVE-2020-8558's pattern).
  l.push("COMMIT", "*raw", `:${chain} - [0:0]`);
  l.push(`-A ${chain} -i ${n.bridge} -d 127.0.0.0/8 -j DROP`);
  if (!jumpsTo(current.raw, chain, "PREROUTING").length) l.push(`-A PREROUTING -j ${chain}`);
  l.push("COMMIT", "");
  return l.join("\n");
}

/** Removal of `chain` from one table of the dump: its jumps deleted, itself flushed and deleted. */
function dropChain(t: TableDump | undefined, chain: string): string[] {
  if (!t) return [];
  const l = jumpsTo(t, chain).map((line) => line.replace(/^-A /, "-D "));
  if (t.chains.has(chain)) l.push(`:${chain} - [0:0]`, `-X ${chain}`);
  return l;
}

/**
 * Removal of a network's chains; with `last` (no network left) the shared chains and their
 * jumps too. Undefined when there is nothing to remove.
 */
export function networkTeardown(
  name: string,
  current: Record<string, TableDump>,
  last: boolean,
): string | undefined {
  const chain = networkChain(name);
  const nat = dropChain(current.nat, chain);
  const filter = dropChain(current.filter, chain);
  const raw = dropChain(current.raw, chain);
  if (last) {
    for (const c of [PORTS_CHAIN, POSTROUTING_CHAIN]) {
      // Container chains left under the shared one (a crash) go with it.
      for (const r of current.nat?.rules ?? []) {
        const m = / -j (CAPSULE-C-[0-9a-f]{16})$/.exec(r.line);
        if (r.chain === c && m) nat.push(...dropChain(current.nat, m[1]));
      }
      nat.push(...dropChain(current.nat, c));
    }
    filter.push(...dropChain(current.filter, FORWARD_CHAIN));
  }
  if (!nat.length && !filter.length && !raw.length) return undefined;
  const out: string[] = [];
  if (nat.length) out.push("*nat", ...dedupe(nat), "COMMIT");
  if (filter.length) out.push("*filter", ...dedupe(filter), "COMMIT");
  if (raw.length) out.push("*raw", ...dedupe(raw), "COMMIT");
  return out.join("\n") + "\n";
}

function dedupe(lines: string[]): string[] {
  // A -D per rule is right (duplicates are separate rules); declarations and -X once.
  const seen = new Set<string>();
  return lines.filter((l) => {
    if (l.startsWith("-D ")) return true;
    if (seen.has(l)) return false;
    seen.add(l);
    return true;
  });
}

/** A container's DNAT chain and its jump: one iptables-restore at create. */
export function containerSetup(id: string, ip: string, ports: PortMapping[]): string {
  const chain = containerChain(id);
  const l = ["*nat", `:${chain} - [0:0]`];
  for (const p of ports) {
    const dst = p.hostIp ? ` -d ${p.hostIp}/32` : "";
    l.push(
      `-A ${chain}${dst} -p ${p.proto} -m ${p.proto} --dport ${p.hostPort} -j DNAT ` +
        `--to-destination ${ip}:${p.containerPort}`,
    );
  }
  l.push(`-A ${PORTS_CHAIN} -j ${chain}`, "COMMIT", "");
  return l.join("\n");
}

/** The quick removal of a container's chain (fails as a whole if any part is missing). */
export function containerTeardown(id: string): string {
  const chain = containerChain(id);
  return ["*nat", `:${chain} - [0:0]`, `-D ${PORTS_CHAIN} -j ${chain}`, `-X ${chain}`, "COMMIT", ""]
    .join("\n");
}

/** The removal of a container's chain from what iptables-save shows; undefined if none. */
export function containerTeardownFrom(
  id: string,
  current: Record<string, TableDump>,
): string | undefined {
  const l = dropChain(current.nat, containerChain(id));
  return l.length ? ["*nat", ...l, "COMMIT", ""].join("\n") : undefined;
}
