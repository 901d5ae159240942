// STUB, replaced by the image work (issue 6).
import type { Extension } from "../runtime/container.ts";
export function imageExtension(_opts: { root: string; store: string }): Extension {
  return { name: "image" };
}
