// deno task build: bundles capsule into dist/ (main.js loads its chunks lazily: the init and
// the CLI never load zod unless a config must be validated) and writes dist/capsule, a
// launcher that runs the bundle with the Deno that built it (engines such as podman call the
// runtime with almost no environment, so the path is absolute).
const repo = new URL("..", import.meta.url).pathname;
const dist = `${repo}dist`;
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
  ],
  cwd: repo,
}).output();
if (!out.success) {
  console.error(new TextDecoder().decode(out.stderr));
  Deno.exit(1);
}
const launcher = `#!/bin/sh
# capsule launcher (made by deno task build): the bundled capsule on the Deno that built it.
exec ${
  JSON.stringify(Deno.execPath())
} run -A --no-config --no-lock --quiet "$(dirname "$(readlink -f "$0")")/main.js" "$@"
`;
Deno.writeTextFileSync(`${dist}/capsule`, launcher, { mode: 0o755 });
console.log(`built ${dist}/capsule`);
