// The Runtime a command needs (lib/open.ts), from the global options.
import type { Runtime } from "../runtime/container.ts";
import { openRuntime as open, type RuntimeNeeds } from "../lib/open.ts";
import type { Globals } from "./types.ts";

export type { RuntimeNeeds };

/** A Runtime for `g.root` with what `needs` asks for; --debug lines go to the logger. */
export function openRuntime(g: Globals, needs: RuntimeNeeds = {}): Promise<Runtime> {
  return open({
    root: g.root,
    store: g.store,
    debug: g.logger.debugOn ? (m) => g.logger.debug(m) : undefined,
    warn: (m) => g.logger.warn(m),
  }, needs);
}
