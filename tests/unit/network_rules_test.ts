// Unit tests of network/rules.ts and network/hosts.ts: iptables-restore text, port parsing,
// /etc/hosts and resolv.conf content.
import {
  containerChain,
  containerSetup,
  containerTeardown,
  containerTeardownFrom,
  formatPort,
  hash8,
  macOf,
  networkChain,
  networkSetup,
  networkTeardown,
  parsePort,
  parsePorts,
  parseSave,
} from "../../network/rules.ts";
import { conflicts, parseFibTrie, parseProcNet } from "../../network/hostports.ts";
import { hostsFile, resolvConf } from "../../network/hosts.ts";
import {
  parseBridge,
  parseLink,
  parseProcNetDev,
  parseProcRoutes,
  shownLink,
} from "../../network/runner.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "./helpers.ts";

Deno.test("network rules: parsePort forms and errors", () => {
  assertEquals(parsePort("8080:80"), {
    hostIp: undefined,
    hostPort: 8080,
    containerPort: 80,
    proto: "tcp",
  });
  assertEquals(parsePort("127.0.0.1:53:5353/udp"), {
    hostIp: "127.0.0.1",
    hostPort: 53,
    containerPort: 5353,
    proto: "udp",
  });
  assertThrows(() => parsePort("70000:80"), CapsuleError, `port "70000" is not a number from 1`);
  assertThrows(() => parsePort("0:80"), CapsuleError, "1 to 65535");
  assertThrows(() => parsePort("80"), CapsuleError, "HOSTPORT:CONTAINERPORT");
  assertThrows(() => parsePort("8080:80:90"), CapsuleError, "not an IPv4 address");
  assertThrows(() => parsePort("80:80/sctp"), CapsuleError, "tcp or udp");
  assertThrows(() => parsePort("x.y:80:80"), CapsuleError, "not an IPv4 address");
});

Deno.test("network rules: names fit the kernel's limits (15 for links, 28 for chains)", () => {
  assertEquals(hash8("web").length, 8);
  assert(hash8("a") !== hash8("b"));
  assert(containerChain("x".repeat(128)).length <= 28);
  assert(networkChain("n".repeat(64)).length <= 28);
});

const SAVE_EMPTY = `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -j DOCKER-USER
COMMIT
`;

Deno.test("network rules: first network adds shared chains, jumps, NAT and FORWARD rules", () => {
  const n = { name: "web", bridge: "web", subnet: "10.5.0.0/24" };
  const text = networkSetup(n, parseSave(SAVE_EMPTY));
  const c = networkChain("web");
  assertEquals(
    text,
    [
      "*nat",
      ":CAPSULE-PORTS - [0:0]",
      ":CAPSULE-POSTROUTING - [0:0]",
      `:${c} - [0:0]`,
      `-A ${c} -s 10.5.0.0/24 ! -o web -j MASQUERADE`,
      `-A ${c} -s 127.0.0.0/8 -o web -j MASQUERADE`,
      `-A ${c} -s 10.5.0.0/24 -o web -m conntrack --ctstate DNAT -j MASQUERADE`,
      "-A PREROUTING -m addrtype --dst-type LOCAL -j CAPSULE-PORTS",
      "-A OUTPUT -m addrtype --dst-type LOCAL -j CAPSULE-PORTS",
      "-A POSTROUTING -j CAPSULE-POSTROUTING",
      `-A CAPSULE-POSTROUTING -j ${c}`,
      "COMMIT",
      "*filter",
      ":CAPSULE-FORWARD - [0:0]",
      `:${c} - [0:0]`,
      `-A ${c} -i web -j ACCEPT`,
      `-A ${c} -o web -j ACCEPT`,
      "-I FORWARD 1 -j CAPSULE-FORWARD",
      `-A CAPSULE-FORWARD -j ${c}`,
      "COMMIT",
      "*raw",
      `:${c} - [0:0]`,
      `-A ${c} -i web -d 127.0.0.0/8 -j DROP`,
      `-A PREROUTING -j ${c}`,
      "COMMIT",
      "",
    ].join("\n"),
  );
});

