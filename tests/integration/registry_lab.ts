// A real registry for the pull tests: Debian's docker-registry (the CNCF distribution
// registry) on 127.0.0.1 inside a network namespace of the test's own, images written as OCI
// layouts here (layer tars by GNU tar, gzip/zstd by their programs) and pushed with skopeo.
// Every command that talks to the registry runs in that namespace (nsenter --net: the mount
// namespace stays the host's, so cgroups and the store are the ones the test sees).
import { assert } from "../helpers.ts";

const dec = new TextDecoder();

export const REGISTRY_PORT = 5000;
export const TOKEN_PORT = 5001;
export const HOST = `127.0.0.1:${REGISTRY_PORT}`;

export function which(cmd: string): string | undefined {
  for (const d of ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"]) {
    try {
      if (Deno.statSync(`${d}/${cmd}`).isFile) return `${d}/${cmd}`;
    } catch { /* next */ }
  }
  return undefined;
}

async function run(cmd: string, args: string[], what = `${cmd} ${args.join(" ")}`) {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  assert(o.success, `${what}: ${dec.decode(o.stderr)}${dec.decode(o.stdout)}`);
  return dec.decode(o.stdout);
}

export async function sha256File(path: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return "sha256:" + [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** One layer: files (path -> content; a value null makes a whiteout `.wh.NAME`). */
export interface LayerSpec {
  files: Record<string, string | null>;
  /** Directories to mark opaque (`.wh..wh..opq`). */
  opaque?: string[];
  /** A directory tree copied in first (the busybox rootfs). */
  base?: string;
  compression?: "gzip" | "zstd" | "none";
  /** Extended attributes to store in the tar (path -> name -> value). */
  xattrs?: Record<string, Record<string, string>>;
}

export interface ImageSpec {
  layers: LayerSpec[];
  config?: Record<string, unknown>;
  architecture?: string;
}

export interface BuiltImage {
  manifest: string;
  manifestDigest: string;
  config: string;
  configDigest: string;
  layers: { digest: string; diffId: string; size: number; mediaType: string }[];
}

const MT = {
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  none: "application/vnd.oci.image.layer.v1.tar",
};

/** Writes blobs of an image into an OCI layout directory (oci-layout made on first use). */
export async function writeImage(layout: string, spec: ImageSpec): Promise<BuiltImage> {
  const blobs = `${layout}/blobs/sha256`;
  Deno.mkdirSync(blobs, { recursive: true });
  Deno.writeTextFileSync(`${layout}/oci-layout`, '{"imageLayoutVersion":"1.0.0"}');
  const put = async (file: string) => {
    const digest = await sha256File(file);
    Deno.renameSync(file, `${blobs}/${digest.slice(7)}`);
    return digest;
  };
  const putText = async (text: string) => {
    const tmp = `${layout}/tmp.json`;
    Deno.writeTextFileSync(tmp, text);
    return await put(tmp);
  };
  const layers: BuiltImage["layers"] = [];
  for (const l of spec.layers) {
    const work = await Deno.makeTempDir({ dir: layout, prefix: "layer-" });
    const tree = `${work}/tree`;
    Deno.mkdirSync(tree);
    if (l.base) await run("cp", ["-a", `${l.base}/.`, `${tree}/`]);
    for (const [path, content] of Object.entries(l.files)) {
      const full = `${tree}/${path}`;
      Deno.mkdirSync(full.slice(0, full.lastIndexOf("/")), { recursive: true });
      if (content === null) {
        const i = full.lastIndexOf("/");
        Deno.writeTextFileSync(`${full.slice(0, i)}/.wh.${full.slice(i + 1)}`, "");
      } else Deno.writeTextFileSync(full, content);
    }
    for (const d of l.opaque ?? []) {
      Deno.mkdirSync(`${tree}/${d}`, { recursive: true });
      Deno.writeTextFileSync(`${tree}/${d}/.wh..wh..opq`, "");
    }
    for (const [path, attrs] of Object.entries(l.xattrs ?? {})) {
      Deno.mkdirSync(`${tree}/${path}`, { recursive: true });
      for (const [name, value] of Object.entries(attrs)) {
        await run("python3", [
          "-c",
          "import os,sys; os.setxattr(sys.argv[1], sys.argv[2], sys.argv[3].encode())",
          `${tree}/${path}`,
          name,
          value,
        ]);
      }
    }
    const tar = `${work}/layer.tar`;
    await run("tar", [
      ...(l.xattrs ? ["--xattrs", "--xattrs-include=*"] : []),
      "--sort=name",
      "--mtime=@1700000000",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      "-C",
      tree,
      "-cf",
      tar,
      ".",
    ]);
    const diffId = await sha256File(tar);
    const c = l.compression ?? "gzip";
    let blob = tar;
    if (c === "gzip") {
      await run("gzip", ["-n", tar]);
      blob = `${tar}.gz`;
    } else if (c === "zstd") {
      await run("zstd", ["-q", "--rm", tar]);
      blob = `${tar}.zst`;
    }
    const size = Deno.statSync(blob).size;
    layers.push({ digest: await put(blob), diffId, size, mediaType: MT[c] });
    Deno.removeSync(work, { recursive: true });
  }
  const config = JSON.stringify({
    architecture: spec.architecture ?? "amd64",
    os: "linux",
    created: "2026-01-01T00:00:00Z",
    config: spec.config ?? {},
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
  });
  const configDigest = await putText(config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {
      mediaType: "application/vnd.oci.image.config.v1+json",
      digest: configDigest,
      size: config.length,
    },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  });
  const manifestDigest = await putText(manifest);
  return { manifest, manifestDigest, config, configDigest, layers };
}

/** index.json of the layout: one tag naming a manifest or an index. */
export function setIndex(layout: string, tag: string, digest: string, size: number, index = false) {
  Deno.writeTextFileSync(
    `${layout}/index.json`,
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{
        mediaType: index
          ? "application/vnd.oci.image.index.v1+json"
          : "application/vnd.oci.image.manifest.v1+json",
        digest,
        size,
        annotations: { "org.opencontainers.image.ref.name": tag },
      }],
    }),
  );
}

