// Every command the network layer runs (ip, nsenter + ip, iptables-save/-restore) and every
// sysctl it writes goes through one small interface, so that a fake can record them and the
// unit tests check the batches without root (youki's Syscall/netlink Client idea).
import {
  conflicts,
  hostAddresses,
  type HostSocket,
  hostSockets,
  isLocalAddress,
  socketOwner,
  tcpInUse,
} from "./hostports.ts";

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Runner {
  /** Runs argv[0] with the rest as arguments, `stdin` piped in; never throws for a status. */
  run(argv: string[], stdin?: string): Promise<RunResult>;
  /** Writes a /proc/sys file, path relative to it: "net/ipv4/ip_forward" (names may hold dots). */
  sysctl(path: string, value: string): void;
  /** Names of the interfaces of this network namespace (/proc/net/dev). */
  links(): Set<string>;
  /** IPv4 routes of this network namespace: destination/prefix and device. */
  routes(): { dest: string; prefix: number; dev: string }[];
  /**
   * May a host TCP listener clash with publishing `port` on `hostIp` (undefined: every
   * address)? A quick bind (reading /proc/net/tcp costs ~6 ms); a true is confirmed with
   * `sockets` before anything is refused.
   */
  tcpInUse(port: number, hostIp?: string): boolean;
  /** Listening TCP / bound unconnected UDP sockets of this network namespace (hostports.ts). */
  sockets(proto: "tcp" | "udp"): HostSocket[];
  /** The process holding a socket, "name (pid N)", or undefined when none is visible. */
  socketOwner(inode: string): string | undefined;
  /** Is `ip` an address of this network namespace (a bind to it works)? */
  localAddress(ip: string): boolean;
  /** The IPv4 addresses of this network namespace, for messages. */
  addresses(): string[];
  /**
   * The interface `name` of this network namespace: its kind and alias (one `ip -j -d link
   * show dev NAME`); undefined when there is no such interface.
   */
  link(name: string): Promise<LinkInfo | undefined>;
  /**
   * A bridge of this network namespace: its alias (`ip link set dev BR alias ...`, "" when
   * none) and the interfaces enslaved to it; undefined when there is no such interface.
   */
  bridge(name: string): Promise<BridgeInfo | undefined>;
}

/** What `Runner.link` reports of an interface. */
export interface LinkInfo {
  /**
   * Its kind (`ip -d`'s linkinfo.info_kind: "bridge", "veth", "wireguard", "dummy"...), ""
   * for one without (a network card, lo).
   */
  kind: string;
  /** The link's alias (IFLA_IFALIAS, at most 255 bytes), "" when it has none. */
  alias: string;
}

/** What `Runner.bridge` reports of a bridge. */
export interface BridgeInfo {
  /** The link's alias (IFLA_IFALIAS, at most 255 bytes), "" when it has none. */
  alias: string;
  /** Names of the interfaces whose master is the bridge (containers' veths), sorted. */
  ports: string[];
}

/** Kind and alias of one entry of `ip -j -d link show`'s array. */
function linkOf(l: unknown): LinkInfo | undefined {
  if (!l || typeof l !== "object") return undefined;
  const o = l as { ifalias?: unknown; linkinfo?: { info_kind?: unknown } };
  return {
    kind: typeof o.linkinfo?.info_kind === "string" ? o.linkinfo.info_kind : "",
    alias: typeof o.ifalias === "string" ? o.ifalias : "",
  };
}

/** Reads `ip -j -d link show dev NAME`: that link's kind and alias; undefined if unreadable. */
export function parseLink(json: string): LinkInfo | undefined {
  try {
    return linkOf(JSON.parse(json)?.[0]);
  } catch {
    return undefined;
  }
}

/**
 * The link that `ip -j -d -batch -` printed for a first line `link show dev BR`: its output's
 * first line is that JSON array (one line: ip prints compact JSON); undefined when nothing was
 * shown (no such link: the batch stopped there).
 */
export function shownLink(stdout: string): LinkInfo | undefined {
  const nl = stdout.indexOf("\n");
  return parseLink(nl < 0 ? stdout : stdout.slice(0, nl));
}

/** Reads `ip -j link show` (every link of the namespace): the bridge `name`, if present. */
export function parseBridge(json: string, name: string): BridgeInfo | undefined {
  let links: unknown;
  try {
    links = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!Array.isArray(links)) return undefined;
  const self = links.find((l) => l?.ifname === name);
  if (!self) return undefined;
  return {
    alias: typeof self.ifalias === "string" ? self.ifalias : "",
    ports: links.filter((l) => l?.master === name && typeof l.ifname === "string")
      .map((l) => l.ifname as string).sort(),
  };
}

const dec = new TextDecoder();

