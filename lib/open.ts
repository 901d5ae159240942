// Where capsule keeps things, and the Runtime a task needs: the cgroup driver, and only the
// extensions (network, image) that the task asks for or that the container's state says it
// uses, so that a plain create/run/delete loads no networking or image code. Shared by the
// CLI (cli/runtime.ts) and the library (lib/capsule.ts); on the container start path.
import type { CgroupDriver } from "../runtime/cgroups/mod.ts";
import { type Extension, Runtime } from "../runtime/container.ts";
import { ID_PATTERN } from "../runtime/ids.ts";
import { DEFAULT_ROOT } from "../runtime/state.ts";

/** Where images and volumes live by default (`capsule --store`). */
export const DEFAULT_STORE = "/var/lib/capsule";

/**
 * The default state root: /var/run/capsule for root; an unprivileged user's own runtime
 * directory otherwise ($XDG_RUNTIME_DIR/capsule, else /tmp/capsule-<uid>).
 */
export function defaultRoot(): string {
  if (Deno.uid() === 0) return DEFAULT_ROOT;
  const xdg = Deno.env.get("XDG_RUNTIME_DIR");
  return xdg ? `${xdg}/capsule` : `/tmp/capsule-${Deno.uid()}`;
}

/** Where capsule keeps its data, and how it reports; every field optional. */
export interface CapsuleOptions {
  /** State of containers and networks (`capsule --root`; default: defaultRoot()). */
  root?: string;
  /** Images and volumes (`capsule --store`; default DEFAULT_STORE). */
  store?: string;
  /**
   * The cgroup driver; default: found from /proc/self/mountinfo for root, none for an
   * unprivileged user (nothing delegates cgroups to it).
   */
  cgroups?: () => CgroupDriver | undefined;
  /** --debug lines (create's steps with milliseconds); default: none. */
  debug?: (msg: string) => void;
  /** Failures that do not fail the operation (poststart/poststop hooks); default: stderr. */
  warn?: (msg: string) => void;
}

/** What a task on containers needs loaded. */
export interface RuntimeNeeds {
  /** The task works on this container: load the extensions its state says it uses. */
  id?: string;
  /** Networking is asked for (a network, published ports or links). */
  network?: boolean;
  /** The container comes from an image. */
  image?: boolean;
  /** Another state root than the options' (a container made under another --root). */
  root?: string;
}

/** The extensions a container's state names; all of them when its state.json is damaged. */
function extKeys(root: string, id: string): string[] {
  let text: string;
  try {
    text = Deno.readTextFileSync(`${root}/${id}/state.json`);
  } catch {
    return [];
  }
  try {
    return Object.keys(JSON.parse(text).ext ?? {});
  } catch {
    // delete -f finds what each extension holds for the id from the id alone.
    return ["image", "network"];
  }
}

/**
 * A Runtime with the cgroup driver and the extensions `needs` asks for (or that the state of
 * `needs.id` names). Throws only when a module cannot be loaded.
 */
export async function openRuntime(o: CapsuleOptions, needs: RuntimeNeeds = {}): Promise<Runtime> {
  const root = needs.root ?? o.root ?? defaultRoot();
  const store = o.store ?? DEFAULT_STORE;
  // Only this host's driver is loaded (cgroups/detect.ts); an unprivileged user gets none.
  const makeDriver = o.cgroups || Deno.uid() !== 0
    ? undefined
    : await (await import("../runtime/cgroups/detect.ts")).loadCgroupDriver();
  let driver: CgroupDriver | undefined;
  const keys = needs.id && ID_PATTERN.test(needs.id) ? extKeys(root, needs.id) : [];
  const extensions: Extension[] = [];
  if (needs.image || keys.includes("image")) {
    const { imageExtension } = await import("../image/mod.ts");
    extensions.push(imageExtension({ root, store }));
  }
  if (needs.network || keys.includes("network")) {
    const { networkExtension } = await import("../network/mod.ts");
    extensions.push(networkExtension({ root, store }));
  }
  return new Runtime({
    root,
    extensions,
    // An unprivileged user has no cgroups of its own to manage (no delegation): none.
    cgroups: o.cgroups ?? (() => makeDriver ? (driver ??= makeDriver()) : undefined),
    debug: o.debug,
    warn: o.warn,
  });
}
