// The native init (runtime/native/init.c, rootfs.c) against images that fake /proc: what it
// reaches through /proc after pivot_root (exec.fifo by /proc/self/fd/N, the mounts' targets,
// sysctls) must be the kernel's. Found by review of the native init.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  makeBundle,
  removeAll,
  rootTest,
  sleep,
} from "../helpers.ts";

/** A busybox bundle without a /proc mount whose rootfs has regular files at /proc/self/fd/N. */
async function fakeProcBundle(script: string, sysctl?: Record<string, string>): Promise<string> {
  const bundle = await makeBundle(script, (s) => {
    s.mounts = s.mounts!.filter((m) => m.destination !== "/proc");
    s.linux!.maskedPaths = [];
    s.linux!.readonlyPaths = [];
    if (sysctl) s.linux!.sysctl = sysctl;
  }, { ownRootfs: true });
  await Deno.mkdir(`${bundle}/rootfs/proc/self/fd`, { recursive: true });
  await Deno.mkdir(`${bundle}/rootfs/proc/sys/net/ipv4`, { recursive: true });
  await Deno.writeTextFile(`${bundle}/rootfs/proc/sys/net/ipv4/ip_forward`, "fake\n");
  for (let i = 3; i < 512; i++) await Deno.writeTextFile(`${bundle}/rootfs/proc/self/fd/${i}`, "");
  return bundle;
}

// Without a /proc mount, /proc/self/fd/N after pivot_root was the image's file: a regular file
// planted there made the wait for start end at once, so the program ran at `create`. Refused now,
// as runc refuses it ("/proc/self/fd is not on procfs").
rootTest(
  "init: an image's fake /proc/self/fd cannot start the program before start",
  async (root) => {
    const bundle = await fakeProcBundle("echo RAN > /tmp/ran; sleep 30");
    const id = `rv-${crypto.randomUUID().slice(0, 8)}`;
    try {
      const r = await capsule(root, ["create", id], { cwd: bundle });
      assertEquals(r.code, 1, r.stderr);
      assertMatch(r.stderr, /\/proc is not a procfs .*mount proc at \/proc/);
      await sleep(300);
      let ran = false;
      try {
        ran = Deno.readTextFileSync(`${bundle}/rootfs/tmp/ran`).includes("RAN");
      } catch { /* not run: right */ }
      assert(!ran, "the program ran at create, before `capsule start`");
      assertEquals(
        (await capsule(root, ["state", id])).code,
        1,
        "a failed create left its container",
      );
    } finally {
      await capsule(root, ["delete", "-f", id]);
      await removeAll(bundle);
    }
  },
);

// The same image with a sysctl: written into the image's file before, refused now.
rootTest("init: a sysctl is never written into an image's fake /proc/sys", async (root) => {
  const bundle = await fakeProcBundle("true", { "net.ipv4.ip_forward": "1" });
  const id = `rv-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const r = await capsule(root, ["run", id], { cwd: bundle });
    assertEquals(r.code, 1, r.stderr);
    assertMatch(r.stderr, /cannot set sysctl net\.ipv4\.ip_forward: \/proc is not a procfs/);
    assertEquals(
      Deno.readTextFileSync(`${bundle}/rootfs/proc/sys/net/ipv4/ip_forward`),
      "fake\n",
    );
  } finally {
    await capsule(root, ["delete", "-f", id]);
    await removeAll(bundle);
  }
});