/** An image index blob over manifests for several platforms; returns its digest and size. */
export async function writeIndex(
  layout: string,
  entries: { image: BuiltImage; architecture: string }[],
): Promise<{ digest: string; size: number }> {
  const text = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.index.v1+json",
    manifests: entries.map((e) => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: e.image.manifestDigest,
      size: e.image.manifest.length,
      platform: { os: "linux", architecture: e.architecture },
    })),
  });
  const tmp = `${layout}/tmp.json`;
  Deno.writeTextFileSync(tmp, text);
  const digest = await sha256File(tmp);
  Deno.renameSync(tmp, `${layout}/blobs/sha256/${digest.slice(7)}`);
  return { digest, size: text.length };
}

export interface LabOptions {
  /** Token auth: a token server in the namespace that knows one user. */
  token?: { user: string; pass: string };
}

/** A network namespace with a registry (and a token server) on its loopback. */
export class RegistryLab {
  readonly ns: string;
  readonly procs: Deno.ChildProcess[] = [];
  data = "";

  private constructor(readonly dir: string) {
    this.ns = `capsule-pull-${Deno.pid}-${Math.floor(Math.random() * 1e6)}`;
  }

  /** Argument prefix that runs a command in the lab's network namespace. */
  get enter(): string[] {
    return ["nsenter", `--net=/run/netns/${this.ns}`, "--"];
  }

