// capsule as containerd's runtime (`ctr run --runc-binary`): the runc shim calls create with
// its own --root, --log and --log-format json, then start, state, kill, delete, exec, pause.
// A private containerd (its own socket, root and state dirs) is started for the test; the image
// comes from podman (import a busybox rootfs, save as docker-archive). Skipped where containerd
// or podman is not installed (tests/setup.sh installs both).
import {
  assert,
  assertEquals,
  assertMatch,
  buildBusyboxRootfs,
  capsuleCommand,
  cgroupDirsNamed,
  exists,
  isRoot,
  removeAll,
  sleep,
  writeNoDenoLauncher,
} from "../helpers.ts";
const have = (p: string) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
};

// ctr's default cgroupsPath is /<namespace>/<id>: a namespace of the test's own, whose parent
// cgroup is removed at the end.
const NS = "capsule-ctr-test";

interface Containerd {
  dir: string;
  /** `ctr -n NS ...` against the private containerd. */
  ctr(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** The capsule launcher the shim calls as its runc binary. */
  launcher: string;
  image: string;
}

const needsContainerd = !isRoot() || !have("/usr/bin/containerd") || !have("/usr/bin/ctr") ||
  !have("/usr/bin/podman");

/** A private containerd with a busybox image, for `fn`; everything removed after. */
async function withContainerd(fn: (c: Containerd) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "capsule-containerd-" });
  const sock = `${dir}/containerd.sock`;
  const env = {
    CONTAINERD_ADDRESS: sock,
    CONTAINERS_CONF: `${dir}/containers.conf`,
    CONTAINERS_STORAGE_CONF: `${dir}/storage.conf`,
    PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  };
  const run = async (cmd: string, args: string[]) => {
    const out = await new Deno.Command(cmd, { args, env, stdin: "null" }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  };
  const ctr = (...args: string[]) => run("ctr", ["-n", NS, ...args]);
  Deno.writeTextFileSync(
    `${dir}/config.toml`,
    `version = 2\nroot = "${dir}/root"\nstate = "${dir}/state"\n[grpc]\n  address = "${sock}"\n`,
  );
  Deno.writeTextFileSync(
    `${dir}/containers.conf`,
    `[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n`,
  );
  Deno.writeTextFileSync(
    `${dir}/storage.conf`,
    `[storage]\ndriver = "vfs"\nrunroot = "${dir}/prun"\ngraphroot = "${dir}/pgraph"\n`,
  );
  // The shim passes its own --root: the launcher adds nothing but the program.
  const launcher = `${dir}/capsule`;
  Deno.writeTextFileSync(
    launcher,
    `#!/bin/sh\n[ -e ${dir}/native-only ] && exec ${dir}/capsule-nodeno "$@"\n` +
      `exec ${capsuleCommand().join(" ")} "$@"\n`,
    { mode: 0o755 },
  );
  // With ${dir}/native-only: the built launcher with a Deno that does not exist, so that only
  // what its native front end takes works (exec_front_test.ts does the same).
  writeNoDenoLauncher(`${dir}/capsule-nodeno`);
  const daemon = new Deno.Command("containerd", {
    args: ["--config", `${dir}/config.toml`],
    env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    for (let i = 0; i < 200 && !have(sock); i++) {
      try {
        if (Deno.statSync(sock).isSocket) break;
      } catch { /* not yet */ }
      await sleep(25);
    }
    Deno.mkdirSync(`${dir}/rootfs`);
    await buildBusyboxRootfs(`${dir}/rootfs`);
    assertEquals(
      (await run("tar", ["-C", `${dir}/rootfs`, "-cf", `${dir}/bb.tar`, "."])).code,
      0,
    );
    const imp = await run("podman", ["import", `${dir}/bb.tar`, "localhost/capsule-ctr"]);
    assertEquals(imp.code, 0, imp.stderr);
    const save = await run("podman", [
      "save",
      "--format",
      "docker-archive",
      "-o",
      `${dir}/img.tar`,
      "localhost/capsule-ctr",
    ]);
    assertEquals(save.code, 0, save.stderr);
    const ci = await ctr(
      "image",
      "import",
      "--base-name",
      "localhost/capsule-ctr",
      `${dir}/img.tar`,
    );
    assertEquals(ci.code, 0, ci.stderr);
    await fn({ dir, ctr, run, launcher, image: "localhost/capsule-ctr:latest" });
  } finally {
    for (const t of (await ctr("container", "ls", "-q")).stdout.split("\n").filter(Boolean)) {
      await ctr("task", "kill", "-s", "SIGKILL", t);
      await sleep(200);
      await ctr("task", "rm", "-f", t);
      await ctr("container", "rm", t);
    }
    daemon.kill("SIGTERM");
    await daemon.status;
    await run("podman", ["rmi", "-a", "-f"]);
    const mounts = Deno.readTextFileSync("/proc/self/mountinfo").split("\n")
      .map((l) => l.split(" ")[4]).filter((m) => m?.startsWith(dir)).reverse();
    for (const m of mounts) await run("umount", ["-l", m]);
    await removeAll(dir);
    for (const c of Deno.readDirSync("/sys/fs/cgroup")) {
      await Deno.remove(`/sys/fs/cgroup/${c.name}/${NS}`).catch(() => {});
    }
  }
}

Deno.test({
  name: "containerd drives capsule: run (exit status), detached task, exec, pause, kill, rm",
  ignore: needsContainerd,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withContainerd(async ({ ctr, launcher, image, dir }) => {
      const r = await ctr(
        "run",
        "--rm",
        "--runc-binary",
        launcher,
        image,
        "c1",
        "sh",
        "-c",
        "cat /proc/1/cmdline; exit 7",
      );
      assertEquals(r.code, 7, r.stderr);
      assertMatch(r.stdout, /^sh\0-c\0cat \/proc\/1\/cmdline; exit 7/);

      const d = await ctr("run", "-d", "--runc-binary", launcher, image, "c2", "sleep", "100");
      assertEquals(d.code, 0, d.stderr);
      assertMatch((await ctr("task", "ls")).stdout, /c2\s+\d+\s+RUNNING/);
      // The first exec: containerd writes its process file as it wrote config.json's process,
      // its args replaced, so the front end runs it without Deno from what create kept of
      // config.json (exec.ts keepConfigProcess, runtime/native/process_delta.c).
      const native = exists(`${dir}/capsule-nodeno`);
      if (native) Deno.writeTextFileSync(`${dir}/native-only`, "");
      const ex = await ctr(
        "task",
        "exec",
        "--exec-id",
        "e1",
        "c2",
        "sh",
        "-c",
        "echo in-exec; exit 5",
      );
      if (native) Deno.removeSync(`${dir}/native-only`);
      assertEquals(ex.code, 5, ex.stderr);
      assertEquals(ex.stdout, "in-exec\n");
      // The same process again (an exec probe's way): the front end runs it without Deno, from
      // what an exec kept (exec.ts writeExecProcess).
      if (native) {
        Deno.writeTextFileSync(`${dir}/native-only`, "");
        const again = await ctr(
          "task",
          "exec",
          "--exec-id",
          "e2",
          "c2",
          "sh",
          "-c",
          "echo in-exec; exit 5",
        );
        Deno.removeSync(`${dir}/native-only`);
        assertEquals([again.code, again.stdout], [5, "in-exec\n"], again.stderr);
      }
      assertEquals((await ctr("task", "pause", "c2")).code, 0);
      assertMatch((await ctr("task", "ls")).stdout, /c2\s+\d+\s+PAUSED/);
      assertEquals((await ctr("task", "resume", "c2")).code, 0);
      assertEquals((await ctr("task", "kill", "-s", "SIGKILL", "c2")).code, 0);
      for (let i = 0; i < 100 && !/STOPPED/.test((await ctr("task", "ls")).stdout); i++) {
        await sleep(50);
      }
      assertMatch((await ctr("task", "ls")).stdout, /c2\s+\d+\s+STOPPED/);
      assertEquals((await ctr("task", "rm", "c2")).code, 0);
      assertEquals((await ctr("container", "rm", "c2")).code, 0);
    }),
});

/** Processes whose command line is exactly `args` (leak checks). */
function processesRunning(args: string[]): number[] {
  const want = args.join("\0") + "\0";
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${e.name}/cmdline`) === want) out.push(Number(e.name));
    } catch { /* exited meanwhile */ }
  }
  return out;
}

// The shim's --root for the runtime it calls: /run/containerd/runc/<namespace>.
const SHIM_ROOT = `/run/containerd/runc/${NS}`;

Deno.test({
  name: "containerd: a container in another's PID namespace leaves a child behind; its exit " +
    "is recorded, task delete succeeds, nothing of it remains (capsule, and runc alike)",
  ignore: needsContainerd || !have("/usr/sbin/runc"),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withContainerd(async ({ ctr, launcher, image }) => {
      for (const [name, binary] of [["runc", "/usr/sbin/runc"], ["capsule", launcher]]) {
        const pod = `pod-${name}`, sidecar = `side-${name}`;
        // A different sleep per runtime, so that the leak check names the culprit.
        const leftover = ["sleep", name === "runc" ? "1234" : "1235"];
        const a = await ctr("run", "-d", "--runc-binary", binary, image, pod, "sleep", "1000");
        assertEquals(a.code, 0, `${name}: ${a.stderr}`);
        const podPid = /\s(\d+)\s+RUNNING/.exec(
          (await ctr("task", "ls")).stdout.split("\n").find((l) => l.startsWith(pod)) ?? "",
        )?.[1];
        assert(podPid, `${name}: pid of ${pod}`);
        // Its main process exits 3 and leaves a child in the shared PID namespace: the shim
        // runs `kill --all` when the init exits, then `delete` (ctr run --rm).
        const b = await ctr(
          "run",
          "--rm",
          "--runc-binary",
          binary,
          "--with-ns",
          `pid:/proc/${podPid}/ns/pid`,
          image,
          sidecar,
          "sh",
          "-c",
          `${leftover.join(" ")} </dev/null >/dev/null 2>&1 & exit 3`,
        );
        assertEquals(b.code, 3, `${name}: the exit status is recorded: ${b.stderr}`);
        assertEquals((await ctr("container", "ls", "-q")).stdout.includes(sidecar), false);
        for (let i = 0; i < 40 && processesRunning(leftover).length; i++) await sleep(50);
        assertEquals(processesRunning(leftover), [], `${name}: the left-behind child is killed`);
        assertEquals(cgroupDirsNamed(sidecar), [], `${name}: its cgroups are removed`);
        assertEquals(exists(`${SHIM_ROOT}/${sidecar}`), false, `${name}: its state is removed`);
        // The pod is untouched, and goes as usual.
        assertMatch((await ctr("task", "ls")).stdout, new RegExp(`${pod}\\s+\\d+\\s+RUNNING`));
        assertEquals((await ctr("task", "kill", "-s", "SIGKILL", pod)).code, 0);
        for (let i = 0; i < 100; i++) {
          if (new RegExp(`${pod}\\s+\\d+\\s+STOPPED`).test((await ctr("task", "ls")).stdout)) break;
          await sleep(50);
        }
        const rm = await ctr("task", "rm", pod);
        assertEquals(rm.code, 0, `${name}: ${rm.stderr}`);
        assertEquals((await ctr("container", "rm", pod)).code, 0);
        assertEquals(cgroupDirsNamed(pod), [], `${name}: pod cgroups removed`);
      }
    }),
});

Deno.test({
  name: "containerd: create/start/delete loops through the shim never fail (capsule and runc)",
  ignore: needsContainerd || !have("/usr/sbin/runc"),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    withContainerd(async ({ ctr, launcher, image }) => {
      const loops = Number(Deno.env.get("CAPSULE_CTR_LOOPS") ?? 200);
      for (const [name, binary] of [["runc", "/usr/sbin/runc"], ["capsule", launcher]]) {
        const t0 = performance.now();
        const failures: string[] = [];
        for (let i = 0; i < loops; i++) {
          const r = await ctr("run", "--rm", "--runc-binary", binary, image, `loop-${i}`, "true");
          if (r.code !== 0) failures.push(`#${i}: exit ${r.code}: ${r.stderr.trim()}`);
        }
        const ms = (performance.now() - t0) / loops;
        console.log(`${name}: ${loops} ctr run --rm, ${ms.toFixed(0)} ms each`);
        assertEquals(failures, [], `${name}: failed runs`);
      }
    }),
});
