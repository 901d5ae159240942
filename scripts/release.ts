// deno task release: the release artifact, dist/capsule-VERSION-linux-x86_64.tar.gz. It holds
// one directory, capsule-VERSION-linux-x86_64/, with
//   capsule          a POSIX sh launcher that finds the rest from its own real path
//   lib/deno         the pinned Deno binary (tools/package.json), and lib/deno.LICENSE
//   lib/main.js ...  the bundle (deno task build's output, zod inside it: no npm at run time)
// Untarred anywhere (/opt, a home directory) and linked into PATH, it runs containers on a host
// with no Node.js, no npm, no Deno and no network: nothing is resolved or fetched at run time.
import { VERSION } from "../runtime/version.ts";
import { build, runDeno } from "./build.ts";

const repo = new URL("..", import.meta.url).pathname;

/**
 * The release launcher: resolves its own symlink (`/usr/local/bin/capsule` -> the untarred
 * copy; readlink -f runs only then: a process costs ~1-2 ms per call, and a linked directory
 * resolves lib/ as well), then runs lib/main.js on lib/deno with the flags of `runDeno` (as
 * dist/capsule does); DENO_NO_UPDATE_CHECK keeps Deno from asking for a newer version.
 */
export const LAUNCHER = `#!/bin/sh
# capsule ${VERSION} (release launcher): the bundle in lib/ on the Deno in lib/, both found
# from this file's real path, so the directory can live anywhere and be linked into PATH.
self=$0
[ -L "$self" ] && self=$(readlink -f "$self")
case $self in */*) lib=\${self%/*}/lib ;; *) lib=./lib ;; esac
DENO_NO_UPDATE_CHECK=1
export DENO_NO_UPDATE_CHECK
${runDeno('"$lib/deno"', '"$lib/main.js"', '"$lib/capsule-nsexec"')}`;

/** The Deno version tools/package.json pins (what releases ship). */
export function pinnedDeno(): string {
  const pkg = JSON.parse(Deno.readTextFileSync(`${repo}tools/package.json`));
  return pkg.dependencies.deno;
}

async function run(cmd: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/**
 * Builds the release tarball into `outDir` (default `dist/`) and returns its path. `deno` is
 * the Deno binary to ship: it must be the pinned version (the one running this script when it
 * is started with tools/node_modules/.bin/deno). Throws naming the problem otherwise, or when
 * bundling or tar fails. The tarball is reproducible for one commit: sorted names, owner 0,
 * mtimes from SOURCE_DATE_EPOCH (or the last commit), gzip without a timestamp.
 */
export async function release(
  outDir = `${repo}dist`,
  deno = Deno.execPath(),
): Promise<string> {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new Error(`Releases are made for linux-x86_64, not ${Deno.build.os}-${Deno.build.arch}`);
  }
  const pinned = pinnedDeno();
  const v = new TextDecoder().decode(
    (await new Deno.Command(deno, { args: ["--version"], stdout: "piped" }).output()).stdout,
  );
  if (!v.startsWith(`deno ${pinned} `)) {
    throw new Error(
      `${deno} is not the pinned Deno ${pinned} (tools/package.json): it says ` +
        `${JSON.stringify(v.split("\n")[0])}; run tools/node_modules/.bin/deno task release`,
    );
  }
  const name = `capsule-${VERSION}-linux-x86_64`;
  Deno.mkdirSync(outDir, { recursive: true });
  const stage = Deno.makeTempDirSync({ dir: outDir, prefix: ".release-" });
  try {
    const top = `${stage}/${name}`;
    Deno.mkdirSync(top);
    await build(`${top}/lib`, "deno"); // writes lib/capsule, a dev launcher: replaced below
    Deno.removeSync(`${top}/lib/capsule`);
    Deno.copyFileSync(deno, `${top}/lib/deno`);
    Deno.chmodSync(`${top}/lib/deno`, 0o755);
    const license = `${repo}tools/node_modules/deno/LICENSE`;
    Deno.copyFileSync(license, `${top}/lib/deno.LICENSE`);
    Deno.writeTextFileSync(`${top}/capsule`, LAUNCHER, { mode: 0o755 });
    Deno.chmodSync(`${top}/capsule`, 0o755);
    const epoch = Deno.env.get("SOURCE_DATE_EPOCH") ?? new TextDecoder().decode(
      (await new Deno.Command("git", { args: ["-C", repo, "log", "-1", "--format=%ct"] })
        .output()).stdout,
    ).trim();
    const tarball = `${outDir}/${name}.tar.gz`;
    const tmp = `${tarball}.tmp`;
    await run("tar", [
      "-C",
      stage,
      "--sort=name",
      "--owner=0",
      "--group=0",
      "--numeric-owner",
      `--mtime=@${/^\d+$/.test(epoch) ? epoch : "0"}`,
      "--use-compress-program=gzip -n -6",
      "-cf",
      tmp,
      name,
    ]);
    Deno.renameSync(tmp, tarball);
    return tarball;
  } finally {
    Deno.removeSync(stage, { recursive: true });
  }
}

if (import.meta.main) {
  try {
    const t = await release(Deno.args[0]);
    console.log(`built ${t} (${(Deno.statSync(t).size / 1e6).toFixed(1)} MB)`);
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(1);
  }
}
