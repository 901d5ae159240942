// Unit tests of runtime/rootfs.ts, without root: secureJoin against a real directory tree with
// real symlinks, and the rootfs sequence against a recording fake (nothing is mounted).
import {
  createDevices,
  maskPath,
  mountOne,
  readonlyPath,
  secureJoin,
  setupDevLinks,
  setupRootfs,
} from "../../runtime/rootfs.ts";
import { buildInitPlan, type DeviceOp, type MountOp } from "../../runtime/plan.ts";
import { defaultSpec } from "../../runtime/spec.ts";
import {
  assert,
  assertEquals,
  assertThrows,
  basePlan,
  type Call,
  FakeRootfsOps,
  SYSCALLS,
  withTempDir,
} from "./fake_rootfs_ops.ts";

// From <linux/mount.h> and <sys/mount.h>.
const MS_RDONLY = 1;
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOEXEC = 8;
const MS_REMOUNT = 32;
const MS_BIND = 4096;
const MS_MOVE = 8192;
const MS_REC = 16384;
const MS_PRIVATE = 1 << 18;
const MS_SLAVE = 1 << 19;
const MS_STRICTATIME = 1 << 24;
const MNT_DETACH = 2;

function mkdirp(p: string): void {
  Deno.mkdirSync(p, { recursive: true });
}

function touch(p: string): void {
  Deno.writeTextFileSync(p, "");
}

function exists(p: string): boolean {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** A temp dir holding `rootfs/` (the container's root) and room for host paths beside it. */
function withRoot(fn: (root: string, dir: string) => void): () => Promise<void> {
  return () =>
    withTempDir((dir) => {
      const root = `${dir}/rootfs`;
      mkdirp(root);
      fn(root, dir);
    });
}

function op(name: string, ...args: unknown[]): Call {
  return { op: name, args };
}

/** A flags value to match by its bits: all of `has` set, none of `not`. */
class Bits {
  constructor(readonly has: number, readonly not = 0) {}
  matches(v: unknown): boolean {
    return typeof v === "number" && (v & this.has) === this.has && (v & this.not) === 0;
  }
}

/** Compares recorded calls to expected ones; a Bits argument matches a flags value by bits. */
function assertCalls(actual: Call[], expected: Call[]): void {
  const show = (cs: Call[]) =>
    cs.map((c, i) =>
      `  ${i}: ${c.op}(${
        c.args.map((a) => a instanceof Bits ? `bits(${a.has})` : JSON.stringify(a)).join(", ")
      })`
    ).join("\n");
  const ok = actual.length === expected.length &&
    expected.every((e, i) =>
      e.op === actual[i].op && e.args.length === actual[i].args.length &&
      e.args.every((a, j) =>
        a instanceof Bits ? a.matches(actual[i].args[j]) : Object.is(a, actual[i].args[j])
      )
    );
  if (!ok) {
    throw new Error(`calls differ\nactual:\n${show(actual)}\nexpected:\n${show(expected)}`);
  }
}

function bindMount(destination: string, source: string, flags: number): MountOp {
  return { destination, source, type: "bind", flags, propagation: [], data: "", bind: true };
}

// ---------------------------------------------------------------------------------------------
// secureJoin

Deno.test(
  "secureJoin: plain paths are joined under root; '', '/', '.' and '//' are the root",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    assertEquals(secureJoin(ops, root, "/"), root);
    assertEquals(secureJoin(ops, root, ""), root);
    assertEquals(secureJoin(ops, root, "."), root);
    assertEquals(secureJoin(ops, root, "//./"), root);
    assertEquals(secureJoin(ops, root, "/a/b"), `${root}/a/b`);
    assertEquals(secureJoin(ops, root, "a//b/./c/"), `${root}/a/b/c`);
    // A trailing slash on root changes nothing.
    assertEquals(secureJoin(ops, `${root}/`, "/a"), `${root}/a`);
  }),
);

Deno.test(
  "secureJoin: an absolute symlink /evil -> /etc resolves to <root>/etc",
  withRoot((root) => {
    mkdirp(`${root}/etc`);
    Deno.symlinkSync("/etc", `${root}/evil`);
    const ops = new FakeRootfsOps();
    assertEquals(secureJoin(ops, root, "/evil"), `${root}/etc`);
    assertEquals(secureJoin(ops, root, "/evil/passwd"), `${root}/etc/passwd`);
    // Even when <root>/etc does not exist the result stays inside.
    Deno.removeSync(`${root}/etc`);
    assertEquals(secureJoin(ops, root, "/evil/shadow"), `${root}/etc/shadow`);
  }),
);

Deno.test(
  "secureJoin: '..' never climbs above the root",
  withRoot((root) => {
    mkdirp(`${root}/a`);
    const ops = new FakeRootfsOps();
    assertEquals(secureJoin(ops, root, "../../.."), root);
    assertEquals(secureJoin(ops, root, "/../../../etc/passwd"), `${root}/etc/passwd`);
    assertEquals(secureJoin(ops, root, "/a/../../../x"), `${root}/x`);
    assertEquals(secureJoin(ops, root, "/a/.."), root);
  }),
);

Deno.test(
  "secureJoin: relative symlinks resolve from the link's directory",
  withRoot((root) => {
    mkdirp(`${root}/usr/lib`);
    Deno.symlinkSync("lib", `${root}/usr/lib64`);
    mkdirp(`${root}/a/b`);
    Deno.symlinkSync("../c", `${root}/a/b/up`);
    const ops = new FakeRootfsOps();
    assertEquals(secureJoin(ops, root, "/usr/lib64/libc.so"), `${root}/usr/lib/libc.so`);
    assertEquals(secureJoin(ops, root, "/a/b/up/d"), `${root}/a/c/d`);
  }),
);

