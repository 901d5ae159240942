// run: create + start. In the foreground, stdio stays attached, signals to capsule are passed
// on, the program's exit status is returned and the container deleted afterwards.
import type { RuntimeContext } from "./context.ts";
import { createContainer, type CreateOptions } from "./create.ts";
import { deleteContainer } from "./delete.ts";
import { exitCode, forwardSignals, relayed } from "./spawn.ts";
import { start } from "./start.ts";
import { SIGNALS } from "./signals.ts";
import { EXIT_FILE, isoTime, writeFileAtomic } from "./state.ts";

export { EXIT_FILE };

/** Writes exit.json for `id` unless it exists (a waiter got there first) or the state is gone. */
function recordExit(ctx: RuntimeContext, id: string, st: Deno.CommandStatus): void {
  const dir = ctx.store.dir(id);
  try {
    Deno.statSync(`${dir}/${EXIT_FILE}`);
    return;
  } catch { /* not yet */ }
  const signal = typeof st.signal === "number"
    ? st.signal
    : st.signal
    ? SIGNALS[st.signal.replace(/^SIG/, "")] ?? 0
    : 0;
  try {
    writeFileAtomic(
      `${dir}/${EXIT_FILE}`,
      JSON.stringify({ exitCode: exitCode(st), signal, finishedAt: isoTime() }) +
        "\n",
    );
  } catch { /* deleted meanwhile */ }
}

/** How to run a container: create's options, and what to do once it exits. */
export interface RunOptions extends CreateOptions {
  /**
   * In the foreground: leave the stopped container (state, cgroup) for `delete` instead of
   * deleting it once its program exits (runc's `run --keep`). A failed start still deletes it.
   */
  keep?: boolean;
}

/**
 * create + start in the foreground: stdio attached, signals to capsule passed on, the
 * program's exit status returned (128+N for signal N), the container deleted afterwards
 * (unless `keep`). Detached (`detach`): returns once started, with exit status 0.
 */
export async function run(ctx: RuntimeContext, id: string, opts: RunOptions): Promise<number> {
  const { child, master, record } = await createContainer(ctx, id, opts, !opts.detach);
  if (opts.detach) {
    // An init that exits while this process runs is reaped here, not by whoever waits above
    // (run -d's waiter, runtime/waiter.ts): its status is kept where that waiter keeps it. One
    // that exits later is that waiter's once this process is gone.
    child.unref((st) => {
      // Under util-linux's unshare (a user namespace: record.waitPid), exit status 1 may be an
      // init killed by SIGKILL (unshare 2.38 cannot re-raise it): no status then.
      if (record.waitPid === undefined || st.signal || st.code !== 1) recordExit(ctx, id, st);
    });
    await start(ctx, id, record);
    child.poll(); // an exit already there is recorded before this process ends
    return 0;
  }
  const step = ctx.stopwatch(`run ${id}`);
  const stopForwarding = forwardSignals(child);
  try {
    try {
      await start(ctx, id, record);
    } catch (e) {
      await deleteContainer(ctx, id, { force: true });
      throw e;
    }
    step("started");
    const status = master === undefined ? await child.status : await relayed(master, child);
    step("program exited");
    if (!opts.keep) {
      await deleteContainer(ctx, id, { force: true, reaped: true });
      step("deleted");
    }
    return exitCode(status);
  } finally {
    stopForwarding();
  }
}
