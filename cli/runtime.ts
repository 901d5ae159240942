// Builds the Runtime a command needs: the cgroup driver, and only the extensions (network,
// image) that the flags ask for or that the container's state says it uses, so that a plain
// create/run/delete loads no networking or image code.
import { type Extension, Runtime } from "../runtime/container.ts";
import type { CgroupDriver } from "../runtime/cgroups/mod.ts";
import type { Globals } from "./main.ts";
import { ID_PATTERN } from "../runtime/ids.ts";

export interface RuntimeNeeds {
  /** The command works on this container: load what its state says it uses. */
  id?: string;
  /** The flags ask for networking (--network, -p, --link). */
  network?: boolean;
  /** The container comes from an image (image run). */
  image?: boolean;
}

function extKeys(root: string, id: string): string[] {
  try {
    const rec = JSON.parse(Deno.readTextFileSync(`${root}/${id}/state.json`));
    return Object.keys(rec.ext ?? {});
  } catch {
    return [];
  }
}

export async function openRuntime(g: Globals, needs: RuntimeNeeds = {}): Promise<Runtime> {
  const { detectCgroups } = await import("../runtime/cgroups/mod.ts");
  let driver: CgroupDriver | undefined;
  const keys = needs.id && ID_PATTERN.test(needs.id) ? extKeys(g.root, needs.id) : [];
  const extensions: Extension[] = [];
  if (needs.image || keys.includes("image")) {
    const { imageExtension } = await import("../image/mod.ts");
    extensions.push(imageExtension({ root: g.root, store: g.store }));
  }
  if (needs.network || keys.includes("network")) {
    const { networkExtension } = await import("../network/mod.ts");
    extensions.push(networkExtension({ root: g.root, store: g.store }));
  }
  return new Runtime({
    root: g.root,
    extensions,
    // An unprivileged user has no cgroups of its own to manage (no delegation): none.
    cgroups: () => Deno.uid() === 0 ? (driver ??= detectCgroups()) : undefined,
    debug: g.logger.debugOn ? (m) => g.logger.debug(m) : undefined,
  });
}
