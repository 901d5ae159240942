// Unit tests of image/import.ts (no root needed): the three formats built in the test (flat
// rootfs, docker-archive, OCI layout and oci-archive, gzip or not), the image record, and
// failures that must leave nothing in the store.
import { importImage, treeSize } from "../../image/import.ts";
import { buildTar, type WriteEntry } from "../../image/tar.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assert, assertEquals, assertMatch, assertRejects, withTempDir } from "./helpers.ts";

const enc = new TextEncoder();

async function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([bytes as BlobPart]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(s).arrayBuffer());
}

async function sha(bytes: Uint8Array): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", bytes as BufferSource);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const LAYER1: WriteEntry[] = [
  { name: "./", type: "dir" },
  { name: "bin/sh", data: "#!sh", mode: 0o755 },
  { name: "etc/old", data: "old" },
  { name: "var/cache/a", data: "a" },
];
const LAYER2: WriteEntry[] = [
  { name: "etc/.wh.old" },
  { name: "var/cache/.wh..wh..opq" },
  { name: "var/cache/b", data: "b" },
  { name: "etc/new", data: "new" },
];
const CONFIG = {
  architecture: "amd64",
  os: "linux",
  config: {
    Env: ["PATH=/bin", "FOO=img"],
    Cmd: ["sh", "-c", "echo"],
    WorkingDir: "/var",
    Labels: { app: "demo" },
    ExposedPorts: { "80/tcp": {} },
    Healthcheck: { Test: ["NONE"] },
  },
  rootfs: { type: "layers", diff_ids: [] as string[] },
};

/** CONFIG with the diff_ids of these layer tars (uncompressed), as docker and podman write. */
async function configOf(...tars: Uint8Array[]): Promise<Uint8Array> {
  const diff_ids = await Promise.all(tars.map(async (t) => `sha256:${await sha(t)}`));
  return enc.encode(JSON.stringify({ ...CONFIG, rootfs: { type: "layers", diff_ids } }));
}

function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of Deno.readDirSync(d)) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) walk(`${d}/${e.name}`, r);
      else out.push(r);
    }
  };
  walk(dir, "");
  return out.sort();
}

const EXPECTED = ["bin/sh", "etc/new", "var/cache/b"];

Deno.test("import: a flat rootfs tarball, gzip-compressed", async () => {
  await withTempDir(async (tmp) => {
    const file = `${tmp}/rootfs.tar.gz`;
    const tar = buildTar(LAYER1);
    const gz = await gzip(tar);
    Deno.writeFileSync(file, gz);
    const rec = await importImage({ store: `${tmp}/store`, name: "flat", file, progress: false });
    assertEquals(rec.format, "rootfs");
    assertEquals(rec.id, `sha256:${await sha(gz)}`);
    assertEquals(rec.size, 4 + 3 + 1);
    assertEquals(listTree(`${tmp}/store/images/flat/rootfs`), ["bin/sh", "etc/old", "var/cache/a"]);
    // Whiteout-looking names in a flat export are not interpreted.
    assertEquals(listTree(`${tmp}/store/images`), [
      "flat/image.json",
      "flat/rootfs/bin/sh",
      "flat/rootfs/etc/old",
      "flat/rootfs/var/cache/a",
    ]);
  });
});

Deno.test("import: the size is the tree's (a hard link once, a replaced file not at all)", async () => {
  await withTempDir(async (tmp) => {
    const cases: [string, WriteEntry[], number][] = [
      // Nothing removed: the extraction's own count.
      ["counted", [
        { name: "a", data: "0123456789" },
        { name: "b", type: "link", linkname: "a" },
        { name: "d/e", data: "abc" },
      ], 13],
      // "c" given twice: the first is gone, so the tree is walked.
      ["walked", [
        { name: "a", data: "0123456789" },
        { name: "b", type: "link", linkname: "a" },
        { name: "c", data: "12345" },
        { name: "c", data: "1234567" },
      ], 17],
    ];
    for (const [name, entries, size] of cases) {
      const file = `${tmp}/${name}.tar`;
      Deno.writeFileSync(file, buildTar(entries));
      const rec = await importImage({ store: `${tmp}/store`, name, file, progress: false });
      assertEquals(rec.size, size, name);
      assertEquals(rec.size, treeSize(`${tmp}/store/images/${name}/rootfs`), name);
    }
  });
});

