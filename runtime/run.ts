// run: create + start. In the foreground, stdio stays attached, signals to capsule are passed
// on, the program's exit status is returned and the container deleted afterwards.
import type { RuntimeContext } from "./context.ts";
import { createContainer, type CreateOptions } from "./create.ts";
import { deleteContainer } from "./delete.ts";
import { exitCode, forwardSignals, relayed } from "./spawn.ts";
import { start } from "./start.ts";

/**
 * create + start in the foreground: stdio attached, signals to capsule passed on, the
 * program's exit status returned (128+N for signal N), the container deleted afterwards.
 * Detached (`detach`): returns once started, with exit status 0.
 */
export async function run(ctx: RuntimeContext, id: string, opts: CreateOptions): Promise<number> {
  const { child, master } = await createContainer(ctx, id, opts, !opts.detach);
  if (opts.detach) {
    child.unref();
    await start(ctx, id);
    return 0;
  }
  const stopForwarding = forwardSignals(child);
  try {
    try {
      await start(ctx, id);
    } catch (e) {
      await deleteContainer(ctx, id, { force: true });
      throw e;
    }
    const status = master === undefined ? await child.status : await relayed(master, child);
    await deleteContainer(ctx, id, { force: true });
    return exitCode(status);
  } finally {
    stopForwarding();
  }
}
