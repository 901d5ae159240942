// capsule's cgroup v2 driver against a real cgroup v2 kernel. Runs INSIDE the test VM
// (tests/vm/run.sh tests/vm/inside_test.ts, driven by tests/integration/cgroup_v2_vm_test.ts),
// where /init sets CAPSULE_VM=1, runs everything as root with cgroup2 at /sys/fs/cgroup and
// "+cpu +memory +pids +io +cpuset" enabled. Ignored anywhere else (CAPSULE_CGROUP_V2_HOST=1
// runs it on a real cgroup v2 host as root). Children are busybox sh. Local imports only.
// Expected values follow Documentation/admin-guide/cgroup-v2.rst: memory.max / pids.max in
// bytes / a count or "max", cpu.max "$MAX $PERIOD", cpu.weight [1, 10000], memory.events
// "oom_kill N", pids.events "max N", cgroup.events "frozen 0|1".
import { type CgroupDriver, type CgroupPaths, detectCgroups } from "../../runtime/cgroups/mod.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assert, assertEquals } from "../assert.ts";

const ENABLED = Deno.env.get("CAPSULE_VM") === "1" ||
  Deno.env.get("CAPSULE_CGROUP_V2_HOST") === "1";
const MiB = 1024 * 1024;
/** Absolute cgroupsPath parent of every test cgroup (the root cgroup may have children). */
const PARENT = "capsule-vmtest";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let driver: CgroupDriver | undefined;
const cg = (): CgroupDriver => (driver ??= detectCgroups());
let seq = 0;

function newPaths(name: string): CgroupPaths {
  const id = `${name}-${Deno.pid}-${++seq}`;
  return cg().paths(`/${PARENT}/${id}`, id);
}
const dirOf = (p: CgroupPaths) => p[""];
const read = (p: CgroupPaths, file: string) => Deno.readTextFileSync(`${dirOf(p)}/${file}`).trim();
/** "key value" lines of a cgroup file as numbers. */
function keyValues(p: CgroupPaths, file: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of read(p, file).split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined) out[k] = Number(v);
  }
  return out;
}
function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/**
 * Spawns `sh -c script` that waits on stdin until it has been added to the cgroup, so that
 * nothing it does is charged elsewhere.
 */
async function spawnIn(
  paths: CgroupPaths,
  script: string,
  stdout: "null" | "piped" = "null",
): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("sh", {
    args: ["-c", `read _go; ${script}`],
    stdin: "piped",
    stdout,
    stderr: "piped",
  }).spawn();
  try {
    cg().addProcess(paths, child.pid);
    assertEquals(read(paths, "cgroup.procs").split("\n").map(Number).includes(child.pid), true);
  } finally {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("go\n"));
    await w.close();
  }
  return child;
}

/** Kills everything in the cgroup (thawed first), waits until it is empty, removes it. */
async function cleanup(paths: CgroupPaths, ...children: Deno.ChildProcess[]): Promise<void> {
  const dir = dirOf(paths);
  if (exists(dir)) {
    try {
      cg().thaw(paths);
    } catch { /* not frozen / gone */ }
    for (let i = 0; i < 200 && cg().pids(paths).length; i++) {
      for (const pid of cg().pids(paths)) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
      await sleep(20);
    }
  }
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch { /* exited */ }
    await c.output().catch(() => undefined);
  }
  cg().destroy(paths);
}

function vmTest(name: string, fn: () => Promise<void> | void): void {
  Deno.test({ name: `cgroup v2 (real kernel): ${name}`, ignore: !ENABLED, fn });
}

vmTest("detectCgroups() finds the unified hierarchy", () => {
  const d = cg();
  assertEquals(d.version, 2);
  assertEquals(d.devicesEnforced, true);
  assertEquals(d.paths("/a/b", "x"), { "": "/sys/fs/cgroup/a/b" });
  const ctrls = Deno.readTextFileSync("/sys/fs/cgroup/cgroup.controllers").trim().split(/\s+/);
  for (const c of ["cpu", "memory", "pids"]) assert(ctrls.includes(c), `no ${c} in ${ctrls}`);
});

