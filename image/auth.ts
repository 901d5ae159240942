// Registry credentials in the containers-auth.json format podman, skopeo and buildah use
// (containers-auth.json(5)): {"auths": {"registry.example:5000": {"auth": base64("user:pass")}}}.
// Default file: podman's, so `podman login` and `capsule image login` share credentials:
// $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json, else
// /run/containers/<uid>/auth.json. The file is written with mode 0600 (replaced atomically);
// other registries' entries and unknown fields are kept.
import { CapsuleError } from "../runtime/errors.ts";
import { DEFAULT_DOMAIN } from "./reference.ts";

/** A user name and password (or token) for one registry. */
export interface Credentials {
  username: string;
  password: string;
}

/** The auth file capsule reads and writes when no --authfile is given. */
export function defaultAuthFile(env: (k: string) => string | undefined = Deno.env.get): string {
  const explicit = env("REGISTRY_AUTH_FILE");
  if (explicit) return explicit;
  const xdg = env("XDG_RUNTIME_DIR");
  if (xdg) return `${xdg}/containers/auth.json`;
  return `/run/containers/${Deno.uid()}/auth.json`;
}

/** Keys a registry can have in auth files (docker writes docker.io's as its v1 index URL). */
function keysFor(registry: string): string[] {
  const out = [registry, `https://${registry}`, `http://${registry}`];
  if (registry === DEFAULT_DOMAIN) out.push("https://index.docker.io/v1/", "index.docker.io");
  return out;
}

type AuthFile = { auths?: Record<string, { auth?: string }> } & Record<string, unknown>;

function readFile(file: string): AuthFile {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return {};
    throw new CapsuleError(`Cannot read the auth file ${file}: ${(e as Error).message}`);
  }
  try {
    const data = JSON.parse(text);
    if (typeof data !== "object" || data === null || Array.isArray(data)) {
      throw new Error("not a JSON object");
    }
    if (data.auths !== undefined && (typeof data.auths !== "object" || data.auths === null)) {
      throw new Error(`"auths" is not an object`);
    }
    return data;
  } catch (e) {
    throw new CapsuleError(
      `The auth file ${file} is not containers-auth.json (${(e as Error).message}); ` +
        `fix or remove it`,
    );
  }
}

/** "user:pass" in base64, as auth files keep it. Throws for a malformed entry. */
export function decodeAuth(auth: string, where: string): Credentials {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(
      Uint8Array.from(atob(auth), (c) => c.charCodeAt(0)),
    );
  } catch {
    throw new CapsuleError(`The credentials for ${where} are not base64 of "user:password"`);
  }
  const colon = text.indexOf(":");
  if (colon <= 0) {
    throw new CapsuleError(`The credentials for ${where} are not base64 of "user:password"`);
  }
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

function encodeAuth(c: Credentials): string {
  const bytes = new TextEncoder().encode(`${c.username}:${c.password}`);
  return btoa(String.fromCharCode(...bytes));
}

/** The credentials stored for a registry ("docker.io", "host:5000"), if any. */
export function lookupCredentials(file: string, registry: string): Credentials | undefined {
  const auths = readFile(file).auths ?? {};
  for (const k of keysFor(registry)) {
    const a = auths[k]?.auth;
    if (typeof a === "string" && a !== "") return decodeAuth(a, `${registry} in ${file}`);
  }
  return undefined;
}

function writeFile(file: string, data: AuthFile): void {
  const dir = file.slice(0, file.lastIndexOf("/")) || "/";
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    // createNew + 0600 from the first byte: the secret is never readable by others.
    const f = Deno.openSync(tmp, { write: true, createNew: true, mode: 0o600 });
    try {
      f.writeSync(new TextEncoder().encode(JSON.stringify(data, null, "\t") + "\n"));
    } finally {
      f.close();
    }
    Deno.chmodSync(tmp, 0o600);
    Deno.renameSync(tmp, file);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never made */ }
    throw new CapsuleError(`Cannot write the auth file ${file}: ${(e as Error).message}`);
  }
}

/** Stores credentials for a registry (replacing its entry). */
export function storeCredentials(file: string, registry: string, c: Credentials): void {
  const data = readFile(file);
  const auths = { ...(data.auths ?? {}) };
  for (const k of keysFor(registry)) delete auths[k];
  auths[registry] = { auth: encodeAuth(c) };
  writeFile(file, { ...data, auths });
}

/** Removes a registry's credentials; false when there were none. */
export function removeCredentials(file: string, registry: string): boolean {
  const data = readFile(file);
  const auths = { ...(data.auths ?? {}) };
  let found = false;
  for (const k of keysFor(registry)) {
    if (k in auths) {
      delete auths[k];
      found = true;
    }
  }
  if (found) writeFile(file, { ...data, auths });
  return found;
}

/**
 * The registry part of what `login`/`logout` are given: "docker.io", "host:5000", or a
 * reference or URL naming it ("https://host:5000/v2/", "host:5000/team/app").
 */
export function registryOf(arg: string): string {
  const s = arg.replace(/^https?:\/\//, "").replace(/\/.*$/, "");
  if (s === "" || !/^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9a-fA-F:.]+\](:\d{1,5})?$/.test(s)) {
    throw new CapsuleError(`Invalid registry "${arg}": expected a host[:port], e.g. docker.io`);
  }
  return s === "index.docker.io" || s === "registry-1.docker.io" ? DEFAULT_DOMAIN : s;
}
