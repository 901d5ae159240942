// Host sockets that a published port would hijack: /proc/net/{tcp,tcp6,udp,udp6} of the
// caller's network namespace (listening TCP sockets, unconnected bound UDP sockets), and the
// process holding one (a walk of /proc/*/fd, done only when there is a conflict).
import { notUnicast, parseIp } from "./ipam.ts";

/** A bound socket of the host: IPv4 address (or "0.0.0.0" for any), port, socket inode. */
export interface HostSocket {
  ip: string;
  port: number;
  inode: string;
}

const hexV4 = (h: string): string => {
  const n = parseInt(h, 16) >>> 0;
  return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join(".");
};

/**
 * Parses one /proc/net/{tcp,udp}[6] table. TCP: sockets in LISTEN (0A); UDP: sockets with no
 * peer (a server's). IPv6 addresses: "::" (dual-stack any) becomes "0.0.0.0", a v4-mapped one
 * its IPv4 address; other IPv6 addresses are left out (capsule publishes IPv4 only).
 */
export function parseProcNet(text: string, proto: "tcp" | "udp"): HostSocket[] {
  const out: HostSocket[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [laddr, lport] = f[1].split(":");
    const [raddr, rport] = f[2].split(":");
    if (proto === "tcp" && f[3] !== "0A") continue;
    if (proto === "udp" && (!/^0+$/.test(raddr) || !/^0+$/.test(rport ?? ""))) continue;
    let ip: string | undefined;
    if (laddr.length === 8) ip = hexV4(laddr);
    else if (/^0{32}$/.test(laddr)) ip = "0.0.0.0";
    else if (/^0{16}FFFF0000/i.test(laddr)) ip = hexV4(laddr.slice(24));
    if (ip === undefined) continue;
    out.push({ ip, port: parseInt(lport, 16), inode: f[9] });
  }
  return out;
}

/** The host's sockets of `proto` in this network namespace. */
export function hostSockets(proto: "tcp" | "udp"): HostSocket[] {
  const out: HostSocket[] = [];
  for (const v of ["", "6"]) {
    try {
      out.push(...parseProcNet(Deno.readTextFileSync(`/proc/net/${proto}${v}`), proto));
    } catch { /* no IPv6 */ }
  }
  return out;
}

/** The process holding socket `inode`: "name (pid N)", or undefined if none is visible. */
export function socketOwner(inode: string): string | undefined {
  const want = `socket:[${inode}]`;
  for (const p of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(p.name)) continue;
    let fds: Iterable<Deno.DirEntry>;
    try {
      fds = Deno.readDirSync(`/proc/${p.name}/fd`);
    } catch {
      continue;
    }
    try {
      for (const fd of fds) {
        let target = "";
        try {
          target = Deno.readLinkSync(`/proc/${p.name}/fd/${fd.name}`);
        } catch { /* closed meanwhile */ }
        if (target !== want) continue;
        let comm = "?";
        try {
          comm = Deno.readTextFileSync(`/proc/${p.name}/comm`).trim();
        } catch { /* exited */ }
        return `${comm} (pid ${p.name})`;
      }
    } catch { /* exited */ }
  }
  return undefined;
}

/** Would a DNAT of `hostIp` (undefined: every local address) port `port` take `s`'s traffic? */
export function conflicts(s: HostSocket, port: number, hostIp?: string): boolean {
  return s.port === port && (hostIp === undefined || s.ip === "0.0.0.0" || s.ip === hostIp);
}

/**
 * May a TCP listener of this network namespace hold `port` on `hostIp` (undefined: any
 * address)? Binds it for an instant: false means free (a listener on that address, the wildcard
 * or a dual-stack `::` makes the bind fail); true may also be a client's connection from that
 * port, so a caller that refuses confirms with `hostSockets`. A non-local address is free.
 */
export function tcpInUse(port: number, hostIp?: string): boolean {
  try {
    Deno.listen({ hostname: hostIp ?? "0.0.0.0", port, transport: "tcp" }).close();
    return false;
  } catch (e) {
    return e instanceof Deno.errors.AddrInUse;
  }
}

/** The kernel's ephemeral port range (where `-p CTR` picks a host port), [low, high]. */
export function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").trim()
      .split(/\s+/).map(Number);
    if (lo >= 1 && hi <= 65535 && lo <= hi) return [lo, hi];
  } catch { /* not Linux /proc */ }
  return [32768, 60999];
}

/**
 * Is `ip` (IPv4) an address of this network namespace, one a socket may bind? The kernel
 * answers: a bind to port 0 fails with EADDRNOTAVAIL ("cannot assign requested address", what
 * docker reports) for an address the host lacks. Loopback's whole 127.0.0.0/8 is local.
 */
export function isLocalAddress(ip: string): boolean {
  try {
    Deno.listen({ hostname: ip, port: 0, transport: "tcp" }).close();
    return true;
  } catch (e) {
    return !(e instanceof Deno.errors.AddrNotAvailable);
  }
}

/**
 * The IPv4 addresses of this network namespace (the "/32 host LOCAL" entries of
 * /proc/net/fib_trie), each once, in the trie's (numeric) order. An interface given a
 * multicast or reserved address (224.0.0.1/24) shows it as LOCAL too: those are left out.
 */
export function parseFibTrie(text: string): string[] {
  const out: string[] = [];
  let last: string | undefined;
  for (const line of text.split("\n")) {
    const leaf = /^\s*\|-- (\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (leaf) {
      last = leaf[1];
      continue;
    }
    if (last && /^\s*\/32 host LOCAL\s*$/.test(line) && !out.includes(last)) {
      if (!notUnicast(parseIp(last) ?? 0)) out.push(last);
    }
  }
  return out;
}

/** The IPv4 addresses of this network namespace (parseFibTrie), [] if /proc cannot say. */
export function hostAddresses(): string[] {
  try {
    return parseFibTrie(Deno.readTextFileSync("/proc/net/fib_trie"));
  } catch {
    return [];
  }
}