Deno.test("network rules: setup again adds no second jump and never redeclares shared chains", () => {
  const n = { name: "web", bridge: "web", subnet: "10.5.0.0/24" };
  const c = networkChain("web");
  const saved = `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CAPSULE-PORTS - [0:0]
:CAPSULE-POSTROUTING - [0:0]
:${c} - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CAPSULE-PORTS
-A OUTPUT -m addrtype --dst-type LOCAL -j CAPSULE-PORTS
-A POSTROUTING -j CAPSULE-POSTROUTING
-A CAPSULE-POSTROUTING -j ${c}
COMMIT
*filter
:FORWARD DROP [0:0]
:CAPSULE-FORWARD - [0:0]
:${c} - [0:0]
-A FORWARD -j CAPSULE-FORWARD
-A CAPSULE-FORWARD -j ${c}
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
:${c} - [0:0]
-A PREROUTING -j ${c}
COMMIT
`;
  const again = networkSetup(n, parseSave(saved));
  assert(!again.includes(":CAPSULE-PORTS"), again);
  assert(!again.includes(":CAPSULE-FORWARD"), again);
  assert(!again.includes("-A PREROUTING"), again); // nat's and raw's jumps are there already
  assert(!again.includes("-I FORWARD"), again);
  assert(!again.includes(`-A CAPSULE-POSTROUTING -j`), again);
  // The network's own chains are declared (flushed) and filled again.
  assertStringIncludes(again, `:${networkChain("web")} - [0:0]`);
  assertStringIncludes(again, "-j MASQUERADE");
});

Deno.test("network rules: container DNAT chain and its removal", () => {
  const c = containerChain("c1");
  const text = containerSetup("c1", "10.5.0.2", [
    { hostPort: 8080, containerPort: 80, proto: "tcp" },
    { hostIp: "192.0.2.1", hostPort: 53, containerPort: 53, proto: "udp" },
  ]);
  assertEquals(text.split("\n"), [
    "*nat",
    `:${c} - [0:0]`,
    `-A ${c} -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.5.0.2:80`,
    `-A ${c} -d 192.0.2.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.5.0.2:53`,
    "-A CAPSULE-PORTS -j " + c,
    "COMMIT",
    "",
  ]);
  assertEquals(containerTeardown("c1").split("\n"), [
    "*nat",
    `:${c} - [0:0]`,
    `-D CAPSULE-PORTS -j ${c}`,
    `-X ${c}`,
    "COMMIT",
    "",
  ]);
  // Partial state: the chain without its jump (a crash in between), or a duplicated jump.
  const only = parseSave(`*nat\n:PREROUTING ACCEPT [0:0]\n:${c} - [0:0]\nCOMMIT\n`);
  assertEquals(containerTeardownFrom("c1", only), `*nat\n:${c} - [0:0]\n-X ${c}\nCOMMIT\n`);
  const twice = parseSave(
    `*nat\n:CAPSULE-PORTS - [0:0]\n:${c} - [0:0]\n-A CAPSULE-PORTS -j ${c}\n-A CAPSULE-PORTS -j ${c}\nCOMMIT\n`,
  );
  assertEquals(
    containerTeardownFrom("c1", twice),
    `*nat\n-D CAPSULE-PORTS -j ${c}\n-D CAPSULE-PORTS -j ${c}\n:${c} - [0:0]\n-X ${c}\nCOMMIT\n`,
  );
  assertEquals(containerTeardownFrom("c1", parseSave(SAVE_EMPTY)), undefined);
});

