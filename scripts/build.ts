// deno task build: bundles capsule into dist/ (main.js loads its chunks lazily, and Deno reads
// none before its import runs: see deferDynamicImports) and writes dist/capsule, a
// launcher that runs the bundle with the Deno that built it (engines such as podman call the
// runtime with almost no environment, so the path is absolute).
import { NSEXEC } from "../runtime/nsexec.ts";
import { V8_FLAGS, V8_FLAGS_IMAGE } from "../runtime/v8_flags.ts";

const repo = new URL("..", import.meta.url).pathname;

/**
 * gcc's flags for capsule-nsexec: a static binary (it runs with the container's root as its
 * own, so it must load no shared library by path), position-independent for ASLR, with the
 * usual hardening. `deno task check` compiles it with -Werror too.
 */
export const NSEXEC_CFLAGS = [
  "-O2",
  "-static-pie",
  "-fstack-protector-strong",
  "-D_FORTIFY_SOURCE=2",
  "-Wall",
  "-Wextra",
];

/** The helper's C sources (runtime/native/): exec (nsexec.c), the init and what they share. */
export const NSEXEC_SOURCES = [
  "nsexec.c",
  "plan.c",
  "init.c",
  "rootfs.c",
  "hooks.c",
  "front.c",
  "monitor.c",
  "process_delta.c",
];

/**
 * Compiles runtime/native/*.c (NSEXEC_SOURCES) into `out` with gcc (`CC` overrides it). Throws naming what
 * to install when there is no compiler or no static C library, or with gcc's message.
 */
export async function buildNsexec(out: string): Promise<void> {
  const cc = Deno.env.get("CC") || "gcc";
  let res: Deno.CommandOutput;
  try {
    res = await new Deno.Command(cc, {
      args: [
        ...NSEXEC_CFLAGS,
        "-o",
        out,
        ...NSEXEC_SOURCES.map((f) => `${repo}runtime/native/${f}`),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    throw new Error(
      `capsule's native helper (${NSEXEC}: exec and the container's init) is built with a C compiler and ${cc} cannot run ` +
        `(${(e as Error).message}): install gcc and the static C library (Debian: apt-get ` +
        `install gcc libc6-dev), or name a compiler in CC`,
    );
  }
  if (!res.success) {
    throw new Error(
      `${cc} could not build capsule's native helper (${NSEXEC}); it needs the static C ` +
        `library (Debian: apt-get install libc6-dev):\n${new TextDecoder().decode(res.stderr)}`,
    );
  }
}

/**
 * The end of a POSIX sh launcher (dist/capsule, the release's): picks V8's flags as
 * runtime/v8_flags.ts v8FlagsFor does (V8_FLAGS, or V8_FLAGS_IMAGE when any argument is the word
 * `image`: a container id or an argument that happens to be "image" only costs a short command
 * the single thread's gain) and execs `deno`
 * (a shell word: a quoted path or "$lib/deno") on `mainJs` (a shell word too) with the caller's
 * arguments. `--no-remote --no-npm`: the bundle imports neither, so a stray remote import is an
 * error instead of a download. A command line whose command (the first word after the global
 * flags) is `exec`, `start`, `delete` or `rm` goes to `nsexec`'s front end (a shell word:
 * capsule-nsexec beside main.js) with that Deno command before a `--`: it runs a plain exec, a
 * start or a delete itself and hands anything else to the Deno command unchanged
 * (runtime/native/front.c).
 */
export function runDeno(deno: string, mainJs: string, nsexec: string): string {
  const cmd = [deno, "run", "-A", "--no-config", "--no-lock", "--no-remote", "--no-npm"]
    .concat(["--quiet", "--v8-flags=$v8", mainJs]);
  return `v8=${V8_FLAGS}
for a; do [ "$a" = image ] && v8=${V8_FLAGS_IMAGE} && break; done
front=
skip=
for a; do
  [ -n "$skip" ] && skip= && continue
  case $a in --root|--log|--log-format) skip=1 ;; -*) ;; exec|start|delete|rm) front=1 && break ;; *) break ;; esac
done
[ -n "$front" ] && [ -x ${nsexec} ] && exec ${nsexec} front ${cmd.length} ${cmd.join(" ")} -- "$@"
exec ${cmd.join(" ")} "$@"
`;
}

/**
 * Bundles main.ts into `dist` with a `capsule` launcher that runs it on `deno` (an absolute
 * path). Throws with deno bundle's message when it fails, leaving an existing `dist` as it was
 * (the new bundle is made beside it and swapped in).
 */
export async function build(dist: string, deno = Deno.execPath()): Promise<string> {
  const final = dist;
  dist = `${final}.new`;
  await Deno.remove(dist, { recursive: true }).catch(() => {});
  const raw = `${final}.raw`;
  await Deno.remove(raw, { recursive: true }).catch(() => {});
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "deno",
      "--code-splitting",
      "--minify",
      "--outdir",
      raw,
      `${repo}main.ts`,
    ],
    cwd: repo,
  }).output();
  // A failure at any step (bundle, rollup, the rewrite, gcc) leaves no half-made dist.new.
  try {
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    await rechunk(raw, dist);
    deferDynamicImports(dist);
    await buildNsexec(`${dist}/${NSEXEC}`);
  } catch (e) {
    await Deno.remove(dist, { recursive: true }).catch(() => {});
    throw e;
  } finally {
    await Deno.remove(raw, { recursive: true }).catch(() => {});
  }
  // main.js is found beside the launcher with shell builtins only: a readlink and a dirname
  // process cost ~2-4 ms on every call. Only a launcher reached through a symlink to it (not
  // through a linked directory, which resolves main.js just as well) needs readlink -f.
  const launcher = `#!/bin/sh
# capsule launcher (made by deno task build): the bundled capsule on the Deno that built it.
self=$0
[ -L "$self" ] && self=$(readlink -f "$self")
case $self in */*) dir=\${self%/*} ;; *) dir=. ;; esac
${runDeno(JSON.stringify(deno), '"${dir:-/}/main.js"', `"\${dir:-/}/${NSEXEC}"`)}`;
  Deno.writeTextFileSync(`${dist}/capsule`, launcher, { mode: 0o755 });
  await Deno.remove(final, { recursive: true }).catch(() => {});
  await Deno.rename(dist, final);
  return `${final}/capsule`;
}