vmTest("memory.max 32 MiB: a 64 MiB allocation is OOM-killed; 128 MiB lets it live", async () => {
  // busybox dd fills one 64 MiB buffer from /dev/zero: 64 MiB of anonymous memory, no swap.
  const hog = "exec dd if=/dev/zero of=/dev/null bs=64M count=1";
  const small = newPaths("oom");
  let child: Deno.ChildProcess | undefined;
  try {
    cg().create(small, { memory: { limit: 32 * MiB } });
    assertEquals(read(small, "memory.max"), String(32 * MiB));
    child = await spawnIn(small, hog);
    const out = await child.output();
    assertEquals(out.signal, "SIGKILL", `dd should be OOM-killed (code ${out.code})`);
    assert(keyValues(small, "memory.events").oom_kill >= 1, read(small, "memory.events"));
    const st = cg().stats(small);
    assert(st.oomKillCount >= 1, `oomKillCount ${st.oomKillCount}`);
    assertEquals(st.memory.usage.limit, 32 * MiB);
    assert(st.memory.usage.failcnt >= 1, `failcnt (memory.events max) ${st.memory.usage.failcnt}`);
  } finally {
    await cleanup(small, ...(child ? [child] : []));
  }
  assert(!exists(dirOf(small)), `${dirOf(small)} left behind`);

  const big = newPaths("oom-ok");
  child = undefined;
  try {
    cg().create(big, { memory: { limit: 128 * MiB } });
    child = await spawnIn(big, hog);
    const out = await child.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    assertEquals(out.signal, null);
    assertEquals(keyValues(big, "memory.events").oom_kill, 0);
    assertEquals(cg().stats(big).oomKillCount, 0);
    // memory.peak is in 5.19+ kernels only; usage was charged in any case.
    assert(cg().stats(big).memory.stats.pgfault > 0, "no page faults charged");
  } finally {
    await cleanup(big, ...(child ? [child] : []));
  }
});

vmTest("pids.max 20 stops a fork loop", async () => {
  const paths = newPaths("pids");
  let child: Deno.ChildProcess | undefined;
  try {
    cg().create(paths, { pids: { limit: 20 } });
    assertEquals(read(paths, "pids.max"), "20");
    // The shell and 19 sleeps make 20; the 20th `&` must fail (ash gives up on "can't fork").
    child = await spawnIn(
      paths,
      // The sleeps must not hold the stderr pipe open.
      "i=0; while [ $i -lt 40 ]; do sleep 60 </dev/null >/dev/null 2>&1 & i=$((i+1)); done; " +
        "echo all forked >&2",
    );
    let peak = 0;
    const status = child.status;
    let done = false;
    status.then(() => (done = true));
    while (!done) {
      peak = Math.max(peak, Number(read(paths, "pids.current")));
      await sleep(5);
    }
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert(!stderr.includes("all forked"), "every fork succeeded");
    assert(/fork/i.test(stderr), `no fork error in: ${stderr}`);
    assert(peak <= 20, `pids.current reached ${peak}`);
    const current = Number(read(paths, "pids.current"));
    assertEquals(current, 19, "the sleeps that were forked");
    assert(keyValues(paths, "pids.events").max >= 1, read(paths, "pids.events"));
    const st = cg().stats(paths);
    assertEquals(st.pids.limit, 20);
    assertEquals(st.pids.current, 19);
    assertEquals(cg().pids(paths).length, 19);
  } finally {
    await cleanup(paths, ...(child ? [child] : []));
  }
});

