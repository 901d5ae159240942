// Image references as docker reads them (distribution/reference, "normalized named"):
//   [DOMAIN[:PORT]/]PATH[:TAG][@DIGEST]
// The first component is a domain when it holds "." or ":" or is "localhost"; otherwise the
// domain is docker.io, and a one-component path gets the "library/" prefix. No tag and no
// digest means ":latest". Pure and small: the container start path reads image names with it.

/** The registry API host for docker.io. */
export const DOCKER_HUB_API = "registry-1.docker.io";
export const DEFAULT_DOMAIN = "docker.io";

/** A parsed reference: `domain` and `path` always set, `tag` and/or `digest` as given. */
export interface Reference {
  /** Registry host with optional port, e.g. "docker.io", "registry.example:5000". */
  domain: string;
  /** Repository path, e.g. "library/redis", "team/app". */
  path: string;
  /** Tag when given (the default "latest" is filled in only when neither tag nor digest). */
  tag?: string;
  /** "sha256:<64 hex>" when given. */
  digest?: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_PART =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*$/;
const IPV6 = /^\[[0-9a-fA-F:.]+\]$/;
const TAG = /^[\w][\w.-]{0,127}$/;
/** Only sha256 digests are accepted (what every registry serves). */
export const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** An invalid reference; the message names the value and what is wrong. */
export class ReferenceError extends Error {
  override name = "ReferenceError";
  constructor(readonly ref: string, readonly why: string) {
    super(`Invalid image reference ${JSON.stringify(ref)}: ${why}`);
  }
}

function bad(ref: string, why: string): never {
  throw new ReferenceError(ref, why);
}

/**
 * Parses and normalizes a reference (`redis`, `redis:7`, `library/redis:7`,
 * `docker.io/library/redis:7`, `registry.example:5000/team/app:1.2`, `name@sha256:...`).
 * Throws ReferenceError for anything docker would refuse (upper case in the path, empty
 * components, a bad tag or digest, more than 255 characters).
 */
export function parseReference(ref: string): Reference {
  if (typeof ref !== "string" || ref === "") bad(String(ref), "it is empty");
  if (ref.length > 512) bad(ref.slice(0, 40) + "...", "it is longer than 512 characters");
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) {
      bad(ref, `the digest "${digest}" is not sha256:<64 lower-case hex digits>`);
    }
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      bad(ref, `the tag "${tag}" must be 1-128 letters, digits, '_', '.' or '-'`);
    }
  }
  const parts = rest.split("/");
  let domain = DEFAULT_DOMAIN;
  const first = parts[0];
  if (
    parts.length > 1 &&
    (first.includes(".") || first.includes(":") || first === "localhost" ||
      first.toLowerCase() !== first)
  ) {
    domain = first;
    parts.shift();
    const [host, port, extra] = domain.startsWith("[")
      ? [
        domain.slice(0, domain.indexOf("]") + 1),
        ...domain.slice(domain.indexOf("]") + 1).split(":").slice(1),
      ]
      : domain.split(":");
    if (extra !== undefined || !(DOMAIN_PART.test(host) || IPV6.test(host))) {
      bad(ref, `"${domain}" is not a registry host[:port]`);
    }
    if (port !== undefined && !/^\d{1,5}$/.test(port)) bad(ref, `"${domain}" has a bad port`);
  }
  if (domain === "index.docker.io") domain = DEFAULT_DOMAIN;
  for (const p of parts) {
    if (!COMPONENT.test(p)) {
      bad(
        ref,
        p === ""
          ? "it has an empty path component"
          : `"${p}" must be lower-case letters and digits, separated by '.', '_', '__' or '-'`,
      );
    }
  }
  if (domain === DEFAULT_DOMAIN && parts.length === 1) parts.unshift("library");
  const path = parts.join("/");
  if (domain.length + 1 + path.length > 255) bad(ref, "the name is longer than 255 characters");
  if (tag === undefined && digest === undefined) tag = "latest";
  return { domain, path, tag, digest };
}

/** The repository without docker.io/ and library/, as docker shows it ("redis", "a.b:5000/x"). */
export function familiarRepository(r: Reference): string {
  if (r.domain !== DEFAULT_DOMAIN) return `${r.domain}/${r.path}`;
  return r.path.startsWith("library/") && r.path.split("/").length === 2 ? r.path.slice(8) : r.path;
}

/**
 * The short name an image is kept under: familiar repository, then "@digest" when there is
 * one, else ":tag" unless the tag is "latest" ("redis", "redis:7", "redis@sha256:...").
 */
export function shortName(r: Reference): string {
  const repo = familiarRepository(r);
  if (r.digest) return `${repo}@${r.digest}`;
  return r.tag && r.tag !== "latest" ? `${repo}:${r.tag}` : repo;
}

/** The full reference ("docker.io/library/redis:7", ".../x@sha256:..."). */
export function fullName(r: Reference): string {
  return `${r.domain}/${r.path}${r.digest ? `@${r.digest}` : `:${r.tag ?? "latest"}`}`;
}

/** REPOSITORY and TAG columns of `image list` for a stored name. */
export function repoAndTag(name: string): { repository: string; tag: string } {
  try {
    const r = parseReference(name);
    return { repository: familiarRepository(r), tag: r.digest ? "<none>" : r.tag ?? "latest" };
  } catch {
    return { repository: name, tag: "latest" };
  }
}

/** The registry host to talk to for a domain (docker.io's API lives elsewhere). */
export function apiHost(domain: string): string {
  return domain === DEFAULT_DOMAIN ? DOCKER_HUB_API : domain;
}