/**
 * The chunks of deno bundle's output (named for the module they were split at: `lifecycle-*.js`
 * is cli/lifecycle.ts, `detect-*.js` runtime/cgroups/detect.ts) that `create`, `run`, `state`,
 * `kill` and `list` import on every call (each read the same 26 chunks before): the command tree
 * (cli/main.ts), the lifecycle and both cgroup drivers with their detection.
 */
export const HOT_ENTRIES = ["main", "lifecycle", "detect", "v1", "v2"];

/** The name rechunk gives the one chunk of the hot path (`core-HASH.js`). */
export const CORE_CHUNK = "core";

/** The hash esbuild (deno bundle) puts in a chunk's name: `config-L7F4X5II.js`. */
const ESBUILD_HASH = "-[A-Z0-9]{8}";

/**
 * Regroups deno bundle's chunks in `raw` (a directory with main.js) into `out` with rollup: the
 * static closure of main.js and of the HOT_ENTRIES chunks becomes one chunk, CORE_CHUNK; every
 * other chunk (zod, image, network, seccomp...) stays as it was, loaded when its import runs.
 * main.js keeps only its own code (a chunk that imported main.js would wait on its top-level
 * await, which is the whole command).
 *
 * Why: esbuild splits at every set of entries that shares a module, so `run` read main.js and
 * ~24 chunks; Deno spends ~0.1-0.2 ms on each module whatever its size (25 chunks imported in
 * order: 8-9 ms). One chunk made `run` of `true` ~5 ms faster (58.0 -> 53.0 ms, runc 38.5) and
 * `--version` 27.3 -> 24.9 ms (docs/DESIGN.md, "One module for the CLI's hot path").
 * esbuild has no option to merge chunks; rollup (npm, build time only) does this with
 * manualChunks and leaves the minified code as it is (treeshake off: esbuild already did it).
 * Throws with rollup's message, when a HOT_ENTRIES name matches no chunk, or when a chunk would
 * import main.js.
 */
export async function rechunk(raw: string, out: string): Promise<void> {
  const { rollup } = await import("rollup");
  const mainJs = `${raw}/main.js`;
  let core: Set<string> | undefined;
  const bundle = await rollup({
    input: mainJs,
    treeshake: false,
    // Deno's and node's built-ins stay imports (the image path's lazy node:zlib, node:crypto).
    external: (id) => !id.startsWith(".") && !id.startsWith("/"),
    onwarn: (w, warn) => {
      if (w.code !== "CIRCULAR_DEPENDENCY") warn(w);
    },
  });
  try {
    const { output } = await bundle.write({
      dir: out,
      format: "es",
      entryFileNames: "main.js",
      // esbuild's hash off the name (`config-L7F4X5II` -> `config-<rollup's hash>.js`).
      chunkFileNames: (c) => `${c.name.replace(new RegExp(`${ESBUILD_HASH}$`), "")}-[hash].js`,
      compact: true,
      manualChunks(id, { getModuleIds, getModuleInfo }) {
        if (!core) {
          // The static closure of main.js's imports and of the hot chunks, main.js itself out.
          core = new Set();
          const ids = [...getModuleIds()];
          const hot = HOT_ENTRIES.map((e) => {
            const re = new RegExp(`/${e}${ESBUILD_HASH}\\.js$`);
            return ids.filter((m) => re.test(m));
          });
          // A renamed module (or esbuild naming chunks otherwise) would leave its chunk lazy and
          // the hot path quietly read several modules again.
          const missing = HOT_ENTRIES.filter((_, i) => hot[i].length === 0);
          if (missing.length) {
            throw new Error(
              `rechunk: deno bundle made no chunk named ${missing.join(", ")} (HOT_ENTRIES in ` +
                `scripts/build.ts): name the chunks of the CLI's hot path there`,
            );
          }
          const todo = hot.flat().concat(getModuleInfo(mainJs)?.importedIds ?? []);
          while (todo.length) {
            const m = todo.pop()!;
            if (m === mainJs || core.has(m)) continue;
            core.add(m);
            todo.push(...(getModuleInfo(m)?.importedIds ?? []));
          }
        }
        return core.has(id) ? CORE_CHUNK : undefined;
      },
    });
    // A chunk that imported main.js would wait on its top-level await (the whole command):
    // such a bundle hangs, so it is no build.
    for (const c of output) {
      if (
        c.type === "chunk" && !c.isEntry && [...c.imports, ...c.dynamicImports].includes("main.js")
      ) {
        throw new Error(`rechunk: ${c.fileName} imports main.js, which would deadlock the CLI`);
      }
    }
  } finally {
    await bundle.close();
  }
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
    const out = text.replace(
      /\bimport\((["'])(\.{1,2}\/[^"'\\]+\.js)\1\)/g,
      (_, _q, spec: string) => {
        n++;
        return `import(new URL(${JSON.stringify(spec)},import.meta.url).href)`;
      },
    );
    if (out !== text) Deno.writeTextFileSync(file, out);
  };
  for (const e of Deno.readDirSync(dist)) {
    if (e.isFile && e.name.endsWith(".js")) rewrite(`${dist}/${e.name}`);
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
