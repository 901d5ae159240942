// Unit tests of runtime/plan.ts: mount options -> mount(2) flags, and spec -> init plan.
// Expected numbers come from <linux/mount.h>, <linux/capability.h> and <sys/resource.h>.
import { buildInitPlan, type MountOp, parseMountOptions } from "../../runtime/plan.ts";
import { defaultSpec, type Spec } from "../../runtime/spec.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assert, assertEquals, assertStringIncludes, assertThrows } from "./helpers.ts";

// mount(2) flags, from the kernel headers (independent of runtime/consts.ts).
const MS_RDONLY = 1;
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOEXEC = 8;
const MS_SYNCHRONOUS = 16;
const MS_REMOUNT = 32;
const MS_NOATIME = 1024;
const MS_BIND = 4096;
const MS_REC = 16384;
const MS_PRIVATE = 1 << 18;
const MS_SLAVE = 1 << 19;
const MS_SHARED = 1 << 20;
const MS_RELATIME = 1 << 21;
const MS_STRICTATIME = 1 << 24;

const OPTS = { id: "c1", bundle: "/bundles/c1", execFifoFd: 7 };

function spec(edit: (s: Spec) => void = () => {}): Spec {
  const s = defaultSpec();
  edit(s);
  return s;
}

// ---------------------------------------------------------------------------------------------
// parseMountOptions

Deno.test("parseMountOptions: no options -> no flags, no propagation, empty data", () => {
  assertEquals(parseMountOptions([]), { flags: 0, propagation: [], data: "", recursiveFlags: 0 });
  assertEquals(parseMountOptions(), { flags: 0, propagation: [], data: "", recursiveFlags: 0 });
});

Deno.test("parseMountOptions: nosuid,noexec,nodev,ro -> MS_NOSUID|MS_NOEXEC|MS_NODEV|MS_RDONLY", () => {
  const r = parseMountOptions(["nosuid", "noexec", "nodev", "ro"]);
  assertEquals(r.flags, MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY);
  assertEquals(r.flags, 15);
  assertEquals(r.data, "");
  assertEquals(r.propagation, []);
});

Deno.test("parseMountOptions: bind -> MS_BIND, rbind -> MS_BIND|MS_REC", () => {
  assertEquals(parseMountOptions(["bind"]).flags, MS_BIND);
  assertEquals(parseMountOptions(["rbind"]).flags, MS_BIND | MS_REC);
});

Deno.test("parseMountOptions: a later option overrides an earlier one (rw clears ro and back)", () => {
  assertEquals(parseMountOptions(["ro", "rw"]).flags, 0);
  assertEquals(parseMountOptions(["rw", "ro"]).flags, MS_RDONLY);
  assertEquals(parseMountOptions(["nosuid", "suid", "nodev"]).flags, MS_NODEV);
  assertEquals(parseMountOptions(["noexec", "exec"]).flags, 0);
  assertEquals(parseMountOptions(["noatime", "atime"]).flags, 0);
  assertEquals(parseMountOptions(["sync", "async"]).flags, 0);
  assertEquals(parseMountOptions(["sync"]).flags, MS_SYNCHRONOUS);
});

Deno.test("parseMountOptions: atime family and remount", () => {
  assertEquals(parseMountOptions(["noatime"]).flags, MS_NOATIME);
  assertEquals(parseMountOptions(["relatime"]).flags, MS_RELATIME);
  assertEquals(parseMountOptions(["strictatime"]).flags, MS_STRICTATIME);
  assertEquals(parseMountOptions(["remount", "ro"]).flags, MS_REMOUNT | MS_RDONLY);
});