  static async start(dir: string, opts: LabOptions = {}): Promise<RegistryLab> {
    const lab = new RegistryLab(dir);
    await run("ip", ["netns", "add", lab.ns]);
    try {
      await run("ip", ["-n", lab.ns, "link", "set", "lo", "up"]);
      lab.data = `${dir}/registry-data`;
      let auth = "";
      if (opts.token) {
        await run("openssl", [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:prime256v1",
          "-nodes",
          "-keyout",
          `${dir}/token.key`,
          "-out",
          `${dir}/token.crt`,
          "-days",
          "2",
          "-subj",
          "/CN=capsule-test-token",
        ]);
        auth = `auth:\n  token:\n    realm: http://127.0.0.1:${TOKEN_PORT}/token\n` +
          `    service: capsule-test\n    issuer: capsule-test-issuer\n` +
          `    rootcertbundle: ${dir}/token.crt\n`;
        const deno = Deno.execPath();
        lab.spawn([
          deno,
          "run",
          "-A",
          new URL("../fixtures/token_server.ts", import.meta.url).pathname,
          String(TOKEN_PORT),
          `${dir}/token.key`,
          `${dir}/token.crt`,
          opts.token.user,
          opts.token.pass,
          "capsule-test",
          "capsule-test-issuer",
        ], `${dir}/token.log`);
      }
      Deno.writeTextFileSync(
        `${dir}/registry.yml`,
        `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${lab.data}\n` +
          `  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${REGISTRY_PORT}\n${auth}`,
      );
      lab.spawn(["docker-registry", "serve", `${dir}/registry.yml`], `${dir}/registry.log`);
      await lab.waitPort(REGISTRY_PORT);
      if (opts.token) await lab.waitPort(TOKEN_PORT);
      return lab;
    } catch (e) {
      await lab.stop();
      throw e;
    }
  }

  private spawn(argv: string[], log: string): void {
    const f = Deno.openSync(log, { write: true, create: true, append: true });
    const child = new Deno.Command(this.enter[0], {
      args: [...this.enter.slice(1), ...argv],
      stdout: "null",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    child.stderr.pipeTo(f.writable).catch(() => {});
    this.procs.push(child);
  }

  private async waitPort(port: number): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const o = await new Deno.Command("nsenter", {
        args: [`--net=/run/netns/${this.ns}`, "--", "bash", "-c", `: >/dev/tcp/127.0.0.1/${port}`],
        stderr: "null",
      }).output();
      if (o.success) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`nothing listens on 127.0.0.1:${port} in ${this.ns}: ${this.logs()}`);
  }

  logs(): string {
    let s = "";
    for (const f of ["registry.log", "token.log"]) {
      try {
        s += Deno.readTextFileSync(`${this.dir}/${f}`);
      } catch { /* none */ }
    }
    return s;
  }

  /**
   * skopeo copy of a layout's tag to the registry (`all`: an index with every image);
   * returns the digest of the manifest as the registry has it (skopeo may rewrite it).
   */
  async push(
    layout: string,
    tag: string,
    repo: string,
    creds?: string,
    all = false,
    /** "v2s2": convert to Docker schema 2 (manifest lists for an index); digests change. */
    format?: "v2s2",
  ) {
    const digestFile = `${this.dir}/pushed.digest`;
    await run(this.enter[0], [
      ...this.enter.slice(1),
      "skopeo",
      "--insecure-policy",
      "copy",
      "--quiet",
      ...(all ? ["--all"] : []),
      "--dest-tls-verify=false",
      ...(format ? ["--format", format] : ["--preserve-digests"]),
      "--digestfile",
      digestFile,
      ...(creds ? ["--dest-creds", creds] : []),
      `oci:${layout}:${tag}`,
      `docker://${HOST}/${repo}:${tag}`,
    ]);
    return Deno.readTextFileSync(digestFile).trim();
  }

  /** The manifest as the registry serves it (skopeo inspect --raw). */
  async rawManifest(ref: string): Promise<Record<string, unknown>> {
    return JSON.parse(
      await run(this.enter[0], [
        ...this.enter.slice(1),
        "skopeo",
        "inspect",
        "--raw",
        "--tls-verify=false",
        `docker://${HOST}/${ref}`,
      ]),
    );
  }

  /** Where the registry keeps a blob's bytes (to corrupt it). */
  blobPath(digest: string): string {
    const hex = digest.slice(7);
    return `${this.data}/docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
  }

  async stop(): Promise<void> {
    for (const p of this.procs) {
      try {
        p.kill("SIGKILL");
      } catch { /* gone */ }
      await p.status.catch(() => {});
    }
    await new Deno.Command("ip", { args: ["netns", "delete", this.ns], stderr: "null" }).output();
  }
}