Deno.test(
  "secureJoin: a relative symlink full of '..' stays inside the root",
  withRoot((root) => {
    mkdirp(`${root}/var/lib`);
    Deno.symlinkSync("../../../../../../../../etc", `${root}/var/lib/esc`);
    const ops = new FakeRootfsOps();
    assertEquals(secureJoin(ops, root, "/var/lib/esc/hosts"), `${root}/etc/hosts`);
  }),
);

Deno.test(
  "secureJoin: chained links, and a link to '/' is the root",
  withRoot((root) => {
    mkdirp(`${root}/etc`);
    Deno.symlinkSync("/l2", `${root}/l1`);
    Deno.symlinkSync("etc", `${root}/l2`);
    Deno.symlinkSync("/", `${root}/top`);
    const ops = new FakeRootfsOps();
    assertEquals(secureJoin(ops, root, "/l1/x"), `${root}/etc/x`);
    assertEquals(secureJoin(ops, root, "/top"), root);
    assertEquals(secureJoin(ops, root, "/top/../top/etc"), `${root}/etc`);
  }),
);

Deno.test(
  "secureJoin: '..' after a symlink is taken from the link's target (as the kernel does)",
  withRoot((root) => {
    mkdirp(`${root}/a/b`);
    Deno.symlinkSync("/a/b", `${root}/link`);
    const ops = new FakeRootfsOps();
    assertEquals(secureJoin(ops, root, "/link/.."), `${root}/a`);
    assertEquals(secureJoin(ops, root, "/link/../x"), `${root}/a/x`);
  }),
);

Deno.test(
  "secureJoin: symlink loops fail with code ELOOP",
  withRoot((root) => {
    Deno.symlinkSync("loop2", `${root}/loop1`);
    Deno.symlinkSync("/loop1", `${root}/loop2`);
    Deno.symlinkSync("self", `${root}/self`);
    const ops = new FakeRootfsOps();
    for (const p of ["/loop1", "/loop2/x", "/self", "self/../x"]) {
      const e = assertThrows(() => secureJoin(ops, root, p));
      assertEquals((e as Error & { code?: string }).code, "ELOOP", p);
    }
  }),
);

Deno.test(
  "secureJoin: a nonexistent tail is appended lexically, also behind a dangling link",
  withRoot((root) => {
    Deno.symlinkSync("/nowhere/deep", `${root}/dangling`);
    const ops = new FakeRootfsOps();
    assertEquals(secureJoin(ops, root, "/missing/x/y"), `${root}/missing/x/y`);
    assertEquals(secureJoin(ops, root, "/missing/x/../y"), `${root}/missing/y`);
    assertEquals(secureJoin(ops, root, "/dangling/f"), `${root}/nowhere/deep/f`);
  }),
);

Deno.test(
  "secureJoin: no input path leads outside the root",
  withRoot((root, dir) => {
    mkdirp(`${root}/d`);
    Deno.symlinkSync(dir, `${root}/abs`); // an absolute host path: means <root><dir> inside
    Deno.symlinkSync("..", `${root}/d/up`);
    Deno.symlinkSync("../../..", `${root}/d/up3`);
    Deno.symlinkSync("/..", `${root}/slashdotdot`);
    const ops = new FakeRootfsOps();
    const inputs = [
      "/abs",
      "/abs/..",
      "/d/up/..",
      "/d/up3/../../etc",
      "/slashdotdot/etc",
      "/d/up/up/up",
      "..",
      "/d/../..",
    ];
    for (const p of inputs) {
      const r = secureJoin(ops, root, p);
      assert(r === root || r.startsWith(`${root}/`), `${p} -> ${r} is outside ${root}`);
    }
    assertEquals(secureJoin(ops, root, "/abs"), `${root}${dir}`);
  }),
);

// ---------------------------------------------------------------------------------------------
// mountOne

Deno.test(
  "mountOne: a filesystem mount creates its directory under root and mounts with data",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    mountOne(ops, root, {
      destination: "/dev/shm",
      source: "shm",
      type: "tmpfs",
      flags: MS_NOSUID | MS_NODEV | MS_NOEXEC,
      propagation: [],
      data: "mode=1777,size=65536k",
      bind: false,
    });
    assert(Deno.statSync(`${root}/dev/shm`).isDirectory, "target directory created");
    assertCalls(ops.ops(), [
      op("mount", "shm", `${root}/dev/shm`, "tmpfs", 14, "mode=1777,size=65536k"),
    ]);
  }),
);

Deno.test(
  "mountOne: empty data is passed as null",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    mountOne(ops, root, {
      destination: "/proc",
      source: "proc",
      type: "proc",
      flags: 0,
      propagation: [],
      data: "",
      bind: false,
    });
    assertCalls(ops.ops(), [op("mount", "proc", `${root}/proc`, "proc", 0, null)]);
  }),
);

Deno.test(
  "mountOne: a bind with 'ro' needs a second mount: MS_REMOUNT|MS_BIND|MS_RDONLY",
  withRoot((root, dir) => {
    mkdirp(`${dir}/host/data`);
    const ops = new FakeRootfsOps();
    mountOne(ops, root, bindMount("/data", `${dir}/host/data`, MS_BIND | MS_RDONLY));
    assert(Deno.statSync(`${root}/data`).isDirectory, "a directory bind target is a directory");
    assertCalls(ops.ops(), [
      // The bind itself ignores every flag but MS_BIND/MS_REC: ro must not be lost here...
      op("mount", `${dir}/host/data`, `${root}/data`, "bind", MS_BIND, null),
      // ...it takes a remount of the new bind mount.
      op("mount", null, `${root}/data`, null, new Bits(MS_REMOUNT | MS_BIND | MS_RDONLY), null),
    ]);
    assertEquals(
      ops.mounts()[1][3],
      MS_REMOUNT | MS_BIND | MS_RDONLY,
      "the remount carries exactly ro + bind + remount",
    );
  }),
);

