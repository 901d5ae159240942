// Unit tests of runtime/cgroups. Fake hierarchies are temp directories laid out like cgroupfs
// (fsRoot option); expected file contents follow the kernel's documented formats
// (Documentation/admin-guide/cgroup-v2.rst, cgroup-v1/*.rst). One test uses the real v1
// hierarchy and runs only as root on a v1 host.

import {
  assert,
  assertEquals,
  assertMatch,
  assertStringIncludes,
  assertThrows,
} from "./fixtures/cgroups/assert.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import {
  type CgroupPaths,
  type CgroupStats,
  detectCgroups,
  FakeCgroupDriver,
  parseMemory,
  runcStatsJson,
  toRuncStats,
} from "../../runtime/cgroups/mod.ts";
import { planV1, UNIFIED, type V1Current } from "../../runtime/cgroups/v1.ts";
import { planV2, swapToV2, UNLIMITED } from "../../runtime/cgroups/v2.ts";
import {
  blkioToIoWeight,
  executePlan,
  sharesToWeight,
  subCgroupPaths,
  validateResources,
} from "../../runtime/cgroups/util.ts";

// ---------------------------------------------------------------------------------------------
// Fixtures

const V1_MOUNTINFO = `22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
`;
const V1_SELF = `9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/abc
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
`;
// A hybrid systemd host: v1 controllers (cpu,cpuacct co-mounted) plus the unified hierarchy.
const HYBRID_MOUNTINFO =
  `25 21 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
32 25 0:29 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids
`;
const HYBRID_SELF = `4:pids:/user.slice/user-0.slice/session-1.scope
3:memory:/user.slice/user-0.slice/session-1.scope
2:cpu,cpuacct:/user.slice
1:name=systemd:/user.slice/user-0.slice/session-1.scope
0::/user.slice/user-0.slice/session-1.scope
`;
const V2_MOUNTINFO =
  `24 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`;
const V2_SELF = "0::/user.slice/user-0.slice/session-3.scope\n";

function tmp(): string {
  return Deno.makeTempDirSync({ prefix: "capsule-cgroups-test-" });
}

/** Write files (path relative to root -> content), making directories as needed. */
function layout(root: string, files: Record<string, string>): void {
  for (const [rel, content] of Object.entries(files)) {
    const p = `${root}/${rel}`;
    Deno.mkdirSync(p.slice(0, p.lastIndexOf("/")), { recursive: true });
    Deno.writeTextFileSync(p, content);
  }
}

const read = (p: string) => Deno.readTextFileSync(p).trim();
const existsSync = (p: string) => {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
};

/** A cgroup2 mount at <root>/sys/fs/cgroup with an (already made) capsule/x below it. */
function v2Tree(root: string, omit: string[] = []): string {
  const cg = "sys/fs/cgroup";
  const x = `${cg}/capsule/x`;
  const files: Record<string, string> = {
    [`${cg}/cgroup.controllers`]: "cpuset cpu io memory hugetlb pids\n",
    [`${cg}/cgroup.subtree_control`]: "\n",
    [`${cg}/cgroup.procs`]: "1\n",
    [`${cg}/capsule/cgroup.controllers`]: "cpuset cpu io memory pids\n",
    [`${cg}/capsule/cgroup.subtree_control`]: "\n",
    [`${cg}/capsule/cgroup.procs`]: "",
    [`${x}/cgroup.procs`]: "",
    [`${x}/cgroup.freeze`]: "0\n",
    [`${x}/cgroup.events`]: "populated 0\nfrozen 0\n",
    [`${x}/cpu.weight`]: "100\n",
    [`${x}/cpu.max`]: "max 100000\n",
    [`${x}/cpuset.cpus`]: "\n",
    [`${x}/cpuset.mems`]: "\n",
    [`${x}/memory.max`]: "max\n",
    [`${x}/memory.low`]: "0\n",
    [`${x}/memory.swap.max`]: "max\n",
    [`${x}/pids.max`]: "max\n",
    [`${x}/io.weight`]: "default 100\n",
    [`${x}/memory.high`]: "max\n",
  };
  for (const o of omit) delete files[`${x}/${o}`];
  layout(root, files);
  return `${root}/${x}`;
}

const V1_CTRLS = ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"];

/** v1 mounts at <root>/sys/fs/cgroup/<controller>, each with capsule/x made. */
function v1Tree(root: string, omit: string[] = []): void {
  const cg = "sys/fs/cgroup";
  const files: Record<string, string> = {
    [`${cg}/cpuset/cpuset.cpus`]: "0-1\n",
    [`${cg}/cpuset/cpuset.mems`]: "0\n",
    [`${cg}/cpuset/capsule/cpuset.cpus`]: "\n",
    [`${cg}/cpuset/capsule/cpuset.mems`]: "\n",
    [`${cg}/cpuset/capsule/x/cpuset.cpus`]: "\n",
    [`${cg}/cpuset/capsule/x/cpuset.mems`]: "\n",
    [`${cg}/cpu/capsule/x/cpu.shares`]: "1024\n",
    [`${cg}/cpu/capsule/x/cpu.cfs_quota_us`]: "-1\n",
    [`${cg}/cpu/capsule/x/cpu.cfs_period_us`]: "100000\n",
    [`${cg}/memory/capsule/x/memory.limit_in_bytes`]: "9223372036854771712\n",
    [`${cg}/memory/capsule/x/memory.memsw.limit_in_bytes`]: "9223372036854771712\n",
    [`${cg}/memory/capsule/x/memory.soft_limit_in_bytes`]: "9223372036854771712\n",
    [`${cg}/memory/capsule/x/memory.swappiness`]: "60\n",
    [`${cg}/memory/capsule/x/memory.oom_control`]: "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    [`${cg}/pids/capsule/x/pids.max`]: "max\n",
    [`${cg}/blkio/capsule/x/blkio.weight`]: "500\n",
    [`${cg}/devices/capsule/x/devices.allow`]: "",
    [`${cg}/devices/capsule/x/devices.deny`]: "",
    [`${cg}/freezer/capsule/x/freezer.state`]: "THAWED\n",
  };
  for (const c of [...V1_CTRLS, "systemd"]) files[`${cg}/${c}/capsule/x/cgroup.procs`] = "";
  files[`${cg}/systemd/cgroup.procs`] = "1\n";
  for (const o of omit) for (const k of Object.keys(files)) if (k.endsWith(o)) delete files[k];
  layout(root, files);
}

// ---------------------------------------------------------------------------------------------
// Detection and paths