Deno.test("import: a docker-archive with two layers and whiteouts", async () => {
  await withTempDir(async (tmp) => {
    const l1 = buildTar(LAYER1), l2 = await gzip(buildTar(LAYER2));
    const config = await configOf(l1, buildTar(LAYER2), buildTar(LAYER2));
    const cfgName = `${await sha(config)}.json`;
    const archive = buildTar([
      { name: "aaaa/", type: "dir" },
      { name: "aaaa/layer.tar", data: l1 },
      { name: "bbbb/layer.tar", data: l2 },
      // docker save links a repeated layer to one copy
      { name: "cccc/layer.tar", type: "symlink", linkname: "../bbbb/layer.tar" },
      { name: cfgName, data: config },
      {
        name: "manifest.json",
        data: JSON.stringify([{
          Config: cfgName,
          RepoTags: ["demo:latest"],
          Layers: ["aaaa/layer.tar", "bbbb/layer.tar", "cccc/layer.tar"],
        }]),
      },
    ]);
    const file = `${tmp}/img.tar`;
    Deno.writeFileSync(file, archive);
    const rec = await importImage({ store: `${tmp}/store`, name: "dock", file, progress: false });
    assertEquals(rec.format, "docker-archive");
    assertEquals(rec.id, `sha256:${await sha(config)}`);
    const l2id = `sha256:${await sha(buildTar(LAYER2))}`;
    assertEquals(rec.layers, [`sha256:${await sha(l1)}`, l2id, l2id]);
    assertEquals(rec.config, {
      Env: ["PATH=/bin", "FOO=img"],
      Cmd: ["sh", "-c", "echo"],
      WorkingDir: "/var",
      ExposedPorts: { "80/tcp": {} },
      Labels: { app: "demo" },
    });
    assertEquals(listTree(`${tmp}/store/images/dock/rootfs`), EXPECTED);
    assertEquals(rec.size, treeSize(`${tmp}/store/images/dock/rootfs`));
    // The same archive gzip-compressed as a whole.
    Deno.writeFileSync(`${tmp}/img.tar.gz`, await gzip(archive));
    const rec2 = await importImage({
      store: `${tmp}/store`,
      name: "dock2",
      file: `${tmp}/img.tar.gz`,
      progress: false,
    });
    assertEquals(rec2.id, rec.id);
    assertEquals(listTree(`${tmp}/store/images/dock2/rootfs`), EXPECTED);
  });
});

async function ociLayout(): Promise<
  { files: WriteEntry[]; manifestDigest: string; configDigest: string }
> {
  const blobs: WriteEntry[] = [];
  const blob = async (data: Uint8Array) => {
    const d = await sha(data);
    blobs.push({ name: `blobs/sha256/${d}`, data });
    return { digest: `sha256:${d}`, size: data.length };
  };
  const config = await blob(await configOf(buildTar(LAYER1), buildTar(LAYER2)));
  const l1 = await blob(await gzip(buildTar(LAYER1)));
  const l2 = await blob(buildTar(LAYER2));
  const manifest = enc.encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
    layers: [
      { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...l1 },
      { mediaType: "application/vnd.oci.image.layer.v1.tar", ...l2 },
    ],
  }));
  const m = await blob(manifest);
  const files: WriteEntry[] = [
    { name: "oci-layout", data: '{"imageLayoutVersion":"1.0.0"}' },
    {
      name: "index.json",
      data: JSON.stringify({
        schemaVersion: 2,
        manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...m }],
      }),
    },
    { name: "blobs/", type: "dir" },
    ...blobs,
  ];
  return { files, manifestDigest: m.digest, configDigest: config.digest };
}

