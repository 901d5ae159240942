// capsule as containerd's runtime (`ctr run --runc-binary`): the runc shim calls create with
// its own --root, --log and --log-format json, then start, state, kill, delete, exec, pause.
// A private containerd (its own socket, root and state dirs) is started for the test; the image
// comes from podman (import a busybox rootfs, save as docker-archive). Skipped where containerd
// or podman is not installed (tests/setup.sh installs both).
import {
  assertEquals,
  assertMatch,
  buildBusyboxRootfs,
  isRoot,
  removeAll,
  REPO,
  sleep,
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

Deno.test({
  name: "containerd drives capsule: run (exit status), detached task, exec, pause, kill, rm",
  ignore: !isRoot() || !have("/usr/bin/containerd") || !have("/usr/bin/ctr") ||
    !have("/usr/bin/podman"),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
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
      `#!/bin/sh\nexec ${Deno.execPath()} run -A --quiet ${REPO}/main.ts "$@"\n`,
      {
        mode: 0o755,
      },
    );
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
      const image = "localhost/capsule-ctr:latest";

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
      assertEquals(ex.code, 5, ex.stderr);
      assertEquals(ex.stdout, "in-exec\n");
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
  },
});
