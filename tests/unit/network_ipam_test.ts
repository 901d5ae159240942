// Unit tests of network/ipam.ts: subnets, overlap, and address allocation (no root needed).
import {
  allocate,
  broadcast,
  formatIp,
  gatewayOf,
  listAllocations,
  overlaps,
  parseIp,
  parseSubnet,
  release,
} from "../../network/ipam.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assert, assertEquals, assertThrows, withTempDir } from "./helpers.ts";

Deno.test("network ipam: parseIp/formatIp round trip; bad addresses are undefined", () => {
  for (const ip of ["0.0.0.0", "10.88.0.1", "255.255.255.255", "172.30.4.200"]) {
    assertEquals(formatIp(parseIp(ip)!), ip);
  }
  for (const bad of ["", "1.2.3", "256.1.1.1", "1.2.3.4.5", "01.2.3.4", "a.b.c.d", "1.2.3.4/8"]) {
    assertEquals(parseIp(bad), undefined, bad);
  }
});

Deno.test("network ipam: parseSubnet accepts /16 to /30 network addresses only", () => {
  assertEquals(parseSubnet("10.88.0.0/16"), { base: parseIp("10.88.0.0")!, prefix: 16 });
  assertEquals(parseSubnet("192.168.5.4/30").prefix, 30);
  assertThrows(() => parseSubnet("10.0.0.0/8"), CapsuleError, "/16 to /30");
  assertThrows(() => parseSubnet("10.0.0.0/31"), CapsuleError, "/16 to /30");
  assertThrows(() => parseSubnet("10.0.0.1/24"), CapsuleError, "did you mean 10.0.0.0/24");
  assertThrows(() => parseSubnet("10.0.0.0"), CapsuleError, 'Invalid subnet "10.0.0.0"');
  assertThrows(() => parseSubnet("fd00::/64"), CapsuleError, "CIDR");
});

Deno.test("network ipam: overlap, broadcast and gateway", () => {
  const a = parseSubnet("10.1.0.0/16"), b = parseSubnet("10.1.200.0/24");
  assert(overlaps(a, b) && overlaps(b, a));
  assert(!overlaps(parseSubnet("10.1.0.0/24"), parseSubnet("10.1.1.0/24")));
  assertEquals(formatIp(broadcast(b)), "10.1.200.255");
  assertEquals(formatIp(gatewayOf(b)), "10.1.200.1");
  assertEquals(formatIp(gatewayOf(b, "10.1.200.254")), "10.1.200.254");
  assertThrows(() => gatewayOf(b, "10.1.200.255"), CapsuleError, "host address inside");
  assertThrows(() => gatewayOf(b, "10.1.200.0"), CapsuleError, "Invalid gateway");
  assertThrows(() => gatewayOf(b, "10.1.201.1"), CapsuleError, "10.1.200.0/24");
});

Deno.test("network ipam: 50 concurrent allocations get 50 distinct host addresses", async () => {
  await withTempDir(async (dir) => {
    const subnet = parseSubnet("10.9.0.0/24");
    const pool = { dir: `${dir}/ips`, subnet, gateway: gatewayOf(subnet) };
    // Workers in separate isolates would be truer; O_EXCL is what makes it safe either way.
    const ips = await Promise.all(
      Array.from({ length: 50 }, (_, i) => Promise.resolve().then(() => allocate(pool, `c${i}`))),
    );
    assertEquals(new Set(ips).size, 50);
    for (const ip of ips) {
      assert(ip !== "10.9.0.0" && ip !== "10.9.0.1" && ip !== "10.9.0.255", ip);
    }
    assertEquals(listAllocations(pool.dir).length, 50);
  });
});

Deno.test("network ipam: concurrent allocations from separate processes never collide", async () => {
  await withTempDir(async (dir) => {
    const mod = new URL("../../network/ipam.ts", import.meta.url).href;
    const code = `import { allocate, parseSubnet, gatewayOf } from "${mod}";
      const s = parseSubnet("10.9.0.0/24");
      const out = [];
      for (let i = 0; i < 10; i++) out.push(allocate({ dir: "${dir}/ips", subnet: s, gateway: gatewayOf(s) }, "p" + Deno.args[0] + "-" + i));
      console.log(out.join(" "));`;
    const outs = await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        new Deno.Command(Deno.execPath(), {
          args: ["eval", "--no-check", code, String(i)],
          stdout: "piped",
        }).output()),
    );
    const ips = outs.flatMap((o) => new TextDecoder().decode(o.stdout).trim().split(" "));
    assertEquals(ips.length, 50);
    assertEquals(new Set(ips).size, 50);
  });
});

Deno.test("network ipam: a /30 has two addresses, the gateway takes one; full pool errors", async () => {
  await withTempDir((dir) => {
    const subnet = parseSubnet("10.9.0.4/30");
    const pool = { dir, subnet, gateway: gatewayOf(subnet) };
    assertEquals(allocate(pool, "a"), "10.9.0.6");
    const e = assertThrows(() => allocate(pool, "b"), CapsuleError, "No free address");
    assert(e.message.includes("10.9.0.4/30"));
    // A leftover whose container is gone is reclaimed when the pool is full.
    assertEquals(allocate(pool, "b", (_ip, owner) => owner === "a"), "10.9.0.6");
  });
});

Deno.test("network ipam: release frees only the owner's address", async () => {
  await withTempDir((dir) => {
    const subnet = parseSubnet("10.9.0.0/29");
    const pool = { dir, subnet, gateway: gatewayOf(subnet) };
    const ip = allocate(pool, "a");
    assertEquals(release(dir, ip, "b"), false);
    assertEquals(release(dir, "../x", "a"), false);
    assertEquals(release(dir, ip, "a"), true);
    assertEquals(listAllocations(dir), []);
    assertEquals(allocate(pool, "c"), ip);
  });
});
