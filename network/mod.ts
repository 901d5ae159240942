// STUB, replaced by the networking work (issue 5).
import type { Extension } from "../runtime/container.ts";
export function networkExtension(_opts: { root: string }): Extension {
  return { name: "network" };
}