Deno.test("parseMountOptions: propagation options go to propagation, in order, not to flags", () => {
  const r = parseMountOptions(["rbind", "rprivate"]);
  assertEquals(r.flags, MS_BIND | MS_REC);
  assertEquals(r.propagation, [MS_PRIVATE | MS_REC]);
  assertEquals(r.data, "");
  assertEquals(parseMountOptions(["shared", "rslave"]).propagation, [MS_SHARED, MS_SLAVE | MS_REC]);
  assertEquals(parseMountOptions(["private"]).propagation, [MS_PRIVATE]);
});

Deno.test("parseMountOptions: filesystem options become the data string, comma-joined in order", () => {
  const r = parseMountOptions(["nosuid", "strictatime", "mode=755", "size=65536k"]);
  assertEquals(r.flags, MS_NOSUID | MS_STRICTATIME);
  assertEquals(r.data, "mode=755,size=65536k");
  const pts = parseMountOptions(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]);
  assertEquals(pts.data, "newinstance,ptmxmode=0666,mode=0620");
  assertEquals(pts.flags, MS_NOSUID | MS_NOEXEC);
});

Deno.test("parseMountOptions: 'defaults' and tmpcopyup change nothing", () => {
  assertEquals(parseMountOptions(["defaults", "tmpcopyup"]), {
    flags: 0,
    propagation: [],
    data: "",
    recursiveFlags: 0,
  });
});

Deno.test({
  name: "parseMountOptions: unknown options named like Object.prototype members go to data",
  fn() {
    const r = parseMountOptions(["toString", "constructor", "__proto__"]);
    assertEquals(r, {
      flags: 0,
      propagation: [],
      data: "toString,constructor,__proto__",
      recursiveFlags: 0,
    });
  },
});

Deno.test({
  name: "parseMountOptions: 'rro' makes the mount read-only (at least its top)",
  fn() {
    const r = parseMountOptions(["rbind", "rro"]);
    assert((r.flags & MS_RDONLY) !== 0, `flags ${r.flags} lack MS_RDONLY`);
    assertEquals(r.recursiveFlags, MS_RDONLY);
  },
});

// ---------------------------------------------------------------------------------------------
// buildInitPlan

Deno.test("buildInitPlan: default spec: rootfs relative to the bundle, readonly, id, fifo", () => {
  const p = buildInitPlan(spec(), OPTS);
  assertEquals(p.id, "c1");
  assertEquals(p.rootfs, "/bundles/c1/rootfs");
  assertEquals(p.readonly, true);
  assertEquals(p.execFifoFd, 7);
  assertEquals(p.noPivot, false);
  assertEquals(p.setsid, false);
  assertEquals(p.hostname, "capsule");
  // runc makes "/" a recursive slave before mounting anything.
  assertEquals(p.rootPropagation, MS_REC | MS_SLAVE);
  assertEquals(p.finalPropagation, undefined);
});

Deno.test("buildInitPlan: a bundle path with a trailing slash does not double the slash", () => {
  assertEquals(
    buildInitPlan(spec(), { ...OPTS, bundle: "/bundles/c1/" }).rootfs,
    "/bundles/c1/rootfs",
  );
});

Deno.test("buildInitPlan: an absolute root.path is kept", () => {
  const p = buildInitPlan(spec((s) => (s.root = { path: "/srv/roots/alpine" })), OPTS);
  assertEquals(p.rootfs, "/srv/roots/alpine");
  assertEquals(p.readonly, false);
});

Deno.test("buildInitPlan: the pid namespace is left out of plan.namespaces, the rest kept in order", () => {
  const p = buildInitPlan(spec(), OPTS);
  assertEquals(p.namespaces.map((n) => n.type), ["network", "ipc", "uts", "mount", "cgroup"]);
  const joined = buildInitPlan(
    spec((
      s,
    ) => (s.linux!.namespaces = [{ type: "pid" }, { type: "network", path: "/proc/1/ns/net" }])),
    OPTS,
  );
  assertEquals(joined.namespaces, [{ type: "network", path: "/proc/1/ns/net" }]);
});