Deno.test("import: an oci-archive and an OCI layout directory", async () => {
  await withTempDir(async (tmp) => {
    const { files, manifestDigest, configDigest } = await ociLayout();
    Deno.writeFileSync(`${tmp}/oci.tar`, buildTar(files));
    const rec = await importImage({
      store: `${tmp}/store`,
      name: "oci",
      file: `${tmp}/oci.tar`,
      progress: false,
    });
    assertEquals([rec.format, rec.id, rec.digest], ["oci", configDigest, manifestDigest]);
    assertEquals(rec.config.Cmd, ["sh", "-c", "echo"]);
    assertEquals(listTree(`${tmp}/store/images/oci/rootfs`), EXPECTED);
    // The same as a directory (skopeo copy ... oci:DIR).
    const dir = `${tmp}/layout`;
    for (const f of files) {
      if (f.type === "dir") continue;
      const p = `${dir}/${f.name}`;
      Deno.mkdirSync(p.slice(0, p.lastIndexOf("/")), { recursive: true });
      Deno.writeFileSync(p, typeof f.data === "string" ? enc.encode(f.data) : f.data!);
    }
    const rec2 = await importImage({ store: `${tmp}/store`, name: "ocidir", file: dir });
    assertEquals(rec2.id, configDigest);
    assertEquals(listTree(`${tmp}/store/images/ocidir/rootfs`), EXPECTED);
  });
});

Deno.test("import: a blob that does not match its digest is refused", async () => {
  await withTempDir(async (tmp) => {
    const { files } = await ociLayout();
    const layer = files.find((f) =>
      f.name.startsWith("blobs/") && f.data instanceof Uint8Array &&
      f.data[0] !== 0x7b && f.data[0] !== 0x1f
    )!; // the uncompressed layer
    const bytes = (layer.data as Uint8Array).slice();
    bytes[1536] ^= 1; // the data of var/cache/b: still a valid tar
    layer.data = bytes;
    Deno.writeFileSync(`${tmp}/oci.tar`, buildTar(files));
    await assertRejects(
      () => importImage({ store: `${tmp}/store`, name: "bad", file: `${tmp}/oci.tar` }),
      CapsuleError,
      "does not match its digest",
    );
    assertEquals([...Deno.readDirSync(`${tmp}/store/images`)].length, 0);
  });
});

Deno.test("import: a layer whose tar does not match its diff_id is refused", async () => {
  await withTempDir(async (tmp) => {
    const store = `${tmp}/store`;
    // docker save's layout: layer files carry no digest of their own, only the config's
    // diff_ids name them. A layer changed after the config was written (another file's data).
    const l1 = buildTar(LAYER1);
    const config = await configOf(l1);
    const cfgName = `${await sha(config)}.json`;
    const changed = l1.slice();
    changed[l1.indexOf(0x23, 1024)] ^= 1; // "#" of bin/sh's data "#!sh": still a valid tar
    const docker = (layer: Uint8Array, cfg = config) =>
      buildTar([
        { name: "aaaa/layer.tar", data: layer },
        { name: cfgName, data: cfg },
        {
          name: "manifest.json",
          data: JSON.stringify([{ Config: cfgName, Layers: ["aaaa/layer.tar"] }]),
        },
      ]);
    Deno.writeFileSync(`${tmp}/d.tar`, docker(changed));
    await assertRejects(
      () => importImage({ store, name: "d", file: `${tmp}/d.tar` }),
      CapsuleError,
      "does not match its diff_id",
    );
    // A gzip layer: the diff_id is of the tar inside, not of the gzip.
    Deno.writeFileSync(`${tmp}/g.tar`, docker(await gzip(changed)));
    await assertRejects(
      () => importImage({ store, name: "g", file: `${tmp}/g.tar` }),
      CapsuleError,
      "does not match its diff_id",
    );
    Deno.writeFileSync(`${tmp}/ok.tar`, docker(await gzip(l1)));
    await importImage({ store, name: "ok", file: `${tmp}/ok.tar` });
    // docker's empty layer (a layer that changes nothing: the end marker alone), with its id.
    const empty = new Uint8Array(1024);
    const withEmpty = buildTar([
      { name: "aaaa/layer.tar", data: l1 },
      { name: "bbbb/layer.tar", data: empty },
      { name: "c.json", data: await configOf(l1, empty) },
      {
        name: "manifest.json",
        data: JSON.stringify([{ Config: "c.json", Layers: ["aaaa/layer.tar", "bbbb/layer.tar"] }]),
      },
    ]);
    Deno.writeFileSync(`${tmp}/e.tar`, withEmpty);
    const e = await importImage({ store, name: "e", file: `${tmp}/e.tar` });
    assertEquals(
      e.layers[1],
      "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef",
    );
    assertEquals(listTree(`${store}/images/e/rootfs`), ["bin/sh", "etc/old", "var/cache/a"]);
    Deno.removeSync(`${store}/images/e`, { recursive: true });
    // A config that names another count of layers, or no digest, is refused.
    const two = await configOf(l1, l1);
    Deno.writeFileSync(`${tmp}/n.tar`, docker(l1, two));
    await assertRejects(
      () => importImage({ store, name: "n", file: `${tmp}/n.tar` }),
      CapsuleError,
      "lists 2 layer digests for 1 layers",
    );
    assertEquals([...Deno.readDirSync(`${store}/images`)].map((e) => e.name), ["ok"]);
  });
});