/** Reads /proc/net/route: little-endian hex addresses, one route a line. */
export function parseProcRoutes(text: string): { dest: string; prefix: number; dev: string }[] {
  const out: { dest: string; prefix: number; dev: string }[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const le = (h: string) => {
      const n = parseInt(h, 16) >>> 0;
      return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24];
    };
    const mask = le(f[7]);
    const prefix = mask.reduce((a, b) => a + (b.toString(2).match(/1/g)?.length ?? 0), 0);
    out.push({ dest: le(f[1]).join("."), prefix, dev: f[0] });
  }
  return out;
}

/** Interface names from /proc/net/dev ("  eth0: 123 ..."). */
export function parseProcNetDev(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split("\n").slice(2)) {
    const i = line.indexOf(":");
    if (i > 0) out.add(line.slice(0, i).trim());
  }
  return out;
}

/** The real thing: processes and /proc. /proc/net follows the caller's network namespace. */
export class SystemRunner implements Runner {
  async run(argv: string[], stdin?: string): Promise<RunResult> {
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(argv[0], {
        args: argv.slice(1),
        stdin: stdin === undefined ? "null" : "piped",
        stdout: "piped",
        stderr: "piped",
        env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
        clearEnv: true,
      }).spawn();
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        return { code: 127, stdout: "", stderr: `${argv[0]}: executable file not found in $PATH` };
      }
      throw e;
    }
    if (stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(stdin));
      await w.close();
    }
    const out = await child.output();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  }

  sysctl(path: string, value: string): void {
    Deno.writeTextFileSync(`/proc/sys/${path}`, value);
  }

  links(): Set<string> {
    return parseProcNetDev(Deno.readTextFileSync("/proc/net/dev"));
  }

  routes(): { dest: string; prefix: number; dev: string }[] {
    try {
      return parseProcRoutes(Deno.readTextFileSync("/proc/net/route"));
    } catch {
      return [];
    }
  }

  tcpInUse(port: number, hostIp?: string): boolean {
    return tcpInUse(port, hostIp);
  }

  sockets(proto: "tcp" | "udp"): HostSocket[] {
    return hostSockets(proto);
  }

  socketOwner(inode: string): string | undefined {
    return socketOwner(inode);
  }

  localAddress(ip: string): boolean {
    return isLocalAddress(ip);
  }

  addresses(): string[] {
    return hostAddresses();
  }

  /**
   * One `ip -j -d link show dev NAME`, about 2 ms (/sys/class/net would be quicker, but it
   * shows the namespace of whoever mounted /sys).
   */
  async link(name: string): Promise<LinkInfo | undefined> {
    const r = await this.run(["ip", "-j", "-d", "link", "show", "dev", name]);
    if (r.code !== 0) {
      if (!this.links().has(name)) return undefined;
      throw new Error(`ip link show failed: ${r.stderr.trim() || `status ${r.code}`}`);
    }
    const info = parseLink(r.stdout);
    if (!info) throw new Error(`ip link show printed no link: ${r.stdout.slice(0, 200)}`);
    return info;
  }

  /** One `ip -j link show`, about 2 ms (/sys/class/net is the namespace of whoever mounted /sys). */
  async bridge(name: string): Promise<BridgeInfo | undefined> {
    const r = await this.run(["ip", "-j", "link", "show"]);
    if (r.code !== 0) {
      throw new Error(`ip link show failed: ${r.stderr.trim() || `status ${r.code}`}`);
    }
    return parseBridge(r.stdout, name);
  }
}

export interface RecordedCall {
  argv: string[];
  stdin?: string;
}

/**
 * A runner that records what it is asked and answers from `respond` (default: success, empty
 * output). `ip link add/del` lines in batches keep its interface set up to date.
 */
export class FakeRunner implements Runner {
  calls: RecordedCall[] = [];
  sysctls: [string, string][] = [];
  ifaces = new Set<string>(["lo", "eth0"]);
  hostRoutes: { dest: string; prefix: number; dev: string }[] = [];
  /** Host sockets by protocol, with the owner shown for each inode. */
  hostSockets: { tcp: HostSocket[]; udp: HostSocket[] } = { tcp: [], udp: [] };
  owners = new Map<string, string>();
  /** TCP ports a quick bind finds taken without a listener (a client's connection). */
  boundTcp = new Set<number>();
  respond?: (argv: string[], stdin?: string) => RunResult | undefined;
  /** Link aliases (`ip link set dev X alias A`) and masters (`link add name V master BR`). */
  aliases = new Map<string, string>();
  masters = new Map<string, string>();
  /** Link kinds (`link add ... type KIND`); a link without one has none (a network card). */
  kinds = new Map<string, string>();

