// runtime/helper_process.ts: processes started through posix_spawn (libc.spawn) and reaped by
// their HelperProcess only: exit statuses and signals in Deno's CommandStatus shape, kill through
// a pidfd, poll without waiting, reapEnded, an empty environment, the caller's fds unless
// close-on-exec, and the spawn's own error. No root needed.
import * as libc from "../../ffi/libc.ts";
import { HelperProcess, reapEnded, spawnHelper } from "../../runtime/helper_process.ts";
import { assert, assertEquals, assertThrows, withTempDir } from "./helpers.ts";

function sh(script: string, env: string[] = []): HelperProcess {
  return new HelperProcess(libc.spawn("/bin/sh", ["sh", "-c", script], env));
}

/** Whether `pid` is still a process (a zombie counts): it is not reaped yet. */
function exists(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

Deno.test("HelperProcess: exit status and death by signal, as Deno's CommandStatus", async () => {
  assertEquals(await sh("exit 0").status, { success: true, code: 0, signal: null });
  assertEquals(await sh("exit 7").status, { success: false, code: 7, signal: null });
  assertEquals(await sh("kill -TERM $$").status, { success: false, code: 143, signal: "SIGTERM" });
});

Deno.test("HelperProcess: kill through its pidfd, then no more", async () => {
  const p = sh("sleep 30");
  p.kill("SIGKILL");
  assertEquals(await p.status, { success: false, code: 137, signal: "SIGKILL" });
  assert(!exists(p.pid), "reaped");
  assertThrows(() => p.kill("SIGKILL"), Error, "has ended");
});

Deno.test("HelperProcess: poll never waits, reaps an ended process, and leaves one that status waits for", async () => {
  const p = sh("sleep 30");
  assertEquals(p.poll(), undefined);
  p.kill("SIGTERM");
  for (let i = 0; i < 200 && p.poll() === undefined; i++) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assertEquals(p.poll(), { success: false, code: 143, signal: "SIGTERM" });
  assert(!exists(p.pid), "reaped by poll");
  assertEquals((await p.status).code, 143);
  const q = sh("sleep 0.2; exit 4");
  const waiting = q.status;
  assertEquals(q.poll(), undefined); // its wait, not poll, reaps it
  assertEquals((await waiting).code, 4);
  assertEquals(q.poll(), { success: false, code: 4, signal: null });
});

Deno.test("reapEnded: no zombie is left of an ended process nobody waited for", async () => {
  const p = sh("exit 0");
  const deadline = Date.now() + 5000;
  // The process ends as a zombie of this one until reaped.
  while (Date.now() < deadline) {
    const stat = Deno.readTextFileSync(`/proc/${p.pid}/stat`);
    if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  reapEnded();
  assert(!exists(p.pid), `pid ${p.pid} reaped`);
  assertEquals(await p.status, { success: true, code: 0, signal: null });
});

Deno.test("spawn: exactly the given environment, and only fds that are not close-on-exec", async () => {
  await withTempDir(async (dir) => {
    const [a, b] = libc.socketpair();
    libc.setCloexec(a, true);
    libc.setCloexec(b, false);
    try {
      const p = sh(`env > ${dir}/env; ls /proc/self/fd > ${dir}/fds`, ["ONLY=1"]);
      assertEquals((await p.status).code, 0);
      const env = Deno.readTextFileSync(`${dir}/env`).trim().split("\n").filter((l) =>
        !l.startsWith("PWD=") && !l.startsWith("SHLVL=") && !l.startsWith("_=")
      );
      assertEquals(env, ["ONLY=1"]);
      const fds = Deno.readTextFileSync(`${dir}/fds`).trim().split("\n").map(Number);
      assert(fds.includes(b), `fd ${b} (not close-on-exec) is inherited: ${fds}`);
      assert(!fds.includes(a), `fd ${a} (close-on-exec) is not: ${fds}`);
    } finally {
      libc.close(a);
      libc.close(b);
    }
  });
});

Deno.test("spawn: a program that cannot be executed is the spawn's error, naming it", () => {
  const e = assertThrows(() => libc.spawn("/nonexistent/x", ["x"], []), libc.SysError);
  assertEquals(e.code, "ENOENT");
  assert(e.message.includes("/nonexistent/x"), e.message);
});

Deno.test("spawnHelper null: the child's stdio is /dev/null, this process's is left as it was", async () => {
  await withTempDir(async (dir) => {
    const before = [0, 1, 2].map((fd) => Deno.readLinkSync(`/proc/self/fd/${fd}`));
    const p = spawnHelper("/bin/sh", [
      "-c",
      `a=$(readlink /proc/$$/fd/0 /proc/$$/fd/1 /proc/$$/fd/2); echo "$a" > ${dir}/out`,
    ], "null");
    assertEquals((await p.status).code, 0);
    assertEquals(Deno.readTextFileSync(`${dir}/out`), "/dev/null\n/dev/null\n/dev/null\n");
    assertEquals([0, 1, 2].map((fd) => Deno.readLinkSync(`/proc/self/fd/${fd}`)), before);
    // A wrapper (as unshare/setpriv) gets /dev/null as well, not only the helper after it.
    const q = spawnHelper("-c", [`a=$(readlink /proc/$$/fd/1); echo "$a" > ${dir}/w`], "null", [
      "/bin/sh",
    ]);
    assertEquals((await q.status).code, 0);
    assertEquals(Deno.readTextFileSync(`${dir}/w`), "/dev/null\n");
  });
});
