// runtime/exe_seal.ts: the sealed read-only view of the binary the init and exec's helper are
// started from.
import { assertEquals } from "../helpers.ts";
import { escapeLowerDir, sealedExe } from "../../runtime/exe_seal.ts";

Deno.test("exe_seal: overlayfs lowerdir escaping of ':' and '\\'", () => {
  assertEquals(escapeLowerDir("/opt/a:b\\c"), "/opt/a\\:b\\\\c");
  assertEquals(escapeLowerDir("/usr/bin"), "/usr/bin");
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
