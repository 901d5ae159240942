// The pieces of `image pull` that need no root and no registry: references and store keys,
// the auth file, the registry client against a fake fetch (auth flow, redirects, refusals),
// platform choice, decompression.
import { assert, assertEquals, assertMatch } from "../helpers.ts";
import { parseReference, repoAndTag, shortName } from "../../image/reference.ts";
import { imageKey } from "../../image/store.ts";
import {
  decodeAuth,
  lookupCredentials,
  registryOf,
  removeCredentials,
  storeCredentials,
} from "../../image/auth.ts";
import { checkLogin, MAX_MANIFEST, parseChallenge, Registry } from "../../image/registry.ts";
import { checkManifest, choosePlatform, parsePlatform } from "../../image/pull.ts";
import { decompress } from "../../image/decompress.ts";

async function throwsMatch(fn: () => unknown, re: RegExp): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assertMatch((e as Error).message, re);
    return;
  }
  throw new Error(`expected an error matching ${re}`);
}

Deno.test("parseReference: the forms docker reads", () => {
  const D = "sha256:" + "a".repeat(64);
  const cases: [string, string, string, string | undefined, string | undefined][] = [
    ["redis", "docker.io", "library/redis", "latest", undefined],
    ["redis:7", "docker.io", "library/redis", "7", undefined],
    ["library/redis:7", "docker.io", "library/redis", "7", undefined],
    ["docker.io/library/redis:7", "docker.io", "library/redis", "7", undefined],
    ["index.docker.io/bitnami/redis", "docker.io", "bitnami/redis", "latest", undefined],
    ["registry.example:5000/team/app:1.2", "registry.example:5000", "team/app", "1.2", undefined],
    ["localhost/app", "localhost", "app", "latest", undefined],
    ["localhost:5000/a/b/c", "localhost:5000", "a/b/c", "latest", undefined],
    [`redis@${D}`, "docker.io", "library/redis", undefined, D],
    [`redis:7@${D}`, "docker.io", "library/redis", "7", D],
    ["my_app__x.y-z", "docker.io", "library/my_app__x.y-z", "latest", undefined],
  ];
  for (const [ref, domain, path, tag, digest] of cases) {
    assertEquals(parseReference(ref), { domain, path, tag, digest }, ref);
  }
});

Deno.test("parseReference: refuses what docker refuses, naming the value", async () => {
  const bad: [string, RegExp][] = [
    ["", /empty/],
    ["Redis", /"Redis" must be lower-case/],
    ["a//b", /empty path component/],
    ["redis:", /the tag ""/],
    ["redis:-x", /the tag "-x"/],
    ["redis@sha256:abc", /digest "sha256:abc"/],
    ["redis@md5:" + "a".repeat(32), /digest/],
    ["host:port/x", /bad port/],
    ["-bad.host/x", /not a registry host/],
    ["a/" + "b".repeat(300), /longer than 255/],
    ["../x", /not a registry host|must be lower-case/],
  ];
  for (const [ref, re] of bad) {
    await throwsMatch(() => parseReference(ref), re);
  }
});

Deno.test("imageKey: one key per image; names stored before keep theirs; no path tricks", () => {
  for (const n of ["redis", "redis:latest", "docker.io/library/redis:latest", "library/redis"]) {
    assertEquals(imageKey(n), "redis", n);
  }
  assertEquals(imageKey("redis:7"), "redis%3A7");
  assertEquals(
    imageKey("registry.example:5000/team/app:1.2"),
    "registry.example%3A5000%2Fteam%2Fapp%3A1.2",
  );
  assertEquals(imageKey("MyImage"), "MyImage"); // the older, wider name pattern
  assertEquals(imageKey("bb"), "bb");
  for (const bad of ["../x", "a/../../b", "/abs", ".hidden", "", "x\ny"]) {
    let threw = false;
    try {
      const k = imageKey(bad);
      assert(!k.includes("/") && k !== ".." && !k.startsWith("."), `${bad} -> ${k}`);
    } catch (e) {
      threw = true;
      assertMatch((e as Error).message, /Invalid image name/);
    }
    assert(threw || bad === "", `${JSON.stringify(bad)} was accepted`);
  }
  assertEquals(shortName(parseReference("docker.io/bitnami/redis:7")), "bitnami/redis:7");
  assertEquals(repoAndTag("redis"), { repository: "redis", tag: "latest" });
  assertEquals(repoAndTag("h:5000/a/b@sha256:" + "0".repeat(64)), {
    repository: "h:5000/a/b",
    tag: "<none>",
  });
});

