// A client of the OCI distribution protocol (distribution-spec v1.1, pull side) on Deno's
// built-in fetch: manifests and blobs of one repository, with the token flow registries use
// (docker.io, distribution's token auth): a 401 names a Bearer realm in WWW-Authenticate,
// a token is fetched from it (anonymously or with Basic credentials) and the request is
// sent again with it; a Basic challenge is answered with the credentials. Redirects (blob
// stores) are followed by hand so that the Authorization header never leaves the registry's
// origin, and never from https to http.
import { CapsuleError } from "../runtime/errors.ts";
import type { Credentials } from "./auth.ts";
import { apiHost, DIGEST, fullName, type Reference } from "./reference.ts";

/** Media types of manifests capsule reads. */
export const MEDIA = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
} as const;

const ACCEPT = [MEDIA.ociIndex, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.dockerManifest].join(
  ", ",
);

/** Manifests larger than this are refused (distribution's own limit is 4 MiB). */
export const MAX_MANIFEST = 4 << 20;

/** What went wrong talking to a registry; the message names the reference. */
export class RegistryError extends CapsuleError {
  constructor(message: string, readonly status?: number) {
    super(message);
  }
}

export interface RegistryOptions {
  /** Plain HTTP instead of HTTPS (`--tls-verify=false`). */
  insecure?: boolean;
  credentials?: Credentials;
  signal?: AbortSignal;
  /** For tests: a fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

/** A manifest or index as fetched: its bytes, their digest, the media type. */
export interface FetchedManifest {
  bytes: Uint8Array;
  digest: string;
  mediaType: string;
  json: Record<string, unknown>;
}

/** Parses `Bearer realm="...",service="..."` into the scheme and its parameters. */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const m = header.match(/^\s*([A-Za-z]+)\s*(.*)$/);
  if (!m) return { scheme: "", params: {} };
  const params: Record<string, string> = {};
  const re = /([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?\s*/g;
  for (const p of m[2].matchAll(re)) {
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3];
  }
  return { scheme: m[1].toLowerCase(), params };
}

async function sha256Hex(data: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Reads a response body, refusing more than `max` bytes. */
async function readCapped(res: Response, max: number, what: string): Promise<Uint8Array> {
  const declared = Number(res.headers.get("content-length") ?? "NaN");
  if (declared > max) {
    await res.body?.cancel();
    throw new RegistryError(`${what} is too large (${declared} bytes, at most ${max} accepted)`);
  }
  const parts: Uint8Array[] = [];
  let n = 0;
  if (res.body) {
    for await (const c of res.body) {
      n += c.length;
      if (n > max) {
        throw new RegistryError(`${what} is too large (more than ${max} bytes)`);
      }
      parts.push(c);
    }
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** One repository of one registry, with the auth state of the session. */
export class Registry {
  readonly base: string;
  readonly what: string;
  #auth?: string;
  #fetch: typeof fetch;

  constructor(readonly ref: Reference, readonly opts: RegistryOptions = {}) {
    const scheme = opts.insecure ? "http" : "https";
    this.base = `${scheme}://${apiHost(ref.domain)}/v2/${ref.path}`;
    this.what = fullName(ref);
    this.#fetch = opts.fetch ?? fetch;
  }

  /** GET with redirects followed by hand (auth kept only on the registry's origin). */
  async #get(url: string, accept?: string, auth = this.#auth): Promise<Response> {
    const origin = new URL(url).origin;
    let at = url;
    for (let hop = 0; hop < 10; hop++) {
      const headers: Record<string, string> = {};
      if (accept) headers.accept = accept;
      if (auth && new URL(at).origin === origin) headers.authorization = auth;
      let res: Response;
      try {
        res = await this.#fetch(at, { headers, redirect: "manual", signal: this.opts.signal });
      } catch (e) {
        if (this.opts.signal?.aborted) throw e;
        const host = new URL(at).host;
        const hint = !this.opts.insecure && /certificate|tls|ssl|handshake/i.test(String(e))
          ? "; for a registry without TLS pass --tls-verify=false"
          : "";
        throw new RegistryError(
          `Cannot pull ${this.what}: registry ${host} is unreachable (${
            (e as Error).message
          })${hint}`,
        );
      }
      if (res.status >= 300 && res.status < 400 && res.headers.get("location")) {
        await res.body?.cancel();
        const next = new URL(res.headers.get("location")!, at);
        if (new URL(at).protocol === "https:" && next.protocol !== "https:") {
          throw new RegistryError(
            `Cannot pull ${this.what}: the registry redirected to ${next.origin} without TLS`,
          );
        }
        at = next.href;
        continue;
      }
      return res;
    }
    throw new RegistryError(`Cannot pull ${this.what}: too many redirects from ${url}`);
  }

  /** Answers a 401's challenge: fetches a token (Bearer) or uses Basic credentials. */
  async #authenticate(res: Response): Promise<void> {
    const header = res.headers.get("www-authenticate") ?? "";
    await res.body?.cancel();
    const { scheme, params } = parseChallenge(header);
    const creds = this.opts.credentials;
    const basic = creds
      ? `Basic ${
        btoa(
          String.fromCharCode(...new TextEncoder().encode(`${creds.username}:${creds.password}`)),
        )
      }`
      : undefined;
    if (scheme === "basic") {
      if (!basic) {
        throw new RegistryError(
          `Cannot pull ${this.what}: the registry asks for credentials; log in with ` +
            `"capsule image login ${this.ref.domain}" or pass --creds USER`,
          401,
        );
      }
      this.#auth = basic;
      return;
    }
    if (scheme !== "bearer" || !params.realm) {
      throw new RegistryError(
        `Cannot pull ${this.what}: the registry refused access without a usable challenge ` +
          `(WWW-Authenticate: ${JSON.stringify(header)})`,
        401,
      );
    }
    let realm: URL;
    try {
      realm = new URL(params.realm);
    } catch {
      throw new RegistryError(
        `Cannot pull ${this.what}: the registry names an invalid token realm ${params.realm}`,
      );
    }
    if (realm.protocol !== "https:" && realm.protocol !== "http:") {
      throw new RegistryError(`Cannot pull ${this.what}: token realm ${realm} is not http(s)`);
    }
    if (basic && realm.protocol === "http:" && !this.opts.insecure) {
      throw new RegistryError(
        `Cannot pull ${this.what}: refusing to send credentials to ${realm.origin} without TLS`,
      );
    }
    if (params.service) realm.searchParams.set("service", params.service);
    realm.searchParams.set("scope", params.scope ?? `repository:${this.ref.path}:pull`);
    let tres: Response;
    try {
      tres = await this.#fetch(realm.href, {
        headers: basic ? { authorization: basic } : {},
        signal: this.opts.signal,
      });
    } catch (e) {
      if (this.opts.signal?.aborted) throw e;
      throw new RegistryError(
        `Cannot pull ${this.what}: the token server ${realm.host} is unreachable (${
          (e as Error).message
        })`,
      );
    }
    if (tres.status === 401 || tres.status === 403) {
      await tres.body?.cancel();
      throw new RegistryError(
        `Cannot pull ${this.what}: authentication refused by ${realm.host}` +
          (basic
            ? ` for user "${creds!.username}"; check the credentials`
            : `; log in with "capsule image login ${this.ref.domain}" or pass --creds USER`),
        401,
      );
    }
    if (!tres.ok) {
      await tres.body?.cancel();
      throw new RegistryError(
        `Cannot pull ${this.what}: the token server ${realm.host} answered ${tres.status}`,
      );
    }
    let token: unknown;
    try {
      const body = JSON.parse(new TextDecoder().decode(await readCapped(tres, 1 << 20, "token")));
      token = body.token ?? body.access_token;
    } catch (e) {
      if (e instanceof RegistryError) throw e;
      token = undefined;
    }
    if (typeof token !== "string" || token === "" || /[\r\n]/.test(token)) {
      throw new RegistryError(`Cannot pull ${this.what}: ${realm.host} sent no usable token`);
    }
    this.#auth = `Bearer ${token}`;
  }