Deno.test("import: failures name the file and leave nothing behind", async () => {
  await withTempDir(async (tmp) => {
    const store = `${tmp}/store`;
    const imp = (name: string, file: string) => importImage({ store, name, file, progress: false });
    await assertRejects(() => imp("a", `${tmp}/missing.tar`), CapsuleError, "no such file");
    Deno.writeTextFileSync(`${tmp}/text.tar`, "hello, I am not a tarball\n".repeat(50));
    await assertRejects(() => imp("a", `${tmp}/text.tar`), CapsuleError, "not a tar archive");
    const tar = buildTar([{ name: "big", data: "x".repeat(100_000) }]);
    Deno.writeFileSync(`${tmp}/cut.tar`, tar.slice(0, 50_000));
    await assertRejects(() => imp("a", `${tmp}/cut.tar`), CapsuleError, "ends early");
    Deno.writeFileSync(`${tmp}/cut.tar.gz`, (await gzip(tar)).slice(0, 60));
    await assertRejects(() => imp("a", `${tmp}/cut.tar.gz`), CapsuleError, `cut.tar.gz`);
    Deno.writeFileSync(
      `${tmp}/evil.tar`,
      buildTar([{ name: "ok", data: "1" }, {
        name: "../../evil",
        data: "x",
      }]),
    );
    await assertRejects(() => imp("a", `${tmp}/evil.tar`), CapsuleError, "Refusing to import");
    Deno.writeFileSync(`${tmp}/noimg.tar`, buildTar([{ name: "index.json", data: "{}" }]));
    await assertRejects(() => imp("a", `${tmp}/noimg.tar`), CapsuleError, "lists no manifest");
    await assertRejects(() => imp("../x", `${tmp}/evil.tar`), CapsuleError, "Invalid image name");
    assertEquals([...Deno.readDirSync(`${store}/images`)].map((e) => e.name), []);
    Deno.writeFileSync(`${tmp}/ok.tar`, buildTar(LAYER1));
    await imp("taken", `${tmp}/ok.tar`);
    const before = Deno.readTextFileSync(`${store}/images/taken/image.json`);
    await assertRejects(() => imp("taken", `${tmp}/ok.tar`), CapsuleError, "is taken");
    assertEquals(Deno.readTextFileSync(`${store}/images/taken/image.json`), before);
    assertEquals([...Deno.readDirSync(`${store}/images`)].map((e) => e.name), ["taken"]);
    assert(!outside(tmp, "evil"));
  });
});

