// A --root or --store that is not a directory (a file at its path): one clear error from every
// command that uses it, exit status 1, never an internal error with a stack trace. Runs the CLI
// from source, without root.
import { assert, assertEquals } from "./helpers.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

function cli(args: string[]): { code: number; stderr: string; stdout: string } {
  const out = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("cli: a --root or --store that is a file is refused by name, exit 1, no stack trace", () => {
  const dir = Deno.makeTempDirSync({ prefix: "capsule-paths-" });
  try {
    const file = `${dir}/afile`;
    Deno.writeTextFileSync(file, "");
    const cases: [string, string[]][] = [
      ["--root", ["list"]],
      ["--root", ["state", "x"]],
      ["--root", ["delete", "x"]],
      ["--root", ["kill", "x"]],
      ["--store", ["image", "list"]],
      ["--store", ["network", "list"]],
      ["--store", ["network", "inspect", "x"]],
      ["--store", ["volume", "list"]],
    ];
    for (const [flag, args] of cases) {
      const r = cli([flag, file, ...args]);
      const what = `${flag} FILE ${args.join(" ")}`;
      assertEquals(r.code, 1, `${what}: ${r.stderr}`);
      assertEquals(
        r.stderr,
        `capsule: ${flag} "${file}" is not a directory: give ${flag} a directory (it is made when missing)\n`,
        what,
      );
    }
    // spec's bundle: a file, or a directory it cannot write in.
    const spec = cli(["spec", "-b", file]);
    assertEquals(
      [spec.code, spec.stderr],
      [1, `capsule: Bundle "${file}" is not a directory: give -b a directory\n`],
    );
    // Help needs neither.
    const help = cli(["--root", file, "list", "--help"]);
    assertEquals(help.code, 0, help.stderr);
    assert(help.stdout.includes("list"), help.stdout);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
