// The /etc/hosts and /etc/resolv.conf a container on a network gets (bind-mounted read-only
// from its state directory: the address is only known at create, as with docker).

export interface HostsInput {
  ip: string;
  /** Names of the container itself: its hostname and its id. */
  names: string[];
  /** --link aliases: alias -> address (with the linked container's id as a second name). */
  links: { alias: string; id: string; ip: string }[];
  /** The other containers of a user network: one line each, by id. */
  peers?: { ip: string; name: string }[];
  /**
   * The user network's name: each peer is also `NAME.NETWORK`, and the container itself
   * `ID.NETWORK` (docker's user-defined networks resolve both); `id` is the container's id.
   */
  network?: { name: string; id: string };
}

/**
 * The text of a container's /etc/hosts: localhost, itself, its links, then its peers (with
 * `network`: also as NAME.NETWORK).
 */
export function hostsFile(h: HostsInput): string {
  const lines = [
    "127.0.0.1\tlocalhost",
    "::1\tlocalhost ip6-localhost ip6-loopback",
    `${h.ip}\t${
      [...new Set([...h.names, h.network ? `${h.network.id}.${h.network.name}` : ""])]
        .filter(Boolean).join(" ")
    }`,
  ];
  for (const l of h.links) {
    lines.push(`${l.ip}\t${l.alias === l.id ? l.id : `${l.alias} ${l.id}`}`);
  }
  for (const p of h.peers ?? []) {
    lines.push(`${p.ip}\t${p.name}${h.network ? ` ${p.name}.${h.network.name}` : ""}`);
  }
  return lines.join("\n") + "\n";
}

/**
 * The host's resolv.conf without loopback nameservers (127.*, ::1: a resolver on the host's
 * loopback is unreachable from the container's own network namespace). With none left, the
 * container has no nameserver (no public fallback: traffic stays where the host sends it).
 */
export function resolvConf(host: string | undefined): string {
  const out: string[] = [];
  for (const line of (host ?? "").split("\n")) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m && (m[1].startsWith("127.") || m[1] === "::1" || m[1] === "0:0:0:0:0:0:0:1")) continue;
    if (line.trim() === "" && out.at(-1) === "") continue;
    out.push(line.trimEnd());
  }
  while (out.length && out.at(-1) === "") out.pop();
  return out.length ? out.join("\n") + "\n" : "";
}