Deno.test("buildInitPlan: default spec's mounts become mount ops with parsed flags and data", () => {
  const p = buildInitPlan(spec(), OPTS);
  assertEquals(p.mounts.map((m) => m.destination), [
    "/proc",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/sys",
  ]);
  assertEquals(p.mounts[0], {
    destination: "/proc",
    source: "proc",
    type: "proc",
    flags: 0,
    propagation: [],
    data: "",
    bind: false,
    recursiveFlags: undefined, // no "r" options (the plan reaches the init as JSON)
  });
  assertEquals(p.mounts[1].flags, MS_NOSUID | MS_STRICTATIME);
  assertEquals(p.mounts[1].data, "mode=755,size=65536k");
  // shm: the source is a name, not a path: it must not be joined with the bundle.
  assertEquals(p.mounts[3].source, "shm");
  assertEquals(p.mounts[5].flags, MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY);
  assert(p.mounts.every((m) => !m.bind), "no default mount is a bind mount");
});

Deno.test("buildInitPlan: relative bind sources resolve against the bundle, absolute ones kept", () => {
  const p = buildInitPlan(
    spec((s) =>
      s.mounts!.push(
        { destination: "/data", type: "bind", source: "data", options: ["rbind", "ro"] },
        {
          destination: "/etc/resolv.conf",
          type: "none",
          source: "/etc/resolv.conf",
          options: ["bind"],
        },
        { destination: "/cfg", source: "conf/app", options: ["rbind", "rprivate"] },
      )
    ),
    OPTS,
  );
  const [data, resolv, cfg] = p.mounts.slice(-3);
  assertEquals(data.source, "/bundles/c1/data");
  assertEquals(data.bind, true);
  assertEquals(data.type, "bind");
  assertEquals(data.flags, MS_BIND | MS_REC | MS_RDONLY);
  assertEquals(resolv.source, "/etc/resolv.conf");
  assertEquals(resolv.bind, true, "a 'bind' option makes a bind mount whatever the type");
  assertEquals(resolv.flags, MS_BIND);
  assertEquals(cfg.source, "/bundles/c1/conf/app");
  assertEquals(cfg.bind, true);
  assertEquals(cfg.propagation, [MS_PRIVATE | MS_REC]);
});

Deno.test("buildInitPlan: type 'bind' without a bind option still gets MS_BIND", () => {
  const p = buildInitPlan(
    spec((s) => (s.mounts = [{ destination: "/x", type: "bind", source: "/host/x" }])),
    OPTS,
  );
  assertEquals(p.mounts[0].bind, true);
  assert((p.mounts[0].flags & MS_BIND) !== 0, "MS_BIND set");
});

Deno.test({
  name: "buildInitPlan: a relative mount destination is taken relative to '/' (spec 1.1+)",
  fn() {
    const p = buildInitPlan(
      spec((s) => (s.mounts = [{ destination: "data", type: "tmpfs", source: "tmpfs" }])),
      OPTS,
    );
    assertEquals(p.mounts[0].destination, "/data");
  },
});

Deno.test("buildInitPlan: a bind mount without a source is a CapsuleError", () => {
  const e = assertThrows(
    () => buildInitPlan(spec((s) => (s.mounts = [{ destination: "/d", type: "bind" }])), OPTS),
    CapsuleError,
  );
  assertStringIncludes(e.message, "mounts.0.source");
});

Deno.test("buildInitPlan: default devices are created when /dev is not bind-mounted", () => {
  const p = buildInitPlan(spec(), OPTS);
  assertEquals(p.setupDev, true);
  // The OCI spec's default devices, with their Linux major/minor numbers.
  assertEquals(
    p.devices.map((d) => [d.path, d.type, d.major, d.minor, d.mode]),
    [
      ["/dev/null", "c", 1, 3, 0o666],
      ["/dev/zero", "c", 1, 5, 0o666],
      ["/dev/full", "c", 1, 7, 0o666],
      ["/dev/random", "c", 1, 8, 0o666],
      ["/dev/urandom", "c", 1, 9, 0o666],
      ["/dev/tty", "c", 5, 0, 0o666],
    ],
  );
});