Deno.test(
  "mountOne: rbind,nosuid,nodev,ro keeps MS_REC on the bind, the flags on the remount",
  withRoot((root, dir) => {
    mkdirp(`${dir}/src`);
    const ops = new FakeRootfsOps();
    mountOne(
      ops,
      root,
      bindMount("/mnt", `${dir}/src`, MS_BIND | MS_REC | MS_NOSUID | MS_NODEV | MS_RDONLY),
    );
    const m = ops.mounts();
    assertEquals(m.length, 2);
    assertEquals(m[0], [`${dir}/src`, `${root}/mnt`, "bind", MS_BIND | MS_REC, null]);
    assert(
      new Bits(MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, MS_NOEXEC).matches(m[1][3]),
      `remount flags ${m[1][3]}`,
    );
  }),
);

Deno.test(
  "mountOne: a plain rbind without other flags is a single mount call",
  withRoot((root, dir) => {
    mkdirp(`${dir}/src`);
    const ops = new FakeRootfsOps();
    mountOne(ops, root, bindMount("/mnt", `${dir}/src`, MS_BIND | MS_REC));
    assertCalls(ops.ops(), [
      op("mount", `${dir}/src`, `${root}/mnt`, "bind", MS_BIND | MS_REC, null),
    ]);
  }),
);

Deno.test(
  "mountOne: a file bind source gets a file target (and its parent directories)",
  withRoot((root, dir) => {
    touch(`${dir}/resolv.conf`);
    const ops = new FakeRootfsOps();
    mountOne(ops, root, bindMount("/etc/net/resolv.conf", `${dir}/resolv.conf`, MS_BIND));
    assert(Deno.statSync(`${root}/etc/net`).isDirectory, "parent created");
    assert(Deno.lstatSync(`${root}/etc/net/resolv.conf`).isFile, "target is a file");
    assertCalls(ops.ops(), [
      op("mount", `${dir}/resolv.conf`, `${root}/etc/net/resolv.conf`, "bind", MS_BIND, null),
    ]);
  }),
);

Deno.test(
  "mountOne: a missing bind source fails with ENOENT and mounts nothing",
  withRoot((root, dir) => {
    const ops = new FakeRootfsOps();
    const e = assertThrows(() =>
      mountOne(ops, root, bindMount("/x", `${dir}/does-not-exist`, MS_BIND))
    );
    assertEquals((e as Error & { code?: string }).code, "ENOENT");
    assertEquals(ops.mounts(), []);
  }),
);

Deno.test(
  "mountOne: a destination through an absolute symlink lands inside the root",
  withRoot((root, dir) => {
    const outside = `${dir}/outside`;
    mkdirp(outside);
    Deno.symlinkSync(outside, `${root}/evil`); // absolute host path of a dir outside the root
    Deno.symlinkSync("/etc", `${root}/etc-link`);
    const ops = new FakeRootfsOps();
    mountOne(ops, root, {
      destination: "/evil/x",
      source: "tmpfs",
      type: "tmpfs",
      flags: 0,
      propagation: [],
      data: "",
      bind: false,
    });
    mountOne(ops, root, {
      destination: "/etc-link/y",
      source: "tmpfs",
      type: "tmpfs",
      flags: 0,
      propagation: [],
      data: "",
      bind: false,
    });
    const targets = ops.mounts().map((m) => m[1] as string);
    assertEquals(targets, [`${root}${outside}/x`, `${root}/etc/y`]);
    for (const t of targets) assert(t.startsWith(`${root}/`), `${t} outside ${root}`);
    assert(!exists(`${outside}/x`), "nothing was created outside the root");
  }),
);

Deno.test(
  "mountOne: a bind destination through a '..' symlink lands inside the root",
  withRoot((root, dir) => {
    mkdirp(`${dir}/src`);
    mkdirp(`${root}/a`);
    Deno.symlinkSync("../../../../../../..", `${root}/a/up`);
    const ops = new FakeRootfsOps();
    mountOne(ops, root, bindMount("/a/up/tmp/b", `${dir}/src`, MS_BIND));
    const target = ops.mounts()[0][1] as string;
    assertEquals(target, `${root}/tmp/b`);
    assert(Deno.statSync(`${root}/tmp/b`).isDirectory, "created inside the root");
  }),
);

Deno.test(
  "mountOne: propagation changes follow the mount, on the same target",
  withRoot((root, dir) => {
    mkdirp(`${dir}/src`);
    const ops = new FakeRootfsOps();
    mountOne(ops, root, {
      ...bindMount("/m", `${dir}/src`, MS_BIND | MS_REC),
      propagation: [MS_PRIVATE | MS_REC],
    });
    assertCalls(ops.ops(), [
      op("mount", `${dir}/src`, `${root}/m`, "bind", MS_BIND | MS_REC, null),
      op("mount", null, `${root}/m`, null, MS_PRIVATE | MS_REC, null),
    ]);
  }),
);

Deno.test(
  "mountOne: sysfs refused with EPERM falls back to a bind of the host /sys, then a remount",
  withRoot((root) => {
    const ops = new FakeRootfsOps({
      failMount: (_s, _t, fstype) => (fstype === "sysfs" ? "EPERM" : undefined),
    });
    const flags = MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY;
    mountOne(ops, root, {
      destination: "/sys",
      source: "sysfs",
      type: "sysfs",
      flags,
      propagation: [],
      data: "",
      bind: false,
    });
    assertCalls(ops.ops(), [
      op("mount", "sysfs", `${root}/sys`, "sysfs", flags, null),
      op("mount", "/sys", `${root}/sys`, "bind", MS_BIND | MS_REC, null),
      op("mount", null, `${root}/sys`, null, new Bits(flags | MS_BIND | MS_REMOUNT), null),
    ]);
  }),
);

