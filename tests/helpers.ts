// Helpers of the integration tests: run the real CLI as root against a busybox bundle.
import { defaultSpec, type Spec } from "../runtime/spec.ts";

export const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** How to run capsule: $CAPSULE (e.g. the built dist/capsule) or from source. */
export function capsuleCommand(): string[] {
  const bin = Deno.env.get("CAPSULE");
  if (bin) return bin.split(" ");
  return [Deno.execPath(), "run", "-A", "--quiet", `${REPO}/main.ts`];
}

/** Whether a path exists (a dangling symlink too): state.ts's. */
import { exists } from "../runtime/state.ts";
export { exists };

/**
 * Writes to `path` a copy of the launcher `launcher` (a built dist/capsule) whose Deno does not
 * exist, its helper and bundle still found beside `launcher`: a command it runs works only when
 * the native front end takes it (the Deno CLI fails with "cannot start /nonexistent/deno", 127).
 * Returns false, writing nothing, when `launcher` is not such a launcher (capsule from source).
 */
export function writeNoDenoLauncher(path: string, launcher = capsuleCommand()): boolean {
  if (launcher.length !== 1) return false;
  const text = Deno.readTextFileSync(launcher[0]);
  const deno = JSON.stringify(Deno.execPath());
  if (!text.includes(deno)) return false;
  const home = launcher[0].slice(0, launcher[0].lastIndexOf("/"));
  Deno.writeTextFileSync(
    path,
    text.replaceAll(deno, '"/nonexistent/deno"').replaceAll("${dir:-/}", home),
    { mode: 0o755 },
  );
  return true;
}

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `capsule --root <root> ...args` and collects its output. */
export async function capsule(
  root: string,
  args: string[],
  opts: { cwd?: string; stdin?: string; env?: Record<string, string>; stdio?: "pipe" | "file" } =
    {},
): Promise<Result> {
  const [cmd, ...pre] = capsuleCommand();
  if ((opts.stdio ?? (args.includes("create") ? "file" : "pipe")) === "file") {
    // For create: the container keeps create's stdout/stderr open, so they go to files.
    const out = await Deno.makeTempFile(), err = await Deno.makeTempFile();
    const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
    const line = [cmd, ...pre, "--root", root, ...args].map(q).join(" ") + ` >${out} 2>${err}`;
    const st = await new Deno.Command("sh", { args: ["-c", line], cwd: opts.cwd, stdin: "null" })
      .output();
    const res = {
      code: st.code,
      stdout: Deno.readTextFileSync(out),
      stderr: Deno.readTextFileSync(err),
    };
    await removeAll(out, err);
    return res;
  }
  const child = new Deno.Command(cmd, {
    args: [...pre, "--root", root, ...args],
    cwd: opts.cwd,
    env: opts.env,
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** `capsule state [-d] ID`, parsed. */
export async function state(root: string, id: string, detail = false) {
  return JSON.parse((await capsule(root, ["state", ...(detail ? ["-d"] : []), id])).stdout);
}

/** Spawns capsule without waiting (for signal tests). */
export function spawnCapsule(root: string, args: string[], cwd?: string): Deno.ChildProcess {
  const [cmd, ...pre] = capsuleCommand();
  return new Deno.Command(cmd, {
    args: [...pre, "--root", root, ...args],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

let rootfsPromise: Promise<string> | undefined;

/**
 * A busybox rootfs built from the host's busybox-static, shared read-only by the tests of one
 * process (bundles point root.path at it; tests that write get their own copy).
 */
export function busyboxRootfs(): Promise<string> {
  rootfsPromise ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "capsule-rootfs-" });
    await buildBusyboxRootfs(dir);
    addEventListener("unload", () => {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* best effort */ }
    });
    return dir;
  })();
  return rootfsPromise;
}

export async function buildBusyboxRootfs(dir: string): Promise<void> {
  const busybox = ["/bin/busybox", "/usr/bin/busybox"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (!busybox) throw new Error("busybox-static is not installed (apt-get install busybox-static)");
  await Deno.chmod(dir, 0o755);
  for (const d of ["bin", "proc", "sys", "dev", "etc", "tmp", "root", "home", "var", "run"]) {
    await Deno.mkdir(`${dir}/${d}`, { recursive: true });
  }
  await Deno.chmod(`${dir}/tmp`, 0o1777);
  await Deno.copyFile(busybox, `${dir}/bin/busybox`);
  await Deno.chmod(`${dir}/bin/busybox`, 0o755);
  const list = await new Deno.Command(busybox, { args: ["--list"] }).output();
  for (const applet of new TextDecoder().decode(list.stdout).split("\n")) {
    if (!applet || applet === "busybox") continue;
    await Deno.symlink("busybox", `${dir}/bin/${applet}`);
  }
  await Deno.writeTextFile(
    `${dir}/etc/passwd`,
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
  );
  await Deno.writeTextFile(`${dir}/etc/group`, "root:x:0:\nnogroup:x:65534:\n");
}

/** A bundle whose config runs `args` (sh -c by default) in the shared busybox rootfs. */
export async function makeBundle(
  args: string[] | string,
  mutate?: (spec: Spec) => void,
  opts: { ownRootfs?: boolean } = {},
): Promise<string> {
  const bundle = await Deno.makeTempDir({ prefix: "capsule-bundle-" });
  const spec = defaultSpec();
  spec.process!.args = typeof args === "string" ? ["sh", "-c", args] : args;
  if (opts.ownRootfs) {
    await Deno.mkdir(`${bundle}/rootfs`);
    await buildBusyboxRootfs(`${bundle}/rootfs`);
    spec.root = { path: "rootfs", readonly: false };
  } else {
    spec.root = { path: await busyboxRootfs(), readonly: true };
  }
  mutate?.(spec);
  await Deno.writeTextFile(`${bundle}/config.json`, JSON.stringify(spec, null, 2));
  return bundle;
}

/** The id map of the tests' user-namespaced containers: container root is host uid 100000. */
export const USERNS_MAP = [{ containerID: 0, hostID: 100000, size: 65536 }];

/** Puts `spec`'s container in a new user namespace mapped by USERNS_MAP (a makeBundle mutate). */
export function inUserNamespace(spec: Spec): void {
  spec.linux!.namespaces!.push({ type: "user" });
  spec.linux!.uidMappings = USERNS_MAP;
  spec.linux!.gidMappings = USERNS_MAP;
}

/** A fresh --root for one test; `done` checks that nothing of capsule was left in it. */
export async function stateRoot(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "capsule-state-" });
}