Deno.test("buildInitPlan: a bind mount over /dev (or /dev/) turns default devices off", () => {
  for (const dest of ["/dev", "/dev/"]) {
    const p = buildInitPlan(
      spec((
        s,
      ) => (s.mounts = [{ destination: dest, type: "bind", source: "/dev", options: ["rbind"] }])),
      OPTS,
    );
    assertEquals(p.setupDev, false, dest);
    assertEquals(p.devices, [], dest);
  }
  // A tmpfs on /dev (not a bind) keeps them.
  assertEquals(buildInitPlan(spec(), OPTS).setupDev, true);
});

Deno.test("buildInitPlan: linux.devices are added, and replace a default device of the same path", () => {
  const p = buildInitPlan(
    spec((s) => (s.linux!.devices = [
      { path: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o600, uid: 0, gid: 0 },
      { path: "/dev/null", type: "c", major: 1, minor: 3, fileMode: 0o600, uid: 1000, gid: 1000 },
    ])),
    OPTS,
  );
  assertEquals(p.devices.length, 7);
  assertEquals(p.devices.filter((d) => d.path === "/dev/null"), [
    { path: "/dev/null", type: "c", major: 1, minor: 3, mode: 0o600, uid: 1000, gid: 1000 },
  ]);
  assertEquals(p.devices.at(-1)!.path, "/dev/fuse");
  assertEquals(p.devices.at(-1)!.mode, 0o600);
});

Deno.test("buildInitPlan: capability names become their numbers from <linux/capability.h>", () => {
  const p = buildInitPlan(spec(), OPTS);
  // CAP_AUDIT_WRITE=29, CAP_KILL=5, CAP_NET_BIND_SERVICE=10
  assertEquals(p.process.caps!.bounding, [29, 5, 10]);
  assertEquals(p.process.caps!.effective, [29, 5, 10]);
  assertEquals(p.process.caps!.permitted, [29, 5, 10]);
  assertEquals(p.process.caps!.ambient, [29, 5, 10]);
  assertEquals(p.process.caps!.inheritable, []);
  const q = buildInitPlan(
    spec((s) => (s.process!.capabilities = {
      bounding: ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_MKNOD", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"],
    })),
    OPTS,
  );
  assertEquals(q.process.caps!.bounding, [0, 21, 27, 39, 40]);
});

Deno.test("buildInitPlan: no capabilities object -> caps undefined", () => {
  const p = buildInitPlan(spec((s) => delete s.process!.capabilities), OPTS);
  assertEquals(p.process.caps, undefined);
});

Deno.test("buildInitPlan: an unknown capability is a CapsuleError naming it and its field", () => {
  const e = assertThrows(
    () =>
      buildInitPlan(
        spec((s) => (s.process!.capabilities!.effective = ["CAP_KILL", "CAP_FLY"])),
        OPTS,
      ),
    CapsuleError,
  );
  assertStringIncludes(e.message, "CAP_FLY");
  assertStringIncludes(e.message, "effective");
});

Deno.test("buildInitPlan: rlimit names become resource numbers, values kept as strings", () => {
  const p = buildInitPlan(
    spec((s) => (s.process!.rlimits = [
      { type: "RLIMIT_NOFILE", soft: 1024, hard: 4096 },
      { type: "RLIMIT_NPROC", soft: 10, hard: 20 },
      { type: "RLIMIT_CORE", soft: 0, hard: 0 },
      { type: "RLIMIT_AS", soft: 2 ** 40, hard: 2 ** 40 },
    ])),
    OPTS,
  );
  assertEquals(p.process.rlimits, [
    { resource: 7, soft: "1024", hard: "4096" },
    { resource: 6, soft: "10", hard: "20" },
    { resource: 4, soft: "0", hard: "0" },
    { resource: 9, soft: "1099511627776", hard: "1099511627776" },
  ]);
});