Deno.test(
  "mountOne: EPERM from another filesystem type is not swallowed",
  withRoot((root) => {
    const ops = new FakeRootfsOps({ failMount: () => "EPERM" });
    const e = assertThrows(() =>
      mountOne(ops, root, {
        destination: "/proc",
        source: "proc",
        type: "proc",
        flags: 0,
        propagation: [],
        data: "",
        bind: false,
      })
    );
    assertEquals((e as Error & { code?: string }).code, "EPERM");
    assertEquals(ops.mounts().length, 1);
  }),
);

// ---------------------------------------------------------------------------------------------
// createDevices

const NULL_DEV: DeviceOp = {
  path: "/dev/null",
  type: "c",
  major: 1,
  minor: 3,
  mode: 0o666,
  uid: 0,
  gid: 0,
};

Deno.test(
  "createDevices: umask 0, mknod + chown of each device under root, umask restored",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    createDevices(ops, root, [
      NULL_DEV,
      { path: "/dev/tty", type: "c", major: 5, minor: 0, mode: 0o666, uid: 0, gid: 5 },
      { path: "/dev/sda", type: "b", major: 8, minor: 0, mode: 0o660, uid: 0, gid: 6 },
    ]);
    assert(Deno.statSync(`${root}/dev`).isDirectory, "/dev created");
    assertCalls(ops.ops(), [
      op("umask", 0),
      op("mknod", `${root}/dev/null`, "c", 0o666, 1, 3),
      op("chown", `${root}/dev/null`, 0, 0),
      op("mknod", `${root}/dev/tty`, "c", 0o666, 5, 0),
      op("chown", `${root}/dev/tty`, 0, 5),
      op("mknod", `${root}/dev/sda`, "b", 0o660, 8, 0),
      op("chown", `${root}/dev/sda`, 0, 6),
      op("umask", 0o022),
    ]);
  }),
);

Deno.test(
  "createDevices: an existing entry at the device path is removed before mknod",
  withRoot((root) => {
    mkdirp(`${root}/dev`);
    touch(`${root}/dev/null`);
    const ops = new FakeRootfsOps();
    createDevices(ops, root, [NULL_DEV]);
    const seq = ops.ops(new Set(["remove", "mknod"]));
    assertCalls(seq, [
      op("remove", `${root}/dev/null`),
      op("mknod", `${root}/dev/null`, "c", 0o666, 1, 3),
    ]);
  }),
);

Deno.test(
  "createDevices: mknod EPERM falls back to a bind mount of the host device",
  withRoot((root) => {
    const ops = new FakeRootfsOps({ mknodError: "EPERM" });
    createDevices(ops, root, [NULL_DEV]);
    assertCalls(ops.ops(new Set([...SYSCALLS, "createFile"])), [
      op("umask", 0),
      op("mknod", `${root}/dev/null`, "c", 0o666, 1, 3),
      op("createFile", `${root}/dev/null`),
      op("mount", "/dev/null", `${root}/dev/null`, "bind", MS_BIND, null),
      op("umask", 0o022),
    ]);
    assert(Deno.lstatSync(`${root}/dev/null`).isFile, "a file to bind over was created");
  }),
);

Deno.test(
  "createDevices: other errors, and EPERM for a fifo, are thrown (umask still restored)",
  withRoot((root) => {
    for (
      const [code, dev] of [
        ["EACCES", NULL_DEV],
        ["EPERM", { ...NULL_DEV, path: "/dev/fifo", type: "p" }],
      ] as [string, DeviceOp][]
    ) {
      const ops = new FakeRootfsOps({ mknodError: code });
      const e = assertThrows(() => createDevices(ops, root, [dev]));
      assertEquals((e as Error & { code?: string }).code, code);
      assertEquals(ops.mounts(), [], "no bind fallback");
      assertEquals(ops.ops().at(-1), op("umask", 0o022), "umask restored");
    }
  }),
);

Deno.test(
  "createDevices: a device path through a symlink out of the root stays inside",
  withRoot((root, dir) => {
    mkdirp(`${dir}/hostdev`);
    Deno.symlinkSync(`${dir}/hostdev`, `${root}/dev`);
    const ops = new FakeRootfsOps();
    createDevices(ops, root, [NULL_DEV]);
    const mknod = ops.calls.find((c) => c.op === "mknod")!;
    assertEquals(mknod.args[0], `${root}${dir}/hostdev/null`);
    assert(!exists(`${dir}/hostdev/null`), "nothing created in the host directory");
  }),
);

// ---------------------------------------------------------------------------------------------
// maskPath / readonlyPath

Deno.test(
  "maskPath: a directory gets a read-only tmpfs, a file gets /dev/null, a missing path nothing",
  withRoot((root) => {
    mkdirp(`${root}/acpi`);
    touch(`${root}/kcore`);
    const ops = new FakeRootfsOps();
    maskPath(ops, `${root}/acpi`);
    maskPath(ops, `${root}/kcore`);
    maskPath(ops, `${root}/nothing`);
    assertCalls(ops.ops(), [
      op("mount", "tmpfs", `${root}/acpi`, "tmpfs", new Bits(MS_RDONLY), null),
      op("mount", "/dev/null", `${root}/kcore`, "bind", new Bits(MS_BIND), null),
    ]);
  }),
);

