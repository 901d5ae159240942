// capsule as podman's OCI runtime: conmon calls create/start/kill/delete/exec/pause/resume
// with its own conventions (console sockets, --pid-file, exec -d with its own pipes, a netns
// path). Skipped where podman is not installed (tests/setup.sh installs it).
import {
  assertEquals,
  assertMatch,
  buildBusyboxRootfs,
  capsuleCommand,
  exists,
  isRoot,
  removeAll,
  writeNoDenoLauncher,
} from "../helpers.ts";

function which(cmd: string): boolean {
  return ["/usr/bin", "/usr/local/bin", "/bin"].some((d) => {
    try {
      return Deno.statSync(`${d}/${cmd}`).isFile;
    } catch {
      return false;
    }
  });
}

Deno.test({
  name: "podman drives capsule: run, exec, logs, pause, stop, rm, terminal, netns by path",
  ignore: !isRoot() || !which("podman"),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "capsule-podman-" });
    // podman calls the runtime with almost no environment: the launcher names Deno by path.
    const launcher = `${dir}/capsule`;
    await Deno.writeTextFile(
      launcher,
      `#!/bin/sh\n[ -e ${dir}/native-only ] && exec ${dir}/capsule-nodeno --root ${dir}/state "$@"\n` +
        `exec ${capsuleCommand().join(" ")} --root ${dir}/state "$@"\n`,
      { mode: 0o755 },
    );
    // With ${dir}/native-only: the built launcher with a Deno that does not exist, so that only
    // what its native front end takes works (exec_front_test.ts does the same).
    writeNoDenoLauncher(`${dir}/capsule-nodeno`);
    await Deno.writeTextFile(
      `${dir}/containers.conf`,
      `[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n` +
        `[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n` +
        `[engine.runtimes]\ncapsule = ["${launcher}"]\n`,
    );
    await Deno.writeTextFile(
      `${dir}/storage.conf`,
      `[storage]\ndriver = "vfs"\nrunroot = "${dir}/run"\ngraphroot = "${dir}/graph"\n`,
    );
    const env = {
      CONTAINERS_CONF: `${dir}/containers.conf`,
      CONTAINERS_STORAGE_CONF: `${dir}/storage.conf`,
      PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
    };
    const podman = async (args: string[], stdin?: string) => {
      const child = new Deno.Command("podman", {
        args: ["--runtime", "capsule", ...args],
        env,
        stdin: stdin === undefined ? "null" : "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      if (stdin !== undefined) {
        const w = child.stdin.getWriter();
        await w.write(new TextEncoder().encode(stdin));
        await w.close();
      }
      const out = await child.output();
      const dec = new TextDecoder();
      return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
    };
    try {
      await Deno.mkdir(`${dir}/rootfs`);
      await buildBusyboxRootfs(`${dir}/rootfs`);
      const tar = await new Deno.Command("tar", {
        args: ["-C", `${dir}/rootfs`, "-cf", `${dir}/bb.tar`, "."],
      }).output();
      assertEquals(tar.code, 0);
      const imp = await podman([
        "import",
        "--change",
        "CMD=/bin/sh",
        `${dir}/bb.tar`,
        "localhost/capsule-bb",
      ]);
      assertEquals(imp.code, 0, imp.stderr);

      const r = await podman([
        "run",
        "--rm",
        "--network",
        "none",
        "--hostname",
        "pm1",
        "localhost/capsule-bb",
        "sh",
        "-c",
        "hostname; cat /proc/1/cmdline; echo; ls /sys/fs/cgroup | head -1; exit 7",
      ]);
      assertEquals(r.code, 7, r.stderr);
      assertMatch(r.stdout, /^pm1\nsh\0-c\0hostname/);

      const d = await podman([
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "pmweb",
        "localhost/capsule-bb",
        "sh",
        "-c",
        "echo started; while :; do sleep 0.2; done",
      ]);
      assertEquals(d.code, 0, d.stderr);
      const e = await podman(["exec", "pmweb", "sh", "-c", "echo in-exec; exit 3"]);
      assertEquals(e.code, 3, e.stderr);
      assertEquals(e.stdout, "in-exec\n");
      // The same exec again (a healthcheck's way): the front end runs it without Deno, from what
      // the first one kept (exec.ts writeExecProcess).
      if (exists(`${dir}/capsule-nodeno`)) {
        Deno.writeTextFileSync(`${dir}/native-only`, "");
        const again = await podman(["exec", "pmweb", "sh", "-c", "echo in-exec; exit 3"]);
        Deno.removeSync(`${dir}/native-only`);
        assertEquals([again.code, again.stdout], [3, "in-exec\n"], again.stderr);
      }
      const i = await podman(["exec", "-i", "pmweb", "cat"], "piped-in\n");
      assertEquals(i.stdout, "piped-in\n");
      const t = await podman(["exec", "-t", "pmweb", "tty"]);
      assertMatch(t.stdout, /^\/dev\/pts\/\d+/);
      assertMatch((await podman(["logs", "pmweb"])).stdout, /started/);
      assertEquals((await podman(["pause", "pmweb"])).code, 0);
      assertMatch(
        (await podman(["inspect", "--format", "{{.State.Status}}", "pmweb"])).stdout,
        /paused/,
      );
      assertEquals((await podman(["unpause", "pmweb"])).code, 0);
      const top = await podman(["top", "pmweb"]);
      assertMatch(top.stdout, /sh -c echo started/);
      assertEquals((await podman(["kill", "pmweb"])).code, 0);
      const rm = await podman(["rm", "-f", "pmweb"]);
      assertEquals(rm.code, 0, rm.stderr);
      const left = [...Deno.readDirSync(`${dir}/state`)].map((x) => x.name);
      assertEquals(left, [], "capsule state left behind");
    } finally {
      await podman(["rm", "-f", "-a"]);
      await podman(["rmi", "-a", "-f"]);
      await removeAll(dir);
    }
  },
});