Deno.test("auth file: containers-auth.json, 0600, other entries kept, docker's key read", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const file = `${dir}/sub/auth.json`;
    assertEquals(lookupCredentials(file, "h:5000"), undefined);
    storeCredentials(file, "h:5000", { username: "u", password: "p:w" });
    assertEquals(Deno.statSync(file).mode! & 0o777, 0o600);
    assertEquals(JSON.parse(Deno.readTextFileSync(file)), {
      auths: { "h:5000": { auth: btoa("u:p:w") } },
    });
    assertEquals(lookupCredentials(file, "h:5000"), { username: "u", password: "p:w" });
    Deno.writeTextFileSync(
      file,
      JSON.stringify({
        auths: {
          "h:5000": { auth: btoa("u:p") },
          "https://index.docker.io/v1/": { auth: btoa("d:x") },
        },
        credHelpers: { "gcr.io": "gcloud" },
      }),
    );
    assertEquals(lookupCredentials(file, "docker.io"), { username: "d", password: "x" });
    assert(removeCredentials(file, "h:5000"));
    assert(!removeCredentials(file, "h:5000"));
    const left = JSON.parse(Deno.readTextFileSync(file));
    assertEquals(Object.keys(left.auths), ["https://index.docker.io/v1/"]);
    assertEquals(left.credHelpers, { "gcr.io": "gcloud" });
    Deno.writeTextFileSync(file, "{nope");
    let msg = "";
    try {
      lookupCredentials(file, "h:5000");
    } catch (e) {
      msg = (e as Error).message;
    }
    assertMatch(msg, /auth file .* is not containers-auth.json/);
    assertMatch(
      (() => {
        try {
          decodeAuth("!!!", "x");
          return "";
        } catch (e) {
          return (e as Error).message;
        }
      })(),
      /not base64/,
    );
    assertEquals(registryOf("https://h:5000/v2/"), "h:5000");
    assertEquals(registryOf("index.docker.io"), "docker.io");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("parseChallenge: quoted and bare parameters", () => {
  assertEquals(
    parseChallenge(
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/redis:pull"',
    ),
    {
      scheme: "bearer",
      params: {
        realm: "https://auth.docker.io/token",
        service: "registry.docker.io",
        scope: "repository:library/redis:pull",
      },
    },
  );
  assertEquals(parseChallenge('Basic realm="x"'), { scheme: "basic", params: { realm: "x" } });
});

type Handler = (url: URL, init: RequestInit) => Response | Promise<Response>;
function fakeFetch(h: Handler, log: { url: string; auth?: string }[] = []): typeof fetch {
  return (async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = new URL(String(input));
    const headers = (init.headers ?? {}) as Record<string, string>;
    log.push({ url: url.href, auth: headers.authorization });
    return await h(url, init);
  }) as typeof fetch;
}