Deno.test(
  "readonlyPath: bind the path onto itself, then remount it read-only; missing -> nothing",
  withRoot((root) => {
    mkdirp(`${root}/sys`);
    const ops = new FakeRootfsOps();
    readonlyPath(ops, `${root}/sys`);
    readonlyPath(ops, `${root}/missing`);
    assertCalls(ops.ops(), [
      op("mount", `${root}/sys`, `${root}/sys`, "bind", new Bits(MS_BIND | MS_REC), null),
      op("mount", null, `${root}/sys`, null, new Bits(MS_BIND | MS_REMOUNT | MS_RDONLY), null),
    ]);
  }),
);

// ---------------------------------------------------------------------------------------------
// setupRootfs

const DEFAULT_DEVS: [string, number, number][] = [
  ["/dev/null", 1, 3],
  ["/dev/zero", 1, 5],
  ["/dev/full", 1, 7],
  ["/dev/random", 1, 8],
  ["/dev/urandom", 1, 9],
  ["/dev/tty", 5, 0],
];

Deno.test(
  "setupRootfs: the default spec, in runc's order, from '/' propagation to the ro remount",
  withRoot((root, dir) => {
    // Some of the masked and read-only paths exist in the container's /proc and /sys.
    mkdirp(`${root}/proc/acpi`);
    touch(`${root}/proc/kcore`);
    mkdirp(`${root}/proc/sys`);
    touch(`${root}/proc/sysrq-trigger`);
    mkdirp(`${root}/sys/firmware`);
    const plan = buildInitPlan(defaultSpec(), { id: "t", bundle: dir, execFifoFd: 9 });
    assertEquals(plan.rootfs, root);
    const ops = new FakeRootfsOps();
    setupRootfs(ops, plan);
    const R = root;
    const ro = MS_BIND | MS_REMOUNT | MS_RDONLY;
    assertCalls(ops.ops(new Set([...SYSCALLS, "symlink"])), [
      op("mount", null, "/", null, MS_REC | MS_SLAVE, null),
      op("mount", R, R, "bind", MS_BIND | MS_REC, null),
      op("mount", "proc", `${R}/proc`, "proc", 0, null),
      op("mount", "tmpfs", `${R}/dev`, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k"),
      op(
        "mount",
        "devpts",
        `${R}/dev/pts`,
        "devpts",
        MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
      ),
      op("mount", "shm", `${R}/dev/shm`, "tmpfs", 14, "mode=1777,size=65536k"),
      op("mount", "mqueue", `${R}/dev/mqueue`, "mqueue", 14, null),
      op("mount", "sysfs", `${R}/sys`, "sysfs", 15, null),
      op("umask", 0),
      ...DEFAULT_DEVS.flatMap(([p, maj, min]) => [
        op("mknod", `${R}${p}`, "c", 0o666, maj, min),
        op("chown", `${R}${p}`, 0, 0),
      ]),
      op("umask", 0o022),
      op("symlink", "/proc/self/fd", `${R}/dev/fd`),
      op("symlink", "/proc/self/fd/0", `${R}/dev/stdin`),
      op("symlink", "/proc/self/fd/1", `${R}/dev/stdout`),
      op("symlink", "/proc/self/fd/2", `${R}/dev/stderr`),
      op("symlink", "pts/ptmx", `${R}/dev/ptmx`),
      op("chdir", R),
      op("pivotRoot", ".", "."),
      op("umount2", ".", MNT_DETACH),
      op("chdir", "/"),
      // Masked paths (container paths now), only those that exist.
      op("mount", "tmpfs", "/proc/acpi", "tmpfs", new Bits(MS_RDONLY), null),
      op("mount", "/dev/null", "/proc/kcore", "bind", new Bits(MS_BIND), null),
      op("mount", "tmpfs", "/sys/firmware", "tmpfs", new Bits(MS_RDONLY), null),
      // Read-only paths.
      op("mount", "/proc/sys", "/proc/sys", "bind", new Bits(MS_BIND | MS_REC), null),
      op("mount", null, "/proc/sys", null, new Bits(ro), null),
      op("mount", "/proc/sysrq-trigger", "/proc/sysrq-trigger", "bind", new Bits(MS_BIND), null),
      op("mount", null, "/proc/sysrq-trigger", null, new Bits(ro), null),
      // root.readonly: true
      op("mount", null, "/", null, ro, null),
    ]);
    assertEquals(Deno.readLinkSync(`${root}/dev/ptmx`), "pts/ptmx");
  }),
);

Deno.test(
  "setupRootfs: not readonly -> no remount of '/'; rootfsPropagation applied last",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    setupRootfs(ops, basePlan(root, { finalPropagation: MS_PRIVATE | MS_REC }));
    assertCalls(ops.ops(), [
      op("mount", null, "/", null, MS_REC | MS_SLAVE, null),
      op("mount", root, root, "bind", MS_BIND | MS_REC, null),
      op("chdir", root),
      op("pivotRoot", ".", "."),
      op("umount2", ".", MNT_DETACH),
      op("chdir", "/"),
      op("mount", null, "/", null, MS_PRIVATE | MS_REC, null),
    ]);
  }),
);

Deno.test(
  "setupRootfs: readonly root + rootfsPropagation: ro remount, then propagation",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    setupRootfs(ops, basePlan(root, { readonly: true, finalPropagation: MS_PRIVATE }));
    const tail = ops.mounts().slice(-2);
    assertEquals(tail, [
      [null, "/", null, MS_BIND | MS_REMOUNT | MS_RDONLY, null],
      [null, "/", null, MS_PRIVATE, null],
    ]);
  }),
);

Deno.test(
  "setupRootfs: a trailing slash on plan.rootfs is stripped for every call",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    setupRootfs(ops, basePlan(`${root}/`));
    assertEquals(ops.mounts()[1], [root, root, "bind", MS_BIND | MS_REC, null]);
    assertEquals(ops.calls.find((c) => c.op === "chdir")!.args, [root]);
  }),
);

