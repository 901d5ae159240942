// The rules of the container's root filesystem (runtime/native/rootfs.c), seen from outside through
// the real CLI: what tests/unit/rootfs_test.ts checked against a recording fake of rootfs.ts, for
// every rule that no other integration test observes already.
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  makeBundle,
  removeAll,
  rootTest,
  USERNS_MAP,
} from "../helpers.ts";

/** Mount points (mountinfo field 5) and their options, as the program sees them: "point opts super". */
const MOUNTINFO = "cut -d' ' -f5,6,7,9,11 /proc/self/mountinfo";

function line(out: string, point: string): string | undefined {
  return out.split("\n").find((l) => l.startsWith(`${point} `));
}

function empty(dir: string): boolean {
  return [...Deno.readDirSync(dir)].length === 0;
}

rootTest(
  "rootfs: destinations through relative, '..'-climbing and '..'-after-link symlinks land inside",
  async (root) => {
    const outside = await Deno.makeTempDir({ prefix: "capsule-outside-" });
    const data = await Deno.makeTempDir({ prefix: "capsule-data-" });
    await Deno.writeTextFile(`${data}/marker`, "m");
    const b = await makeBundle(
      MOUNTINFO,
      (s) => {
        s.mounts!.push(
          { destination: "/rel", type: "tmpfs", source: "tmpfs", options: ["size=1m"] },
          { destination: "/climb/x", type: "bind", source: data, options: ["rbind"] },
          { destination: "/d/link/../dd", type: "tmpfs", source: "tmpfs", options: ["size=1m"] },
        );
      },
      { ownRootfs: true },
    );
    try {
      await Deno.symlink("sub/target", `${b}/rootfs/rel`);
      await Deno.symlink(`../../../../../../../../../..${outside}`, `${b}/rootfs/climb`);
      await Deno.mkdir(`${b}/rootfs/d`);
      await Deno.symlink("/etc", `${b}/rootfs/d/link`);
      const r = await capsule(root, ["run", "-b", b, "rr-links"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      assert(line(r.stdout, "/sub/target")?.includes("tmpfs"), r.stdout);
      assert(line(r.stdout, `${outside}/x`) !== undefined, r.stdout);
      // /d/link/.. is /etc/.., the root: the tmpfs is /dd, not /d/dd.
      assert(line(r.stdout, "/dd")?.includes("tmpfs"), r.stdout);
      assert(empty(outside), "something was made outside the rootfs");
      assert(Deno.statSync(`${b}/rootfs${outside}/x`).isDirectory);
      assert(Deno.statSync(`${b}/rootfs/sub/target`).isDirectory);
    } finally {
      await removeAll(b, outside, data);
    }
  },
);

rootTest(
  "rootfs: proc and sysfs are refused on a symlink, a file, below a symlinked dir; a missing /proc is made",
  async (root) => {
    const cases: [string, (rootfs: string) => Promise<void>, RegExp | null][] = [
      [
        "/proc",
        async (r) => {
          await Deno.remove(`${r}/proc`, { recursive: true });
          await Deno.symlink("/tmp", `${r}/proc`);
        },
        /\/proc in the rootfs is a symlink.*must be mounted on ordinary directory/,
      ],
      [
        "/sys",
        async (r) => {
          await Deno.remove(`${r}/sys`, { recursive: true }).catch(() => {});
          await Deno.symlink("/tmp", `${r}/sys`);
        },
        /\/sys in the rootfs is a symlink.*must be mounted on ordinary directory/,
      ],
      [
        "/proc",
        async (r) => {
          await Deno.remove(`${r}/proc`, { recursive: true });
          await Deno.writeTextFile(`${r}/proc`, "");
        },
        /\/proc in the rootfs is not a directory.*must be mounted on ordinary directory/,
      ],
      ["/proc", async (r) => await Deno.remove(`${r}/proc`, { recursive: true }), null],
    ];
    let i = 0;
    for (const [dest, prepare, refusal] of cases) {
      const b = await makeBundle("grep -c ' /proc proc' /proc/mounts", undefined, {
        ownRootfs: true,
      });
      try {
        await prepare(`${b}/rootfs`);
        const r = await capsule(root, ["run", "-b", b, `rr-proc${i++}`]);
        if (refusal) {
          assertEquals(r.code, 1, `${dest}: ${r.stderr}${r.stdout}`);
          assertMatch(r.stderr, refusal);
        } else {
          assertEquals(r.code, 0, r.stderr + r.stdout);
          assertEquals(r.stdout.trim(), "1");
          assert(Deno.statSync(`${b}/rootfs/proc`).isDirectory);
        }
      } finally {
        await removeAll(b);
      }
    }
    // proc at a destination below a symlinked directory: refused too, nothing mounted on the host.
    const b = await makeBundle("true", (s) => {
      s.mounts!.push({ destination: "/p/proc", type: "proc", source: "proc", options: [] });
    }, { ownRootfs: true });
    try {
      await Deno.symlink("/tmp", `${b}/rootfs/p`);
      const r = await capsule(root, ["run", "-b", b, "rr-proc-below"]);
      assertEquals(r.code, 1, r.stderr + r.stdout);
      assertMatch(r.stderr, /\/p in the rootfs is a symlink.*ordinary directory/);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "rootfs: rbind keeps submounts; ro,nosuid,nodev on the top; rro,rnosuid on every submount",
  async (root) => {
    const src = await Deno.makeTempDir({ prefix: "capsule-rbind-" });
    await Deno.mkdir(`${src}/sub`);
    const mount = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", `${src}/sub`],
    }).output();
    assertEquals(mount.code, 0);
    const b = await makeBundle(
      `${MOUNTINFO}; touch /a/sub/f 2>/dev/null && echo a-sub-writable; touch /b/sub/f 2>/dev/null && echo b-sub-writable; touch /a/f 2>/dev/null && echo a-writable; true`,
      (s) => {
        s.mounts!.push(
          {
            destination: "/a",
            type: "bind",
            source: src,
            options: ["rbind", "nosuid", "nodev", "ro"],
          },
          { destination: "/b", type: "bind", source: src, options: ["rbind", "rro", "rnosuid"] },
        );
      },
    );
    try {
      const r = await capsule(root, ["run", "-b", b, "rr-rro"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      const out = r.stdout;
      const a = line(out, "/a")!, aSub = line(out, "/a/sub")!, bSub = line(out, "/b/sub")!;
      assert(a && aSub && bSub, out);
      for (const o of ["ro", "nosuid", "nodev"]) assert(a.split(" ")[1].split(",").includes(o), a);
      // ro (not rro) is the top mount's only: the submount stays writable (runc's rule).
      assert(out.includes("a-sub-writable"), out);
      assert(!out.includes("a-writable"), out);
      for (const o of ["ro", "nosuid"]) {
        assert(bSub.split(" ")[1].split(",").includes(o), `rro/rnosuid missed /b/sub: ${bSub}`);
      }
      assert(!out.includes("b-sub-writable"), out);
    } finally {
      await new Deno.Command("umount", { args: [`${src}/sub`] }).output();
      await removeAll(b, src);
    }
  },
);

rootTest(
  "rootfs: a ro /dev tmpfs and a ro tmpfs with a submount are filled first, read-only after",
  async (root) => {
    const b = await makeBundle(
      `${MOUNTINFO}; ls /dev | tr '\\n' ' '; echo; readlink /dev/ptmx; touch /dev/x 2>/dev/null && echo dev-writable; touch /t/y 2>/dev/null && echo t-writable; echo end`,
      (s) => {
        s.mounts!.find((m) => m.destination === "/dev")!.options!.push("ro");
        s.mounts!.push(
          { destination: "/t", type: "tmpfs", source: "tmpfs", options: ["ro", "size=1m"] },
          { destination: "/t/a/b", type: "tmpfs", source: "tmpfs", options: ["size=1m"] },
        );
      },
    );
    try {
      const r = await capsule(root, ["run", "-b", b, "rr-rodev"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      const out = r.stdout;
      assert(line(out, "/dev")!.split(" ")[1].split(",").includes("ro"), out);
      assert(line(out, "/t")!.split(" ")[1].split(",").includes("ro"), out);
      assert(line(out, "/t/a/b") !== undefined, out);
      assert(line(out, "/dev/pts") !== undefined, out);
      for (const d of ["null", "zero", "ptmx", "fd", "stdin", "pts", "shm"]) {
        assert(out.includes(` ${d} `) || out.includes(`${d} `), `/dev/${d} missing: ${out}`);
      }
      assert(out.includes("pts/ptmx"), out);
      assert(!out.includes("dev-writable") && !out.includes("t-writable"), out);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "rootfs: masked paths: a file is /dev/null's, a directory an empty ro tmpfs, a missing one nothing",
  async (root) => {
    const b = await makeBundle(
      "cat /secret.txt | wc -c; stat -c '%t:%T' /secret.txt; ls -A /secretdir | wc -l; touch /secretdir/x 2>/dev/null && echo dir-writable; ls /nothere 2>/dev/null || echo no-nothere",
      (s) => s.linux!.maskedPaths!.push("/secret.txt", "/secretdir", "/nothere"),
      { ownRootfs: true },
    );
    try {
      await Deno.writeTextFile(`${b}/rootfs/secret.txt`, "SECRET");
      await Deno.mkdir(`${b}/rootfs/secretdir`);
      await Deno.writeTextFile(`${b}/rootfs/secretdir/f`, "SECRET");
      const r = await capsule(root, ["run", "-b", b, "rr-mask"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      assertEquals(r.stdout.trim().split("\n"), ["0", "1:3", "0", "no-nothere"]);
      let made = true;
      await Deno.lstat(`${b}/rootfs/nothere`).catch(() => (made = false));
      assert(!made, "a missing masked path was made");
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "rootfs: a linux.devices /dev/null that is not 1:3 replaces the default, and masking a file is then refused",
  async (root) => {
    const b = await makeBundle("stat -c '%t:%T' /dev/null", (s) => {
      s.linux!.devices = [{ path: "/dev/null", type: "c", major: 1, minor: 5, fileMode: 0o666 }];
      s.linux!.maskedPaths = [];
    });
    const masked = await makeBundle("true", (s) => {
      s.linux!.devices = [{ path: "/dev/null", type: "c", major: 1, minor: 5, fileMode: 0o666 }];
      s.linux!.maskedPaths = ["/proc/keys"]; // a file on every kernel
    });
    try {
      const r = await capsule(root, ["run", "-b", b, "rr-null"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      assertEquals(r.stdout.trim(), "1:5");
      const m = await capsule(root, ["run", "-b", masked, "rr-null2"]);
      assertEquals(m.code, 1, m.stderr + m.stdout);
      assertMatch(m.stderr, /cannot mask \/proc\/keys: \/dev\/null is not the null device/);
    } finally {
      await removeAll(b, masked);
    }
  },
);

rootTest(
  "rootfs: readonly paths are ro binds; missing ones and links to host paths are taken inside only",
  async (root) => {
    const outside = await Deno.makeTempDir({ prefix: "capsule-outside-" });
    const b = await makeBundle(
      `${MOUNTINFO}; touch /rwdir/f 2>/dev/null && echo rw-writable; touch /linked/f 2>/dev/null && echo linked-writable; echo end`,
      (s) => s.linux!.readonlyPaths!.push("/rwdir", "/missing", "/hostlink", "/linked"),
      { ownRootfs: true },
    );
    try {
      await Deno.mkdir(`${b}/rootfs/rwdir`);
      await Deno.mkdir(`${b}/rootfs/target`);
      await Deno.symlink("/target", `${b}/rootfs/linked`);
      await Deno.symlink(outside, `${b}/rootfs/hostlink`); // <rootfs><outside> does not exist
      const r = await capsule(root, ["run", "-b", b, "rr-ro"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      const out = r.stdout;
      assert(line(out, "/rwdir")!.split(" ")[1].split(",").includes("ro"), out);
      assert(line(out, "/target")!.split(" ")[1].split(",").includes("ro"), out);
      assertEquals(line(out, outside), undefined, out);
      assert(!out.includes("rw-writable") && !out.includes("linked-writable"), out);
      // The host directory the link names stayed writable and unmounted.
      await Deno.writeTextFile(`${outside}/w`, "w");
      assert(!Deno.readTextFileSync("/proc/self/mountinfo").includes(outside));
      let made = true;
      await Deno.lstat(`${b}/rootfs/missing`).catch(() => (made = false));
      assert(!made, "a missing readonly path was made");
    } finally {
      await removeAll(b, outside);
    }
  },
);

rootTest(
  "rootfs: linux.devices: owner and mode (umask 0), a default replaced, ptmx made a link, paths through links and in mounts",
  async (root) => {
    const outside = await Deno.makeTempDir({ prefix: "capsule-outside-" });
    const b = await makeBundle(
      "stat -c '%a %u %g %t:%T' /dev/mydev /dev/zero /t1/dev2; readlink /dev/ptmx",
      (s) => {
        s.mounts!.push({
          destination: "/t1",
          type: "tmpfs",
          source: "tmpfs",
          options: ["size=1m"],
        });
        s.linux!.devices = [
          {
            path: "/dev/mydev",
            type: "c",
            major: 1,
            minor: 3,
            fileMode: 0o666,
            uid: 1000,
            gid: 1001,
          },
          { path: "/dev/zero", type: "c", major: 1, minor: 5, fileMode: 0o600, uid: 5, gid: 6 },
          { path: "/dev/ptmx", type: "c", major: 5, minor: 2, fileMode: 0o666 },
          { path: "/evil/mydev", type: "c", major: 1, minor: 3, fileMode: 0o640 },
          { path: "/t1/dev2", type: "c", major: 1, minor: 7, fileMode: 0o644 },
        ];
      },
      { ownRootfs: true },
    );
    try {
      await Deno.symlink(outside, `${b}/rootfs/evil`);
      // An entry already at a device's path is replaced.
      await Deno.mkdir(`${b}/rootfs${outside}`, { recursive: true });
      await Deno.writeTextFile(`${b}/rootfs${outside}/mydev`, "planted");
      const r = await capsule(root, ["run", "-b", b, "rr-dev"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      assertEquals(r.stdout.trim().split("\n"), [
        "666 1000 1001 1:3",
        "600 5 6 1:5",
        "644 0 0 1:7",
        "pts/ptmx",
      ]);
      assert(empty(outside), "a device was made outside the rootfs");
      const st = Deno.statSync(`${b}/rootfs${outside}/mydev`);
      assert(st.isCharDevice, "the planted file was not replaced by the device");
      assertEquals(st.mode! & 0o777, 0o640);
    } finally {
      await removeAll(b, outside);
    }
  },
);

rootTest(
  "rootfs: a /dev bind mount means no default devices nor /dev links; explicit devices still made",
  async (root) => {
    const devdir = await Deno.makeTempDir({ prefix: "capsule-devdir-" });
    await Deno.writeTextFile(`${devdir}/marker`, "m");
    const b = await makeBundle("ls /dev | tr '\\n' ' '", (s) => {
      s.mounts = s.mounts!.filter((m) => !m.destination.startsWith("/dev"));
      s.mounts.push({ destination: "/dev", type: "bind", source: devdir, options: ["rbind"] });
      s.linux!.devices = [{ path: "/dev/mydev", type: "c", major: 1, minor: 3, fileMode: 0o666 }];
      s.linux!.maskedPaths = []; // a file is masked with /dev/null, which this /dev has not
    });
    try {
      const r = await capsule(root, ["run", "-b", b, "rr-devbind"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      assertEquals(r.stdout.trim().split(" ").sort(), ["marker", "mydev"]);
    } finally {
      await removeAll(b, devdir);
    }
  },
);

rootTest(
  "rootfs: a missing cwd is made inside the rootfs, under a read-only root and through a link",
  async (root) => {
    const outside = await Deno.makeTempDir({ prefix: "capsule-outside-" });
    const b = await makeBundle("pwd; touch /f 2>/dev/null && echo root-writable; echo end", (s) => {
      s.root!.readonly = true;
      s.process!.cwd = "/link/new/dir";
    }, { ownRootfs: true });
    try {
      await Deno.symlink(outside, `${b}/rootfs/link`);
      const r = await capsule(root, ["run", "-b", b, "rr-cwd"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      // The link is resolved inside the rootfs: the cwd is <rootfs><outside>/new/dir.
      assertEquals(r.stdout.trim().split("\n"), [`${outside}/new/dir`, "end"]);
      assert(empty(outside), "the cwd was made outside the rootfs");
      assert(Deno.statSync(`${b}/rootfs${outside}/new/dir`).isDirectory);
    } finally {
      await removeAll(b, outside);
    }
  },
);

rootTest(
  "rootfs: root.path with a trailing slash, readonly root with rootfsPropagation, mount propagation and data",
  async (root) => {
    const b = await makeBundle(
      `cut -d' ' -f5,6,7 /proc/self/mountinfo; grep ' /pp ' /proc/self/mountinfo | cut -d' ' -f11-`,
      (s) => {
        s.root = { path: "rootfs/", readonly: true };
        s.linux!.rootfsPropagation = "shared";
        s.mounts!.push(
          { destination: "/pp", type: "tmpfs", source: "tmpfs", options: ["size=1m", "shared"] },
          { destination: "/q", type: "tmpfs", source: "tmpfs", options: ["mode=700"] },
        );
      },
      { ownRootfs: true },
    );
    try {
      await Deno.mkdir(`${b}/rootfs/pp`);
      await Deno.mkdir(`${b}/rootfs/q`);
      const r = await capsule(root, ["run", "-b", b, "rr-prop"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      const out = r.stdout;
      const slash = line(out, "/")!;
      assert(slash.split(" ")[1].split(",").includes("ro"), out);
      assertMatch(slash, /shared:\d+/, `rootfsPropagation not applied: ${slash}`);
      assertMatch(line(out, "/pp")!, /shared:\d+/, out);
      assertMatch(out, /size=1024k/, out);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "rootfs: a file bind gets a file target and its parents; a missing bind source is refused",
  async (root) => {
    const data = await Deno.makeTempDir({ prefix: "capsule-data-" });
    await Deno.writeTextFile(`${data}/file.txt`, "content");
    const b = await makeBundle("cat /x/y/file.txt", (s) => {
      s.mounts!.push({
        destination: "/x/y/file.txt",
        type: "bind",
        source: `${data}/file.txt`,
        options: ["bind"],
      });
    }, { ownRootfs: true });
    const missing = await makeBundle("true", (s) => {
      s.mounts!.push({
        destination: "/m",
        type: "bind",
        source: `${data}/nope`,
        options: ["bind"],
      });
    }, { ownRootfs: true });
    try {
      const r = await capsule(root, ["run", "-b", b, "rr-file"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      assertEquals(r.stdout, "content");
      assert(Deno.statSync(`${b}/rootfs/x/y/file.txt`).isFile);
      const m = await capsule(root, ["run", "-b", missing, "rr-missing"]);
      assertEquals(m.code, 1, m.stderr + m.stdout);
      assert(m.stderr.includes(`${data}/nope`), m.stderr);
      assertMatch(m.stderr, /No such file or directory|ENOENT|does not exist/i);
    } finally {
      await removeAll(b, missing, data);
    }
  },
);

rootTest(
  "rootfs: config mounts in config order, a later one on top of an earlier one",
  async (root) => {
    const b = await makeBundle(`${MOUNTINFO}; ls /o`, (s) => {
      s.mounts!.push(
        { destination: "/o", type: "tmpfs", source: "tmpfs", options: ["size=1m"] },
        { destination: "/o/inner", type: "tmpfs", source: "tmpfs", options: ["size=1m"] },
      );
    });
    try {
      const r = await capsule(root, ["run", "-b", b, "rr-order"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      assert(line(r.stdout, "/o/inner") !== undefined, r.stdout);
      assertEquals(r.stdout.trim().split("\n").pop(), "inner");
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "rootfs: in a user namespace without its own network namespace, sysfs and device nodes are host binds",
  async (root) => {
    const b = await makeBundle(
      `${MOUNTINFO}; stat -c '%t:%T' /dev/null; echo x > /dev/null && echo null-ok; ls /sys/class >/dev/null && echo sys-ok`,
      (s) => {
        s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== "network");
        s.linux!.namespaces.push({ type: "user" });
        s.linux!.uidMappings = USERNS_MAP;
        s.linux!.gidMappings = USERNS_MAP;
      },
    );
    try {
      const r = await capsule(root, ["run", "-b", b, "rr-userns"]);
      assertEquals(r.code, 0, r.stderr + r.stdout);
      const out = r.stdout;
      assert(line(out, "/sys")?.includes("sysfs"), out);
      assert(line(out, "/sys")!.split(" ")[1].split(",").includes("ro"), out);
      assert(line(out, "/dev/null") !== undefined, `/dev/null is not a bind: ${out}`);
      assert(out.includes("1:3\nnull-ok\nsys-ok"), out);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "rootfs: a mount destination through a symlink loop is refused by name; a dangling link's tail is made inside",
  async (root) => {
    const outside = await Deno.makeTempDir({ prefix: "capsule-outside-" });
    const loop = await makeBundle("true", (s) => {
      s.mounts!.push({ destination: "/loop/x", type: "tmpfs", source: "tmpfs", options: [] });
    }, { ownRootfs: true });
    const dangling = await makeBundle(`${MOUNTINFO}`, (s) => {
      s.mounts!.push({ destination: "/dang/a/b", type: "tmpfs", source: "tmpfs", options: [] });
    }, { ownRootfs: true });
    try {
      await Deno.symlink("loop2", `${loop}/rootfs/loop`);
      await Deno.symlink("loop", `${loop}/rootfs/loop2`);
      const r = await capsule(root, ["run", "-b", loop, "rr-loop"]);
      assertEquals(r.code, 1, r.stderr + r.stdout);
      assertMatch(r.stderr, /too many levels of symbolic links/);
      // A link to a missing host path: the rest of the path is made inside the rootfs.
      await Deno.symlink(`${outside}/gone`, `${dangling}/rootfs/dang`);
      const d = await capsule(root, ["run", "-b", dangling, "rr-dang"]);
      assertEquals(d.code, 0, d.stderr + d.stdout);
      assert(line(d.stdout, `${outside}/gone/a/b`)?.includes("tmpfs"), d.stdout);
      assert(empty(outside), "something was made outside the rootfs");
    } finally {
      await removeAll(loop, dangling, outside);
    }
  },
);

rootTest(
  "rootfs: EPERM from a filesystem other than sysfs is not swallowed (mqueue in a user namespace without its own ipc)",
  async (root) => {
    const b = await makeBundle("true", (s) => {
      s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== "ipc");
      s.linux!.namespaces.push({ type: "user" });
      s.linux!.uidMappings = USERNS_MAP;
      s.linux!.gidMappings = USERNS_MAP;
    });
    try {
      const r = await capsule(root, ["run", "-b", b, "rr-mqueue"]);
      assertEquals(r.code, 1, r.stderr + r.stdout);
      assertMatch(r.stderr, /mqueue/);
      assertMatch(r.stderr, /not permitted|EPERM/i);
    } finally {
      await removeAll(b);
    }
  },
);
