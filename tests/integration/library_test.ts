// capsule as a library: a TypeScript program imports mod.ts (not the CLI) and runs containers
// from an image on a bridge network (tests/fixtures/library_program.ts). It runs inside a
// network namespace this test makes, so bridges, addresses and iptables rules never touch the
// host's; everything is removed afterwards, also when the test fails.
import {
  assert,
  assertEquals,
  assertMatch,
  buildBusyboxRootfs,
  removeAll,
  REPO,
  rootTest,
} from "../helpers.ts";

const dec = new TextDecoder();

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const o = await new Deno.Command(argv[0], { args: argv.slice(1), cwd: REPO, stdin: "null" })
    .output();
  return { code: o.code, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
}

rootTest("library: mod.ts imports an image and runs it on a network, no CLI", async (root) => {
  const tag = crypto.randomUUID().slice(0, 6);
  const ns = `capl-${tag}`;
  const tmp = await Deno.makeTempDir({ prefix: "capsule-lib-" });
  const store = `${tmp}/store`;
  const inNs = ["nsenter", `--net=/run/netns/${ns}`];
  try {
    Deno.mkdirSync(`${tmp}/rootfs`);
    await buildBusyboxRootfs(`${tmp}/rootfs`);
    const tar = await run(["tar", "-C", `${tmp}/rootfs`, "-cf", `${tmp}/bb.tar`, "."]);
    assertEquals(tar.code, 0, tar.stderr);
    assertEquals((await run(["ip", "netns", "add", ns])).code, 0);
    await run(["ip", "-n", ns, "link", "set", "lo", "up"]);

    const r = await run([
      ...inNs,
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      `${REPO}/tests/fixtures/library_program.ts`,
      root,
      store,
      `${tmp}/bb.tar`,
      tag,
    ]);
    assertEquals(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    const result = JSON.parse(lines.at(-1)!.replace(/^RESULT /, ""));
    // Detached, runImage prints the id as `capsule image run -d` does.
    assertEquals(lines[0], `libsrv-${tag}`);
    assertEquals(result.image, "bb");
    assertEquals(result.network.subnet, "10.231.7.0/24");
    assertEquals(result.server.status, "running");
    assertEquals(result.server.ip, "10.231.7.2");
    assertEquals(result.server.image, "bb");
    // The client got the next address and reached the server over the bridge.
    assertEquals(result.client, { id: `libcli-${tag}`, code: 0 });
    assertMatch(r.stdout, /eth0\s+inet 10\.231\.7\.3\/24/);
    assert(r.stdout.includes("hello from the server\n"), r.stdout);
    assertEquals(result.attached, [{ id: `libsrv-${tag}`, ip: "10.231.7.2" }]);
    assertEquals(result.after, { images: [], networks: [], containers: [] });
    // Nothing left in the namespace: no container veth, no container chain.
    const links = (await run(["ip", "-n", ns, "-o", "link"])).stdout;
    assert(!/^\d+: cap[0-9a-f]{12}/m.test(links), links);
    const rules = (await run(["ip", "netns", "exec", ns, "iptables-save"])).stdout;
    assert(!rules.includes("CAPSULE-C-"), rules);
  } finally {
    // Leave the host clean even when the program failed half-way.
    const cap = [...inNs, Deno.execPath(), "run", "-A", "--quiet", `${REPO}/main.ts`];
    for (const e of Deno.readDirSync(root)) {
      if (/^[_.]/.test(e.name)) continue; // networks, the monitor's socket and lock
      await run([...cap, "--root", root, "--store", store, "image", "destroyc", "-f", e.name]);
      await run([...cap, "--root", root, "delete", "-f", e.name]);
    }
    await run([...cap, "--root", root, "network", "prune"]);
    for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
      const mp = line.split(" ")[4];
      if (mp?.startsWith(tmp)) await run(["umount", "-l", mp]);
    }
    await run(["ip", "netns", "del", ns]);
    await removeAll(tmp, `${root}/_networks`);
  }
});
