// start (runtime spec "start"): opening exec.fifo for reading releases the init, which is
// blocked writing to it; the init then execs the program. Poststart hooks run after.
import * as libc from "../ffi/libc.ts";
import { type RuntimeContext, sleep } from "./context.ts";
import { CapsuleError, StateTransitionError } from "./errors.ts";
import { runHooks } from "./hooks.ts";
import { ociState, status } from "./query.ts";
import { type ContainerRecord, EXEC_FIFO, initAlive } from "./state.ts";

/**
 * Releases a created container: its init execs the program. Returns at once. `created`: the
 * record of a container this process has just created (run), not read and looked at again.
 */
export async function start(
  ctx: RuntimeContext,
  id: string,
  created?: ContainerRecord,
): Promise<void> {
  const rec = created ?? ctx.store.load(id);
  const st = created ? "created" : status(ctx, rec);
  if (st !== "created") throw new StateTransitionError(id, "start", st, ["created"]);
  const fifo = `${ctx.store.dir(id)}/${EXEC_FIFO}`;
  const fd = libc.open(fifo, libc.O.RDONLY | libc.O.NONBLOCK | libc.O.CLOEXEC);
  try {
    const buf = new Uint8Array(1);
    const deadline = Date.now() + 10_000;
    // A writer came and went without writing (poll said readable, read found nothing): poll
    // would return at once from then on.
    let afterPoll = false, hungUp = false;
    for (;;) {
      let n = 0;
      try {
        n = libc.read(fd, buf);
      } catch {
        // Nothing to read yet (EAGAIN). Any failed read is tried again rather than trusted:
        // a read(2) of a FIFO has no other error worth stopping for, and the errno read back
        // through FFI was seen clobbered (ENOENT) once in ~100 starts under containerd. The
        // init's liveness and the deadline below end the wait.
      }
      if (n === 1) break;
      if (afterPoll) hungUp = true;
      afterPoll = false;
      // Another start read the init's byte and removed the fifo (runc: the container is running
      // now). Looked at on every turn: a start that opened the fifo after that byte was read and
      // its writer gone sees no hang-up, and waited out the 10 s deadline.
      try {
        Deno.lstatSync(fifo);
      } catch {
        throw new StateTransitionError(id, "start", "running", ["created"]);
      }
      if (!initAlive(rec)) {
        // It may have written between the read above and this look, then run its program to
        // the end (`echo`): the byte in the fifo says it started.
        try {
          n = libc.read(fd, buf);
        } catch { /* nothing there */ }
        if (n === 1) break;
        throw new CapsuleError(`Cannot start container "${id}": its init process has exited`);
      }
      if (Date.now() > deadline) {
        throw new CapsuleError(`Cannot start container "${id}": its init did not answer in 10 s`);
      }
      // Nothing yet: wait for the init's write. Before any writer opened the fifo, read(2)
      // says EOF but poll(2) waits (Linux reports POLLHUP only once a writer came and went), so
      // a poll returns as the init writes; a 1 ms timer would fire 1-2 ms later. After a
      // poll that returned with nothing to read (that hang-up), sleep instead.
      if (!hungUp && libc.pollIn(fd, 10)) {
        afterPoll = true;
        continue;
      }
      await sleep(1);
    }
  } finally {
    libc.close(fd);
  }
  Deno.removeSync(fifo);
  // Runtime spec: a failed poststart hook is a warning; the other hooks and start go on.
  await runHooks("poststart", rec.hooks?.poststart, ociState(rec, "running"), (m) => ctx.warn(m));
}