vmTest("cpu: shares 1024 -> cpu.weight 39; quota/period -> cpu.max, and it throttles", async () => {
  const paths = newPaths("cpu");
  let child: Deno.ChildProcess | undefined;
  try {
    cg().create(paths, { cpu: { shares: 1024, quota: 50000, period: 100000 } });
    assertEquals(read(paths, "cpu.weight"), "39");
    assertEquals(read(paths, "cpu.max"), "50000 100000");
    child = await spawnIn(paths, "while :; do :; done");
    const t0 = Date.now();
    await sleep(1500);
    const st = cg().stats(paths);
    const wallNs = (Date.now() - t0) * 1e6;
    assert(st.cpu.throttling.periods > 0, `nr_periods ${st.cpu.throttling.periods}`);
    assert(st.cpu.throttling.throttledPeriods > 0, "never throttled");
    assert(st.cpu.throttling.throttledTime > 0, "no throttled time");
    // 50% of one CPU at most (one period of slack).
    assert(
      st.cpu.usage.total <= wallNs * 0.5 + 100e6,
      `usage ${st.cpu.usage.total} ns in ${wallNs} ns`,
    );
    assert(st.cpu.usage.total > 0, "no cpu usage");
  } finally {
    await cleanup(paths, ...(child ? [child] : []));
  }
});

vmTest("apply() updates a live cgroup; a refused value restores what it wrote", async () => {
  const paths = newPaths("apply");
  let child: Deno.ChildProcess | undefined;
  try {
    cg().create(paths, { memory: { limit: 64 * MiB }, pids: { limit: 100 } });
    child = await spawnIn(paths, "exec sleep 60");
    assertEquals(read(paths, "memory.max"), String(64 * MiB));
    cg().apply(paths, { memory: { limit: 128 * MiB }, pids: { limit: 50 }, cpu: { quota: 20000 } });
    assertEquals(read(paths, "memory.max"), String(128 * MiB));
    assertEquals(read(paths, "pids.max"), "50");
    assertEquals(read(paths, "cpu.max"), "20000 100000");
    cg().apply(paths, { cpu: { period: 50000 } });
    assertEquals(read(paths, "cpu.max"), "20000 50000", "the quota is kept");
    cg().apply(paths, { memory: { limit: -1 }, pids: { limit: -1 } });
    assertEquals(read(paths, "memory.max"), "max");
    assertEquals(read(paths, "pids.max"), "max");
    cg().apply(paths, { memory: { limit: 96 * MiB } });
    let err: unknown;
    try {
      // memory.max is written first, then the kernel refuses pids.max "bogus" (EINVAL).
      cg().apply(paths, { memory: { limit: 200 * MiB }, unified: { "pids.max": "bogus" } });
    } catch (e) {
      err = e;
    }
    assert(err instanceof CapsuleError, `expected a CapsuleError, got ${err}`);
    assert(String(err.message).includes("pids.max"), err.message);
    assertEquals(read(paths, "memory.max"), String(96 * MiB), "memory.max restored");
    assertEquals(cg().pids(paths), [child.pid]);
  } finally {
    await cleanup(paths, ...(child ? [child] : []));
  }
});

vmTest("freeze stops a counter (cgroup.events frozen 1), thaw resumes it", async () => {
  const paths = newPaths("freeze");
  const file = await Deno.makeTempFile();
  let child: Deno.ChildProcess | undefined;
  /** The counter's last value; the file can be caught empty mid-write, so retry. */
  const counter = async (): Promise<number> => {
    for (let i = 0;; i++) {
      const n = parseInt(Deno.readTextFileSync(file), 10);
      if (!Number.isNaN(n) || i > 100) return n;
      await sleep(5);
    }
  };
  try {
    cg().create(paths, {});
    child = await spawnIn(paths, `i=0; while :; do i=$((i+1)); echo $i >${file}; done`);
    await sleep(300);
    const c1 = await counter();
    await sleep(300);
    const c2 = await counter();
    assert(c2 > c1, `the counter does not run: ${c1} -> ${c2}`);
    assertEquals(cg().isFrozen(paths), false);

    cg().freeze(paths);
    assertEquals(keyValues(paths, "cgroup.events").frozen, 1, read(paths, "cgroup.events"));
    assertEquals(read(paths, "cgroup.freeze"), "1");
    assertEquals(cg().isFrozen(paths), true);
    const f1 = Deno.readTextFileSync(file);
    await sleep(500);
    const f2 = Deno.readTextFileSync(file);
    assertEquals(f2, f1, "the counter moved while frozen");
    assertEquals(cg().pids(paths), [child.pid], "frozen processes stay listed");

    cg().thaw(paths);
    assertEquals(cg().isFrozen(paths), false);
    await sleep(300);
    const c3 = await counter();
    assert(c3 > Number(f1), `no progress after thaw: ${f1} -> ${c3}`);
    assertEquals(keyValues(paths, "cgroup.events").frozen, 0);
  } finally {
    await cleanup(paths, ...(child ? [child] : []));
    Deno.removeSync(file);
  }
});

