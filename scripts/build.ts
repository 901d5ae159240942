// deno task build: bundles capsule into dist/ (main.js loads its chunks lazily, and Deno reads
// none before its import runs: see deferDynamicImports) and writes dist/capsule, a
// launcher that runs the bundle with the Deno that built it (engines such as podman call the
// runtime with almost no environment, so the path is absolute).
const repo = new URL("..", import.meta.url).pathname;

/**
 * Bundles main.ts into `dist` with a `capsule` launcher that runs it on `deno` (an absolute
 * path). Throws with deno bundle's message when it fails, leaving an existing `dist` as it was
 * (the new bundle is made beside it and swapped in).
 */
export async function build(dist: string, deno = Deno.execPath()): Promise<string> {
  const final = dist;
  dist = `${final}.new`;
  await Deno.remove(dist, { recursive: true }).catch(() => {});
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "deno",
      "--code-splitting",
      "--minify",
      "--outdir",
      dist,
      `${repo}main.ts`,
      // The init's own entry (runtime/init_main.js): started without Deno's caches (README
      // "Security"), it must not make Deno parse the CLI's graph, which main.js imports.
      `${repo}runtime/init_main.ts`,
    ],
    cwd: repo,
  }).output();
  if (!out.success) {
    await Deno.remove(dist, { recursive: true }).catch(() => {});
    throw new Error(new TextDecoder().decode(out.stderr));
  }
  deferDynamicImports(dist);
  // main.js is found beside the launcher with shell builtins only: a readlink and a dirname
  // process cost ~2-4 ms on every call. Only a launcher reached through a symlink to it (not
  // through a linked directory, which resolves main.js just as well) needs readlink -f.
  const launcher = `#!/bin/sh
# capsule launcher (made by deno task build): the bundled capsule on the Deno that built it.
self=$0
[ -L "$self" ] && self=$(readlink -f "$self")
case $self in */*) dir=\${self%/*} ;; *) dir=. ;; esac
exec ${JSON.stringify(deno)} run -A --no-config --no-lock --quiet "\${dir:-/}/main.js" "$@"
`;
  Deno.writeTextFileSync(`${dist}/capsule`, launcher, { mode: 0o755 });
  await Deno.remove(final, { recursive: true }).catch(() => {});
  await Deno.rename(dist, final);
  return `${final}/capsule`;
}

/**
 * Deno builds the module graph of `deno run` with every dynamic import whose specifier is a
 * string literal: it reads and parses each lazily imported chunk (image, network, zod...) at
 * start, though none runs; that cost ~15 ms on every CLI call (`capsule --version` 39 ms
 * against 23 for an empty script). The bundle's `import("./chunk.js")` become imports of a
 * URL made at run time, which Deno loads only when the import runs (the same module, resolved
 * against the same importing chunk). Throws when a file cannot be rewritten.
 */
export function deferDynamicImports(dist: string): number {
  let n = 0;
  const rewrite = (file: string) => {
    const text = Deno.readTextFileSync(file);
    const out = text.replace(/\bimport\("(\.{1,2}\/[^"\\]+\.js)"\)/g, (_, spec: string) => {
      n++;
      return `import(new URL(${JSON.stringify(spec)},import.meta.url).href)`;
    });
    if (out !== text) Deno.writeTextFileSync(file, out);
  };
  for (const dir of [dist, `${dist}/runtime`]) {
    for (const e of Deno.readDirSync(dir)) {
      if (e.isFile && e.name.endsWith(".js")) rewrite(`${dir}/${e.name}`);
    }
  }
  return n;
}

if (import.meta.main) {
  try {
    console.log(`built ${await build(`${repo}dist`)}`);
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(1);
  }
}