export async function removeAll(...paths: string[]): Promise<void> {
  for (const p of paths) await Deno.remove(p, { recursive: true }).catch(() => {});
}

export function isRoot(): boolean {
  return Deno.uid() === 0;
}

/** Integration tests need root and busybox; elsewhere they are reported as ignored. */
export const needsRoot = !isRoot();

import { assert, assertEquals, assertMatch } from "./assert.ts";
export { assert, assertEquals, assertMatch };

/** Cgroup directories named `name` anywhere below /sys/fs/cgroup (leak checks). */
export function cgroupDirsNamed(name: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 6) return;
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory) continue;
      if (e.name === name) out.push(`${dir}/${e.name}`);
      walk(`${dir}/${e.name}`, depth + 1);
    }
  };
  walk("/sys/fs/cgroup", 0);
  return out;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `fn` is true (or throws after `ms`). */
export async function waitFor(
  fn: () => boolean | Promise<boolean>,
  ms = 5000,
  what = "condition",
): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The children of this process that are zombies (ended, not reaped). */
export function zombieChildren(): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const [st, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(ppid) === Deno.pid && st === "Z") out.push(Number(e.name));
    } catch { /* gone meanwhile */ }
  }
  return out;
}

export function pidAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z";
  } catch {
    return false;
  }
}

/** Cgroup directories below capsule's shared `capsule` parents (every hierarchy), deepest first. */
export function capsuleCgroups(): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory || depth > 4) continue;
      walk(`${dir}/${e.name}`, depth + 1);
      out.push(`${dir}/${e.name}`);
    }
  };
  const tops = ["/sys/fs/cgroup/capsule"];
  try {
    for (const e of Deno.readDirSync("/sys/fs/cgroup")) {
      if (e.isDirectory) tops.push(`/sys/fs/cgroup/${e.name}/capsule`);
    }
  } catch { /* no cgroup fs */ }
  for (const top of tops) walk(top, 0);
  return out;
}

/** Kills every process in a cgroup directory (thawing it first) and removes it. */
async function removeCgroup(dir: string): Promise<void> {
  try {
    Deno.writeTextFileSync(`${dir}/freezer.state`, "THAWED");
  } catch { /* not a v1 freezer */ }
  try {
    Deno.writeTextFileSync(`${dir}/cgroup.freeze`, "0");
  } catch { /* not v2 */ }
  for (let i = 0; i < 50; i++) {
    let pids: number[] = [];
    try {
      pids = Deno.readTextFileSync(`${dir}/cgroup.procs`).split("\n").filter(Boolean).map(Number);
    } catch { /* gone */ }
    for (const pid of pids) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* exited */ }
    }
    try {
      Deno.removeSync(dir);
      return;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      await sleep(20); // EBUSY until the killed processes are reaped
    }
  }
}

/**
 * Runs `fn` with a fresh state root. Whether it passed or failed, every container left in the
 * root is deleted (`delete -f`) and every cgroup it left below the shared `capsule` parents is
 * emptied and removed, so one failed test cannot break the next. When `fn` passed, leaving a
 * container or such a cgroup behind is itself an error (thrown after the clean-up).
 */