Deno.test("network rules: teardown of the last network removes the shared chains", () => {
  const n = networkChain("web"), c = containerChain("leftover");
  const saved = `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CAPSULE-PORTS - [0:0]
:CAPSULE-POSTROUTING - [0:0]
:${n} - [0:0]
:${c} - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CAPSULE-PORTS
-A OUTPUT -m addrtype --dst-type LOCAL -j CAPSULE-PORTS
-A POSTROUTING -j CAPSULE-POSTROUTING
-A CAPSULE-PORTS -j ${c}
-A CAPSULE-POSTROUTING -j ${n}
-A ${n} -s 10.5.0.0/24 ! -o web -j MASQUERADE
COMMIT
*filter
:FORWARD ACCEPT [0:0]
:CAPSULE-FORWARD - [0:0]
:${n} - [0:0]
-A FORWARD -j CAPSULE-FORWARD
-A CAPSULE-FORWARD -j ${n}
-A ${n} -i web -j ACCEPT
COMMIT
`;
  const notLast = networkTeardown("web", parseSave(saved), false)!;
  assertStringIncludes(notLast, `-D CAPSULE-POSTROUTING -j ${n}\n:${n} - [0:0]\n-X ${n}`);
  assert(!notLast.includes("-X CAPSULE-PORTS"));
  const last = networkTeardown("web", parseSave(saved), true)!;
  for (
    const l of [
      "-D PREROUTING -m addrtype --dst-type LOCAL -j CAPSULE-PORTS",
      "-D OUTPUT -m addrtype --dst-type LOCAL -j CAPSULE-PORTS",
      "-X CAPSULE-PORTS",
      `-D CAPSULE-PORTS -j ${c}`,
      `-X ${c}`,
      "-D POSTROUTING -j CAPSULE-POSTROUTING",
      "-X CAPSULE-POSTROUTING",
      "-D FORWARD -j CAPSULE-FORWARD",
      "-X CAPSULE-FORWARD",
    ]
  ) assertStringIncludes(last, l);
  assertEquals(networkTeardown("web", parseSave(SAVE_EMPTY), true), undefined);
});

Deno.test("network hosts: localhost, own names, link aliases", () => {
  assertEquals(
    hostsFile({
      ip: "10.5.0.3",
      names: ["box", "c3", "c3"],
      links: [{ alias: "db", id: "c1", ip: "10.5.0.2" }, { alias: "c2", id: "c2", ip: "10.5.0.4" }],
    }),
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.5.0.3\tbox c3\n" +
      "10.5.0.2\tdb c1\n10.5.0.4\tc2\n",
  );
  assertEquals(
    hostsFile({ ip: "10.5.0.3", names: ["", "c3"], links: [] }).split("\n")[2],
    "10.5.0.3\tc3",
  );
  // On a user network: the peers and the container itself also as NAME.NETWORK (docker's).
  assertEquals(
    hostsFile({
      ip: "10.5.0.3",
      names: ["box", "c3"],
      links: [],
      peers: [{ ip: "10.5.0.2", name: "db" }],
      network: { name: "appnet", id: "c3" },
    }).split("\n").slice(2),
    ["10.5.0.3\tbox c3 c3.appnet", "10.5.0.2\tdb db.appnet", ""],
  );
});

Deno.test("network hosts: resolv.conf drops loopback nameservers, keeps the rest", () => {
  const host = "# by dhcp\nnameserver 127.0.0.53\nnameserver 192.0.2.53\nnameserver ::1\n" +
    "search example.org\noptions edns0\n";
  assertEquals(
    resolvConf(host),
    "# by dhcp\nnameserver 192.0.2.53\nsearch example.org\noptions edns0\n",
  );
  assertEquals(resolvConf("nameserver 127.0.0.1\n"), "");
  assertEquals(resolvConf(undefined), "");
});

Deno.test("network runner: /proc/net/route and /proc/net/dev parsing", () => {
  const route =
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
    "eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
    "eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
  assertEquals(parseProcRoutes(route), [
    { dest: "0.0.0.0", prefix: 0, dev: "eth0" },
    { dest: "192.168.0.0", prefix: 24, dev: "eth0" },
  ]);
  const dev = "Inter-|   Receive\n face |bytes\n    lo: 1 2 3\n  eth0: 4 5 6\ncapbr1a2b: 0\n";
  assertEquals([...parseProcNetDev(dev)], ["lo", "eth0", "capbr1a2b"]);
});

