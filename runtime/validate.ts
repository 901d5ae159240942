// config.json validation as create and exec -p use it: the zod-free check of config_check.ts
// first, zod (config.ts, loaded only then) for a config it refuses. Its own module so that
// config.ts, which uses config_check.ts's rules, is imported by nobody it imports.
import { checkRules, schemaAccepts } from "./config_check.ts";
import type { Spec } from "./spec.ts";

/**
 * Validates a parsed config.json (runtime spec "Configuration", 1.0-1.2) and returns a copy,
 * typed: through the fast check when it accepts, else through zod (config.ts, loaded only
 * then). Throws CapsuleError naming `file`, the JSON path of the first problem and the reason.
 */
export async function checkConfig(raw: unknown, file = "config.json"): Promise<Spec> {
  if (!schemaAccepts(raw)) {
    const { validateConfig } = await import("./config.ts");
    return validateConfig(raw, file);
  }
  // A copy, as zod's parse returns: create changes the spec (terminal, root.path) after.
  const spec = structuredClone(raw) as Spec;
  checkRules(spec, file);
  return spec;
}
