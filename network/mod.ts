// Bridge networks for containers, beside the runtime as CNI's bridge + host-local + portmap
// plugins are beside runc: `Networks` is the library (create/delete/list/show/prune), and
// `networkExtension` attaches a container at create (address in `prepare`, veth, routes and
// port rules in `created`) and detaches it at delete. Every ip/iptables call goes through a
// `Runner` (runner.ts), so the logic is unit-tested with a fake.
import type { CreateContext, Extension } from "../runtime/container.ts";
import { MS } from "../runtime/consts.ts";
import { CapsuleError } from "../runtime/errors.ts";
import { ID_PATTERN, validateId } from "../runtime/ids.ts";
import type { MountOp } from "../runtime/plan.ts";
import { type ContainerRecord, exists } from "../runtime/state.ts";
import { hostsFile, resolvConf } from "./hosts.ts";
import {
  allocate,
  formatIp,
  formatSubnet,
  gatewayOf,
  listAllocations,
  notUnicast,
  overlaps,
  parseIp,
  parseSubnet,
  release,
  releaseFile,
  reservedRange,
  type Subnet,
} from "./ipam.ts";
import {
  containerSetup,
  containerTeardown,
  containerTeardownFrom,
  formatPort,
  hash16,
  hash8,
  macOf,
  networkSetup,
  networkTeardown,
  parsePorts,
  parseSave,
  type PortMapping,
  type PortRequest,
  vethName,
} from "./rules.ts";
import { conflicts, ephemeralRange, type HostSocket } from "./hostports.ts";
import { type BridgeInfo, type LinkInfo, type Runner, shownLink, SystemRunner } from "./runner.ts";
import {
  DEFAULT_NETWORK,
  NETWORK_NAME,
  type NetworkRecord,
  NetworkStore,
  validateNetworkName,
} from "./store.ts";

export { DEFAULT_NETWORK, type NetworkRecord, validateNetworkName } from "./store.ts";
export { type BridgeInfo, type LinkInfo, type Runner, SystemRunner } from "./runner.ts";

/**
 * A bridge is a host-global object, leases and published ports are per --root: exactly one
 * --root has a network's bridge up and hands out its addresses. That root is named in the
 * bridge's own alias (`ip link set dev BR alias capsule-root:/run/capsule`), which lives and
 * dies with the bridge (a reboot, a bridge deleted by hand, a private network namespace ending
 * clear it). A root whose path is too long for an alias (255 bytes) is named by a hash of it.
 */
export const OWNER_ALIAS_PREFIX = "capsule-root:";
const OWNER_HASH_PREFIX = "capsule-root#";

/** Subnets tried, in order, for the default network: the first no route or network overlaps. */
export const DEFAULT_SUBNETS = [
  "172.30.0.0/16",
  "172.31.0.0/16",
  ...Array.from({ length: 12 }, (_, i) => `10.${88 + i}.0.0/16`),
  ...Array.from({ length: 16 }, (_, i) => `192.168.${200 + i}.0/24`),
];

/** What the network layer keeps with a container (`ext.network` of its state). */
export interface Endpoint {
  /**
   * Merged into `capsule state` (and the IP column of `capsule list`); `ports` as
   * "0.0.0.0:32768->80/tcp", the host port chosen for `-p 80` included.
   */
  summary: { ip: string; network: string; ports?: string[] };
  network: string;
  ip: string;
  prefix: number;
  gateway: string;
  bridge: string;
  /** Host end of the veth pair; the container's end is eth0. */
  veth: string;
  ports: PortMapping[];
  /** Milliseconds spent by prepare and created (the network part of create). */
  timing?: { prepare: number; created: number };
}

/**
 * What the network layer keeps with a stopped image container once it gave back its address
 * and published ports (`stopped`: docker's stop semantics); `image start` takes new ones.
 */
export interface ReleasedEndpoint {
  /** Merged into `capsule state`: the network it is on, without an address. */
  summary: { network: string };
  network: string;
  /** When they were given back, ISO 8601 UTC. */
  released: string;
}

export interface NetworkOptionsInput {
  name?: string;
  ports?: string[];
  links?: string[];
}

/** A network and what is attached to it, as `capsule network show` prints it. */
export interface NetworkInfo extends NetworkRecord {
  /** Containers holding an address in it: id and IPv4 address (stale allocations dropped). */
  containers: { id: string; ip: string }[];
}

/**
 * What `network list` shows of a network: "up" (bridge present), "down" (bridge missing, as
 * after a reboot: made again when a container joins), "deleting" (a delete was interrupted:
 * `network delete NAME` or `network prune` finishes it), "conflict" (an interface capsule did
 * not make has the bridge's name: containers cannot join until it is removed or renamed, or
 * the network deleted; capsule leaves it alone).
 */
export type NetworkStatus = "up" | "down" | "deleting" | "conflict";

/**
 * Whose the interface named as a network's bridge is: none there, this root's bridge, another
 * --root's (a bridge with capsule's alias naming another root), or foreign (anything else: not
 * a bridge, or a bridge without capsule's alias; never taken over, changed or deleted).
 */
type Holder = "none" | "mine" | "capsule" | "foreign";

/** A read of the interface named as a bridge (Runner.link): what it found, or its error. */
interface LinkRead {
  link?: LinkInfo;
  error?: unknown;
}

/** What a container's own /etc/hosts is made from (kept as hosts.json in its state dir). */
interface HostsInputFile {
  ip: string;
  names: string[];
  links: { alias: string; id: string; ip: string }[];
}

/** A host name that may go into /etc/hosts (no spaces, no line breaks). */
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,252})$/;

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const ALIAS = /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62})$/;

export class Networks {
  readonly store: NetworkStore;
  readonly runner: Runner;

  /**
   * `root`: run-time state (--root: leases, published ports); `store`: where definitions are
   * kept (--store: they outlive a reboot); without it they live under `root` too.
   */
  constructor(readonly root: string, runner: Runner = new SystemRunner(), store?: string) {
    this.store = new NetworkStore(root, store);
    this.runner = runner;
  }

  /** A container that no longer exists (its state dir is gone) holds nothing. */
  #stale = (_ip: string, owner: string): boolean =>
    ID_PATTERN.test(owner) && !exists(`${this.root}/${owner}`);

