// runtime/exe_seal.ts and the init's environment (runtime/spawn.ts): the view of the binary
// the init is started from, and that nothing of the caller's environment reaches the init.
import { assert, assertEquals } from "../helpers.ts";
import { escapeLowerDir, sealedExe } from "../../runtime/exe_seal.ts";
import { initEnv } from "../../runtime/spawn.ts";

Deno.test("exe_seal: overlayfs lowerdir escaping of ':' and '\\'", () => {
  assertEquals(escapeLowerDir("/opt/a:b\\c"), "/opt/a\\:b\\\\c");
  assertEquals(escapeLowerDir("/usr/bin"), "/usr/bin");
});

Deno.test("exe_seal: the init's environment holds nothing of the caller's", () => {
  Deno.env.set("SECRET_PROBE", "x");
  try {
    const env = initEnv(7);
    assert(!("SECRET_PROBE" in env) && !("HOME" in env) && !("PATH" in env), JSON.stringify(env));
    assertEquals(env._CAPSULE_INITPIPE, "7");
    // A path below a regular file can never be a directory: Deno opens no cache database.
    assert(Deno.statSync(Deno.execPath()).isFile);
    assertEquals(env.DENO_DIR, `${Deno.execPath()}/no-cache`);
  } finally {
    Deno.env.delete("SECRET_PROBE");
  }
});

Deno.test("exe_seal: a read-only view for root, the path only when this user cannot write it", () => {
  const s = sealedExe();
  try {
    if (Deno.uid() === 0) {
      assertEquals(s.how, "overlay");
      let code: string | undefined;
      try {
        Deno.openSync(s.path, { write: true }).close();
      } catch (e) {
        code = (e as { code?: string }).code;
      }
      assertEquals(code, "EROFS");
      // the same file: runs and reads like the binary
      const out = new Deno.Command(s.path, { args: ["--version"] }).outputSync();
      assertEquals(out.code, 0);
    } else {
      const writable = (() => {
        try {
          Deno.openSync(Deno.execPath(), { append: true }).close();
          return true;
        } catch (e) {
          return (e as { code?: string }).code === "ETXTBSY";
        }
      })();
      assertEquals(s.how, writable ? "memfd" : "disk");
    }
  } finally {
    s.release();
  }
});
