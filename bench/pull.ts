// `deno run -A bench/pull.ts` (root; docker-registry, skopeo): image pull from a registry on
// 127.0.0.1 in a private network namespace. A 4-layer image (busybox, 2,000 files of 32 kB
// random data, two small layers; 66 MB gzip) pulled cold, a second image sharing all but its
// top layer, the first again (all present), and skopeo copying the same image to an OCI
// directory (download and digest check only, no extraction) for scale.
import { HOST, RegistryLab, setIndex, writeImage } from "../tests/integration/registry_lab.ts";
import { buildBusyboxRootfs, REPO } from "../tests/helpers.ts";

const tmp = await Deno.makeTempDir({ prefix: "capsule-pullbench-" });
const lab = await RegistryLab.start(tmp);
try {
  const base = `${tmp}/bb`;
  Deno.mkdirSync(base);
  await buildBusyboxRootfs(base);
  Deno.mkdirSync(`${tmp}/many/data`, { recursive: true });
  for (let i = 0; i < 2000; i++) {
    const b = new Uint8Array(32768);
    crypto.getRandomValues(b);
    Deno.writeFileSync(`${tmp}/many/data/f${i}`, b);
  }
  const layout = `${tmp}/oci`;
  const shared = [{ base, files: {} }, { base: `${tmp}/many`, files: {} }];
  const one = await writeImage(layout, {
    layers: [...shared, { files: { a: "1" } }, { files: { b: "2" }, compression: "zstd" }],
  });
  setIndex(layout, "1", one.manifestDigest, one.manifest.length);
  await lab.push(layout, "1", "bench/app");
  const two = await writeImage(layout, { layers: [...shared, { files: { c: "3" } }] });
  setIndex(layout, "2", two.manifestDigest, two.manifest.length);
  await lab.push(layout, "2", "bench/app");
  const capsule = [Deno.execPath(), "run", "-A", "--quiet", `${REPO}/main.ts`];
  const time = async (argv: string[]) => {
    const t = performance.now();
    const o = await new Deno.Command("nsenter", {
      args: [`--net=/run/netns/${lab.ns}`, "--", ...argv],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!o.success) throw new Error(new TextDecoder().decode(o.stderr));
    return `${(performance.now() - t).toFixed(0)} ms`;
  };
  const pull = (tag: string) =>
    time([
      ...capsule,
      "--store",
      `${tmp}/store`,
      "image",
      "pull",
      "--tls-verify=false",
      "-q",
      `${HOST}/bench/app:${tag}`,
    ]);
  console.log(`cold pull, 4 layers:                 ${await pull("1")}`);
  console.log(`second image, 1 new layer:           ${await pull("2")}`);
  console.log(`first image again, all present:      ${await pull("1")}`);
  const sk = await time([
    "skopeo",
    "copy",
    "--quiet",
    "--src-tls-verify=false",
    `docker://${HOST}/bench/app:1`,
    `oci:${tmp}/skopeo-out:1`,
  ]);
  console.log(`skopeo copy to an OCI dir (no extraction): ${sk}`);
} finally {
  await lab.stop();
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}