Deno.test("network rules: parsePorts takes -p CTR, IP::CTR, ranges; refuses bad ranges", () => {
  assertEquals(parsePorts("80"), [{ hostIp: undefined, containerPort: 80, proto: "tcp" }]);
  assertEquals(parsePorts("127.0.0.1::53/udp"), [
    { hostIp: "127.0.0.1", containerPort: 53, proto: "udp" },
  ]);
  assertEquals(parsePorts("10.0.0.1:8080:80")[0].hostIp, "10.0.0.1");
  assertEquals(parsePorts("8000-8001:80-81").map((p) => [p.hostPort, p.containerPort]), [
    [8000, 80],
    [8001, 81],
  ]);
  assertEquals(parsePorts("8000-8010:80"), [
    { hostIp: undefined, hostRange: [8000, 8010], containerPort: 80, proto: "tcp" },
  ]);
  assertEquals(parsePorts("80-82").map((p) => [p.hostPort, p.containerPort]), [
    [undefined, 80],
    [undefined, 81],
    [undefined, 82],
  ]);
  assertThrows(() => parsePorts("8000-8002:80-81"), CapsuleError, "ranges of one length");
  assertThrows(() => parsePorts("90-80"), CapsuleError, "ends below its start");
  assertThrows(() => parsePorts("1-2000"), CapsuleError, "at most 1024");
  assertThrows(() => parsePorts("::80"), CapsuleError, "[HOSTIP:][HOSTPORT:]CONTAINERPORT");
  assertThrows(() => parsePorts("80:"), CapsuleError, "[HOSTIP:][HOSTPORT:]CONTAINERPORT");
  assertThrows(() => parsePorts(""), CapsuleError, "[HOSTIP:][HOSTPORT:]CONTAINERPORT");
  assertEquals(formatPort(parsePort("127.0.0.1:53:5353/udp")), "127.0.0.1:53->5353/udp");
});

Deno.test("network rules: the MAC is 02:42 and the address, the same for the same IP", () => {
  assertEquals(macOf("10.5.0.2"), "02:42:0a:05:00:02");
  assertEquals(macOf("172.31.255.254"), "02:42:ac:1f:ff:fe");
  assertThrows(() => macOf("10.5.0"), CapsuleError, "Invalid IPv4 address");
});

Deno.test("network hostports: /proc/net listeners (v4, v6 any, v4-mapped), UDP servers only", () => {
  const tcp = [
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
    "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1",
    "   1: 0100007F:1F91 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 112 1",
  ].join("\n");
  assertEquals(parseProcNet(tcp, "tcp"), [{ ip: "127.0.0.1", port: 8080, inode: "111" }]);
  const tcp6 = [
    "  sl  local_address                         remote_address                        st",
    "   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A " +
    "00000000:00000000 00:00000000 00000000     0        0 222 1",
    "   1: 0000000000000000FFFF00000100000A:0051 00000000000000000000000000000000:0000 0A " +
    "00000000:00000000 00:00000000 00000000     0        0 223 1",
    "   2: 20010DB8000000000000000000000001:0052 00000000000000000000000000000000:0000 0A " +
    "00000000:00000000 00:00000000 00000000     0        0 224 1",
  ].join("\n");
  assertEquals(parseProcNet(tcp6, "tcp"), [
    { ip: "0.0.0.0", port: 80, inode: "222" },
    { ip: "10.0.0.1", port: 81, inode: "223" },
  ]);
  const udp = [
    "  sl  local_address rem_address   st",
    "   0: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 333 2",
    "   1: 0100007F:A000 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 334 2",
  ].join("\n");
  assertEquals(parseProcNet(udp, "udp"), [{ ip: "0.0.0.0", port: 53, inode: "333" }]);
  const s = { ip: "127.0.0.1", port: 8080, inode: "1" };
  assert(conflicts(s, 8080));
  assert(conflicts(s, 8080, "127.0.0.1"));
  assert(!conflicts(s, 8080, "10.0.0.1"));
  assert(conflicts({ ...s, ip: "0.0.0.0" }, 8080, "10.0.0.1"));
  assert(!conflicts(s, 8081));
});