Deno.test("buildInitPlan: an unknown rlimit is a CapsuleError naming it", () => {
  assertThrows(
    () =>
      buildInitPlan(
        spec((s) => (s.process!.rlimits = [{ type: "RLIMIT_FOO", soft: 1, hard: 1 }])),
        OPTS,
      ),
    CapsuleError,
    "RLIMIT_FOO",
  );
});

Deno.test("buildInitPlan: process fields (args, env, cwd, user, umask default 0022)", () => {
  const p = buildInitPlan(
    spec((s) => {
      s.process!.args = ["/bin/echo", "hi"];
      s.process!.cwd = "/work";
      s.process!.user = { uid: 1000, gid: 100, additionalGids: [10, 20] };
    }),
    OPTS,
  );
  assertEquals(p.process.args, ["/bin/echo", "hi"]);
  assertEquals(p.process.cwd, "/work");
  assertEquals(p.process.uid, 1000);
  assertEquals(p.process.gid, 100);
  assertEquals(p.process.additionalGids, [10, 20]);
  assertEquals(p.process.umask, 0o022);
  assertEquals(p.process.noNewPrivileges, true);
  assertEquals(p.process.env, defaultSpec().process!.env);
  const q = buildInitPlan(spec((s) => (s.process!.user.umask = 0o077)), OPTS);
  assertEquals(q.process.umask, 0o077);
});

Deno.test("buildInitPlan: masked/readonly paths, sysctl and rootfsPropagation pass through", () => {
  const p = buildInitPlan(
    spec((s) => {
      s.linux!.rootfsPropagation = "rprivate";
      s.linux!.sysctl = { "net.ipv4.ip_forward": "1" };
    }),
    OPTS,
  );
  assertEquals(p.maskedPaths, defaultSpec().linux!.maskedPaths);
  assertEquals(p.readonlyPaths, defaultSpec().linux!.readonlyPaths);
  // By file below /proc/sys.
  assertEquals(p.sysctl, { "net/ipv4/ip_forward": "1" });
  assertEquals(p.finalPropagation, MS_PRIVATE | MS_REC);
  assertEquals(
    buildInitPlan(spec((s) => (s.linux!.rootfsPropagation = "shared")), OPTS).finalPropagation,
    MS_SHARED,
  );
});

Deno.test("buildInitPlan: extraMounts are appended after the config's mounts", () => {
  const hosts: MountOp = {
    destination: "/etc/hosts",
    source: "/var/lib/net/hosts",
    type: "bind",
    flags: MS_BIND | MS_RDONLY,
    propagation: [],
    data: "",
    bind: true,
  };
  const p = buildInitPlan(spec(), { ...OPTS, extraMounts: [hosts] });
  assertEquals(p.mounts.length, 7);
  assertEquals(p.mounts[6], hosts);
  assertEquals(p.mounts[0].destination, "/proc");
});

Deno.test("buildInitPlan: an extra bind mount over /dev also turns default devices off", () => {
  const dev: MountOp = {
    destination: "/dev",
    source: "/dev",
    type: "bind",
    flags: MS_BIND | MS_REC,
    propagation: [],
    data: "",
    bind: true,
  };
  const p = buildInitPlan(spec(), { ...OPTS, extraMounts: [dev] });
  assertEquals(p.setupDev, false);
});

Deno.test("buildInitPlan: detach -> setsid and logFd; noPivot passed through", () => {
  const p = buildInitPlan(spec(), { ...OPTS, detach: true, logFd: 8, noPivot: true });
  assertEquals(p.setsid, true);
  assertEquals(p.logFd, 8);
  assertEquals(p.noPivot, true);
});

