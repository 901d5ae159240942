// What every lifecycle operation shares: where the state lives, the cgroup driver (found
// lazily), the layers attached above the runtime, and --debug timings. Each operation
// (create.ts, start.ts, kill.ts, ...) is a function of this context and a container id.
import type { CgroupDriver } from "./cgroups/mod.ts";
import type { Extension } from "./extension.ts";
import { DEFAULT_ROOT, StateStore } from "./state.ts";

/** How to build a runtime: all optional (root /var/run/capsule, no extensions, no cgroups). */
export interface RuntimeOptions {
  /** State directory: one subdirectory per container (`capsule --root`). */
  root?: string;
  /** Layers attached to the lifecycle (network, image), in the order their `prepare` runs. */
  extensions?: Extension[];
  /** The cgroup driver; resolved lazily (detection reads mountinfo). */
  cgroups?: () => CgroupDriver | undefined;
  /** Debug lines (capsule --debug): what create does, with milliseconds since it began. */
  debug?: (msg: string) => void;
  /**
   * Warnings: what failed but does not fail the operation (a poststart or poststop hook, runtime
   * spec "Lifecycle"). Default: a `capsule: warning: ...` line on stderr.
   */
  warn?: (msg: string) => void;
}

/** The shared context of the lifecycle operations. */
export interface RuntimeContext {
  /** Where the containers' state lives. */
  readonly store: StateStore;
  /** Layers attached to the lifecycle, in the order their `prepare` runs. */
  readonly extensions: Extension[];
  /** The cgroup driver, detected on first use; undefined when capsule manages no cgroups. */
  readonly cgroups: CgroupDriver | undefined;
  /** Reports a failure that does not fail the operation (RuntimeOptions.warn). */
  warn(msg: string): void;
  /** A stopwatch for --debug: `step("name")` logs the milliseconds since the last step. */
  stopwatch(what: string): (step: string) => void;
}

/** Builds the context from the runtime's options. */
export function createContext(opts: RuntimeOptions = {}): RuntimeContext {
  let driver: CgroupDriver | null | undefined;
  const debug = opts.debug;
  return {
    store: new StateStore(opts.root ?? DEFAULT_ROOT),
    extensions: opts.extensions ?? [],
    warn: opts.warn ?? ((msg) => console.error(`capsule: warning: ${msg}`)),
    get cgroups() {
      if (driver === undefined) driver = opts.cgroups?.() ?? null;
      return driver ?? undefined;
    },
    stopwatch(what) {
      if (!debug) return () => {};
      const t0 = performance.now();
      let last = t0;
      // Where the first step starts: the milliseconds since Deno's runtime began (its start-up
      // before that, ~20 ms, is not counted) that capsule's own modules and parsing took.
      debug(`${what}: began ${t0.toFixed(1)} ms after the runtime started`);
      return (step) => {
        const now = performance.now();
        debug(`${what}: ${step} +${(now - last).toFixed(1)} ms (${(now - t0).toFixed(1)} ms)`);
        last = now;
      };
    },
  };
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