Deno.test("network hosts: peers follow the container's own lines and links", () => {
  assertEquals(
    hostsFile({
      ip: "10.5.0.3",
      names: ["box", "b"],
      links: [{ alias: "db", id: "a", ip: "10.5.0.2" }],
      peers: [{ ip: "10.5.0.2", name: "a" }],
    }).split("\n").slice(2),
    ["10.5.0.3\tbox b", "10.5.0.2\tdb a", "10.5.0.2\ta", ""],
  );
});

Deno.test("parseFibTrie: the /32 host LOCAL leaves, each once", () => {
  const trie = `Main:
  +-- 0.0.0.0/0 2 0 2
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 198.51.100.0/24 2 0 2
           |-- 198.51.100.0
              /24 link UNICAST
           |-- 198.51.100.1
              /32 host LOCAL
Local:
           |-- 127.0.0.1
              /32 host LOCAL
           |-- 198.51.100.1
              /32 host LOCAL
`;
  assertEquals(parseFibTrie(trie), ["127.0.0.1", "198.51.100.1"]);
  assertEquals(parseFibTrie(""), []);
});

Deno.test("parseFibTrie: multicast and reserved addresses are no host addresses", () => {
  // An interface given 224.0.0.1/24 (what a bridge in 224.0.0.0/24 got) shows it as LOCAL.
  const trie = `Local:
  +-- 0.0.0.0/0 2 0 2
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     |-- 198.51.100.1
        /32 host LOCAL
     |-- 224.0.0.1
        /32 host LOCAL
     |-- 240.0.0.1
        /32 host LOCAL
     |-- 0.1.2.3
        /32 host LOCAL
`;
  assertEquals(parseFibTrie(trie), ["127.0.0.1", "198.51.100.1"]);
});

Deno.test("network runner: a bridge's alias and ports, as ip -j shows them", () => {
  const json = JSON.stringify([
    { ifname: "lo" },
    { ifname: "web", ifalias: "capsule-root:/run/a b" },
    { ifname: "capb", master: "web" },
    { ifname: "capa", master: "web" },
    { ifname: "other", master: "lan" },
    { ifname: "lan" },
  ]);
  assertEquals(parseBridge(json, "web"), {
    alias: "capsule-root:/run/a b",
    ports: ["capa", "capb"],
  });
  assertEquals(parseBridge(json, "lan"), { alias: "", ports: ["other"] });
  assertEquals(parseBridge(json, "nope"), undefined);
  assertEquals(parseBridge("not json", "web"), undefined);
});

Deno.test("network runner: the kind and alias of a bridge shown first in an ip -j -d batch", () => {
  // What `ip -j -d -batch -` printed here for "link show dev brx" and then a link add.
  const out = '[{"ifindex":2,"ifname":"brx","flags":["BROADCAST","MULTICAST"],"mtu":1500,' +
    '"qdisc":"noop","operstate":"DOWN","linkmode":"DEFAULT","group":"default","txqlen":1000,' +
    '"link_type":"ether","address":"d6:97:9c:f0:1b:1e","broadcast":"ff:ff:ff:ff:ff:ff",' +
    '"linkinfo":{"info_kind":"bridge","info_data":{"forward_delay":1500,"stp_state":0}},' +
    '"ifalias":"capsule-root:/tmp/a ] b"}]\n';
  assertEquals(shownLink(out), { kind: "bridge", alias: "capsule-root:/tmp/a ] b" });
  assertEquals(shownLink(out.replace(/,"ifalias":"[^"]*"/, "")), { kind: "bridge", alias: "" });
  assertEquals(shownLink(""), undefined); // no such link: nothing shown
  assertEquals(shownLink("garbage"), undefined);
  // ip -j -d link show dev NAME of a veth (a kind), and of a network card (none).
  assertEquals(
    parseLink('[{"ifname":"v9","link":"v9p","linkinfo":{"info_kind":"veth"},"ifalias":"x"}]'),
    { kind: "veth", alias: "x" },
  );
  assertEquals(parseLink('[{"ifname":"eth0","flags":["UP"]}]'), { kind: "", alias: "" });
  assertEquals(parseLink("[]"), undefined);
});