  /** GET under the repository, authenticating once on a 401. */
  async #request(sub: string, accept?: string): Promise<Response> {
    let res = await this.#get(`${this.base}/${sub}`, accept);
    if (res.status === 401) {
      await this.#authenticate(res);
      res = await this.#get(`${this.base}/${sub}`, accept);
      if (res.status === 401 || res.status === 403) {
        await res.body?.cancel();
        throw new RegistryError(
          `Cannot pull ${this.what}: access denied` +
            (this.opts.credentials
              ? ` for user "${this.opts.credentials.username}"`
              : ` (the repository does not exist, or needs credentials: log in with ` +
                `"capsule image login ${this.ref.domain}" or pass --creds USER)`),
          res.status,
        );
      }
    }
    return res;
  }

  /**
   * A manifest or index by tag or digest, checked against the digest when it was asked
   * by digest (or the registry's Docker-Content-Digest). Throws RegistryError: 404 (no such
   * image or tag), auth refused, too large, not JSON, digest mismatch.
   */
  async manifest(reference: string): Promise<FetchedManifest> {
    const res = await this.#request(`manifests/${reference}`, ACCEPT);
    if (res.status === 404) {
      await res.body?.cancel();
      const tagged = DIGEST.test(reference) ? `manifest ${reference}` : `tag "${reference}"`;
      throw new RegistryError(
        `Cannot pull ${this.what}: the registry has no image ${this.ref.path} or no ${tagged} ` +
          `(404); check the name and tag`,
        404,
      );
    }
    if (!res.ok) {
      const body = new TextDecoder().decode(
        await readCapped(res, 4096, "error").catch(() => new Uint8Array()),
      );
      throw new RegistryError(
        `Cannot pull ${this.what}: the registry answered ${res.status} for manifest ` +
          `${reference}${body ? `: ${body.trim().slice(0, 200)}` : ""}`,
        res.status,
      );
    }
    const bytes = await readCapped(res, MAX_MANIFEST, `the manifest of ${this.what}`).catch(
      (e) => {
        throw new RegistryError(`Cannot pull ${this.what}: ${(e as Error).message}`);
      },
    );
    const digest = `sha256:${await sha256Hex(bytes)}`;
    if (DIGEST.test(reference) && digest !== reference) {
      throw new RegistryError(
        `Cannot pull ${this.what}: the manifest the registry sent does not match its digest ` +
          `${reference} (got ${digest})`,
      );
    }
    const said = res.headers.get("docker-content-digest");
    if (said && said.startsWith("sha256:") && said !== digest) {
      throw new RegistryError(
        `Cannot pull ${this.what}: the manifest does not match the registry's ` +
          `Docker-Content-Digest ${said} (got ${digest})`,
      );
    }
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
      if (typeof json !== "object" || json === null || Array.isArray(json)) {
        throw new Error("not a JSON object");
      }
    } catch (e) {
      throw new RegistryError(
        `Cannot pull ${this.what}: manifest ${reference} is malformed (${(e as Error).message})`,
      );
    }
    const mediaType = (typeof json.mediaType === "string" ? json.mediaType : undefined) ??
      res.headers.get("content-type")?.split(";")[0].trim() ?? "";
    return { bytes, digest, mediaType, json };
  }

  /** A blob's response (its body not read yet). Throws RegistryError unless 200. */
  async blob(digest: string): Promise<Response> {
    if (!DIGEST.test(digest)) {
      throw new RegistryError(`Cannot pull ${this.what}: invalid blob digest "${digest}"`);
    }
    const res = await this.#request(`blobs/${digest}`);
    if (res.ok) return res;
    await res.body?.cancel();
    throw new RegistryError(
      res.status === 404
        ? `Cannot pull ${this.what}: the registry has no blob ${digest} (404)`
        : `Cannot pull ${this.what}: the registry answered ${res.status} for blob ${digest}`,
      res.status,
    );
  }
}