/** A docker-save directory (pre-25 layout): `files` written, `links` made as symlinks. */
function dockerDir(dir: string, files: Record<string, Uint8Array>, links: Record<string, string>) {
  const parent = (p: string) => Deno.mkdirSync(p.slice(0, p.lastIndexOf("/")), { recursive: true });
  for (const [name, data] of Object.entries(files)) {
    parent(`${dir}/${name}`);
    Deno.writeFileSync(`${dir}/${name}`, data);
  }
  for (const [name, target] of Object.entries(links)) {
    parent(`${dir}/${name}`);
    Deno.symlinkSync(target, `${dir}/${name}`);
  }
}

const manifestOf = (cfg: string, layers: string[]) =>
  enc.encode(JSON.stringify([{ Config: cfg, RepoTags: ["x:1"], Layers: layers }]));

Deno.test("import: a docker-save directory whose repeated layer links to another (../ID/layer.tar)", async () => {
  await withTempDir(async (tmp) => {
    const l1 = buildTar(LAYER1), l2 = buildTar(LAYER2);
    const config = await configOf(l1, l2, l2);
    const dir = `${tmp}/saved`;
    dockerDir(dir, {
      "aaaa/layer.tar": l1,
      "bbbb/layer.tar": l2,
      "c.json": config,
      "m.json": manifestOf("c.json", ["aaaa/layer.tar", "bbbb/layer.tar", "cccc/layer.tar"]),
    }, {
      "cccc/layer.tar": "../bbbb/layer.tar",
      // docker 25+ links files of its OCI layout the same way; a link to a link inside works.
      "manifest.json": "m.json",
    });
    const rec = await importImage({ store: `${tmp}/store`, name: "d", file: dir, progress: false });
    assertEquals(rec.format, "docker-archive");
    assertEquals(listTree(`${tmp}/store/images/d/rootfs`), EXPECTED);
  });
});

Deno.test("import: a directory's file that leads out of it, a FIFO or a device is refused, naming it", async () => {
  await withTempDir(async (tmp) => {
    const store = `${tmp}/store`;
    const secret = buildTar([{ name: "secret", data: "TOPSECRET\n" }]);
    Deno.writeFileSync(`${tmp}/hostsecret.tar`, secret);
    const cfg = enc.encode(JSON.stringify({ architecture: "amd64", os: "linux", config: {} }));
    const imp = (name: string, file: string) => importImage({ store, name, file, progress: false });
    const cases: [string, Record<string, string>, RegExp][] = [
      ["abs", { "l/layer.tar": `${tmp}/hostsecret.tar` }, /"l\/layer\.tar".* leads out of/],
      ["up", { "l/layer.tar": "../../hostsecret.tar" }, /"l\/layer\.tar".* leads out of/],
      ["dirup", { "l": "../sec" }, /"l\/layer\.tar".* leads out of/],
      ["cfg", { "cfg.json": "/etc/hostname" }, /"cfg\.json".* leads out of/],
      ["fifo", {}, /"l\/layer\.tar" is a FIFO/],
      ["dev", { "l/layer.tar": "/dev/null" }, /"l\/layer\.tar".* leads out of/],
      ["loop", { "l/layer.tar": "layer.tar" }, /"l\/layer\.tar".*symbolic links/],
    ];
    Deno.mkdirSync(`${tmp}/sec`);
    Deno.copyFileSync(`${tmp}/hostsecret.tar`, `${tmp}/sec/layer.tar`);
    for (const [name, links, why] of cases) {
      const dir = `${tmp}/${name}`;
      const files: Record<string, Uint8Array> = {
        "manifest.json": manifestOf("cfg.json", ["l/layer.tar"]),
      };
      if (!("cfg.json" in links)) files["cfg.json"] = cfg;
      if (name === "cfg") files["l/layer.tar"] = secret;
      dockerDir(dir, files, links);
      if (name === "fifo") {
        Deno.mkdirSync(`${dir}/l`);
        new Deno.Command("mkfifo", { args: [`${dir}/l/layer.tar`] }).outputSync();
      }
      const e = await assertRejects(() => imp(name, dir), CapsuleError);
      assertMatch((e as Error).message, why, name);
      assertEquals([...Deno.readDirSync(`${store}/images`)].map((e) => e.name), [], name);
    }
    // A device node in the directory itself (root only: mknod).
    if (Deno.uid() === 0) {
      const dir = `${tmp}/node`;
      dockerDir(
        dir,
        { "manifest.json": manifestOf("cfg.json", ["l/layer.tar"]), "cfg.json": cfg },
        {},
      );
      Deno.mkdirSync(`${dir}/l`);
      new Deno.Command("mknod", { args: [`${dir}/l/layer.tar`, "c", "1", "3"] }).outputSync();
      await assertRejects(
        () => imp("node", dir),
        CapsuleError,
        `"l/layer.tar" is a character device`,
      );
    }
    assertEquals([...Deno.readDirSync(`${store}/images`)].map((e) => e.name), []);
  });
});