async function hex(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const MANIFEST: Uint8Array<ArrayBuffer> = new TextEncoder().encode(JSON.stringify({
  schemaVersion: 2,
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: { digest: "sha256:" + "c".repeat(64), size: 2 },
  layers: [{
    mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
    digest: "sha256:" + "d".repeat(64),
    size: 3,
  }],
}));

Deno.test("registry: Bearer token flow with credentials, then the manifest", async () => {
  const log: { url: string; auth?: string }[] = [];
  const f = fakeFetch((url, init) => {
    const auth = (init.headers as Record<string, string>).authorization;
    if (url.host === "auth.example") {
      assertEquals(url.searchParams.get("scope"), "repository:team/app:pull");
      assertEquals(url.searchParams.get("service"), "reg");
      return auth === `Basic ${btoa("u:p")}`
        ? Response.json({ token: "T0K" })
        : new Response("", { status: 401 });
    }
    if (auth !== "Bearer T0K") {
      return new Response("", {
        status: 401,
        headers: { "www-authenticate": 'Bearer realm="https://auth.example/token",service="reg"' },
      });
    }
    return new Response(MANIFEST, {
      headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" },
    });
  }, log);
  const ref = parseReference("reg.example/team/app:1");
  const reg = new Registry(ref, { fetch: f, credentials: { username: "u", password: "p" } });
  const m = await reg.manifest("1");
  assertEquals(m.digest, `sha256:${await hex(MANIFEST)}`);
  assertEquals(log.map((l) => new URL(l.url).host), ["reg.example", "auth.example", "reg.example"]);
  const checked = checkManifest(m, "x");
  assertEquals(checked.layers.length, 1);

  const anon = new Registry(ref, { fetch: f });
  await throwsMatch(
    () => anon.manifest("1"),
    /reg\.example\/team\/app:1: authentication refused by auth\.example; log in/,
  );
});

Deno.test("registry: redirects drop the Authorization off-origin and never downgrade", async () => {
  const log: { url: string; auth?: string }[] = [];
  const f = fakeFetch((url, init) => {
    const auth = (init.headers as Record<string, string>).authorization;
    if (url.host === "reg.example" && auth && url.pathname.includes("/blobs/")) {
      if (url.pathname.endsWith("e".repeat(64))) {
        return new Response(null, { status: 307, headers: { location: "http://cdn.example/x" } });
      }
      return new Response(null, { status: 307, headers: { location: "https://cdn.example/blob" } });
    }
    if (url.host === "cdn.example") return new Response("abc");
    return new Response("", { status: 401, headers: { "www-authenticate": 'Basic realm="r"' } });
  }, log);
  const reg = new Registry(parseReference("reg.example/a:1"), {
    fetch: f,
    credentials: { username: "u", password: "p" },
  });
  const res = await reg.blob("sha256:" + "d".repeat(64));
  assertEquals(await res.text(), "abc");
  const cdn = log.filter((l) => l.url.startsWith("https://cdn.example"));
  assertEquals(cdn.length, 1);
  assertEquals(cdn[0].auth, undefined);
  assert(log.some((l) => l.url.startsWith("https://reg.example") && l.auth?.startsWith("Basic ")));
  await throwsMatch(
    () => reg.blob("sha256:" + "e".repeat(64)),
    /redirected to http:\/\/cdn\.example without TLS/,
  );
});

Deno.test("registry: 404, too large, malformed, digest mismatch, unreachable", async () => {
  const ref = parseReference("reg.example/a:1");
  const serve = (
    body: Uint8Array<ArrayBuffer> | string,
    status = 200,
    headers: Record<string, string> = {},
  ) => new Registry(ref, { fetch: fakeFetch(() => new Response(body, { status, headers })) });
  await throwsMatch(
    () => serve("", 404).manifest("nope"),
    /reg\.example\/a:1: the registry has no image a or no tag "nope" \(404\)/,
  );
  await throwsMatch(
    () => serve(new Uint8Array(MAX_MANIFEST + 1)).manifest("1"),
    /manifest of reg\.example\/a:1 is too large/,
  );
  await throwsMatch(() => serve("{not json").manifest("1"), /manifest 1 is malformed/);
  const other = "sha256:" + "0".repeat(64);
  await throwsMatch(() => serve(MANIFEST).manifest(other), /does not match its digest/);
  await throwsMatch(
    () => serve(MANIFEST, 200, { "docker-content-digest": other }).manifest("1"),
    /Docker-Content-Digest/,
  );
  const down = new Registry(ref, {
    fetch: (() => Promise.reject(new TypeError("connection refused"))) as typeof fetch,
  });
  await throwsMatch(
    () => down.manifest("1"),
    /registry reg\.example is unreachable \(connection refused\)/,
  );
  await throwsMatch(
    () =>
      checkLogin("reg.example", { username: "u", password: "p" }, {
        fetch: fakeFetch(() =>
          new Response("", { status: 401, headers: { "www-authenticate": 'Basic realm="r"' } })
        ),
      }),
    /user "u" was refused/,
  );
});

Deno.test("manifests: shape checks and platform choice", async () => {
  const m = (json: Record<string, unknown>) => ({
    bytes: new Uint8Array(),
    digest: "sha256:x",
    mediaType: "",
    json,
  });
  await throwsMatch(() => checkManifest(m({ schemaVersion: 1 }), "r"), /schemaVersion 1/);
  await throwsMatch(
    () => checkManifest(m({ schemaVersion: 2, config: {}, layers: [] }), "r"),
    /config has no sha256 digest/,
  );
  await throwsMatch(
    () =>
      checkManifest(
        m({
          schemaVersion: 2,
          config: { digest: "sha256:" + "c".repeat(64), size: 1 },
          layers: [{
            mediaType: "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            digest: "sha256:" + "c".repeat(64),
            size: -1,
          }],
        }),
        "r",
      ),
    /layer 1 has no valid size/,
  );
  const index = m({
    manifests: [
      { digest: "sha256:1", platform: { os: "linux", architecture: "amd64" } },
      { digest: "sha256:2", platform: { os: "linux", architecture: "arm64", variant: "v8" } },
      { digest: "sha256:3", platform: { os: "unknown", architecture: "unknown" } },
    ],
  });
  assertEquals(choosePlatform(index, parsePlatform("linux/arm64"), "r").digest, "sha256:2");
  assertEquals(choosePlatform(index, parsePlatform("linux/amd64"), "r").digest, "sha256:1");
  await throwsMatch(
    () => choosePlatform(index, parsePlatform("linux/riscv64"), "r"),
    /r: no image for platform linux\/riscv64 \(the index has linux\/amd64, linux\/arm64\/v8\)/,
  );
  await throwsMatch(() => parsePlatform("amd64"), /Invalid --platform "amd64"/);
  // Names as docker and podman normalize them: aarch64 is arm64, v8 its default variant.
  const noVariant = m({
    manifests: [
      { digest: "sha256:1", platform: { os: "linux", architecture: "amd64" } },
      { digest: "sha256:2", platform: { os: "linux", architecture: "arm64" } },
    ],
  });
  for (const p of ["linux/arm64/v8", "linux/aarch64", "linux/arm64"]) {
    assertEquals(choosePlatform(noVariant, parsePlatform(p), "r").digest, "sha256:2", p);
  }
  assertEquals(choosePlatform(noVariant, parsePlatform("linux/x86_64"), "r").digest, "sha256:1");
  assertEquals(choosePlatform(index, parsePlatform("linux/aarch64/v8"), "r").digest, "sha256:2");
});

Deno.test("decompress: gzip, zstd and plain tar by their magic; corrupt data named", async () => {
  const data = new TextEncoder().encode("hello layer ".repeat(5000));
  const collect = async (src: AsyncIterable<Uint8Array>) => {
    const parts: number[] = [];
    for await (const c of decompress(src)) parts.push(...c);
    return new Uint8Array(parts);
  };
  const one = (b: Uint8Array) =>
    (async function* () {
      // in small pieces: the magic may arrive split
      for (let i = 0; i < b.length; i += 3) yield b.subarray(i, i + 3);
    })();
  const gz = new Uint8Array(
    await new Response(
      ReadableStream.from([data]).pipeThrough(
        new CompressionStream("gzip") as unknown as ReadableWritablePair<Uint8Array, Uint8Array>,
      ),
    ).arrayBuffer(),
  );
  const zlib = await import("node:zlib") as unknown as {
    zstdCompressSync(b: Uint8Array): Uint8Array;
  };
  const zst = new Uint8Array(zlib.zstdCompressSync(data));
  assertEquals(await collect(one(gz)), data);
  assertEquals(await collect(one(zst)), data);
  assertEquals(await collect(one(data)), data);
  const broken = zst.slice();
  broken[broken.length - 6] ^= 0xff;
  await throwsMatch(() => collect(one(broken)), /zstd data is corrupt or truncated/);
  await throwsMatch(
    () => collect(one(gz.subarray(0, gz.length - 20))),
    /gzip data is corrupt or truncated/,
  );
  await throwsMatch(
    () => collect(one(new Uint8Array([0x42, 0x5a, 0x68, 0x39]))),
    /bzip2-compressed/,
  );
});

Deno.test("progress: one bar per layer redrawn in place on a terminal, lines otherwise", async () => {
  const { PullProgress } = await import("../../image/pull.ts");
  let tty = "";
  const p = new PullProgress(true, (s) => tty += s);
  p.line("Pulling x");
  const a = p.add("aaaaaaaaaaaa", 1000), b = p.add("bbbbbbbbbbbb", 2000);
  p.set(a, "downloading");
  p.set(b, "already present");
  p.bytes(a, 500);
  p.end();
  const last = tty.slice(tty.lastIndexOf("\x1b[2A")).replaceAll("\x1b", "ESC");
  assertMatch(last, /^ESC\[2AESC\[JESC\[2Kaaaaaaaaaaaa: \[#{12} {12}\] 0\.0\/0\.0 MB/);
  assertMatch(last, /ESC\[2Kbbbbbbbbbbbb: already present\n$/);
  let plain = "";
  const q = new PullProgress(false, (s) => plain += s);
  q.line("Pulling x");
  const r = q.add("cccccccccccc", 10);
  q.set(r, "downloading");
  q.bytes(r, 10);
  q.set(r, "done (0.0 MB)");
  q.end();
  assertEquals(plain, "Pulling x\ncccccccccccc: downloading\ncccccccccccc: done (0.0 MB)\n");
});