  #alias?: string;
  /** This root's mark on the bridges it has up: `capsule-root:` and its absolute path. */
  get ownerAlias(): string {
    if (this.#alias) return this.#alias;
    let path = this.root;
    try {
      path = Deno.realPathSync(this.root);
    } catch { /* not made yet: as given */ }
    const alias = OWNER_ALIAS_PREFIX + path;
    this.#alias = new TextEncoder().encode(alias).length <= 255 && !/[\n\0]/.test(alias)
      ? alias
      : OWNER_HASH_PREFIX + hash16(path);
    return this.#alias;
  }

  /** Sets the bridge's alias (`ip link set dev BR alias A`; "" clears it). */
  async #setAlias(n: NetworkRecord, alias: string): Promise<void> {
    await this.#run(
      ["ip", "link", "set", "dev", n.bridge, "alias", alias],
      undefined,
      `Cannot mark the bridge "${n.bridge}" of network "${n.name}"`,
    );
  }

  async #bridge(n: NetworkRecord): Promise<BridgeInfo | undefined> {
    try {
      return await this.runner.bridge(n.bridge);
    } catch (e) {
      throw new CapsuleError(
        `Cannot read the bridge "${n.bridge}" of network "${n.name}": ${(e as Error).message}`,
      );
    }
  }

  /** The interface named as network `n`'s bridge (kind and alias), undefined if none. */
  async #readLink(n: NetworkRecord): Promise<LinkInfo | undefined> {
    try {
      return await this.runner.link(n.bridge);
    } catch (e) {
      throw new CapsuleError(
        `Cannot read the bridge "${n.bridge}" of network "${n.name}": ${(e as Error).message}`,
      );
    }
  }

  /**
   * Whose `link` (the interface named as a network's bridge) is: capsule's bridges are
   * bridges whose alias capsule set (OWNER_ALIAS_PREFIX or OWNER_HASH_PREFIX and a root).
   */
  #holder(link: LinkInfo | undefined): Holder {
    if (!link) return "none";
    if (link.kind !== "bridge") return "foreign";
    if (link.alias === this.ownerAlias) return "mine";
    return link.alias.startsWith(OWNER_ALIAS_PREFIX) || link.alias.startsWith(OWNER_HASH_PREFIX)
      ? "capsule"
      : "foreign";
  }

  /** Whose the interface named as network `n`'s bridge is now (#holder). */
  async #holderOf(n: NetworkRecord): Promise<Holder> {
    return this.runner.links().has(n.bridge) ? this.#holder(await this.#readLink(n)) : "none";
  }

  /**
   * The CapsuleError for network `n` whose bridge's name an interface capsule did not make has
   * (`link`): what it is, that capsule leaves it alone, and what to do.
   */
  #foreign(n: NetworkRecord, link: LinkInfo | undefined): CapsuleError {
    const what = link?.kind === "bridge"
      ? link.alias
        ? `a bridge with the alias ${JSON.stringify(link.alias)}`
        : "a bridge without capsule's alias"
      : link?.kind
      ? `a ${link.kind} interface`
      : "an interface";
    const b = n.bridge;
    return new CapsuleError(
      `Cannot use network "${n.name}": the host's interface "${b}" has the name of its bridge ` +
        `but is not a bridge capsule made (${what}); capsule leaves it alone. Remove or rename ` +
        `that interface if it is not needed ("ip link del ${b}", "ip link set dev ${b} name ` +
        `NEWNAME"), or delete the network ("capsule network rm ${n.name}": the interface ` +
        `stays) and create it again (its bridge then gets another name)`,
    );
  }

  /**
   * Removes network `n`'s own firewall rules (its chains; the shared ones stay): they name its
   * bridge, and an interface capsule did not make has that name now. #setup adds them again
   * when capsule makes the bridge again.
   */
  async #dropRules(n: NetworkRecord): Promise<void> {
    const text = networkTeardown(n.name, await this.#save(), false);
    if (text) await this.#restore(text, `Cannot remove the firewall rules of network "${n.name}"`);
  }

  /**
   * Makes sure this --root may use network `n`'s bridge (attach, delete): it has it up (the
   * bridge's alias names it), or the bridge is missing (brought up now, marked as this root's,
   * unless `bringUp` is false), or the root its alias names may be taken over: that root has no
   * container holding an address on the network (no state dir of a lease's owner under it: it
   * was removed, or its containers deleted or stopped) and no interface other than this root's
   * containers' veths is enslaved to the bridge (a live endpoint of another root, of a root
   * whose state was removed by hand, or one made by hand). Otherwise throws a CapsuleError
   * naming the network, the root that has it up and what to do. An interface of the bridge's
   * name that capsule did not make (not a bridge, or a bridge without capsule's alias: made by
   * hand, by another program, by an older capsule) is never taken over: #foreign's
   * CapsuleError, after the network's own rules, which name it, are removed.
   *
   * Racing an attach under the owning root without a lock: that one reserves its address, then
   * reads the alias; this one sets the alias, then looks for addresses: one of the two sees the
   * other (the alias is put back and this one refuses, or that one refuses).
   */
  async #own(n: NetworkRecord, opts: { bringUp: boolean; locked: boolean }): Promise<void> {
    const mine = this.ownerAlias;
    if (!opts.locked) {
      if ((await this.#holderOf(n)) === "mine") return; // the common case: no lock
      return await this.store.withLock(() => this.#own(n, { ...opts, locked: true }));
    }
    const link = this.runner.links().has(n.bridge) ? await this.#readLink(n) : undefined;
    const holder = this.#holder(link);
    if (holder === "none") {
      if (opts.bringUp) await this.#setup(n);
      return;
    }
    if (holder === "mine") return;
    if (holder === "foreign") {
      await this.#dropRules(n).catch(() => {});
      throw this.#foreign(n, link);
    }
    await this.#setAlias(n, mine);
    try {
      await this.#refuseInUse(n, link!.alias);
    } catch (e) {
      await this.#setAlias(n, link!.alias).catch(() => {});
      throw e;
    }
    if (opts.bringUp) await this.#setup(n); // its rules, if someone flushed them
  }

  /**
   * Whether this --root may use network `name`'s bridge now (see #own), changing nothing: a
   * CapsuleError as #own's when another root has it up and in use, or an interface capsule
   * did not make has its name. `image start` asks first, so that a refused start leaves the
   * stopped container as it was.
   */
  async checkOwner(name?: string): Promise<void> {
    const want = name === undefined || name === "default" ? DEFAULT_NETWORK : name;
    const n = this.store.read(validateNetworkName(want));
    if (!n || !this.runner.links().has(n.bridge)) return; // made (or refused) by the create
    const link = await this.#readLink(n);
    const holder = this.#holder(link);
    if (holder === "foreign") throw this.#foreign(n, link);
    if (holder === "capsule") await this.#refuseInUse(n, link!.alias);
  }

  /**
   * Throws #own's CapsuleError when the root that the capsule alias `alias` names still uses
   * network `n`'s bridge: a container of that root holding an address on it, or an interface
   * enslaved to it other than this root's containers' veths.
   */
  async #refuseInUse(n: NetworkRecord, alias: string): Promise<void> {
    const other = alias.startsWith(OWNER_ALIAS_PREFIX)
      ? alias.slice(OWNER_ALIAS_PREFIX.length)
      : undefined;
    const users = other === undefined ? [] : liveLeases(other, n.name);
    const ours = new Set(this.attached(n.name).map((a) => vethName(a.id)));
    const foreign = ((await this.#bridge(n))?.ports ?? []).filter((p) => !ours.has(p));
    if (!users.length && !foreign.length) return;
    const who = other !== undefined
      ? `--root ${other}`
      : `another --root (its path is too long to name; alias ${alias})`;
    const uses = users.length
      ? `containers ${users.map((u) => `"${u}"`).join(", ")} there use it`
      : `interfaces ${foreign.map((f) => `"${f}"`).join(", ")} are enslaved to its bridge ` +
        `"${n.bridge}"`;
    const todo = other !== undefined && !exists(other)
      ? `that --root no longer exists, but interfaces of its containers are still on the ` +
        `bridge (their processes may still run): stop those, or remove the interfaces ` +
        `("ip link del IF")`
      : other !== undefined
      ? `use "capsule --root ${other} ..." for this network, or stop and delete its ` +
        `containers there first (then this --root takes the bridge over)`
      : `remove those interfaces from the bridge first ("ip link set dev IF nomaster")`;
    throw new CapsuleError(`Network "${n.name}" is up under ${who}: ${uses}; ${todo}`);
  }

  async #run(argv: string[], stdin: string | undefined, what: string): Promise<string> {
    const r = await this.runner.run(argv, stdin);
    if (r.code !== 0) {
      throw new CapsuleError(
        `${what}: ${argv[0]} failed: ${r.stderr.trim() || `status ${r.code}`}`,
      );
    }
    return r.stdout;
  }

  async #save(): Promise<ReturnType<typeof parseSave>> {
    return parseSave(await this.#run(["iptables-save"], undefined, "Cannot read the firewall"));
  }

  #restore(text: string, what: string): Promise<string> {
    return this.#run(["iptables-restore", "-w", "5", "--noflush"], text, what);
  }

  /**
   * Subnets of host routes (not the default route, nor the route of a network's subnet on its
   * bridge: another interface of that name may have other routes, which count).
   */
  #hostRoutes(): { subnet: Subnet; dev: string }[] {
    const ours = new Set(this.store.list().map((n) => `${n.subnet} ${n.bridge}`));
    return this.runner.routes().filter((r) =>
      r.prefix > 0 && !ours.has(`${r.dest}/${r.prefix} ${r.dev}`)
    ).map((r) => ({ subnet: { base: parseIp(r.dest)!, prefix: r.prefix }, dev: r.dev }));
  }

  #overlap(s: Subnet): string | undefined {
    for (const n of this.store.list()) {
      if (overlaps(s, parseSubnet(n.subnet))) return `network "${n.name}" (${n.subnet})`;
    }
    for (const r of this.#hostRoutes()) {
      if (overlaps(s, r.subnet)) return `the host route ${formatSubnet(r.subnet)} on ${r.dev}`;
    }
    return undefined;
  }

  #bridgeName(name: string): string {
    const links = this.runner.links();
    const taken = new Set([...this.store.list().map((n) => n.bridge), ...links]);
    if (IFNAME.test(name) && name !== "." && name !== ".." && !taken.has(name)) return name;
    for (let i = 0;; i++) {
      const b = `capbr${hash8(i ? `${name}#${i}` : name)}`;
      if (!taken.has(b)) return b;
    }
  }

  /**
   * Creates a bridge network: its record, the bridge with the gateway address, NAT rules.
   * Without `subnet`, the first of DEFAULT_SUBNETS that no network or host route overlaps (as
   * docker takes one from its address pools). Throws CapsuleError for a bad name, driver,
   * subnet or gateway (a gateway without a subnet), an existing name, an overlapping subnet, a
   * subnet in a reserved range (RESERVED_RANGES: loopback, link-local, multicast...).
   */
  create(
    name: string,
    opts: { subnet?: string; gateway?: string; driver?: string },
  ): Promise<NetworkRecord> {
    validateNetworkName(name);
    if ((opts.driver ?? "bridge") !== "bridge") {
      throw new CapsuleError(`Invalid driver "${opts.driver}": only "bridge" is supported`);
    }
    if (opts.subnet === undefined) {
      if (opts.gateway !== undefined) {
        throw new CapsuleError(
          `Cannot create network "${name}": --gateway needs --subnet (the subnet it is in)`,
        );
      }
      return this.store.withLock(() => {
        const free = DEFAULT_SUBNETS.map(parseSubnet).find((s) => !this.#overlap(s));
        if (!free) {
          throw new CapsuleError(
            `Cannot create network "${name}": every candidate subnet overlaps a route or ` +
              `network; give one with --subnet CIDR`,
          );
        }
        return this.#createLocked(name, free, gatewayOf(free));
      });
    }
    const subnet = parseSubnet(opts.subnet);
    const bad = reservedRange(subnet);
    if (bad) {
      throw new CapsuleError(
        `Cannot create network "${name}": subnet ${formatSubnet(subnet)} is in ${bad.range} ` +
          `(${bad.what}), which a bridge network cannot use; choose another subnet`,
      );
    }
    const gateway = gatewayOf(subnet, opts.gateway);
    return this.store.withLock(() => this.#createLocked(name, subnet, gateway));
  }

  async #createLocked(name: string, subnet: Subnet, gateway: number): Promise<NetworkRecord> {
    // A network of this name whose delete was interrupted: finish that first.
    if (!this.store.read(name) && this.store.readDeleting(name)) await this.#deleteLocked(name);
    if (this.store.read(name)) {
      throw new CapsuleError(
        `Network "${name}" already exists (see "capsule network show ${name}")`,
      );
    }
    const clash = this.#overlap(subnet);
    if (clash) {
      throw new CapsuleError(
        `Cannot create network "${name}": subnet ${formatSubnet(subnet)} overlaps ${clash}; ` +
          `choose another subnet`,
      );
    }
    const rec: NetworkRecord = {
      name,
      driver: "bridge",
      subnet: formatSubnet(subnet),
      gateway: formatIp(gateway),
      bridge: this.#bridgeName(name),
      created: new Date().toISOString(),
    };
    this.store.write(rec);
    try {
      await this.#setup(rec);
    } catch (e) {
      await this.#teardown(rec).catch(() => {});
      this.store.remove(name);
      throw e;
    }
    return rec;
  }

  /**
   * Bridge (if missing), forwarding, route_localnet and the network's rules. Idempotent. An
   * interface of the bridge's name must be this root's bridge (callers took it over, #own):
   * else #foreign's CapsuleError, nothing changed. The bridge is made, then marked (its
   * alias) before anything else: a bridge without the mark is never capsule's (made, but the
   * mark failed: deleted again).
   */
  async #setup(n: NetworkRecord): Promise<void> {
    const prefix = n.subnet.split("/")[1];
    if (this.runner.links().has(n.bridge)) {
      const link = await this.#readLink(n);
      const holder = this.#holder(link);
      if (holder === "foreign") throw this.#foreign(n, link);
      if (holder === "capsule") {
        throw new CapsuleError(
          `Network "${n.name}" was taken over meanwhile by another --root (its bridge ` +
            `"${n.bridge}" has the alias ${JSON.stringify(link!.alias)}); try again`,
        );
      }
    } else {
      const what = `Cannot make the bridge "${n.bridge}" of network "${n.name}"`;
      // Fails (File exists) if an interface of that name appeared meanwhile: not ours.
      await this.#run(["ip", "link", "add", "name", n.bridge, "type", "bridge"], undefined, what);
      try {
        await this.#setAlias(n, this.ownerAlias);
      } catch (e) {
        await this.runner.run(["ip", "link", "del", "dev", n.bridge]).catch(() => {});
        throw e;
      }
      await this.#run(
        ["ip", "-batch", "-"],
        `addr replace ${n.gateway}/${prefix} dev ${n.bridge}\nlink set dev ${n.bridge} up\n`,
        what,
      );
    }
    try {
      this.runner.sysctl("net/ipv4/ip_forward", "1");
      this.runner.sysctl(`net/ipv4/conf/${n.bridge}/route_localnet`, "1");
    } catch (e) {
      throw new CapsuleError(
        `Cannot enable forwarding for network "${n.name}": ${(e as Error).message}`,
      );
    }
    await this.#restore(
      networkSetup(n, await this.#save()),
      `Cannot add the firewall rules of network "${n.name}"`,
    );
  }

  /**
   * Removes the network's bridge, if this root's (an interface of that name that is not, or
   * another root's, stays as it is), and the network's rules.
   */
  async #teardown(n: NetworkRecord): Promise<void> {
    if ((await this.#holderOf(n)) === "mine") {
      await this.#run(
        ["ip", "link", "del", "dev", n.bridge],
        undefined,
        `Cannot remove bridge ${n.bridge}`,
      );
    }
    const others = this.store.list().filter((o) => o.name !== n.name);
    const text = networkTeardown(n.name, await this.#save(), others.length === 0);
    if (text) await this.#restore(text, `Cannot remove the firewall rules of network "${n.name}"`);
  }

  /** The containers holding an address on the network (leftovers of crashes are freed). */
  attached(name: string): { id: string; ip: string }[] {
    const dir = this.store.ipsDir(name);
    const out: { id: string; ip: string }[] = [];
    for (const a of listAllocations(dir)) {
      if (this.#stale(a.ip, a.owner)) release(dir, a.ip, a.owner);
      else out.push({ id: a.owner, ip: a.ip });
    }
    return out;
  }

  /**
   * Deletes a network; refused while containers are attached. The record is first renamed
   * aside (`NAME.json.deleting`): a container joining meanwhile sees the network gone, and a
   * delete killed midway leaves a record that `list` shows and `delete`/`prune` finish.
   */
  delete(name: string): Promise<void> {
    validateNetworkName(name);
    return this.store.withLock(() => this.#deleteLocked(name));
  }

  async #deleteLocked(name: string): Promise<void> {
    const file = this.store.file(name), aside = this.store.deletingFile(name);
    const rec = this.store.read(name) ?? this.store.readDeleting(name);
    // Another root's bridge: taken over if unused, else refused. One capsule did not make is
    // left alone (#teardown deletes only this root's bridge): the network goes without it.
    if (rec && (await this.#holderOf(rec)) === "capsule") {
      await this.#own(rec, { bringUp: false, locked: true });
    }
    let n = this.store.read(name);
    if (n) Deno.renameSync(file, aside);
    else n = this.store.readDeleting(name) ?? this.store.load(name); // load throws: unknown
    const users = this.attached(name);
    if (users.length) {
      Deno.renameSync(aside, file);
      throw new CapsuleError(
        `Cannot delete network "${name}": containers ${
          users.map((u) => `"${u.id}"`).join(", ")
        } are attached; delete them first`,
      );
    }
    try {
      await this.#teardown(n);
    } catch (e) {
      throw new CapsuleError(
        `${(e as Error).message}; network "${name}" is left half-deleted: run ` +
          `"capsule network delete ${name}" again to finish`,
      );
    }
    this.store.remove(name);
  }

  /** A live network's status: up, down, or conflict (see NetworkStatus). */
  async #status(n: NetworkRecord): Promise<NetworkStatus> {
    const holder = await this.#holderOf(n);
    return holder === "none" ? "down" : holder === "foreign" ? "conflict" : "up";
  }

  /** Every network (half-deleted ones included) with its number of containers and status. */
  async list(): Promise<(NetworkRecord & { containers: number; status: NetworkStatus })[]> {
    const out: (NetworkRecord & { containers: number; status: NetworkStatus })[] = [];
    for (const n of this.store.list({ deleting: true })) {
      const { deleting, ...rec } = n;
      const status = deleting ? "deleting" : await this.#status(rec);
      out.push({ ...rec, containers: this.attached(n.name).length, status });
    }
    return out;
  }

  async show(name: string): Promise<NetworkInfo & { status: NetworkStatus }> {
    validateNetworkName(name);
    const live = this.store.read(name);
    const n = live ?? this.store.readDeleting(name) ?? this.store.load(name);
    const status = !live ? "deleting" : await this.#status(n);
    return { ...n, status, containers: this.attached(name) };
  }

  /** Deletes every network without containers, and finishes half-deleted ones; their names. */
  async prune(): Promise<string[]> {
    const out: string[] = [];
    for (const n of this.store.list({ deleting: true })) {
      if (this.attached(n.name).length) continue;
      try {
        await this.delete(n.name);
        out.push(n.name);
      } catch (e) {
        if (
          !(e instanceof CapsuleError) || !/are attached|does not exist|is up under/.test(e.message)
        ) {
          throw e;
        }
      }
    }
    return out;
  }

  /** The network a container joins: by name, or the default one (made on first use). */
  async resolve(name?: string): Promise<NetworkRecord> {
    const want = name === undefined || name === "default" ? DEFAULT_NETWORK : name;
    validateNetworkName(want);
    const n = this.store.read(want);
    if (n) return n;
    if (want !== DEFAULT_NETWORK) this.store.load(want); // throws: unknown network
    return await this.store.withLock(async () => {
      const again = this.store.read(want);
      if (again) return again;
      const free = DEFAULT_SUBNETS.map(parseSubnet).find((s) => !this.#overlap(s));
      if (!free) {
        throw new CapsuleError(
          `Cannot create the default network: every candidate subnet overlaps a route or ` +
            `network; create one with "capsule network create NAME --subnet CIDR" and use --network`,
        );
      }
      return await this.#createLocked(want, free, gatewayOf(free));
    });
  }

  /**
   * Makes sure the network's bridge is up and this root's before anything is put on it: made
   * again when missing (after a reboot, with its rules), taken over from another root that
   * does not use it. Throws #own's CapsuleError when another root uses it, or an interface
   * capsule did not make has its name (which stays as it is).
   */
  async ensureUp(n: NetworkRecord): Promise<void> {
    await this.#ready(n);
  }

  /**
   * ensureUp, with the bridge's kind and alias read already (`read`: attach starts the read,
   * so that it runs while the container is made).
   */
  async #ready(n: NetworkRecord, read?: Promise<LinkRead>): Promise<void> {
    const r = read ? await read : undefined;
    if (r?.error) throw r.error;
    const link = r
      ? r.link
      : this.runner.links().has(n.bridge)
      ? await this.#readLink(n)
      : undefined;
    if (this.#holder(link) === "mine") return;
    await this.#own(n, { bringUp: true, locked: false });
  }

  /** Reads of bridges that attach started, by container id, for plug (#ready). */
  #reads = new Map<string, Promise<LinkRead>>();

  // ---- containers ----

  /** Address, published ports, /etc/hosts and resolv.conf of a container about to be created. */
  async attach(
    ctx: Omit<CreateContext, "pid" | "record"> & { save?(data: unknown): void },
    o: NetworkOptionsInput,
  ): Promise<{ data: Endpoint; mounts: MountOp[] } | undefined> {
    const t0 = performance.now();
    const ns = (ctx.spec.linux?.namespaces ?? []).find((n) => n.type === "network");
    const label = o.name ?? DEFAULT_NETWORK;
    if (!ns) {
      throw new CapsuleError(
        `Cannot attach container "${ctx.id}" to network "${label}": its config.json has no ` +
          `network namespace (it shares the host's network); add {"type": "network"} to ` +
          `linux.namespaces, or drop --network/-p/--link`,
      );
    }
    if (ns.path) return undefined; // joins a namespace someone else configured (podman)
    const wanted = (o.ports ?? []).flatMap(parsePorts);
    const seen = new Set<string>();
    for (const p of wanted) {
      if (p.hostPort === undefined) continue;
      const k = `${p.proto}-${p.hostPort}`;
      if (seen.has(k)) {
        throw new CapsuleError(
          `Invalid port mapping: host port ${p.hostPort}/${p.proto} is given twice`,
        );
      }
      seen.add(k);
    }
    // A host address the host lacks: nothing would ever receive (docker: "cannot assign
    // requested address"). Refused before anything is made.
    const checked = new Set<string>();
    for (const p of wanted) {
      if (p.hostIp === undefined || p.hostIp === "0.0.0.0" || checked.has(p.hostIp)) continue;
      // No host has a multicast or reserved address as its own (a bind to one works).
      if (notUnicast(parseIp(p.hostIp)!) || !this.runner.localAddress(p.hostIp)) {
        const has = this.runner.addresses();
        throw new CapsuleError(
          `Cannot publish port ${p.containerPort}/${p.proto} of container "${ctx.id}" on ` +
            `${p.hostIp}: ${p.hostIp} is not an address of this host (cannot assign ` +
            `requested address); it has ${has.length ? has.join(", ") : "none that /proc shows"}:` +
            ` give one of those, or 0.0.0.0 (every address)`,
        );
      }
      checked.add(p.hostIp);
    }
    const links = (o.links ?? []).map((l) => this.#link(l));
    const n = await this.resolve(o.name);
    const subnet = parseSubnet(n.subnet);
    const bad = reservedRange(subnet);
    if (bad) { // made by an older capsule, which took such subnets
      throw new CapsuleError(
        `Cannot attach container "${ctx.id}" to network "${n.name}": its subnet ${n.subnet} is ` +
          `in ${bad.range} (${bad.what}), which a bridge network cannot use; delete the ` +
          `network and create it with another subnet`,
      );
    }
    const ipsDir = this.store.ipsDir(n.name);
    const ip = allocate(
      { dir: ipsDir, subnet, gateway: parseIp(n.gateway)! },
      ctx.id,
      this.#stale,
    );
    const veth = vethName(ctx.id);
    const endpoint = (ps: PortMapping[]): Endpoint => ({
      summary: {
        ip,
        network: n.name,
        ...(ps.length ? { ports: ps.map(formatPort) } : {}),
      },
      network: n.name,
      ip,
      prefix: subnet.prefix,
      gateway: n.gateway,
      bridge: n.bridge,
      veth,
      ports: ps,
    });
    const ports: PortMapping[] = [];
    try {
      // A bridge missing (after a reboot): brought up now, marked as this root's. One that is
      // there: whose it is (this root's, another root's, or an interface capsule did not make)
      // is read now, while the runtime makes the container, and `plug` waits for it before it
      // puts anything on the bridge; the address is taken first, as #own needs.
      if (!this.runner.links().has(n.bridge)) {
        await this.#own(n, { bringUp: true, locked: false });
      } else {
        this.#reads.set(
          ctx.id,
          this.#readLink(n).then((link) => ({ link }), (error) => ({ error })),
        );
      }
      // In the state at once: a crash from here on is undone by delete -f.
      ctx.save?.(endpoint([]));
      if (!this.store.read(n.name)) {
        throw new CapsuleError(
          `Network "${n.name}" was deleted while container "${ctx.id}" joined it`,
        );
      }
      if (wanted.length) {
        Deno.mkdirSync(this.store.portsDir, { recursive: true });
        let udp: HostSocket[] | undefined; // read once, when a UDP port is asked for
        const busy = (p: PortRequest, port: number) =>
          p.proto === "tcp"
            ? this.runner.tcpInUse(port, p.hostIp)
            : (udp ??= this.runner.sockets("udp")).some((s) => conflicts(s, port, p.hostIp));
        for (const p of wanted) ports.push(this.#reservePort(ctx.id, p, busy));
        // A crash before this leaves reservations holding the id: freed once the container
        // is gone (stale), or by releaseAllFor(id).
        ctx.save?.(endpoint(ports));
      }
      const hostname = ctx.spec.hostname;
      const own: HostsInputFile = {
        ip,
        names: [hostname ?? "", ctx.id].filter((x) => HOSTNAME.test(x)),
        links,
      };
      Deno.writeTextFileSync(`${ctx.dir}/hosts.json`, JSON.stringify(own));
      Deno.writeTextFileSync(`${ctx.dir}/hosts`, hostsFile(own));
      if (n.name !== DEFAULT_NETWORK) this.#refreshHosts(n.name);
      let hostResolv: string | undefined;
      try {
        hostResolv = Deno.readTextFileSync("/etc/resolv.conf");
      } catch { /* none */ }
      Deno.writeTextFileSync(`${ctx.dir}/resolv.conf`, resolvConf(hostResolv));
    } catch (e) {
      this.#reads.delete(ctx.id);
      for (const p of ports) {
        releaseFile(this.store.portsDir, `${p.proto}-${p.hostPort}`, ctx.id);
      }
      release(ipsDir, ip, ctx.id);
      throw e;
    }
    const ro = (name: string): MountOp => ({
      destination: `/etc/${name}`,
      source: `${ctx.dir}/${name}`,
      type: "bind",
      flags: MS.BIND | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC,
      propagation: [],
      data: "",
      bind: true,
    });
    const data: Endpoint = {
      ...endpoint(ports),
      timing: { prepare: Math.round(performance.now() - t0), created: 0 },
    };
    return { data, mounts: [ro("hosts"), ro("resolv.conf")] };
  }

  /**
   * Rewrites the /etc/hosts of every container on a user network (docker's user-defined
   * networks: members resolve each other by id; the default network does not, as docker's
   * default bridge does not). Each file is its owner's names and links, then one line per other
   * member. Files are rewritten in place (a bind mount follows the inode, not the name), under
   * a per-network flock so that concurrent creates and deletes do not interleave.
   */
  #refreshHosts(network: string): void {
    const ipsDir = this.store.ipsDir(network);
    let lock: Deno.FsFile;
    try {
      lock = Deno.openSync(`${ipsDir}/../hosts.lock`, { create: true, write: true });
    } catch {
      return; // the network's pool is gone: nobody left to tell
    }
    try {
      lock.lockSync(true);
      const members: (HostsInputFile & { id: string })[] = [];
      for (const a of listAllocations(ipsDir)) {
        if (!ID_PATTERN.test(a.owner)) continue;
        try {
          const h = JSON.parse(Deno.readTextFileSync(`${this.root}/${a.owner}/hosts.json`));
          // The address is the allocation's, not what the file says.
          members.push({
            id: a.owner,
            ip: a.ip,
            names: (Array.isArray(h?.names) ? h.names : []).filter((x: unknown) =>
              typeof x === "string" && HOSTNAME.test(x)
            ),
            links: Array.isArray(h?.links) ? h.links : [],
          });
        } catch { /* being created (refreshes when its file exists) or being deleted */ }
      }
      for (const m of members) {
        const peers = members.filter((o) => o.id !== m.id).map((o) => ({ ip: o.ip, name: o.id }));
        let f: Deno.FsFile;
        try {
          f = Deno.openSync(`${this.root}/${m.id}/hosts`, { write: true, truncate: true });
        } catch {
          continue; // its state dir is going away
        }
        try {
          const net = { name: network, id: m.id };
          f.writeSync(new TextEncoder().encode(hostsFile({ ...m, peers, network: net })));
        } finally {
          f.close();
        }
      }
    } finally {
      lock.close();
    }
  }

  #link(spec: string): { alias: string; id: string; ip: string } {
    const i = spec.indexOf(":");
    const id = i < 0 ? spec : spec.slice(0, i);
    const alias = i < 0 ? spec : spec.slice(i + 1);
    validateId(id, `container id in --link "${spec}"`);
    if (!ALIAS.test(alias)) {
      throw new CapsuleError(
        `Invalid --link "${spec}": alias "${alias}" must be a host name (letters, digits, '_', ` +
          `'.', '-')`,
      );
    }
    let ep: Endpoint | undefined;
    try {
      const rec = JSON.parse(Deno.readTextFileSync(`${this.root}/${id}/state.json`));
      ep = rec?.ext?.network;
    } catch {
      throw new CapsuleError(`Invalid --link "${spec}": container "${id}" does not exist`);
    }
    if (ep && "released" in ep) {
      throw new CapsuleError(
        `Invalid --link "${spec}": container "${id}" is stopped (it holds no address while ` +
          `stopped); start it first ("capsule image start ${id}")`,
      );
    }
    if (!ep?.ip) {
      throw new CapsuleError(`Invalid --link "${spec}": container "${id}" is on no network`);
    }
    return { alias, id, ip: ep.ip };
  }

  /**
   * Claims a host port for `id` (one file per port, O_EXCL): the given one, refused when a host
   * process already listens on it (the DNAT would take its traffic) or another container
   * publishes it; or a free one of the request's range (the ephemeral range by default).
   */
  #reservePort(
    id: string,
    p: PortRequest,
    busy: (p: PortRequest, port: number) => boolean,
  ): PortMapping {
    const done = (hostPort: number): PortMapping => ({
      hostIp: p.hostIp,
      hostPort,
      containerPort: p.containerPort,
      proto: p.proto,
    });
    if (p.hostPort !== undefined) {
      const port = p.hostPort;
      const name = this.#claimPort(id, p.proto, port, true)!;
      // The quick test may also see a client's connection from that port: the socket tables
      // (slow to read, so only now) say whether a listener holds it, and whose it is.
      const s = busy(p, port)
        ? this.runner.sockets(p.proto).find((s) => conflicts(s, port, p.hostIp))
        : undefined;
      if (s) {
        releaseFile(this.store.portsDir, name, id);
        const who = this.runner.socketOwner(s.inode) ??
          `not visible here; find it with "ss -${p.proto[0]}lnp sport = :${port}"`;
        throw new CapsuleError(
          `Cannot publish port ${port}/${p.proto} for container "${id}": a host process ` +
            `listens on ${s.ip}:${port} (${who}); stop it or choose another host port`,
        );
      }
      return done(port);
    }
    const [lo, hi] = p.hostRange ?? ephemeralRange();
    const span = hi - lo + 1;
    const start = Math.floor(Math.random() * span);
    for (let i = 0; i < span; i++) {
      const port = lo + (start + i) % span;
      if (busy(p, port)) continue;
      if (this.#claimPort(id, p.proto, port, false)) return done(port);
    }
    throw new CapsuleError(
      `Cannot publish container port ${p.containerPort}/${p.proto} of "${id}": no free host ` +
        `port in ${lo}-${hi}; delete containers that publish ports or give a host port`,
    );
  }

  /** The container holding a host port's reservation, "" if none (or one gone: stale). */
  #portHolder(proto: string, hostPort: number): string {
    let owner = "";
    try {
      owner = Deno.readTextFileSync(`${this.store.portsDir}/${proto}-${hostPort}`).trim();
    } catch { /* not reserved */ }
    return owner && !this.#stale("", owner) ? owner : "";
  }

  /**
   * Refuses, before anything is made or changed, a fixed host port of `o` that another
   * container publishes (the message `attach` gives); for `image start`, which asks before it
   * deletes the stopped run's state. Throws CapsuleError; invalid -p values as parsePorts.
   */
  checkPorts(id: string, o: NetworkOptionsInput): void {
    for (const p of (o.ports ?? []).flatMap(parsePorts)) {
      if (p.hostPort === undefined) continue;
      const owner = this.#portHolder(p.proto, p.hostPort);
      if (owner && owner !== id) {
        throw new CapsuleError(
          `Cannot publish port ${p.hostPort}/${p.proto} for container "${id}": container ` +
            `"${owner}" already publishes it; stop or remove "${owner}", or choose another ` +
            `host port`,
        );
      }
    }
  }

  /**
   * Takes the reservation file of a host port; returns its name. Taken by another container:
   * throws with `strict`, else returns undefined.
   */
  #claimPort(id: string, proto: string, hostPort: number, strict: boolean): string | undefined {
    const name = `${proto}-${hostPort}`;
    const path = `${this.store.portsDir}/${name}`;
    for (let attempt = 0;; attempt++) {
      try {
        Deno.writeTextFileSync(path, id, { createNew: true });
        return name;
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
      let owner = "";
      try {
        owner = Deno.readTextFileSync(path).trim();
      } catch { /* freed meanwhile */ }
      if (attempt < 3 && (owner === "" || this.#stale("", owner))) {
        if (owner) releaseFile(this.store.portsDir, name, owner);
        continue;
      }
      if (!strict) return undefined;
      throw new CapsuleError(
        `Cannot publish port ${hostPort}/${proto} for container "${id}": container ` +
          `"${owner}" already publishes it; choose another host port`,
      );
    }
  }

  /**
   * Deletes the conntrack entries of published UDP ports (by original destination port), so
   * that a client's flow made before a publish or unpublish is not kept on its old target
   * for the UDP timeout (120 s). TCP flows end with their connection. Needs `conntrack`
   * (Debian package conntrack); without it, throws a CapsuleError saying so.
   */
  async #flushUdp(ports: PortMapping[]): Promise<void> {
    for (const p of ports) {
      if (p.proto !== "udp") continue;
      const r = await this.runner.run([
        "conntrack",
        "-D",
        "-p",
        "udp",
        "--orig-port-dst",
        String(p.hostPort),
      ]);
      // Exit 1 with "0 flow entries have been deleted" is the tool's "nothing to do".
      if (r.code === 0 || /flow entries have been deleted/.test(r.stderr)) continue;
      throw new CapsuleError(
        `Cannot flush the UDP flows of port ${p.hostPort}: conntrack failed: ${
          r.stderr.trim() || `status ${r.code}`
        }${r.code === 127 ? " (apt-get install conntrack)" : ""}`,
      );
    }
  }

  /**
   * Veth into the container's namespace, eth0 with its address and a MAC derived from it
   * (02:42 + the address, docker's scheme: a container that gets a freed address also gets its
   * MAC, so the neighbours' ARP entries stay right), lo, default route, DNAT of its ports.
   */
  async plug(pid: number, id: string, d: Endpoint): Promise<Endpoint> {
    const t0 = performance.now();
    const n = this.store.load(d.network);
    const read = this.#reads.get(id);
    this.#reads.delete(id);
    // Nothing is put on a bridge before it is known to be this root's (see #own).
    await this.#ready(n, read);
    const what = `Cannot connect container "${id}" to network "${d.network}"`;
    // The bridge shown first, in the batch: a bridge that changed hands since #ready read it
    // is found (a missing one stops the batch before the veth is made).
    // Names after "name"/"dev": iproute2 takes a bare "m" for an abbreviated keyword.
    // Hairpin: with br_netfilter, a container's packets to its own published port are
    // DNATed at the bridge and must go back out of the port they came in by.
    const batch = `link show dev ${d.bridge}\n` +
      `link add name ${d.veth} master ${d.bridge} up type veth peer name eth0 ` +
      `address ${macOf(d.ip)} netns ${pid}\n` +
      `link set dev ${d.veth} type bridge_slave hairpin on\n`;
    const r = await this.runner.run(["ip", "-j", "-d", "-batch", "-"], batch);
    if (this.#holder(shownLink(r.stdout)) !== "mine") {
      // Another root's (refused: the runtime undoes the create), or one to take over; one
      // capsule did not make (refused).
      await this.#own(n, { bringUp: true, locked: false });
    }
    if (r.code !== 0) {
      throw new CapsuleError(`${what}: ip failed: ${r.stderr.trim() || `status ${r.code}`}`);
    }
    await this.#run(
      ["nsenter", `--net=/proc/${pid}/ns/net`, "ip", "-batch", "-"],
      `link set lo up\naddr add ${d.ip}/${d.prefix} dev eth0\nlink set eth0 up\n` +
        `route add default via ${d.gateway} dev eth0\n`,
      what,
    );
    if (d.ports.length) {
      const rules = containerSetup(id, d.ip, d.ports);
      const r = await this.runner.run(["iptables-restore", "-w", "5", "--noflush"], rules);
      if (r.code !== 0) {
        // The shared chains are gone (someone flushed the firewall): put them back, once.
        await this.#setup(n);
        await this.#restore(rules, `Cannot publish the ports of container "${id}"`);
      }
      await this.#flushUdp(d.ports);
    }
    return {
      ...d,
      timing: { prepare: d.timing?.prepare ?? 0, created: Math.round(performance.now() - t0) },
    };
  }

  /** Undoes attach and plug, whatever part of them happened; safe to repeat. */
  async unplug(id: string, d: Endpoint): Promise<void> {
    this.#reads.delete(id);
    const errors: string[] = [];
    if (d.veth && IFNAME.test(d.veth) && this.runner.links().has(d.veth)) {
      const r = await this.runner.run(["ip", "link", "del", "dev", d.veth]);
      if (r.code !== 0 && this.runner.links().has(d.veth)) errors.push(r.stderr.trim());
    }
    if (d.ports?.length) {
      const r = await this.runner.run(
        ["iptables-restore", "-w", "5", "--noflush"],
        containerTeardown(id),
      );
      if (r.code !== 0) {
        // Part of it is missing (a create that stopped halfway): remove what is there.
        try {
          const text = containerTeardownFrom(id, await this.#save());
          if (text) await this.#restore(text, "Cannot remove the port rules");
        } catch (e) {
          errors.push((e as Error).message);
        }
      }
      // A port another container publishes by now keeps its flows (they are that one's).
      const ours = d.ports.filter((p) => {
        const holder = this.#portHolder(p.proto, p.hostPort);
        return holder === "" || holder === id;
      });
      try {
        await this.#flushUdp(ours);
      } catch (e) {
        errors.push((e as Error).message);
      }
      for (const p of ours) releaseFile(this.store.portsDir, `${p.proto}-${p.hostPort}`, id);
    }
    if (d.network && d.ip) {
      try {
        if (release(this.store.ipsDir(d.network), d.ip, id) && d.network !== DEFAULT_NETWORK) {
          this.#refreshHosts(d.network);
        }
      } catch { /* invalid name in damaged data: nothing of ours */ }
    }
    if (errors.length) throw new CapsuleError(errors.join("; "));
  }

  /**
   * Removes everything of container `id` on the network side, found from the id alone (for a
   * container whose state.json is damaged or gone): its veth (named from the id), its DNAT
   * chain (named from the id), the host ports and addresses whose reservation files hold the
   * id (UDP flows of those ports flushed, the other members' /etc/hosts rewritten). Safe to
   * repeat; throws a CapsuleError listing what could not be removed, after trying it all.
   */
  async releaseAllFor(id: string): Promise<void> {
    validateId(id);
    const errors: string[] = [];
    const veth = vethName(id);
    if (this.runner.links().has(veth)) {
      const r = await this.runner.run(["ip", "link", "del", "dev", veth]);
      if (r.code !== 0 && this.runner.links().has(veth)) errors.push(r.stderr.trim());
    }
    try {
      const text = containerTeardownFrom(id, await this.#save());
      if (text) await this.#restore(text, `Cannot remove the port rules of "${id}"`);
    } catch (e) {
      errors.push((e as Error).message);
    }
    const owned = (dir: string, name: string) => {
      try {
        return Deno.readTextFileSync(`${dir}/${name}`).trim() === id;
      } catch {
        return false;
      }
    };
    const ports: PortMapping[] = [];
    try {
      for (const e of Deno.readDirSync(this.store.portsDir)) {
        const m = /^(tcp|udp)-(\d{1,5})$/.exec(e.name);
        if (m && owned(this.store.portsDir, e.name)) {
          ports.push({ proto: m[1] as "tcp" | "udp", hostPort: Number(m[2]), containerPort: 0 });
        }
      }
    } catch { /* no ports dir */ }
    try {
      await this.#flushUdp(ports);
    } catch (e) {
      errors.push((e as Error).message);
    }
    for (const p of ports) releaseFile(this.store.portsDir, `${p.proto}-${p.hostPort}`, id);
    let nets: string[] = [];
    try {
      nets = [...Deno.readDirSync(this.store.dir)].filter((e) =>
        e.isDirectory && NETWORK_NAME.test(e.name)
      ).map((e) => e.name);
    } catch { /* no networks */ }
    for (const net of nets) {
      let freed = false;
      for (const a of listAllocations(this.store.ipsDir(net))) {
        if (a.owner === id && release(this.store.ipsDir(net), a.ip, id)) freed = true;
      }
      if (freed && net !== DEFAULT_NETWORK) this.#refreshHosts(net);
    }
    if (errors.length) throw new CapsuleError(errors.join("; "));
  }
}

/**
 * Frees everything container `id` holds on the network side, from its id alone: see
 * `Networks.releaseAllFor`. `root` is --root, `store` is --store.
 */
export async function releaseAllFor(
  opts: { root: string; store?: string; runner?: Runner },
  id: string,
): Promise<void> {
  await new Networks(opts.root, opts.runner, opts.store).releaseAllFor(id);
}

/** The runtime extension: `capsule create/run --network/-p/--link`. */
export function networkExtension(
  opts: { root: string; store?: string; runner?: Runner },
): Extension & { releaseAllFor(id: string): Promise<void> } {
  let nets: Networks | undefined;
  const get = () => (nets ??= new Networks(opts.root, opts.runner, opts.store));
  return {
    name: "network",
    /** For delete -f of a container whose state is damaged: see Networks.releaseAllFor. */
    releaseAllFor: (id: string) => get().releaseAllFor(id),
    async prepare(ctx) {
      const o = ctx.options.network as NetworkOptionsInput | undefined;
      if (!o) return;
      return await get().attach(ctx, o);
    },
    async created(ctx: CreateContext) {
      const d = ctx.record.ext?.network as Endpoint | undefined;
      if (!d?.ip) return undefined;
      return await get().plug(ctx.pid, ctx.id, d);
    },
    async deleted(record: ContainerRecord, data: unknown) {
      const d = data as Endpoint | undefined;
      if (!d || typeof d !== "object") return;
      await get().unplug(record.id, d);
    },
    /**
     * Stopped (its state kept): the veth, address, port rules, port reservations and UDP
     * flows go, as on delete; the record keeps a ReleasedEndpoint, which `deleted` finds
     * nothing in. Already released (or nothing held): the data as it is.
     */
    async stopped(record: ContainerRecord, data: unknown) {
      const d = data as Endpoint | ReleasedEndpoint | undefined;
      if (!d || typeof d !== "object" || "released" in d) return data;
      await get().unplug(record.id, d);
      const network = typeof d.network === "string" ? d.network : "";
      return {
        summary: { network },
        network,
        released: new Date().toISOString(),
      } satisfies ReleasedEndpoint;
    },
    async check(id: string, options: unknown) {
      const o = options as NetworkOptionsInput | undefined;
      if (!o || typeof o !== "object") return;
      get().checkPorts(id, o);
      await get().checkOwner(o.name);
    },
  };
}

/**
 * The containers of `root` holding an address on network `name`: a lease file whose owner's
 * state dir exists under that root (what `Networks.attached` counts there).
 */
function liveLeases(root: string, name: string): string[] {
  if (!root.startsWith("/")) return []; // not a path we can look at
  return listAllocations(`${root}/_networks/${validateNetworkName(name)}/ips`)
    .filter((a) => ID_PATTERN.test(a.owner) && exists(`${root}/${a.owner}`)).map((a) => a.owner);
}