function outside(tmp: string, name: string): boolean {
  for (const d of [tmp, `${tmp}/..`]) {
    try {
      Deno.lstatSync(`${d}/${name}`);
      return true;
    } catch { /* absent */ }
  }
  return false;
}

Deno.test("import: a reference as the name (redis:7 style), found by every spelling", async () => {
  const { listImages, readImage } = await import("../../image/store.ts");
  const { tagImage } = await import("../../image/run.ts");
  await withTempDir(async (tmp) => {
    const file = `${tmp}/rootfs.tar`;
    Deno.writeFileSync(file, buildTar(LAYER1));
    const store = `${tmp}/store`;
    const rec = await importImage({ store, name: "docker.io/team/app:1.2", file, progress: false });
    assertEquals(rec.name, "team/app:1.2");
    assertEquals(readImage(store, "team/app:1.2").id, rec.id);
    assertEquals(listTree(`${store}/images/team%2Fapp%3A1.2/rootfs`), [
      "bin/sh",
      "etc/old",
      "var/cache/a",
    ]);
    await assertRejects(
      () => importImage({ store, name: "docker.io/team/app:1.2", file, progress: false }),
      CapsuleError,
      'Image name "docker.io/team/app:1.2" is taken',
    );
    // tag: a second name with its own copy (hard links), independent of the first.
    tagImage(store, "team/app:1.2", "app");
    assertEquals(listImages(store).map((i) => i.name), ["app", "team/app:1.2"]);
    assertEquals(readImage(store, "docker.io/library/app:latest").id, rec.id);
    const a = Deno.statSync(`${store}/images/app/rootfs/bin/sh`);
    const b = Deno.statSync(`${store}/images/team%2Fapp%3A1.2/rootfs/bin/sh`);
    assertEquals(a.ino, b.ino);
  });
});

Deno.test("import: no file of an archive stays open, imported or failed halfway", async () => {
  await withTempDir(async (tmp) => {
    const config = await configOf(buildTar(LAYER1));
    const cfgName = `${await sha(config)}.json`;
    const docker = buildTar([
      { name: "aaaa/layer.tar", data: buildTar(LAYER1) },
      { name: cfgName, data: config },
      {
        name: "manifest.json",
        data: JSON.stringify([{ Config: cfgName, Layers: ["aaaa/layer.tar"] }]),
      },
    ]);
    Deno.writeFileSync(`${tmp}/docker.tar`, docker);
    // A flat rootfs that fails halfway: a file, then an entry that climbs out.
    Deno.writeFileSync(
      `${tmp}/bad.tar`,
      buildTar([{ name: "a", data: "x".repeat(3000) }, { name: "../out", data: "y" }]),
    );
    const open = () =>
      [...Deno.readDirSync("/proc/self/fd")].filter((e) => {
        try {
          return Deno.readLinkSync(`/proc/self/fd/${e.name}`).startsWith(tmp);
        } catch {
          return false;
        }
      }).length;
    for (let i = 0; i < 3; i++) {
      await importImage({ store: `${tmp}/store`, name: `d${i}`, file: `${tmp}/docker.tar` });
      await assertRejects(
        () => importImage({ store: `${tmp}/store`, name: `b${i}`, file: `${tmp}/bad.tar` }),
        CapsuleError,
        "outside",
      );
    }
    assertEquals(open(), 0, "files of the archives still open");
  });
});
