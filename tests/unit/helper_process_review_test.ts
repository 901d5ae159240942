// runtime/helper_process.ts against Deno's own CommandStatus: a signal that has two names in
// runtime/signals.ts (ABRT/IOT 6, IO/POLL 29) is named as Deno names it (SIGABRT, SIGIO), as
// the HelperProcess doc promises "Deno's shape"; the name reaches the user in create's and
// exec's errors ("its init was killed by SIGABRT"). No root needed.
import * as libc from "../../ffi/libc.ts";
import { HelperProcess } from "../../runtime/helper_process.ts";
import { assertEquals } from "./helpers.ts";

Deno.test("HelperProcess: a signal with two names is named as Deno.ChildProcess names it", async () => {
  for (const sig of ["ABRT", "IO"]) {
    const script = `kill -${sig} $$`;
    const deno = await new Deno.Command("/bin/sh", { args: ["-c", script] }).output();
    const ours = await new HelperProcess(libc.spawn("/bin/sh", ["sh", "-c", script], [])).status;
    assertEquals(
      { success: ours.success, code: ours.code, signal: ours.signal },
      { success: deno.success, code: deno.code, signal: deno.signal },
      `killed by SIG${sig}`,
    );
  }
});
