import { CapsuleError } from "./errors.ts";

/** Container ids: what runc accepts, and nothing that could climb out of a directory. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** Throws unless `id` is a valid container id; only a valid id ever reaches a path. */
export function validateId(id: string, what = "container id"): string {
  if (typeof id !== "string" || !ID_PATTERN.test(id)) {
    throw new CapsuleError(
      `Invalid ${what} ${JSON.stringify(id)}: use 1-128 letters, digits, '_', '.' or '-', ` +
        `starting with a letter or digit`,
    );
  }
  return id;
}