Deno.test(
  "setupRootfs: noPivot moves the rootfs onto '/' (MS_MOVE) and chroots, no pivot_root",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    setupRootfs(ops, basePlan(root, { noPivot: true }));
    assertCalls(ops.ops(), [
      op("mount", null, "/", null, MS_REC | MS_SLAVE, null),
      op("mount", root, root, "bind", MS_BIND | MS_REC, null),
      op("chdir", root),
      op("mount", root, "/", null, MS_MOVE, null),
      op("chroot", "."),
      op("chdir", "/"),
    ]);
  }),
);

Deno.test(
  "setupRootfs: a /dev bind mount means no default devices and no /dev links",
  withRoot((root, dir) => {
    mkdirp(`${dir}/hostdev`);
    const ops = new FakeRootfsOps();
    setupRootfs(
      ops,
      basePlan(root, {
        mounts: [bindMount("/dev", `${dir}/hostdev`, MS_BIND | MS_REC)],
        setupDev: false,
      }),
    );
    const names = ops.calls.map((c) => c.op);
    assert(!names.includes("mknod"), "no mknod");
    assert(!names.includes("symlink"), "no symlink");
    assert(!exists(`${dir}/hostdev/ptmx`), "host /dev untouched");
  }),
);

Deno.test(
  "setupRootfs: explicit devices are created even without default /dev setup",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    setupRootfs(
      ops,
      basePlan(root, {
        devices: [{
          path: "/dev/fuse",
          type: "c",
          major: 10,
          minor: 229,
          mode: 0o600,
          uid: 0,
          gid: 0,
        }],
      }),
    );
    const mknods = ops.calls.filter((c) => c.op === "mknod").map((c) => c.args);
    assertEquals(mknods, [[`${root}/dev/fuse`, "c", 0o600, 10, 229]]);
    assert(!ops.calls.some((c) => c.op === "symlink"), "no /dev links without setupDev");
  }),
);

Deno.test(
  "setupRootfs: the cwd is created inside the root before pivot_root, even through a link",
  withRoot((root) => {
    Deno.symlinkSync("/etc", `${root}/evil`);
    const ops = new FakeRootfsOps();
    const plan = basePlan(root);
    plan.process.cwd = "/evil/work/dir";
    setupRootfs(ops, plan);
    assert(Deno.statSync(`${root}/etc/work/dir`).isDirectory, "cwd created under root");
    const mkdirAt = ops.calls.findIndex((c) =>
      c.op === "mkdir" && c.args[0] === `${root}/etc/work/dir`
    );
    const pivotAt = ops.calls.findIndex((c) => c.op === "pivotRoot");
    assert(mkdirAt >= 0 && mkdirAt < pivotAt, "mkdir before pivot_root");
  }),
);

Deno.test(
  "setupRootfs: config mounts are mounted in config order, before the devices",
  withRoot((root, dir) => {
    mkdirp(`${dir}/a`);
    const ops = new FakeRootfsOps();
    const tmpfs = (destination: string): MountOp => ({
      destination,
      source: "tmpfs",
      type: "tmpfs",
      flags: 0,
      propagation: [],
      data: "",
      bind: false,
    });
    setupRootfs(
      ops,
      basePlan(root, {
        mounts: [tmpfs("/z"), bindMount("/a", `${dir}/a`, MS_BIND), tmpfs("/m")],
        setupDev: true,
        devices: [NULL_DEV],
      }),
    );
    const targets = ops.mounts().map((m) => m[1]);
    assertEquals(targets.slice(2, 5), [`${root}/z`, `${root}/a`, `${root}/m`]);
    const firstMknod = ops.calls.findIndex((c) => c.op === "mknod");
    const lastConfigMount = ops.calls.findIndex((c) =>
      c.op === "mount" && c.args[1] === `${root}/m`
    );
    assert(lastConfigMount < firstMknod, "devices after config mounts");
  }),
);

// ---------------------------------------------------------------------------------------------
// Races: a component swapped for a symlink after secureJoin (another container sharing a
// bind-mounted directory) must not make capsule create or mount anything outside the rootfs.

/** A fake that, at the first openAt of `name`, swaps root/<dir>/<name> for a link to `to`. */
function swapping(root: string, dirRel: string, name: string, to: string): FakeRootfsOps {
  let done = false;
  return new FakeRootfsOps({
    beforeOpenAt: (dir, n) => {
      if (done || n !== name || dir !== `${root}${dirRel}`) return;
      done = true;
      Deno.renameSync(`${dir}/${n}`, `${dir}/${n}.old`);
      Deno.symlinkSync(to, `${dir}/${n}`);
    },
  });
}

Deno.test(
  "mountOne: a directory swapped for a symlink out of the root while the target is made -> refused, nothing made outside",
  withRoot((root, dir) => {
    mkdirp(`${root}/shared/a`);
    mkdirp(`${dir}/outside`);
    mkdirp(`${dir}/src`);
    for (
      const m of [
        bindMount("/shared/a/b/c", `${dir}/src`, MS_BIND),
        { ...bindMount("/shared/a/b/c", "tmpfs", 0), type: "tmpfs", bind: false },
      ]
    ) {
      const ops = swapping(root, "/shared", "a", `${dir}/outside`);
      const e = assertThrows(() => mountOne(ops, root, m));
      assertEquals((e as Error & { code?: string }).code, "ELOOP");
      assertEquals([...Deno.readDirSync(`${dir}/outside`)], [], "nothing made outside");
      assertEquals(ops.mounts(), [], "nothing mounted");
      assertEquals(ops.open.size, 0, "no fd left open");
      Deno.removeSync(`${root}/shared/a`);
      Deno.renameSync(`${root}/shared/a.old`, `${root}/shared/a`);
    }
  }),
);

