// privateDir: state roots, stores and their top-level directories end up 0700, whoever made
// them first; shared or foreign directories are refused instead of being changed.
import { privateDir } from "../../runtime/state.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assertEquals, assertThrows, withTempDir } from "./helpers.ts";

const mode = (p: string) => (Deno.statSync(p).mode ?? 0) & 0o7777;

Deno.test("privateDir: creates 0700 (parents 0755), tightens a looser one, keeps a tight one", async () => {
  await withTempDir((dir) => {
    privateDir(`${dir}/a/b/store`, "--store");
    assertEquals(mode(`${dir}/a/b/store`), 0o700);
    assertEquals(mode(`${dir}/a/b`), 0o755 & ~Deno.umask());
    Deno.mkdirSync(`${dir}/loose`);
    Deno.chmodSync(`${dir}/loose`, 0o2775);
    privateDir(`${dir}/loose`, "--root");
    assertEquals(mode(`${dir}/loose`), 0o2700);
    Deno.chmodSync(`${dir}/loose`, 0o711);
    privateDir(`${dir}/loose`, "--root");
    assertEquals(mode(`${dir}/loose`), 0o700);
    Deno.chmodSync(`${dir}/loose`, 0o500);
    privateDir(`${dir}/loose`, "--root");
    assertEquals(mode(`${dir}/loose`), 0o500, "no group/other bits: left as it is");
  });
});

Deno.test("privateDir: refuses a file, a shared sticky directory and another user's", async () => {
  await withTempDir((dir) => {
    Deno.writeTextFileSync(`${dir}/f`, "");
    assertThrows(() => privateDir(`${dir}/f`, "--store"), CapsuleError, "is not a directory");
    Deno.mkdirSync(`${dir}/tmp`);
    Deno.chmodSync(`${dir}/tmp`, 0o1777);
    const e = assertThrows(() => privateDir(`${dir}/tmp`, "--root"), CapsuleError, "shared");
    assertEquals(e.message.includes(`${dir}/tmp/capsule`), true, e.message);
    assertEquals(mode(`${dir}/tmp`), 0o1777, "a shared directory is never changed");
    if (Deno.uid() === 0) {
      Deno.mkdirSync(`${dir}/other`);
      Deno.chownSync(`${dir}/other`, 65534, 65534);
      assertThrows(
        () => privateDir(`${dir}/other`, "--store"),
        CapsuleError,
        "belongs to uid 65534",
      );
    }
  });
});