Deno.test("detect: v1 host, paths absolute / relative / default / systemd", () => {
  const d = detectCgroups({ mountinfo: V1_MOUNTINFO, procSelfCgroup: V1_SELF });
  assertEquals(d.version, 1);
  assertEquals(d.devicesEnforced, true);
  const p = d.paths(undefined, "x");
  assertEquals(p.cpu, "/sys/fs/cgroup/cpu/capsule/x");
  // relative paths are below the caller's own cgroup (as runc reads them)
  assertEquals(p.memory, "/sys/fs/cgroup/memory/process_api/abc/capsule/x");
  assertEquals(p["name=systemd"], "/sys/fs/cgroup/systemd/capsule/x");
  assertEquals(Object.keys(p).sort(), [...V1_CTRLS, "name=systemd"].sort());
  const abs = d.paths("/machine/x", "x");
  assertEquals(abs.memory, "/sys/fs/cgroup/memory/machine/x");
  assertEquals(d.paths("rel/y", "x").memory, "/sys/fs/cgroup/memory/process_api/abc/rel/y");
  assertEquals(
    d.paths("machine-pod.slice:libpod:abc", "x").pids,
    "/sys/fs/cgroup/pids/machine.slice/machine-pod.slice/libpod-abc.scope",
  );
  assertEquals(
    d.paths(":capsule:abc", "x").pids,
    "/sys/fs/cgroup/pids/system.slice/capsule-abc.scope",
  );
  // ".." never leaves the hierarchy
  assertEquals(d.paths("/../../etc", "x").pids, "/sys/fs/cgroup/pids/etc");
});

Deno.test("detect: hybrid counts as v1; co-mounted controllers share a directory", () => {
  const d = detectCgroups({ mountinfo: HYBRID_MOUNTINFO, procSelfCgroup: HYBRID_SELF });
  assertEquals(d.version, 1);
  const p = d.paths("/c1", "c1");
  assertEquals(p.cpu, "/sys/fs/cgroup/cpu,cpuacct/c1");
  assertEquals(p.cpuacct, "/sys/fs/cgroup/cpu,cpuacct/c1");
  assertEquals(p.memory, "/sys/fs/cgroup/memory/c1");
  // The cgroup2 mount is one more hierarchy (not "", which means a v2 host), relative paths
  // below the caller's own 0:: cgroup.
  assertEquals(p[""], undefined);
  assertEquals(p[UNIFIED], "/sys/fs/cgroup/unified/c1");
  assertEquals(
    d.paths("c1", "c1").cpu,
    "/sys/fs/cgroup/cpu,cpuacct/user.slice/c1",
  );
  assertEquals(
    d.paths("c1", "c1")[UNIFIED],
    "/sys/fs/cgroup/unified/user.slice/user-0.slice/session-1.scope/c1",
  );
});

Deno.test("placement: v1 tasks files once per directory, the unified hierarchy as cgroup2; v2 its directory", () => {
  const hybrid = detectCgroups({ mountinfo: HYBRID_MOUNTINFO, procSelfCgroup: HYBRID_SELF });
  const p = hybrid.paths("/c1", "c1");
  const pl = hybrid.placement(p);
  assertEquals(pl.cgroup2, "/sys/fs/cgroup/unified/c1");
  // cpu and cpuacct share a directory: one tasks file for both; every other v1 one has its own.
  const dirs = [...new Set(Object.entries(p).filter(([k]) => k !== UNIFIED).map(([, d]) => d))];
  assertEquals(pl.tasks.sort(), dirs.map((d) => `${d}/tasks`).sort());
  assertEquals(pl.tasks.filter((t) => t.includes("cpu,cpuacct")).length, 1);
  const v1 = detectCgroups({ mountinfo: V1_MOUNTINFO, procSelfCgroup: V1_SELF });
  assertEquals(v1.placement(v1.paths("/c1", "c1")).cgroup2, undefined);
  const v2 = detectCgroups({ mountinfo: V2_MOUNTINFO, procSelfCgroup: V2_SELF });
  assertEquals(v2.placement(v2.paths("/m/x", "x")), { tasks: [], cgroup2: "/sys/fs/cgroup/m/x" });
});

Deno.test("detect: v2 only, and hybrid without v1 controllers", () => {
  const d = detectCgroups({ mountinfo: V2_MOUNTINFO, procSelfCgroup: V2_SELF });
  assertEquals(d.version, 2);
  assertEquals(d.devicesEnforced, true); // through an eBPF program
  assertEquals(d.paths("/machine/x", "x"), { "": "/sys/fs/cgroup/machine/x" });
  assertEquals(d.paths(undefined, "x"), {
    "": "/sys/fs/cgroup/user.slice/user-0.slice/session-3.scope/capsule/x",
  });
  const onlyNamed = HYBRID_MOUNTINFO.split("\n").filter((l) => !/rw,(cpu|memory|pids)/.test(l))
    .join("\n");
  assertEquals(detectCgroups({ mountinfo: onlyNamed, procSelfCgroup: "0::/\n" }).version, 2);
});

Deno.test("detect: mount root below / (nested) and no hierarchy at all", () => {
  const mi = "50 40 0:30 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
  const d = detectCgroups({ mountinfo: mi, procSelfCgroup: "0::/kubepods/pod1/ctr\n" });
  assertEquals(d.paths("sub", "x"), { "": "/sys/fs/cgroup/ctr/sub" });
  const e = assertThrows(
    () => detectCgroups({ mountinfo: "1 0 0:1 / / rw - ext4 /dev/sda rw\n", procSelfCgroup: "" }),
    CapsuleError,
  );
  assertStringIncludes(e.message, "mountinfo");
});

// ---------------------------------------------------------------------------------------------
// Conversions and validation

Deno.test("conversions: cpu.weight from shares, io.weight from blkio weight, swap", () => {
  assertEquals(sharesToWeight(1024), 39);
  assertEquals(sharesToWeight(2), 1);
  assertEquals(sharesToWeight(262144), 10000);
  assertEquals(blkioToIoWeight(10), 1);
  assertEquals(blkioToIoWeight(500), 4950);
  assertEquals(blkioToIoWeight(1000), 10000);
  assertEquals(swapToV2(512, 256), 256);
  assertEquals(swapToV2(-1, 256), -1);
  assertEquals(swapToV2(0, -1), -1);
  assertEquals(swapToV2(0, 256), 0);
  assertThrows(() => swapToV2(100, 256), CapsuleError, "memory+swap");
});

