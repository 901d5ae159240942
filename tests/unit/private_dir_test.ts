// privateDir: state roots, stores and their top-level directories end up 0700, whoever made
// them first; shared or foreign directories are refused instead of being changed.
import { privateDir, rootOwns } from "../../runtime/state.ts";
import { storeOwns } from "../../image/store.ts";
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

Deno.test("privateDir: a looser directory that holds anything, or is reached through a symlink, is refused and never changed (--root /run by mistake)", async () => {
  await withTempDir((dir) => {
    // Another program's directory: files in it, mode 0755.
    Deno.mkdirSync(`${dir}/run`);
    Deno.chmodSync(`${dir}/run`, 0o755);
    Deno.writeTextFileSync(`${dir}/run/service.pid`, "1");
    const e = assertThrows(() => privateDir(`${dir}/run`, "--root"), CapsuleError, "755");
    assertEquals(e.message.includes("chmod go-rwx"), true, e.message);
    assertEquals(mode(`${dir}/run`), 0o755, "another program's directory is never changed");
    // A symlink to a looser directory, even an empty one: not followed to change it.
    Deno.mkdirSync(`${dir}/victim`);
    Deno.chmodSync(`${dir}/victim`, 0o755);
    Deno.symlinkSync(`${dir}/victim`, `${dir}/link`);
    assertThrows(() => privateDir(`${dir}/link`, "--store"), CapsuleError, "symbolic link");
    assertEquals(mode(`${dir}/victim`), 0o755);
    // A symlink to a tight directory is used as it is (runc's --root may be one).
    Deno.chmodSync(`${dir}/victim`, 0o700);
    privateDir(`${dir}/link`, "--store");
    assertEquals(mode(`${dir}/victim`), 0o700);
    // An empty looser directory made for capsule (mkdir with a 022 umask) is tightened.
    Deno.mkdirSync(`${dir}/fresh`);
    Deno.chmodSync(`${dir}/fresh`, 0o755);
    privateDir(`${dir}/fresh`, "--root");
    assertEquals(mode(`${dir}/fresh`), 0o700);
  });
});

Deno.test("privateDir: a loose root or store holding only what capsule puts there (an older capsule's) is tightened", async () => {
  await withTempDir((dir) => {
    const root = `${dir}/root`, store = `${dir}/store`;
    Deno.mkdirSync(`${root}/c1`, { recursive: true });
    Deno.writeTextFileSync(`${root}/c1/state.json`, "{}");
    Deno.mkdirSync(`${root}/_networks`);
    Deno.writeTextFileSync(`${root}/.monitor-0123456789abcdef.lock`, "");
    Deno.chmodSync(root, 0o711);
    privateDir(root, "--root", rootOwns);
    assertEquals(mode(root), 0o700);
    // A directory without state.json, even an empty one (/srv/sub1), is not a container's.
    Deno.chmodSync(root, 0o755);
    Deno.mkdirSync(`${root}/sub1`);
    assertThrows(() => privateDir(root, "--root", rootOwns), CapsuleError, '"sub1"');
    assertEquals(mode(root), 0o755);
    Deno.removeSync(`${root}/sub1`);
    Deno.mkdirSync(`${root}/www`);
    Deno.writeTextFileSync(`${root}/www/index.html`, "");
    assertThrows(() => privateDir(root, "--root", rootOwns), CapsuleError, '"www"');
    assertEquals(mode(root), 0o755);

    Deno.mkdirSync(`${store}/images`, { recursive: true });
    Deno.mkdirSync(`${store}/volumes`);
    Deno.chmodSync(store, 0o755);
    privateDir(store, "--store", storeOwns);
    assertEquals(mode(store), 0o700);
    Deno.chmodSync(store, 0o755);
    Deno.writeTextFileSync(`${store}/notes.txt`, "");
    assertThrows(() => privateDir(store, "--store", storeOwns), CapsuleError, '"notes.txt"');
    assertEquals(mode(store), 0o755);
  });
});