vmTest("destroy removes the cgroup (and child cgroups), no directory left", async () => {
  const paths = newPaths("destroy");
  const dir = dirOf(paths);
  cg().create(paths, { pids: { limit: 10 } });
  assert(exists(dir), `${dir} not created`);
  Deno.mkdirSync(`${dir}/sub`);
  const child = await spawnIn(paths, "exit 0");
  await child.output();
  // The exited child leaves the cgroup asynchronously: destroy() retries EBUSY.
  cg().destroy(paths);
  assert(!exists(dir), `${dir} still exists`);
  cg().destroy(paths); // missing is fine
  assertEquals(cg().pids(paths), []);

  // create() removes what it made when a value is refused.
  const bad = newPaths("refused");
  let err: unknown;
  try {
    cg().create(bad, { unified: { "memory.max": "bogus" } });
  } catch (e) {
    err = e;
  }
  assert(err instanceof CapsuleError, `expected a CapsuleError, got ${err}`);
  assert(!exists(dirOf(bad)), `${dirOf(bad)} left behind after a failed create`);
});

vmTest(
  "device rules (eBPF): deny-all plus defaults refuses /dev/kmsg, allows /dev/null",
  async () => {
    const paths = newPaths("devices");
    let child: Deno.ChildProcess | undefined;
    try {
      cg().create(paths, { devices: [{ allow: false, access: "rwm" }] });
      child = await spawnIn(
        paths,
        "echo x >/dev/null && echo null-ok; echo capsule >/dev/kmsg && echo kmsg-ok || echo kmsg-denied",
        "piped",
      );
      const out = new TextDecoder().decode((await child.output()).stdout);
      assertEquals(out.trim().split("\n"), ["null-ok", "kmsg-denied"]);
      // Outside the cgroup the same write works: it is the program that refused it.
      const host = await new Deno.Command("sh", {
        args: ["-c", "echo capsule >/dev/kmsg && echo ok"],
      })
        .output();
      assertEquals(new TextDecoder().decode(host.stdout).trim(), "ok");
    } finally {
      await cleanup(paths, ...(child ? [child] : []));
    }
  },
);

vmTest(
  "device rules (eBPF): a denied write also refuses an O_RDWR open; unknown letters dropped",
  async () => {
    const paths = newPaths("devrw");
    let child: Deno.ChildProcess | undefined;
    try {
      // /dev/kmsg readable and writable, then writes denied again ("wa": "a" is not a letter
      // the kernel knows and is dropped). v1's exception list keeps "r" only.
      cg().create(paths, {
        devices: [
          { allow: false, access: "rwm" },
          { allow: true, type: "c", major: 1, minor: 11, access: "rw" },
          { allow: false, type: "c", major: 1, minor: 11, access: "wa" },
        ],
      });
      child = await spawnIn(
        paths,
        "(exec 3</dev/kmsg) && echo r-ok || echo r-denied; " +
          "(exec 3<>/dev/kmsg) 2>/dev/null && echo rw-ok || echo rw-denied",
        "piped",
      );
      const out = new TextDecoder().decode((await child.output()).stdout);
      assertEquals(out.trim().split("\n"), ["r-ok", "rw-denied"]);
    } finally {
      await cleanup(paths, ...(child ? [child] : []));
    }
  },
);

vmTest("no test cgroup is left behind", () => {
  const parent = `/sys/fs/cgroup/${PARENT}`;
  const left = exists(parent) ? [...Deno.readDirSync(parent)].filter((e) => e.isDirectory) : [];
  assertEquals(left.map((e) => e.name), []);
  if (exists(parent)) Deno.removeSync(parent);
});
