// deno task build (scripts/build.ts). dist/capsule, the launcher, finds main.js beside itself
// with shell builtins (no readlink/dirname processes on each call, and no PATH needed), also
// when called by a relative path or through a symlink to it. Deno's start-up graph of main.js
// holds only the modules every command loads, not the lazily imported chunks.
import { build, CORE_CHUNK, HOT_ENTRIES, runDeno } from "../../scripts/build.ts";
import { V8_FLAGS, V8_FLAGS_IMAGE } from "../../runtime/v8_flags.ts";
import { LAUNCHER } from "../../scripts/release.ts";
import { assert, assertEquals, assertMatch } from "./helpers.ts";

async function version(cmd: string, cwd: string, env: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(cmd, { args: ["--version"], cwd, env, clearEnv: true })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert(out.success, `${cmd} --version failed: ${text}`);
  return text.split("\n")[0];
}

Deno.test("launcher: runs main.js beside it by absolute or relative path with no PATH, and through a symlink", async () => {
  const dir = await Deno.makeTempDir({ prefix: "capsule-launcher-" });
  try {
    const launcher = await build(`${dir}/dist`);
    // A PATH where no program is found: the launcher runs none of its own (each costs ms).
    const noPath = { PATH: "/nonexistent" };
    assertEquals(await version(launcher, "/", noPath), "capsule version 0.1.0");
    assertEquals(await version("dist/capsule", dir, noPath), "capsule version 0.1.0");
    await Deno.mkdir(`${dir}/bin`);
    await Deno.symlink(launcher, `${dir}/bin/capsule`);
    assertEquals(
      await version(`${dir}/bin/capsule`, "/", { PATH: "/usr/bin:/bin" }),
      "capsule version 0.1.0",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build: Deno's start-up graph of dist/main.js is main.js and the hot path's one chunk (no zod, image, network)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "capsule-build-" });
  try {
    await build(`${dir}/dist`);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--no-config", "--no-lock", `${dir}/dist/main.js`],
      env: { NO_COLOR: "1" },
    }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: { specifier: string }[];
    };
    const files = info.modules.map((m) => m.specifier.slice(m.specifier.lastIndexOf("/") + 1));
    // What `capsule --version` reads at start: main.js and the one chunk of the hot path
    // (scripts/build.ts rechunk), nothing lazily imported (zod's config, image, network...).
    files.sort();
    assertEquals(files.length, 2, files.join(" "));
    assertEquals(files[1], "main.js");
    assertMatch(files[0], new RegExp(`^${CORE_CHUNK}-[\\w-]+\\.js$`));
    // Every chunk is still there, and a lazily imported one still runs.
    const names = [...Deno.readDirSync(`${dir}/dist`)].map((e) => e.name);
    assert(names.some((n) => n.startsWith("config-")), names.join(" "));
    // The hot path's chunks are inside core, not beside it (they are imported lazily, so Deno's
    // start-up graph above would not show them).
    const apart = names.filter((n) => HOT_ENTRIES.some((e) => n.startsWith(`${e}-`)));
    assertEquals(apart, [], `chunks of the hot path left out of core: ${apart}`);
    // No chunk imports main.js: its top-level await is the whole command, so such an import
    // would wait on itself.
    for (const n of names.filter((n) => n.endsWith(".js"))) {
      const text = Deno.readTextFileSync(`${dir}/dist/${n}`);
      assert(!/["'/]main\.js["']/.test(text), `${n} imports main.js`);
    }
    assertEquals(
      await version(`${dir}/dist/capsule`, "/", { PATH: "/nonexistent" }),
      "capsule version 0.1.0",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("release launcher: finds lib/ beside it with no PATH, by relative path and through a symlink", async () => {
  const dir = await Deno.makeTempDir({ prefix: "capsule-release-launcher-" });
  try {
    await Deno.mkdir(`${dir}/rel/lib`, { recursive: true });
    await Deno.writeTextFile(`${dir}/rel/capsule`, LAUNCHER, { mode: 0o755 });
    // A stand-in for lib/deno that names the main.js it was given.
    await Deno.writeTextFile(
      `${dir}/rel/lib/deno`,
      '#!/bin/sh\nfor a; do case $a in *main.js) echo "$a" ;; esac; done\n',
      {
        mode: 0o755,
      },
    );
    const main = async (cmd: string, cwd: string, env: Record<string, string>) => {
      const out = await new Deno.Command(cmd, { cwd, env, clearEnv: true }).output();
      const text = new TextDecoder().decode(out.stdout).trim();
      assert(out.success, `${cmd}: ${new TextDecoder().decode(out.stderr)}`);
      return Deno.realPathSync(text);
    };
    await Deno.writeTextFile(`${dir}/rel/lib/main.js`, "");
    const want = Deno.realPathSync(`${dir}/rel/lib/main.js`);
    const noPath = { PATH: "/nonexistent" };
    assertEquals(await main(`${dir}/rel/capsule`, "/", noPath), want);
    assertEquals(await main("rel/capsule", dir, noPath), want);
    await Deno.mkdir(`${dir}/bin`);
    await Deno.symlink(`${dir}/rel/capsule`, `${dir}/bin/capsule`);
    assertEquals(await main(`${dir}/bin/capsule`, "/", { PATH: "/usr/bin:/bin" }), want);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("launchers: V8's flags for short commands, and the multi-threaded ones for image commands", async () => {
  const dir = await Deno.makeTempDir({ prefix: "capsule-launcher-flags-" });
  try {
    // A stand-in for deno that prints its --v8-flags and the arguments after main.js.
    const fake = `${dir}/deno`;
    await Deno.writeTextFile(
      fake,
      "#!/bin/sh\nfor a; do case $a in --v8-flags=*) f=$a ;; esac; done\n" +
        'while [ "$1" != main.js ]; do shift; done; shift; echo "$f $*"\n',
      { mode: 0o755 },
    );
    // And one for capsule-nsexec's front end, which prints the command it would fall back to.
    const front = `${dir}/capsule-nsexec`;
    await Deno.writeTextFile(
      front,
      '#!/bin/sh\n[ "$1" = front ] || exit 9; n=$2; shift 2; echo "front $n $*"\n',
      { mode: 0o755 },
    );
    const launcher = `${dir}/capsule`;
    await Deno.writeTextFile(
      launcher,
      `#!/bin/sh\n${runDeno(JSON.stringify(fake), "main.js", JSON.stringify(front))}`,
      { mode: 0o755 },
    );
    const flags = async (...args: string[]) => {
      const out = await new Deno.Command(launcher, { args, clearEnv: true }).output();
      assert(out.success, new TextDecoder().decode(out.stderr));
      return new TextDecoder().decode(out.stdout).trim();
    };
    assertEquals(await flags("run", "-b", "b c", "id"), `--v8-flags=${V8_FLAGS} run -b b c id`);
    assertEquals(
      await flags("--root", "/r", "image", "create", "x", "f.tar"),
      `--v8-flags=${V8_FLAGS_IMAGE} --root /r image create x f.tar`,
    );
    assertEquals(await flags(), `--v8-flags=${V8_FLAGS}`);
    // exec, start and delete (the first word after the global flags) go to the native front end, with
    // the Deno command it hands anything else to before "--"; nothing else does.
    const deno = `${fake} run -A --no-config --no-lock --no-remote --no-npm --quiet ` +
      `--v8-flags=${V8_FLAGS} main.js`;
    assertEquals(await flags("exec", "c1", "true"), `front 10 ${deno} -- exec c1 true`);
    assertEquals(
      await flags("--root", "/r", "exec", "c1", "ls", "-l"),
      `front 10 ${deno} -- --root /r exec c1 ls -l`,
    );
    assertEquals(
      await flags("--root=/r", "exec", "-t", "c1"),
      `front 10 ${deno} -- --root=/r exec -t c1`,
    );
    const engine = ["--root", "/r", "--log", "/l.json", "--log-format", "json", "start", "c1"];
    assertEquals(await flags(...engine), `front 10 ${deno} -- ${engine.join(" ")}`);
    assertEquals(await flags("--debug", "start", "c1"), `front 10 ${deno} -- --debug start c1`);
    assertEquals(await flags("delete", "-f", "c1"), `front 10 ${deno} -- delete -f c1`);
    assertEquals(await flags("rm", "c1"), `front 10 ${deno} -- rm c1`);
    assertEquals(await flags("state", "exec"), `--v8-flags=${V8_FLAGS} state exec`);
    assertEquals(await flags("--root", "start", "run"), `--v8-flags=${V8_FLAGS} --root start run`);
    assertEquals(await flags("run", "start"), `--v8-flags=${V8_FLAGS} run start`);
    const env = { front: "1" }; // a caller's variable of that name routes nothing
    const out = await new Deno.Command(launcher, { args: ["run", "x"], clearEnv: true, env })
      .output();
    assertEquals(new TextDecoder().decode(out.stdout).trim(), `--v8-flags=${V8_FLAGS} run x`);
    // The release launcher picks them the same way.
    assert(LAUNCHER.includes(runDeno('"$lib/deno"', '"$lib/main.js"', '"$lib/capsule-nsexec"')));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("build: a build that fails (here gcc, its last step) keeps the old dist and leaves nothing beside it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "capsule-build-" });
  const cc = Deno.env.get("CC");
  try {
    Deno.mkdirSync(`${dir}/dist`);
    Deno.writeTextFileSync(`${dir}/dist/main.js`, "// the old build\n");
    Deno.env.set("CC", "false");
    let err = "";
    await build(`${dir}/dist`).catch((e) => err = (e as Error).message);
    assertMatch(err, /could not build capsule's native helper/);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["dist"]);
    assertEquals(Deno.readTextFileSync(`${dir}/dist/main.js`), "// the old build\n");
  } finally {
    if (cc === undefined) Deno.env.delete("CC");
    else Deno.env.set("CC", cc);
    await Deno.remove(dir, { recursive: true });
  }
});