Deno.test("buildInitPlan: does not modify the spec it is given", () => {
  const s = spec();
  const before = JSON.stringify(s);
  buildInitPlan(s, { ...OPTS, extraMounts: [] });
  assertEquals(JSON.stringify(s), before);
});

Deno.test("buildInitPlan: sysctl keys in dot or slash form become their /proc/sys file", () => {
  const p = buildInitPlan(
    spec((s) => {
      s.linux!.sysctl = {
        "net.ipv4.conf.all.forwarding": "1",
        "net/ipv4/conf/eth0.100/rp_filter": "2",
        "net.ipv4.conf.eth0/100.accept_redirects": "0",
      };
    }),
    OPTS,
  );
  assertEquals(p.sysctl, {
    "net/ipv4/conf/all/forwarding": "1",
    "net/ipv4/conf/eth0.100/rp_filter": "2",
    "net/ipv4/conf/eth0.100/accept_redirects": "0",
  });
  assertThrows(
    () => buildInitPlan(spec((s) => s.linux!.sysctl = { "net..x": "1" }), OPTS),
    CapsuleError,
    '"net..x"',
  );
});

Deno.test("buildInitPlan: rlimits past 2^64 mean unlimited; soft above hard is refused", () => {
  const p = buildInitPlan(
    spec((s) => {
      s.process!.rlimits = [
        { type: "RLIMIT_NOFILE", soft: 1024, hard: 4096 },
        // JSON's 18446744073709551615 (RLIM_INFINITY) reads back as 2^64.
        { type: "RLIMIT_CORE", soft: 18446744073709551615, hard: 18446744073709551615 },
      ];
    }),
    OPTS,
  );
  assertEquals(p.process.rlimits.map((r) => [r.soft, r.hard]), [
    ["1024", "4096"],
    ["18446744073709551615", "18446744073709551615"],
  ]);
  assertThrows(
    () =>
      buildInitPlan(
        spec((s) => s.process!.rlimits = [{ type: "RLIMIT_NOFILE", soft: 10, hard: 5 }]),
        OPTS,
      ),
    CapsuleError,
    "RLIMIT_NOFILE soft limit 10 is above its hard limit 5",
  );
});

Deno.test("buildInitPlan: rlimits past 2^53-1 (bigints, as parseJson reads them) are exact; a soft one above its hard one is named exactly", () => {
  const p = buildInitPlan(
    spec((s) => {
      s.process!.rlimits = [
        { type: "RLIMIT_CPU", soft: 18446744073709551614n, hard: 18446744073709551614n },
        { type: "RLIMIT_CORE", soft: 9007199254740993n, hard: 18446744073709551615n },
        // 2^64 as an older capsule wrote RLIM_INFINITY (JSON.stringify of the double 2^64).
        { type: "RLIMIT_FSIZE", soft: 1024, hard: 18446744073709552000n },
      ];
    }),
    OPTS,
  );
  assertEquals(p.process.rlimits.map((r) => [r.resource, r.soft, r.hard]), [
    [0, "18446744073709551614", "18446744073709551614"],
    [4, "9007199254740993", "18446744073709551615"],
    [1, "1024", "18446744073709551615"],
  ]);
  assertThrows(
    () =>
      buildInitPlan(
        spec((s) =>
          s.process!.rlimits = [{
            type: "RLIMIT_CPU",
            soft: 18446744073709551615n,
            hard: 18446744073709551614n,
          }]
        ),
        OPTS,
      ),
    CapsuleError,
    "RLIMIT_CPU soft limit 18446744073709551615 is above its hard limit 18446744073709551614",
  );
});

Deno.test("buildInitPlan: no mount namespace in linux.namespaces -> hostMountNs", () => {
  assertEquals(buildInitPlan(spec(), OPTS).hostMountNs, undefined);
  const p = buildInitPlan(
    spec((s) => s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== "mount")),
    OPTS,
  );
  assertEquals(p.hostMountNs, true);
});