Deno.test(
  "mountOne: a file bind target whose parent is swapped for a symlink -> no file created outside",
  withRoot((root, dir) => {
    mkdirp(`${root}/etc`);
    mkdirp(`${dir}/outside`);
    touch(`${dir}/resolv.conf`);
    const ops = swapping(root, "", "etc", `${dir}/outside`);
    assertThrows(() => mountOne(ops, root, bindMount("/etc/resolv.conf", `${dir}/resolv.conf`, 0)));
    assert(!exists(`${dir}/outside/resolv.conf`), "no file created outside");
    assertEquals(ops.mounts(), []);
  }),
);

Deno.test(
  "createDevices and setupDevLinks: /dev swapped for a symlink -> refused, no node or link outside",
  withRoot((root, dir) => {
    mkdirp(`${root}/dev`);
    mkdirp(`${dir}/outside`);
    const ops = swapping(root, "", "dev", `${dir}/outside`);
    assertThrows(() => createDevices(ops, root, [NULL_DEV]));
    assertEquals(ops.ops(new Set(["mknod", "chown", "createFile"])), []);
    Deno.removeSync(`${root}/dev`);
    Deno.renameSync(`${root}/dev.old`, `${root}/dev`);
    const ops2 = swapping(root, "", "dev", `${dir}/outside`);
    assertThrows(() => setupDevLinks(ops2, root));
    assertEquals([...Deno.readDirSync(`${dir}/outside`)], [], "nothing made outside");
  }),
);

Deno.test(
  "maskPath: a file masked with a /dev/null that is not the null device is refused",
  withRoot((root) => {
    mkdirp(`${root}/dev`);
    touch(`${root}/kcore`);
    touch(`${root}/secret`);
    Deno.symlinkSync("/secret", `${root}/dev/null`); // planted: would bind /secret over kcore
    const ops = new FakeRootfsOps();
    assertThrows(() => maskPath(ops, "/kcore", root), Error, "not the null device");
    assertEquals(ops.mounts(), []);
  }),
);

Deno.test(
  "readonlyPath: a symlink to a host path is followed inside the root only",
  withRoot((root, dir) => {
    mkdirp(`${root}/real`);
    mkdirp(`${dir}/hostdir`);
    Deno.symlinkSync(`${dir}/hostdir`, `${root}/evil`); // absolute: read inside the root
    const ops = new FakeRootfsOps();
    readonlyPath(ops, "/evil", root);
    // /evil -> <dir>/hostdir inside the root does not exist: nothing is mounted on the host dir.
    assertEquals(ops.mounts(), []);
  }),
);

Deno.test(
  "setupRootfs: sysctls are written after pivot_root and before the read-only /proc/sys",
  withRoot((root) => {
    mkdirp(`${root}/proc/sys`);
    const ops = new FakeRootfsOps();
    setupRootfs(
      ops,
      basePlan(root, {
        sysctl: { "net/ipv4/ip_forward": "1" },
        readonlyPaths: ["/proc/sys"],
      }),
    );
    const names = ops.ops().map((c) => `${c.op}:${c.args[1] ?? c.args[0]}`);
    const at = (s: string) => names.indexOf(s);
    assert(at("sysctl:1") > at("pivotRoot:."), `sysctl after pivot_root: ${names}`);
    assert(at("sysctl:1") < at("mount:/proc/sys"), `sysctl before /proc/sys is bound ro: ${names}`);
    assertEquals(ops.ops(new Set(["sysctl"])), [op("sysctl", "net/ipv4/ip_forward", "1")]);
    assertEquals(ops.open.size, 0, "no fd left open");
  }),
);

Deno.test(
  "mountOne: tmpfs over an existing directory keeps its mode; mode= wins; a new one is made 0755",
  withRoot((root) => {
    mkdirp(`${root}/private`);
    Deno.chmodSync(`${root}/private`, 0o700);
    mkdirp(`${root}/sticky`);
    Deno.chmodSync(`${root}/sticky`, 0o1777);
    const tmpfs = (destination: string, data: string): MountOp => ({
      destination,
      source: "tmpfs",
      type: "tmpfs",
      flags: 0,
      propagation: [],
      data,
      bind: false,
    });
    const ops = new FakeRootfsOps();
    mountOne(ops, root, tmpfs("/private", ""));
    mountOne(ops, root, tmpfs("/private", "size=1m"));
    mountOne(ops, root, tmpfs("/sticky", "size=1m"));
    mountOne(ops, root, tmpfs("/private", "mode=1777,size=1m"));
    mountOne(ops, root, tmpfs("/new", ""));
    assertEquals(ops.mounts().map((m) => m[4]), [
      "mode=0700",
      "mode=0700,size=1m",
      "mode=1777,size=1m",
      "mode=1777,size=1m",
      null,
    ]);
    assertEquals(Deno.statSync(`${root}/new`).mode! & 0o7777, 0o755);
    assertEquals(ops.open.size, 0, "no fd left open");
  }),
);

// ---------------------------------------------------------------------------------------------
// The jail: proc/sysfs on ordinary directories, read-only tmpfs last, --no-pivot's detaching,
// no mount namespace (issue 12, issue 16's proc-sys-symlink, ro-dev, no-pivot-proc)

function fsMount(destination: string, type: string, flags = 0, data = ""): MountOp {
  return { destination, source: type, type, flags, propagation: [], data, bind: false };
}

for (const [type, dest] of [["proc", "/proc"], ["sysfs", "/sys"]]) {
  Deno.test(
    `mountOne: ${type} at ${dest} when ${dest} is a symlink in the rootfs -> refused, naming it`,
    withRoot((root, dir) => {
      mkdirp(`${dir}/elsewhere`);
      Deno.symlinkSync("/tmp", `${root}${dest}`);
      const ops = new FakeRootfsOps();
      const e = assertThrows(() => mountOne(ops, root, fsMount(dest, type)));
      assert(
        (e as Error).message.includes(`${dest} in the rootfs is a symlink`) &&
          (e as Error).message.includes("must be mounted on ordinary directory"),
        (e as Error).message,
      );
      assertEquals(ops.mounts(), []);
    }),
  );
}