export async function withStateRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await stateRoot();
  const before = new Set(capsuleCgroups());
  let left: string[] = [], cgroups: string[] = [];
  try {
    await fn(root);
  } finally {
    await monitorLeaves(root); // with the root's last detached container or log
    left = [...Deno.readDirSync(root)].map((e) => e.name);
    for (const id of left.filter((n) => !n.startsWith("."))) {
      await capsule(root, ["delete", "-f", id]);
    }
    if (!await monitorLeaves(root)) {
      for (const pid of monitorsOf(root)) Deno.kill(pid, "SIGKILL");
    }
    cgroups = capsuleCgroups().filter((d) => !before.has(d));
    for (const d of cgroups) await removeCgroup(d);
    await removeAll(root);
  }
  // Reached only when fn passed: a failure's own error is the one to report.
  if (left.length) throw new Error(`test left containers behind: ${left.join(", ")}`);
  if (cgroups.length) throw new Error(`test left cgroups behind: ${cgroups.join(", ")}`);
}

/**
 * The names in state root `root`, but the root's monitor's socket and lock (`.monitor-*`, there
 * while it runs: it exits a moment after the root's last detached container).
 */
export function rootNames(root: string): string[] {
  return [...Deno.readDirSync(root)].map((e) => e.name).filter((n) => !n.startsWith(".monitor-"));
}

/** The pids of the monitors of state root `root` (runtime/native/monitor.c). */
export function monitorsOf(root: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const zombie = stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
      if (!zombie && argv.startsWith(`capsule-nsexec\0monitor\0serve\0${root}\0`)) {
        out.push(+e.name);
      }
    } catch { /* gone */ }
  }
  return out;
}

/**
 * Waits (at most 3 s) until the monitor of `root` has exited, which it does with the root's last
 * detached container or log, removing its socket and lock; whether it did.
 */
export async function monitorLeaves(root: string): Promise<boolean> {
  for (let i = 0; i < 60; i++) {
    const files = [...Deno.readDirSync(root)].some((e) => e.name.startsWith(".monitor-"));
    if (!files && !monitorsOf(root).length) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** Test wrapper: root-only, `fn` runs inside `withStateRoot` (cleaned up also on failure). */
export function rootTest(name: string, fn: (root: string) => Promise<void>): void {
  Deno.test({
    name,
    ignore: needsRoot,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: () => withStateRoot(fn),
  });
}

/** A temp store with a busybox image "bb" imported; everything is removed afterwards. */
export async function withImage(
  fn: (c: (...args: string[]) => Promise<Result>, store: string, tmp: string) => Promise<void>,
  root: string,
): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "capsule-img-" });
  const store = `${tmp}/store`;
  const c = (...args: string[]) => capsule(root, ["--store", store, ...args]);
  try {
    Deno.mkdirSync(`${tmp}/rootfs`);
    await buildBusyboxRootfs(`${tmp}/rootfs`);
    const tar = await new Deno.Command("tar", {
      args: ["-C", `${tmp}/rootfs`, "-cf", `${tmp}/bb.tar`, "."],
    })
      .output();
    assert(tar.success, "tar failed");
    const r = await c("image", "create", "bb", `${tmp}/bb.tar`);
    assertEquals(r.code, 0, r.stderr);
    assertMatch(r.stdout.trim(), /^sha256:[0-9a-f]{64}$/);
    await fn(c, store, tmp);
  } finally {
    // Never leave a mount behind, even when the test failed half-way.
    for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
      const mp = line.split(" ")[4];
      if (mp?.startsWith(tmp)) await new Deno.Command("umount", { args: ["-l", mp] }).output();
    }
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

/** Mount points below `prefix` in this process's mount namespace. */
export function mountsUnder(prefix: string): string[] {
  return Deno.readTextFileSync("/proc/self/mountinfo").split("\n").map((l) => l.split(" ")[4])
    .filter((m) => m?.startsWith(prefix));
}

/**
 * The end of an e2e test that worked in `tmp`: whatever is still mounted below it is detached,
 * `tmp` removed, `done` printed. When the test passed (`ok`), the lab's own cleanup must have
 * left nothing (`errors` empty, no mount below `tmp`); after a failure what was left is told.
 */
export async function e2eTeardown(
  tmp: string,
  errors: string[],
  ok: boolean,
  done: string,
): Promise<void> {
  const left = mountsUnder(tmp);
  for (const m of left) await new Deno.Command("umount", { args: ["-l", m] }).output();
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  console.log(done);
  if (ok) {
    assertEquals(errors, [], "cleanup");
    assertEquals(left, [], "mounts left after cleanup");
  } else if (errors.length || left.length) {
    console.error(`  cleanup after the failure: ${JSON.stringify({ errors, left })}`);
  }
}