  run(argv: string[], stdin?: string): Promise<RunResult> {
    this.calls.push({ argv, stdin });
    const r = this.respond?.(argv, stdin);
    if (r) return Promise.resolve(r);
    const del = (dev: string) => {
      this.ifaces.delete(dev);
      this.aliases.delete(dev);
      this.masters.delete(dev);
      this.kinds.delete(dev);
      for (const [k, v] of this.masters) if (v === dev) this.masters.delete(k);
    };
    /** `link add` as the kernel takes it: an error message, or undefined when made. */
    const add = (f: string[]): string | undefined => {
      const dev = f[2] === "name" ? f[3] : f[2];
      const m = f.indexOf("master"), master = m > 0 ? f[m + 1] : undefined;
      if (this.ifaces.has(dev)) return "RTNETLINK answers: File exists";
      if (master !== undefined && !this.ifaces.has(master)) {
        return `Cannot find device "${master}"`;
      }
      if (master !== undefined && this.kinds.get(master) !== "bridge") {
        return "RTNETLINK answers: Operation not supported";
      }
      this.ifaces.add(dev);
      const t = f.indexOf("type");
      if (t > 0) this.kinds.set(dev, f[t + 1]);
      if (master !== undefined) this.masters.set(dev, master);
      return undefined;
    };
    let out = "";
    if (argv.includes("-batch") && !argv.includes("nsenter") && argv[0] !== "nsenter") {
      // As ip -batch: commands in order, stopping at the first that fails.
      const lines = (stdin ?? "").split("\n");
      for (let i = 0; i < lines.length; i++) {
        const f = lines[i].trim().split(/\s+/);
        let err: string | undefined;
        if (f[0] === "link" && f[1] === "add") err = add(f);
        if (f[0] === "link" && f[1] === "show" && f[2] === "dev") {
          if (!this.ifaces.has(f[3])) err = `Device "${f[3]}" does not exist.`;
          else if (argv.includes("-j")) {
            const alias = this.aliases.get(f[3]), kind = this.kinds.get(f[3]);
            out += JSON.stringify([{
              ifname: f[3],
              flags: ["BROADCAST", "MULTICAST"], // as ip prints them: a "]" before the alias
              ...(argv.includes("-d") && kind ? { linkinfo: { info_kind: kind } } : {}),
              ...(alias ? { ifalias: alias } : {}),
            }]) + "\n";
          }
        }
        if (f[0] === "link" && (f[1] === "del" || f[1] === "delete")) {
          del(f[2] === "dev" ? f[3] : f[2]);
        }
        if (err) {
          return Promise.resolve({
            code: 1,
            stdout: out,
            stderr: `${err}\nCommand failed -:${i + 1}\n`,
          });
        }
      }
    }
    const a = argv.join(" ");
    const m = /^ip link set dev (\S+) alias/.exec(a);
    if (m && argv.length === 7) this.aliases.set(m[1], argv[6]);
    if (/^ip link del dev \S+$/.test(a)) del(argv[4]);
    if (/^ip link add /.test(a)) {
      const err = add(argv.slice(1));
      if (err) return Promise.resolve({ code: 2, stdout: "", stderr: `${err}\n` });
    }
    return Promise.resolve({ code: 0, stdout: out, stderr: "" });
  }

  /** How many times `link` was asked (an `ip -j -d link show dev NAME` on a real host). */
  linkReads = 0;

  /** Answered from the interface set, kinds and aliases (counted in `linkReads`). */
  link(name: string): Promise<LinkInfo | undefined> {
    this.linkReads++;
    if (!this.ifaces.has(name)) return Promise.resolve(undefined);
    return Promise.resolve({
      kind: this.kinds.get(name) ?? "",
      alias: this.aliases.get(name) ?? "",
    });
  }

  /** How many times `bridge` was asked (a separate `ip -j link show` on a real host). */
  bridgeReads = 0;

  /** Answered from the interface set, aliases and masters (counted in `bridgeReads`). */
  bridge(name: string): Promise<BridgeInfo | undefined> {
    this.bridgeReads++;
    const out = [...this.ifaces].map((n) => ({
      ifname: n,
      ...(this.masters.has(n) ? { master: this.masters.get(n) } : {}),
      ...(this.aliases.get(n) ? { ifalias: this.aliases.get(n) } : {}),
    }));
    return Promise.resolve(parseBridge(JSON.stringify(out), name));
  }

  sysctl(path: string, value: string): void {
    this.sysctls.push([path, value]);
  }

  links(): Set<string> {
    return new Set(this.ifaces);
  }

  routes(): { dest: string; prefix: number; dev: string }[] {
    return this.hostRoutes;
  }

  tcpInUse(port: number, hostIp?: string): boolean {
    return this.boundTcp.has(port) || this.hostSockets.tcp.some((s) => conflicts(s, port, hostIp));
  }

  sockets(proto: "tcp" | "udp"): HostSocket[] {
    return this.hostSockets[proto];
  }

  socketOwner(inode: string): string | undefined {
    return this.owners.get(inode);
  }

  /** The host's IPv4 addresses (127.0.0.0/8 is local as well). */
  hostAddrs = ["127.0.0.1"];

  localAddress(ip: string): boolean {
    return ip.startsWith("127.") || this.hostAddrs.includes(ip);
  }

  addresses(): string[] {
    return [...this.hostAddrs];
  }

  /** The calls whose program is `prog` (after nsenter's options, for nsenter). */
  of(prog: string): RecordedCall[] {
    return this.calls.filter((c) => c.argv[0] === prog);
  }
}