Deno.test("parseMemory", () => {
  assertEquals(parseMemory("1048576"), 1048576);
  assertEquals(parseMemory("512m"), 512 * 1024 * 1024);
  assertEquals(parseMemory("1g"), 1024 ** 3);
  assertEquals(parseMemory("1G"), 1024 ** 3);
  assertEquals(parseMemory("64kb"), 65536);
  assertEquals(parseMemory("1.5GiB"), 1.5 * 1024 ** 3);
  assertEquals(parseMemory("100b"), 100);
  assertEquals(parseMemory("-1"), -1);
  for (const bad of ["", "abc", "12x", "-5", "1..5m", "m", "1ib"]) {
    const e = assertThrows(() => parseMemory(bad), CapsuleError);
    assertStringIncludes(e.message, `"${bad}"`);
  }
  // The flag it came from is named when given.
  const e = assertThrows(() => parseMemory("1x", "--memory-swap"), CapsuleError);
  assertStringIncludes(e.message, `Invalid --memory-swap value "1x"`);
});

Deno.test("validation: bad values are named before anything is written", () => {
  const root = tmp();
  try {
    v2Tree(root);
    const d = detectCgroups({ mountinfo: V2_MOUNTINFO, procSelfCgroup: "0::/\n", fsRoot: root });
    const p = d.paths("/capsule/x", "x");
    const cases: [unknown, string][] = [
      [{ cpu: { shares: 1 } }, "linux.resources.cpu.shares 1"],
      [{ cpu: { shares: "1024" } }, 'linux.resources.cpu.shares "1024"'],
      [{ cpu: { period: 10 } }, "linux.resources.cpu.period 10"],
      [{ cpu: { cpus: "zero" } }, "linux.resources.cpu.cpus"],
      [{ cpu: { shares: 512, realtimeRuntime: 1000 } }, "not supported on cgroup v2"],
      [{ memory: { limit: 200, swap: 100 } }, "linux.resources.memory.swap 100"],
      [{ memory: { swap: 100 } }, "needs a memory limit"],
      [{ blockIO: { weight: 5 } }, "linux.resources.blockIO.weight 5"],
      [{ unified: { "../x": "1" } }, "linux.resources.unified key"],
      [{ devices: [{ allow: true, type: "x" }] }, "devices[0].type"],
    ];
    for (const [r, msg] of cases) {
      const e = assertThrows(() => d.apply(p, r as never), CapsuleError);
      assertStringIncludes(e.message, msg);
    }
    assertEquals(read(`${p[""]}/cpu.weight`), "100");
    const v1 = detectCgroups({ mountinfo: V1_MOUNTINFO, procSelfCgroup: V1_SELF });
    assertThrows(
      () => v1.create(v1.paths("/x", "x"), { unified: { "memory.high": "1" } }),
      CapsuleError,
      "needs cgroup v2",
    );
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// cgroup v2 on a fake tree

Deno.test("v2: create writes the kernel's files", () => {
  const root = tmp();
  try {
    const x = v2Tree(root);
    const d = detectCgroups({ mountinfo: V2_MOUNTINFO, procSelfCgroup: V2_SELF, fsRoot: root });
    const p = d.paths("/capsule/x", "x");
    assertEquals(p, { "": x });
    d.create(p, {
      cpu: { shares: 1024, quota: 50000, period: 100000, cpus: "0-1", mems: "0" },
      memory: { limit: 256 * 1024 * 1024, swap: 512 * 1024 * 1024, reservation: 128 * 1024 * 1024 },
      pids: { limit: 20 },
      blockIO: { weight: 500 },
      devices: [{ allow: false, access: "rwm" }],
      unified: { "memory.high": "300000000" },
    });
    assertEquals(read(`${x}/cpu.weight`), "39");
    assertEquals(read(`${x}/cpu.max`), "50000 100000");
    assertEquals(read(`${x}/cpuset.cpus`), "0-1");
    assertEquals(read(`${x}/cpuset.mems`), "0");
    assertEquals(read(`${x}/memory.max`), "268435456");
    assertEquals(read(`${x}/memory.swap.max`), "268435456");
    assertEquals(read(`${x}/memory.low`), "134217728");
    assertEquals(read(`${x}/memory.high`), "300000000");
    assertEquals(read(`${x}/pids.max`), "20");
    assertEquals(read(`${x}/io.weight`), "4950");
    // controllers were enabled for the children of the ancestors ("+<name>" writes)
    assertMatch(read(`${root}/sys/fs/cgroup/cgroup.subtree_control`), /^\+\w+$/);
    assertMatch(read(`${root}/sys/fs/cgroup/capsule/cgroup.subtree_control`), /^\+\w+$/);

    d.apply(p, { cpu: { shares: 2, quota: -1 }, memory: { limit: -1 }, pids: { limit: 0 } });
    assertEquals(read(`${x}/cpu.weight`), "1");
    assertEquals(read(`${x}/cpu.max`), "max 100000");
    assertEquals(read(`${x}/memory.max`), "max");
    assertEquals(read(`${x}/memory.swap.max`), "max");
    assertEquals(read(`${x}/pids.max`), "max");
    d.apply(p, { cpu: { period: 200000 } });
    assertEquals(read(`${x}/cpu.max`), "max 200000");
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("v2: a refused value names value and file, restores what was written", () => {
  const root = tmp();
  try {
    const x = v2Tree(root, ["pids.max"]);
    const d = detectCgroups({ mountinfo: V2_MOUNTINFO, procSelfCgroup: "0::/\n", fsRoot: root });
    const p = d.paths("capsule/x", "x");
    const e = assertThrows(
      () => d.apply(p, { cpu: { shares: 512 }, memory: { limit: 1000 }, pids: { limit: 20 } }),
      CapsuleError,
    );
    assertStringIncludes(e.message, `Cannot set pids limit 20 in ${x}/pids.max: `);
    assertStringIncludes(e.message, "pids controller");
    assertEquals(read(`${x}/cpu.weight`), "100");
    assertEquals(read(`${x}/memory.max`), "max");
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("v2: create undoes the directories it made when a write fails", () => {
  const root = tmp();
  try {
    v2Tree(root);
    const d = detectCgroups({ mountinfo: V2_MOUNTINFO, procSelfCgroup: "0::/\n", fsRoot: root });
    const p = d.paths("/capsule/new/y", "y");
    // a new directory of a fake tree has no files: the first write fails like a missing controller
    const e = assertThrows(() => d.create(p, { pids: { limit: 5 } }), CapsuleError);
    assertStringIncludes(e.message, `pids limit 5 in ${root}/sys/fs/cgroup/capsule/new/y/pids.max`);
    assert(!existsSync(`${root}/sys/fs/cgroup/capsule/new`));
    assert(existsSync(`${root}/sys/fs/cgroup/capsule/x`));
    // without resources nothing is written: the directories stay
    d.create(p);
    assert(existsSync(p[""]));
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("v2: pids (recursive), freeze/thaw, stats, destroy", () => {
  const root = tmp();
  try {
    const x = v2Tree(root);
    layout(root, {
      "sys/fs/cgroup/capsule/x/cgroup.procs": "10\n12\n",
      "sys/fs/cgroup/capsule/x/sub/cgroup.procs": "11\n",
      "sys/fs/cgroup/capsule/x/cpu.stat":
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 2\nthrottled_usec 300\n",
      "sys/fs/cgroup/capsule/x/memory.current": "4096000\n",
      "sys/fs/cgroup/capsule/x/memory.swap.current": "0\n",
      "sys/fs/cgroup/capsule/x/memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
      "sys/fs/cgroup/capsule/x/memory.stat": "anon 1000\nfile 2000\nkernel_stack 16384\n",
      "sys/fs/cgroup/capsule/x/pids.current": "3\n",
    });
    Deno.writeTextFileSync(`${x}/memory.max`, "33554432\n");
    const d = detectCgroups({ mountinfo: V2_MOUNTINFO, procSelfCgroup: "0::/\n", fsRoot: root });
    const p = d.paths("/capsule/x", "x");
    assertEquals(d.pids(p), [10, 11, 12]);

    // the fake kernel reports frozen at once
    Deno.writeTextFileSync(`${x}/cgroup.events`, "populated 1\nfrozen 1\n");
    d.freeze(p);
    assertEquals(read(`${x}/cgroup.freeze`), "1");
    assertEquals(d.isFrozen(p), true);
    d.thaw(p);
    assertEquals(read(`${x}/cgroup.freeze`), "0");
    assertEquals(d.isFrozen(p), false);

    const s = d.stats(p);
    assertEquals(s.cpu.usage, { total: 1500000, kernel: 500000, user: 1000000 });
    assertEquals(s.cpu.throttling, { periods: 10, throttledPeriods: 2, throttledTime: 300000 });
    assertEquals(s.memory.usage.usage, 4096000);
    assertEquals(s.memory.usage.limit, 33554432);
    assertEquals(s.memory.usage.failcnt, 3);
    assertEquals(s.memory.cache, 2000);
    assertEquals(s.memory.stats.kernel_stack, 16384);
    assertEquals(s.pids, { current: 3, limit: 0 });
    assertEquals(s.oomKillCount, 1);
    const j = toRuncStats(s) as { cpu: { throttling: Record<string, number> } };
    assertEquals(j.cpu.throttling.throttled_periods, 2);

    assertThrows(() => d.destroy({ "": root }), CapsuleError, "Refusing");
    assertThrows(() => d.destroy({ "": `${root}/sys/fs/cgroup` }), CapsuleError, "Refusing");
    d.destroy(p);
    assert(!existsSync(x));
    assert(existsSync(`${root}/sys/fs/cgroup/capsule`));
    d.destroy(p); // idempotent
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// cgroup v1 on a fake tree

const v1Fake = (root: string) =>
  detectCgroups({ mountinfo: V1_MOUNTINFO, procSelfCgroup: "1:cpu:/\n", fsRoot: root });

Deno.test("v1: create writes every controller's files, cpuset copied from the parent", () => {
  const root = tmp();
  try {
    v1Tree(root);
    const d = v1Fake(root);
    const p = d.paths(undefined, "x");
    assertEquals(p.memory, `${root}/sys/fs/cgroup/memory/capsule/x`);
    d.create(p, {
      cpu: { shares: 512, quota: 50000, period: 100000 },
      memory: { limit: 32 * 1024 * 1024, swap: 64 * 1024 * 1024, reservation: 16 * 1024 * 1024 },
      pids: { limit: 20 },
      blockIO: { weight: 300 },
      devices: [{ allow: false, access: "rwm" }],
    });
    assertEquals(read(`${p.cpu}/cpu.shares`), "512");
    assertEquals(read(`${p.cpu}/cpu.cfs_quota_us`), "50000");
    assertEquals(read(`${p.cpu}/cpu.cfs_period_us`), "100000");
    assertEquals(read(`${p.memory}/memory.limit_in_bytes`), "33554432");
    assertEquals(read(`${p.memory}/memory.memsw.limit_in_bytes`), "67108864");
    assertEquals(read(`${p.memory}/memory.soft_limit_in_bytes`), "16777216");
    assertEquals(read(`${p.pids}/pids.max`), "20");
    assertEquals(read(`${p.blkio}/blkio.weight`), "300");
    assertEquals(read(`${p.devices}/devices.deny`), "a *:* rwm");
    assertEquals(read(`${p.devices}/devices.allow`), "c 10:200 rwm"); // last default rule
    // cpuset.cpus / mems of every new level are the parent's
    assertEquals(read(`${root}/sys/fs/cgroup/cpuset/capsule/cpuset.cpus`), "0-1");
    assertEquals(read(`${p.cpuset}/cpuset.cpus`), "0-1");
    assertEquals(read(`${p.cpuset}/cpuset.mems`), "0");

    d.apply(p, { cpu: { cpus: "1" }, memory: { disableOOMKiller: true }, pids: { limit: -1 } });
    assertEquals(read(`${p.cpuset}/cpuset.cpus`), "1");
    assertEquals(read(`${p.memory}/memory.oom_control`), "1");
    assertEquals(read(`${p.pids}/pids.max`), "max");

    d.addProcess(p, 4242);
    assertEquals(read(`${p.freezer}/cgroup.procs`), "4242");
    assertEquals(d.pids(p), [4242]);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("v1: refused value restores earlier writes; missing controller is named", () => {
  const root = tmp();
  try {
    v1Tree(root, ["pids.max"]);
    const d = v1Fake(root);
    const p = d.paths("/capsule/x", "x");
    const e = assertThrows(
      () =>
        d.apply(p, {
          cpu: { shares: 256 },
          memory: { limit: 1000000, disableOOMKiller: true },
          pids: { limit: 20 },
        }),
      CapsuleError,
    );
    assertStringIncludes(e.message, `Cannot set pids limit 20 in ${p.pids}/pids.max: `);
    assertEquals(read(`${p.cpu}/cpu.shares`), "1024");
    assertEquals(read(`${p.memory}/memory.limit_in_bytes`), "9223372036854771712");
    assertEquals(read(`${p.memory}/memory.oom_control`), "0");

    const noPids = detectCgroups({
      mountinfo: V1_MOUNTINFO.split("\n").filter((l) => !l.includes("rw,pids")).join("\n"),
      procSelfCgroup: "",
      fsRoot: root,
    });
    assertThrows(
      () => noPids.apply(noPids.paths("/capsule/x", "x"), { pids: { limit: 3 } }),
      CapsuleError,
      "pids cgroup controller is not mounted",
    );
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("v1: memory and memsw order follows the kernel's limit <= memsw rule", () => {
  const paths: CgroupPaths = { memory: "/m", blkio: "/b" };
  const order = (r: Parameters<typeof planV1>[1], cur: V1Current) =>
    planV1(paths, r, cur).map((o) => `${o.file.slice(3)}=${o.value}`);
  const cur = (memoryLimit: number): V1Current => ({ memoryLimit, hasMemsw: true });
  // raising: memsw first, else the new limit would exceed the old memsw
  assertEquals(order({ memory: { limit: 300, swap: 400 } }, cur(100)), [
    "memory.memsw.limit_in_bytes=400",
    "memory.limit_in_bytes=300",
  ]);
  // lowering: the limit first, else the new memsw would be below the old limit
  assertEquals(order({ memory: { limit: 100, swap: 200 } }, cur(300)), [
    "memory.limit_in_bytes=100",
    "memory.memsw.limit_in_bytes=200",
  ]);
  assertEquals(order({ memory: { limit: 100, swap: -1 } }, cur(300)), [
    "memory.memsw.limit_in_bytes=-1",
    "memory.limit_in_bytes=100",
  ]);
  // unlimited memory with swap unset: both unlimited, memsw first (raising)
  assertEquals(order({ memory: { limit: -1 } }, cur(300)), [
    "memory.memsw.limit_in_bytes=-1",
    "memory.limit_in_bytes=-1",
  ]);
  // no swap accounting: memsw is skipped; no blkio weight file: the weight is still written
  // (to blkio.weight), so that the write fails naming the field instead of being dropped
  assertEquals(
    order({ memory: { limit: 100, swap: 200 }, blockIO: { weight: 100 } }, {
      memoryLimit: 300,
      hasMemsw: false,
    }),
    ["memory.limit_in_bytes=100", "blkio.weight=100"],
  );
  const dev = planV1({ devices: "/d" }, {
    devices: [{ allow: false, access: "rwm" }, { allow: true, type: "c", major: 1, minor: 3 }],
  }, cur(0)).map((o) => `${o.file} ${o.value}`);
  assertEquals(dev.slice(0, 4), [
    "/d/devices.deny a *:* rwm",
    "/d/devices.allow c 1:3 rwm",
    "/d/devices.allow c *:* m",
    "/d/devices.allow b *:* m",
  ]);
  // Letters other than r, w, m are dropped, as runc reads them (update.bats denies "rwa"); a
  // rule left with none changes nothing and is not written (the kernel refuses an empty one).
  const letters = planV1({ devices: "/d" }, {
    devices: [
      { allow: false, access: "rwm" },
      { allow: false, type: "c", major: 1, minor: 11, access: "rwa" },
      { allow: true, type: "c", major: 1, minor: 12, access: "mwwr" },
      { allow: true, type: "c", major: 1, minor: 13, access: "a" },
      { allow: true, type: "c", major: 1, minor: 14, access: "" },
    ],
  }, cur(0)).map((o) => `${o.file} ${o.value}`);
  assertEquals(letters.slice(0, 4), [
    "/d/devices.deny a *:* rwm",
    "/d/devices.deny c 1:11 rw",
    "/d/devices.allow c 1:12 rwm",
    "/d/devices.allow c *:* m",
  ]);
  // Validation accepts them too; a non-string access is still refused.
  validateResources(
    { devices: [{ allow: false, type: "c", major: 1, minor: 11, access: "rwa" }] },
    1,
  );
  assertThrows(
    () => validateResources({ devices: [{ allow: true, access: 7 as never }] }, 2),
    CapsuleError,
    "devices[0].access 7",
  );
});

Deno.test("v1: stats from the kernel's v1 files, freeze, destroy", () => {
  const root = tmp();
  try {
    v1Tree(root);
    const cg = `${root}/sys/fs/cgroup`;
    layout(root, {
      "sys/fs/cgroup/cpuacct/capsule/x/cpuacct.usage": "123456789\n",
      "sys/fs/cgroup/cpuacct/capsule/x/cpuacct.usage_percpu": "100000000 23456789 \n",
      "sys/fs/cgroup/cpuacct/capsule/x/cpuacct.stat": "user 10\nsystem 5\n",
      "sys/fs/cgroup/cpu/capsule/x/cpu.stat": "nr_periods 4\nnr_throttled 1\nthrottled_time 5000\n",
      "sys/fs/cgroup/memory/capsule/x/memory.usage_in_bytes": "1048576\n",
      "sys/fs/cgroup/memory/capsule/x/memory.max_usage_in_bytes": "2097152\n",
      "sys/fs/cgroup/memory/capsule/x/memory.failcnt": "7\n",
      "sys/fs/cgroup/memory/capsule/x/memory.stat": "cache 4096\nrss 8192\ntotal_cache 4096\n",
      "sys/fs/cgroup/memory/capsule/x/memory.oom_control":
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
      "sys/fs/cgroup/pids/capsule/x/pids.current": "2\n",
      "sys/fs/cgroup/pids/capsule/x/child/cgroup.procs": "77\n",
    });
    const d = v1Fake(root);
    const p = d.paths("/capsule/x", "x");
    const s = d.stats(p);
    assertEquals(s.cpu.usage, {
      total: 123456789,
      percpu: [100000000, 23456789],
      kernel: 50000000,
      user: 100000000,
    });
    assertEquals(s.cpu.throttling, { periods: 4, throttledPeriods: 1, throttledTime: 5000 });
    assertEquals(s.memory.usage.usage, 1048576);
    assertEquals(s.memory.usage.max, 2097152);
    assertEquals(s.memory.usage.failcnt, 7);
    assertEquals(s.memory.cache, 4096);
    assertEquals(s.oomKillCount, 2);
    assertEquals(s.pids, { current: 2, limit: 0 });
    assertEquals(d.pids(p), [77]);

    // freezer.state of a fake tree stays what was written: FROZEN at once
    d.freeze(p);
    assertEquals(read(`${p.freezer}/freezer.state`), "FROZEN");
    assert(d.isFrozen(p));
    d.thaw(p);
    assertEquals(read(`${p.freezer}/freezer.state`), "THAWED");
    assert(!d.isFrozen(p));

    assertThrows(() => d.destroy({ memory: "/etc/x" }), CapsuleError, "Refusing");
    d.destroy(p);
    for (const c of V1_CTRLS) assert(!existsSync(`${cg}/${c}/capsule/x`), c);
    d.destroy(p);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("FakeCgroupDriver records calls", () => {
  const f = new FakeCgroupDriver(2);
  const p = f.paths(undefined, "a");
  assertEquals(p, { "": "/fake/capsule/a" });
  f.create(p, { pids: { limit: 5 } });
  f.addProcess(p, 9);
  assertEquals(f.pids(p), [9]);
  f.freeze(p);
  assert(f.isFrozen(p));
  assertEquals(f.stats(p).pids, { current: 1, limit: 5 });
  f.failNext = "destroy";
  assertThrows(() => f.destroy(p), CapsuleError);
  f.destroy(p);
  assertEquals(f.groups.size, 0);
  assertEquals(f.calls[0], "create /fake/capsule/a");
});

// ---------------------------------------------------------------------------------------------
// The real v1 hierarchy (root only)

const realV1 = (() => {
  try {
    return Deno.uid() === 0 && Deno.statSync("/sys/fs/cgroup/memory").isDirectory &&
      detectCgroups().version === 1;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "real v1: create, limits, process, freeze, stats, rollback, destroy",
  ignore: !realV1,
  async fn() {
    const d = detectCgroups();
    const top = `capsule-test-${crypto.randomUUID().slice(0, 8)}`;
    const topPaths = d.paths(top, "x");
    const p = d.paths(`${top}/c1`, "c1");
    let child: Deno.ChildProcess | undefined;
    try {
      d.create(p, {
        memory: { limit: 32 * 1024 * 1024 },
        pids: { limit: 20 },
        cpu: { shares: 512 },
      });
      assertEquals(read(`${p.memory}/memory.limit_in_bytes`), String(32 * 1024 * 1024));
      assertEquals(read(`${p.pids}/pids.max`), "20");
      assertEquals(read(`${p.cpu}/cpu.shares`), "512");
      assertEquals(read(`${p.cpuset}/cpuset.cpus`), read("/sys/fs/cgroup/cpuset/cpuset.cpus"));

      child = new Deno.Command("sleep", { args: ["100"], stdin: "null", stdout: "null" }).spawn();
      d.addProcess(p, child.pid);
      assertEquals(d.pids(p), [child.pid]);
      assertEquals(d.pids(topPaths), [child.pid]);

      d.freeze(p);
      assert(d.isFrozen(p));
      d.thaw(p);
      assert(!d.isFrozen(p));

      const s = d.stats(p);
      assertEquals(s.pids, { current: 1, limit: 20 });
      assertEquals(s.memory.usage.limit, 32 * 1024 * 1024);

      // a value the kernel refuses (rt runtime above the parent's 0): named, old values back
      const e = assertThrows(
        () => d.apply(p, { cpu: { shares: 256, realtimePeriod: 1000000, realtimeRuntime: 10000 } }),
        CapsuleError,
      );
      assertStringIncludes(e.message, `10000 in ${p.cpu}/cpu.rt_runtime_us: invalid argument`);
      assertEquals(read(`${p.cpu}/cpu.shares`), "512");

      child.kill("SIGKILL");
      await child.status;
      child = undefined;
      d.destroy(topPaths);
      for (const dir of new Set(Object.values(topPaths))) assert(!existsSync(dir), dir);
      d.destroy(topPaths);
    } finally {
      if (child) {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
        await child.status;
      }
      try {
        d.thaw(p);
      } catch { /* not there */ }
      try {
        d.destroy(topPaths);
      } catch { /* reported by the asserts */ }
    }
  },
});

Deno.test("v1: block I/O throttles, per-device weights, huge pages, net_cls/net_prio, kernelTCP", () => {
  const paths: CgroupPaths = {
    memory: "/m",
    blkio: "/b",
    hugetlb: "/h",
    net_cls: "/c",
    net_prio: "/p",
  };
  const ops = planV1(paths, {
    memory: { kernelTCP: 1 << 20 },
    blockIO: {
      weightDevice: [{ major: 8, minor: 0, weight: 300, leafWeight: 200 }],
      throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1000 }],
      throttleWriteIOPSDevice: [{ major: 8, minor: 16, rate: 50 }],
    },
    hugepageLimits: [{ pageSize: "2MB", limit: 4194304 }],
    network: { classID: 0x100001, priorities: [{ name: "eth0", priority: 5 }] },
  }, { hasMemsw: true, blkioWeightFile: "blkio.bfq.weight" }).map((o) => `${o.file} ${o.value}`);
  assertEquals(ops, [
    "/m/memory.kmem.tcp.limit_in_bytes 1048576",
    "/b/blkio.bfq.weight_device 8:0 300",
    "/b/blkio.leaf_weight_device 8:0 200",
    "/b/blkio.throttle.read_bps_device 8:0 1000",
    "/b/blkio.throttle.write_iops_device 8:16 50",
    "/h/hugetlb.2MB.limit_in_bytes 4194304",
    "/c/net_cls.classid 1048577",
    "/p/net_prio.ifpriomap eth0 5",
  ]);
  // A controller this host does not mount: refused, naming the field.
  assertThrows(
    () => planV1({}, { hugepageLimits: [{ pageSize: "2MB", limit: 1 }] }, { hasMemsw: false }),
    CapsuleError,
    "hugetlb cgroup controller is not mounted",
  );
});

Deno.test("v1: a resource file this kernel lacks fails the write, naming the field", () => {
  const root = tmp();
  try {
    Deno.mkdirSync(`${root}/b`);
    assertThrows(
      () =>
        executePlan(planV1({ blkio: `${root}/b` }, { blockIO: { weight: 500 } }, {
          hasMemsw: false,
        })),
      CapsuleError,
      "linux.resources.blockIO.weight",
    );
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("v2: io.max throttles, per-device io.weight, hugetlb; net_cls and kernelTCP refused", () => {
  const ops = planV2("/g", {
    blockIO: {
      weightDevice: [{ major: 8, minor: 0, weight: 1000 }],
      throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1000 }],
      throttleWriteIOPSDevice: [{ major: 8, minor: 0, rate: 7 }],
    },
    hugepageLimits: [{ pageSize: "1GB", limit: 0 }],
  }).map((o) => `${o.file} ${o.value}`);
  assertEquals(ops, [
    "/g/io.weight 8:0 10000",
    "/g/io.max 8:0 rbps=1000",
    "/g/io.max 8:0 wiops=7",
    "/g/hugetlb.1GB.max 0",
  ]);
  assertThrows(
    () => planV2("/g", { network: { classID: 1 } }),
    CapsuleError,
    "linux.resources.network",
  );
  assertThrows(
    () => planV2("/g", { memory: { kernelTCP: 1 } }),
    CapsuleError,
    "linux.resources.memory.kernelTCP",
  );
});

Deno.test("exec --cgroup: sub-cgroups below the container's, never above it", () => {
  const paths: CgroupPaths = {
    cpu: "/cg/cpu,cpuacct/ct",
    cpuacct: "/cg/cpu,cpuacct/ct",
    memory: "/cg/memory/ct",
    [UNIFIED]: "/cg/unified/ct",
  };
  // One path for every controller hierarchy (the hybrid cgroup2 one only when named).
  assertEquals(subCgroupPaths(paths, ["sub/a"]), {
    cpu: "/cg/cpu,cpuacct/ct/sub/a",
    cpuacct: "/cg/cpu,cpuacct/ct/sub/a",
    memory: "/cg/memory/ct/sub/a",
    [UNIFIED]: "/cg/unified/ct",
  });
  assertEquals(subCgroupPaths(paths, ["/"]), paths);
  assertEquals(subCgroupPaths(paths, ["memory:m", "cpu,cpuacct:/c/./d/../e"]), {
    ...paths,
    memory: "/cg/memory/ct/m",
    cpu: "/cg/cpu,cpuacct/ct/c/e",
    cpuacct: "/cg/cpu,cpuacct/ct/c/e",
  });
  assertEquals(subCgroupPaths(paths, [`${UNIFIED}:u`])[UNIFIED], "/cg/unified/ct/u");
  assertEquals(subCgroupPaths({ "": "/cg/ct" }, ["s"]), { "": "/cg/ct/s" });
  const refused: [CgroupPaths, string[], string][] = [
    [paths, [".."], '"..": .. is not a sub cgroup path'],
    [paths, ["a/../../ct2"], "is not a sub cgroup path"],
    [paths, ["memory:../../x"], "is not a sub cgroup path"],
    [paths, ["whaaat:/"], "unknown controller whaaat"],
    [paths, ["a", "b"], "must be the only --cgroup"],
    [paths, ["memory:a", "memory:b"], "controller memory is given twice"],
    [paths, [":a"], "an empty controller name"],
    [paths, ["memory:"], "an empty sub-cgroup path"],
    [paths, ["cpu:a"], "controllers mounted together"],
    [{ "": "/cg/ct" }, ["memory:a"], "cgroup v2 has one hierarchy"],
  ];
  for (const [p, v, msg] of refused) {
    const e = assertThrows(() => subCgroupPaths(p, v), CapsuleError);
    assertStringIncludes(e.message, msg);
  }
});

// ---------------------------------------------------------------------------------------------
// Integers past 2^53-1: config.json's int64 and uint64 fields, read exactly (runtime/json.ts
// parseJson gives a bigint), written exactly as runc writes them (the decimal value).

const I64_MAX = 2n ** 63n - 1n, U64_MAX = 2n ** 64n - 1n;

Deno.test("v1: int64 and uint64 resources past 2^53-1 are written exactly, as runc writes them", () => {
  const paths: CgroupPaths = {
    cpu: "/c",
    memory: "/m",
    pids: "/p",
    blkio: "/b",
    hugetlb: "/h",
  };
  const r = {
    cpu: {
      shares: 1024,
      quota: I64_MAX,
      period: 100000,
      realtimeRuntime: I64_MAX,
      realtimePeriod: U64_MAX,
    },
    memory: {
      limit: I64_MAX,
      swap: I64_MAX,
      reservation: I64_MAX,
      kernel: I64_MAX,
      kernelTCP: I64_MAX,
    },
    pids: { limit: I64_MAX },
    blockIO: {
      throttleReadBpsDevice: [{ major: 8, minor: 0, rate: U64_MAX }],
      throttleWriteIOPSDevice: [{ major: 8, minor: 16, rate: 9007199254740993n }],
    },
    hugepageLimits: [{ pageSize: "2MB", limit: U64_MAX }],
  };
  const checked = validateResources(r, 1);
  const ops = planV1(paths, checked, { memoryLimit: 9223372036854771712, hasMemsw: true })
    .map((o) => `${o.file} ${o.value}`);
  assertEquals(ops, [
    "/c/cpu.shares 1024",
    "/c/cpu.cfs_period_us 100000",
    "/c/cpu.cfs_quota_us 9223372036854775807",
    "/c/cpu.rt_period_us 18446744073709551615",
    "/c/cpu.rt_runtime_us 9223372036854775807",
    // memsw first: the new one is above the limit in force (the kernel keeps limit <= memsw)
    "/m/memory.memsw.limit_in_bytes 9223372036854775807",
    "/m/memory.limit_in_bytes 9223372036854775807",
    "/m/memory.soft_limit_in_bytes 9223372036854775807",
    "/m/memory.kmem.tcp.limit_in_bytes 9223372036854775807",
    "/p/pids.max 9223372036854775807",
    "/b/blkio.throttle.read_bps_device 8:0 18446744073709551615",
    "/b/blkio.throttle.write_iops_device 8:16 9007199254740993",
    "/h/hugetlb.2MB.limit_in_bytes 18446744073709551615",
  ]);
  // Lowering from the kernel's unlimited: the limit first.
  assertEquals(
    planV1(paths, validateResources({ memory: { limit: 1n << 60n, swap: I64_MAX } }, 1), {
      memoryLimit: Number(I64_MAX),
      hasMemsw: true,
    }).map((o) => o.file),
    ["/m/memory.limit_in_bytes", "/m/memory.memsw.limit_in_bytes"],
  );
});

Deno.test("v2: int64 and uint64 resources past 2^53-1 are written exactly; memory+swap converts exactly", () => {
  assertEquals(swapToV2(I64_MAX, I64_MAX), 0);
  assertEquals(swapToV2(I64_MAX, 1024), I64_MAX - 1024n);
  assertEquals(swapToV2(I64_MAX, I64_MAX - 1n), 1);
  assertThrows(() => swapToV2(I64_MAX, -1), CapsuleError, "needs a memory limit");
  assertThrows(() => swapToV2(I64_MAX - 1n, I64_MAX), CapsuleError, "memory+swap");
  const root = tmp();
  try {
    const x = v2Tree(root);
    const r = validateResources({
      cpu: { quota: I64_MAX, period: 100000 },
      memory: { limit: I64_MAX - 4096n, swap: I64_MAX, reservation: I64_MAX },
      pids: { limit: I64_MAX },
      blockIO: { throttleReadBpsDevice: [{ major: 8, minor: 0, rate: U64_MAX }] },
      hugepageLimits: [{ pageSize: "1GB", limit: U64_MAX }],
    }, 2);
    assertEquals(planV2(x, r).map((o) => `${o.file.slice(x.length + 1)} ${o.value}`), [
      "cpu.max 9223372036854775807 100000",
      "memory.swap.max 4096",
      "memory.max 9223372036854771711",
      "memory.low 9223372036854775807",
      "pids.max 9223372036854775807",
      "io.max 8:0 rbps=18446744073709551615",
      "hugetlb.1GB.max 18446744073709551615",
    ]);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
});

Deno.test("validation: a value past its runtime spec type's range is refused naming the field, the value and the range; small bigints are numbers", () => {
  const cases: [unknown, string][] = [
    [
      { memory: { limit: I64_MAX + 1n } },
      "linux.resources.memory.limit 9223372036854775808: out of range: must be an integer -9223372036854775808 to 9223372036854775807 (int64)",
    ],
    [
      { memory: { swap: -(2n ** 63n) - 1n } },
      "linux.resources.memory.swap -9223372036854775809: must be -1 (unlimited) or a byte count",
    ],
    [
      { memory: { reservation: 2n ** 64n } },
      "linux.resources.memory.reservation 18446744073709551616: out of range",
    ],
    [
      { memory: { kernelTCP: I64_MAX + 1n } },
      "linux.resources.memory.kernelTCP 9223372036854775808: out of range: must be an integer -9223372036854775808 to 9223372036854775807 (int64)",
    ],
    [{ memory: { kernel: "1" } }, 'linux.resources.memory.kernel "1": expected an integer'],
    [
      { cpu: { shares: U64_MAX } },
      "linux.resources.cpu.shares 18446744073709551615: must be 2 to 262144",
    ],
    [
      { cpu: { quota: I64_MAX + 1n } },
      "linux.resources.cpu.quota 9223372036854775808: out of range",
    ],
    [
      { cpu: { realtimePeriod: U64_MAX + 1n } },
      "linux.resources.cpu.realtimePeriod 18446744073709551616: out of range: must be an integer 0 to 18446744073709551615 (uint64)",
    ],
    [
      { pids: { limit: I64_MAX + 1n } },
      "linux.resources.pids.limit 9223372036854775808: out of range: must be an integer -9223372036854775808 to 9223372036854775807 (int64)",
    ],
    [
      { pids: { limit: 1e19 } },
      "linux.resources.pids.limit 10000000000000000000: expected an integer",
    ],
    [
      { hugepageLimits: [{ pageSize: "2MB", limit: -1 }] },
      "linux.resources.hugepageLimits[0].limit -1: out of range: must be an integer 0 to 18446744073709551615 (uint64)",
    ],
    [
      { hugepageLimits: [{ pageSize: "2MB", limit: U64_MAX + 1n }] },
      "linux.resources.hugepageLimits[0].limit 18446744073709551616: out of range",
    ],
    [
      { blockIO: { throttleReadBpsDevice: [{ major: 8, minor: 0, rate: U64_MAX + 1n }] } },
      "linux.resources.blockIO.throttleReadBpsDevice[0].rate 18446744073709551616: out of range: must be an integer 0 to 18446744073709551615 (uint64)",
    ],
    [
      { blockIO: { throttleWriteBpsDevice: [{ major: I64_MAX + 1n, minor: 0, rate: 1 }] } },
      "linux.resources.blockIO.throttleWriteBpsDevice[0].major 9223372036854775808: out of range",
    ],
    [
      { blockIO: { weightDevice: [{ major: 8, minor: 0, weight: 2n ** 16n }] } },
      "linux.resources.blockIO.weightDevice[0].weight 65536: out of range: must be an integer 0 to 65535 (uint16)",
    ],
    [
      { blockIO: { leafWeight: 2n ** 64n } },
      "linux.resources.blockIO.leafWeight 18446744073709551616",
    ],
    [
      { network: { classID: 2n ** 32n } },
      "linux.resources.network.classID 4294967296: out of range: must be an integer 0 to 4294967295 (uint32)",
    ],
    [
      { network: { priorities: [{ name: "eth0", priority: -1 }] } },
      "linux.resources.network.priorities[0].priority -1: out of range",
    ],
    // Never a TypeError (JSON.stringify of a bigint): the value as written.
    [
      { cpu: { cpus: 12345678901234567890n } },
      "linux.resources.cpu.cpus 12345678901234567890: expected a list",
    ],
    [
      { devices: [{ allow: true, type: "c", major: 12345678901234567890n, minor: 1 }] },
      "devices[0].major 12345678901234567890: expected a number",
    ],
    [
      { devices: [{ allow: true, type: 12345678901234567890n }] },
      "devices[0].type 12345678901234567890",
    ],
    [
      { devices: [{ allow: true, access: 12345678901234567890n }] },
      "devices[0].access 12345678901234567890",
    ],
    [
      { unified: { "memory.high": 12345678901234567890n } },
      "linux.resources.unified.memory.high 12345678901234567890: expected a string",
    ],
  ];
  for (const [r, msg] of cases) {
    const e = assertThrows(() => validateResources(r as never, 2), CapsuleError);
    assertStringIncludes(e.message, msg);
  }
  // A bigint of the safe range (a library caller's) is its number: -1 is still "unlimited".
  const r = validateResources({ memory: { limit: -1n, swap: 0n }, cpu: { shares: 512n } }, 2);
  assertEquals(r.memory, { limit: -1, swap: 0 });
  assertEquals(planV2("/g", r).map((o) => `${o.file} ${o.value}`), [
    "/g/cpu.weight 20",
    "/g/memory.max max",
  ]);
  // Without a bigint, what was given.
  const plain = { memory: { limit: 1024 } };
  assertEquals(validateResources(plain, 1), plain);
});

Deno.test("toRuncStats: integers past 2^53-1 are written exactly, v2's max as Go's MaxUint64", () => {
  const entry = (limit: number) => ({ usage: 4096, limit, max: 8192, failcnt: 0 });
  const s: CgroupStats = {
    cpu: {
      usage: { total: 1, kernel: 0, user: 1 },
      throttling: { periods: 0, throttledPeriods: 0, throttledTime: 0 },
    },
    memory: {
      cache: 0,
      // v1's unlimited memory.limit_in_bytes (2^63-4096, a double exactly) and v2's "max".
      usage: entry(9223372036854771712),
      swap: entry(UNLIMITED),
      stats: { hierarchical_memory_limit: 9223372036854771712 },
    },
    pids: { current: 1, limit: 0 },
    oomKillCount: 0,
  };
  const text = runcStatsJson(s);
  assert(text.includes('"limit":9223372036854771712'), text);
  assert(text.includes('"limit":18446744073709551615'), text);
  assert(text.includes('"hierarchical_memory_limit":9223372036854771712'), text);
  assert(!/\d{17}000/.test(text), text);
  assertEquals(JSON.parse(text).memory.usage.usage, 4096);
});
