// Unit tests of a -v bind's host path (image/run.ts resolveBindSource): relative to the
// caller's cwd, a dangling symlink, a magic link under /proc that reads as another path.
import { resolveBindSource } from "../../image/run.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assertEquals, assertThrows } from "./helpers.ts";

async function withTmp(fn: (tmp: string) => Promise<void> | void): Promise<void> {
  const tmp = Deno.realPathSync(await Deno.makeTempDir({ prefix: "capsule-bind-" }));
  try {
    await fn(tmp);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

Deno.test("-v: a relative host path is taken relative to the caller's cwd", async () => {
  await withTmp((tmp) => {
    Deno.mkdirSync(`${tmp}/somedir/ex`, { recursive: true });
    const store = `${tmp}/store`;
    assertEquals(resolveBindSource("./ex", store, `${tmp}/somedir`), {
      real: `${tmp}/somedir/ex`,
      missing: [],
    });
    assertEquals(resolveBindSource("./relx/a", store, `${tmp}/somedir`), {
      real: `${tmp}/somedir/relx/a`,
      missing: [`${tmp}/somedir/relx`, `${tmp}/somedir/relx/a`],
    });
    assertEquals(
      resolveBindSource("../somedir/./ex", store, `${tmp}/somedir`).real,
      `${tmp}/somedir/ex`,
    );
    assertEquals(resolveBindSource(".", store, `${tmp}/somedir`).real, `${tmp}/somedir`);
    // Nothing was made: making is the caller's, once every check passed.
    assertEquals(Deno.statSync(`${tmp}/somedir/ex`).isDirectory, true);
    assertThrows(() => Deno.statSync(`${tmp}/somedir/relx`));
    assertThrows(() => resolveBindSource("~/x", store, tmp), CapsuleError, "not expanded");
    assertThrows(
      () => resolveBindSource("./store/x", store, tmp),
      CapsuleError,
      "inside capsule's store",
    );
  });
});

Deno.test("-v: a dangling symlink is refused with a clear error", async () => {
  await withTmp((tmp) => {
    Deno.symlinkSync(`${tmp}/nowhere`, `${tmp}/dangle`);
    for (const src of [`${tmp}/dangle`, `${tmp}/dangle/sub`]) {
      assertThrows(
        () => resolveBindSource(src, `${tmp}/store`),
        CapsuleError,
        `${tmp}/dangle is a symlink to "${tmp}/nowhere", which does not exist`,
      );
    }
    // A symlink to a directory that exists is followed, as before.
    Deno.mkdirSync(`${tmp}/there`);
    Deno.symlinkSync(`${tmp}/there`, `${tmp}/link`);
    assertEquals(resolveBindSource(`${tmp}/link/new`, `${tmp}/store`), {
      real: `${tmp}/there/new`,
      missing: [`${tmp}/there/new`],
    });
  });
});

Deno.test({
  name:
    "-v: a path through /proc/PID/root of a process in its own mount namespace is refused, never the host's",
  ignore: Deno.uid() !== 0 || !(() => {
    try {
      return Deno.statSync("/bin/busybox").isFile;
    } catch {
      return false;
    }
  })(),
  fn: async () => {
    await withTmp(async (tmp) => {
      // A process whose root is a tmpfs mounted in its own mount namespace: the host sees
      // an empty directory at the path /proc/PID/root reads as.
      Deno.mkdirSync(`${tmp}/root`);
      const child = new Deno.Command("unshare", {
        args: [
          "--mount",
          "--propagation",
          "private",
          "sh",
          "-c",
          `mount -t tmpfs t "$1" && mkdir "$1/etc" && cp /bin/busybox "$1/" && ` +
          `exec chroot "$1" /busybox sleep 60`,
          "sh",
          `${tmp}/root`,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        const pid = child.pid;
        // Wait for the chroot to be done (its root is no longer the host's).
        for (let i = 0; i < 200; i++) {
          try {
            if (Deno.statSync(`/proc/${pid}/root/busybox`).isFile) break;
          } catch { /* not yet */ }
          await new Promise((r) => setTimeout(r, 10));
        }
        for (const src of [`/proc/${pid}/root/etc`, `/proc/${pid}/root/newdir`]) {
          assertThrows(
            () => resolveBindSource(src, `${tmp}/store`),
            CapsuleError,
            "magic link",
          );
        }
        assertThrows(() => Deno.statSync(`${tmp}/root/etc`));
        assertThrows(() => Deno.statSync(`${tmp}/root/newdir`));
        // /proc/self/root is the host's own root here: the same directory, accepted.
        assertEquals(resolveBindSource("/proc/self/root/etc", `${tmp}/store`).real, "/etc");
      } finally {
        child.kill("SIGKILL");
        await child.status;
      }
    });
  },
});

Deno.test("-v: the store and the state root (and what is inside them) are refused, also through a symlink; a directory holding them is the user's to give (as docker); siblings are not refused", async () => {
  await withTmp((tmp) => {
    const store = `${tmp}/lib/capsule`, root = `${tmp}/run/capsule`;
    Deno.mkdirSync(store, { recursive: true });
    Deno.mkdirSync(`${root}/c1`, { recursive: true });
    Deno.mkdirSync(`${tmp}/lib/other`);
    Deno.symlinkSync(`${tmp}/run`, `${tmp}/varrun`);
    Deno.symlinkSync(`${tmp}/lib`, `${tmp}/liblink`);
    const refused: [string, string][] = [
      [root, `is inside capsule's state root ${root}`],
      [`${tmp}/varrun/capsule`, `is inside capsule's state root ${root}`],
      [`${root}/c1`, `is inside capsule's state root ${root}`],
      [`${root}/new/dir`, `is inside capsule's state root ${root}`],
      [store, `is inside capsule's store ${store}`],
      [`${tmp}/liblink/capsule/images`, `is inside capsule's store ${store}`],
    ];
    for (const [src, why] of refused) {
      assertThrows(() => resolveBindSource(src, store, tmp, root), CapsuleError, why);
    }
    // The state root given through a symlink (/var/run -> /run) is compared by its real path.
    assertThrows(
      () => resolveBindSource(`${root}/c1`, store, tmp, `${tmp}/varrun/capsule`),
      CapsuleError,
      `is inside capsule's state root ${root}`,
    );
    // Neither made yet: the real path of the deepest existing directory, then the rest.
    assertThrows(
      () => resolveBindSource(`${tmp}/lib/new/store/x`, `${tmp}/liblink/new/store`, tmp, root),
      CapsuleError,
      `is inside capsule's store ${tmp}/lib/new/store`,
    );
    // Directories that hold them (-v /:/host), siblings, and names that only start the same.
    for (
      const src of [
        `${tmp}/lib`,
        tmp,
        `${tmp}/run`,
        `${tmp}/lib/other`,
        `${tmp}/lib/capsule2`,
        `${tmp}/run/capsulex`,
      ]
    ) {
      assertEquals(resolveBindSource(src, store, tmp, root).real, src);
    }
  });
});