Deno.test(
  "mountOne: proc below a symlinked directory, or on a file -> refused; a missing one is made",
  withRoot((root) => {
    mkdirp(`${root}/real`);
    Deno.symlinkSync("real", `${root}/link`);
    touch(`${root}/file`);
    const ops = new FakeRootfsOps();
    const e = assertThrows(() => mountOne(ops, root, fsMount("/link/proc", "proc")));
    assert((e as Error).message.includes("/link in the rootfs is a symlink"), String(e));
    const f = assertThrows(() => mountOne(ops, root, fsMount("/file", "sysfs")));
    assert((f as Error).message.includes("/file in the rootfs is not a directory"), String(f));
    assertEquals(ops.mounts(), []);
    mountOne(ops, root, fsMount("/proc", "proc"));
    assertEquals(ops.mounts(), [["proc", `${root}/proc`, "proc", 0, null]]);
  }),
);

Deno.test(
  "setupRootfs: a ro /dev tmpfs is mounted writable, filled, then remounted read-only last",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    setupRootfs(
      ops,
      basePlan(root, {
        mounts: [
          fsMount("/dev", "tmpfs", MS_NOSUID | MS_RDONLY, "mode=755"),
          fsMount("/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC),
          fsMount("/tmp", "tmpfs", MS_RDONLY | MS_NODEV),
        ],
        setupDev: true,
        devices: [{
          path: "/dev/null",
          type: "c",
          major: 1,
          minor: 3,
          mode: 0o666,
          uid: 0,
          gid: 0,
        }],
      }),
    );
    const mounts = ops.mounts();
    assertEquals(mounts[2], ["tmpfs", `${root}/dev`, "tmpfs", MS_NOSUID, "mode=755"]);
    assertEquals(mounts[4], ["tmpfs", `${root}/tmp`, "tmpfs", MS_NODEV, null]);
    const names = ops.calls.map((c) => c.op);
    assert(names.lastIndexOf("mknod") < names.indexOf("pivotRoot"), "devices made before");
    // After pivot_root, each one by its path in the container, read-only and its other flags.
    const last = mounts.slice(-2);
    assertEquals(last, [
      [null, "/dev", null, MS_NOSUID | MS_BIND | MS_REMOUNT | MS_RDONLY, null],
      [null, "/tmp", null, MS_NODEV | MS_BIND | MS_REMOUNT | MS_RDONLY, null],
    ]);
  }),
);

Deno.test(
  "setupRootfs: noPivot detaches every mount outside the rootfs (not those holding it) first",
  withRoot((root) => {
    const m = (id: number, mountPoint: string, fsType = "ext4") => ({
      id,
      parent: 1,
      root: "/",
      mountPoint,
      fsType,
    });
    const ops = new FakeRootfsOps({
      mountTable: [
        m(1, "/"),
        m(2, "/proc", "proc"),
        m(3, "/sys", "sysfs"),
        m(4, "/proc/sys/fs/binfmt_misc", "binfmt_misc"),
        m(5, root.slice(0, root.lastIndexOf("/")), "tmpfs"), // holds the rootfs: stays
        m(6, root),
        m(7, `${root}/proc`, "proc"),
        m(8, "/sys", "tmpfs"), // stacked on the sysfs: goes before it
      ],
      failUmount: (t) => t === "/sys" ? undefined : t === "/proc" ? "EINVAL" : undefined,
    });
    setupRootfs(ops, basePlan(root, { noPivot: true }));
    assertCalls(ops.ops(), [
      op("mount", null, "/", null, MS_REC | MS_SLAVE, null),
      op("mount", root, root, "bind", MS_BIND | MS_REC, null),
      op("chdir", root),
      op("umount2", "/proc/sys/fs/binfmt_misc", MNT_DETACH),
      op("umount2", "/sys", MNT_DETACH),
      op("umount2", "/sys", MNT_DETACH),
      op("umount2", "/proc", MNT_DETACH),
      // A mount that cannot be detached (locked in a user namespace) is covered.
      op(
        "mount",
        "tmpfs",
        "/proc",
        "tmpfs",
        MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
        "size=0",
      ),
      op("mount", root, "/", null, MS_MOVE, null),
      op("chroot", "."),
      op("chdir", "/"),
    ]);
  }),
);

Deno.test(
  "setupRootfs: without a mount namespace, '/' is left alone, no bind (create's), chroot",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    setupRootfs(
      ops,
      basePlan(root, {
        hostMountNs: true,
        noPivot: true, // chroot either way: nothing is moved on the host
        readonly: true,
        namespaces: [],
        mounts: [fsMount("/proc", "proc")],
      }),
    );
    assertCalls(ops.ops(), [
      op("mount", "proc", `${root}/proc`, "proc", 0, null),
      op("chdir", root),
      op("chroot", "."),
      op("chdir", "/"),
      // "/" in the chroot is create's private bind of the rootfs, never the host's root.
      op("mount", null, "/", null, MS_BIND | MS_REMOUNT | MS_RDONLY, null),
    ]);
  }),
);

Deno.test(
  "setupRootfs: without a mount namespace, masked paths are refused before anything is mounted",
  withRoot((root) => {
    const ops = new FakeRootfsOps();
    assertThrows(() =>
      setupRootfs(ops, basePlan(root, { hostMountNs: true, maskedPaths: ["/proc/kcore"] }))
    );
    assertEquals(ops.ops(), []);
  }),
);
