// A store on overlayfs (capsule inside a container): overlayfs refuses a writable layer there
// (EINVAL), and `image run` says what to do (a --store on ext4, xfs or tmpfs), leaving nothing.
import {
  assert,
  assertEquals,
  assertMatch,
  buildBusyboxRootfs,
  capsule,
  type Result,
  rootTest,
} from "../helpers.ts";

rootTest(
  "image run: a store on overlayfs fails with what to do, and leaves nothing",
  async (root) => {
    const tmp = await Deno.makeTempDir({ prefix: "capsule-ovl-store-" });
    const merged = `${tmp}/merged`;
    try {
      for (const d of ["lower", "upper", "work", "merged", "rootfs"]) Deno.mkdirSync(`${tmp}/${d}`);
      const m = await new Deno.Command("mount", {
        args: [
          "-t",
          "overlay",
          "overlay",
          "-o",
          `lowerdir=${tmp}/lower,upperdir=${tmp}/upper,workdir=${tmp}/work`,
          merged,
        ],
      }).output();
      assert(m.success, new TextDecoder().decode(m.stderr));
      const store = `${merged}/store`;
      const c = (...args: string[]): Promise<Result> => capsule(root, ["--store", store, ...args]);
      await buildBusyboxRootfs(`${tmp}/rootfs`);
      const tar = await new Deno.Command("tar", {
        args: ["-C", `${tmp}/rootfs`, "-cf", `${tmp}/bb.tar`, "."],
      }).output();
      assert(tar.success, "tar failed");
      let r = await c("image", "create", "bb", `${tmp}/bb.tar`);
      assertEquals(r.code, 0, r.stderr);
      r = await c("image", "run", "--id", "ovl1", "bb", "true");
      assertEquals(r.code, 1, r.stderr);
      assertMatch(r.stderr, /is on overlay, which overlayfs does not take as a writable layer/);
      assertMatch(r.stderr, /choose a --store on ext4, xfs or tmpfs/);
      assert(!r.stderr.includes("    at "), `no stack trace: ${r.stderr}`);
      assertEquals([...Deno.readDirSync(`${store}/containers`)], [], "no half-made container");
    } finally {
      for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n").reverse()) {
        const mp = line.split(" ")[4];
        if (mp?.startsWith(tmp)) await new Deno.Command("umount", { args: ["-l", mp] }).output();
      }
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
);