/**
 * Checks credentials against a registry as `login` does: GET /v2/, then the challenge it
 * answers with (Basic: the same request with them; Bearer: a token from the realm for the
 * registry's service). Throws RegistryError when they are refused or the registry cannot be
 * reached.
 */
export async function checkLogin(
  domain: string,
  creds: Credentials,
  opts: { insecure?: boolean; fetch?: typeof fetch } = {},
): Promise<void> {
  const f = opts.fetch ?? fetch;
  const url = `${opts.insecure ? "http" : "https"}://${apiHost(domain)}/v2/`;
  const basic = `Basic ${
    btoa(String.fromCharCode(...new TextEncoder().encode(`${creds.username}:${creds.password}`)))
  }`;
  const get = async (u: string, auth?: string) => {
    try {
      return await f(u, { headers: auth ? { authorization: auth } : {}, redirect: "manual" });
    } catch (e) {
      throw new RegistryError(
        `Cannot log in to ${domain}: ${new URL(u).host} is unreachable (${(e as Error).message})`,
      );
    }
  };
  const res = await get(url);
  await res.body?.cancel();
  if (res.ok) return;
  if (res.status !== 401) {
    throw new RegistryError(`Cannot log in to ${domain}: ${url} answered ${res.status}`);
  }
  const { scheme, params } = parseChallenge(res.headers.get("www-authenticate") ?? "");
  let check: Response;
  if (scheme === "basic") {
    check = await get(url, basic);
  } else if (scheme === "bearer" && params.realm) {
    const realm = new URL(params.realm);
    if (realm.protocol === "http:" && !opts.insecure) {
      throw new RegistryError(
        `Cannot log in to ${domain}: refusing to send credentials to ${realm.origin} without TLS`,
      );
    }
    if (params.service) realm.searchParams.set("service", params.service);
    check = await get(realm.href, basic);
  } else {
    throw new RegistryError(`Cannot log in to ${domain}: it sent no usable challenge`);
  }
  await check.body?.cancel();
  if (check.status === 401 || check.status === 403) {
    throw new RegistryError(
      `Cannot log in to ${domain}: user "${creds.username}" was refused; check the credentials`,
      401,
    );
  }
  if (!check.ok) {
    throw new RegistryError(`Cannot log in to ${domain}: the registry answered ${check.status}`);
  }
}
