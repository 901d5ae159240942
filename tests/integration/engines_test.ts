// What engines see (docs/engines.md): every command containerd's shim and conmon call, on a
// container in each state, run with runc and with capsule in the same test. The exit status
// must be runc's; where runc's message holds the words engines match on (containerd's
// checkKillError: "container not running", "does not exist"; podman's state check: "does not
// exist"), capsule's must hold them too. exec's own failures exit 255 in both.
import { assert, assertEquals, isRoot, makeBundle, removeAll, REPO, sleep } from "../helpers.ts";

const have = (p: string) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
};

type Runtime = "runc" | "capsule";
const STATES = ["created", "running", "paused", "stopped", "gone"] as const;
const COMMANDS = [
  "kill @",
  "kill @ 9",
  "kill --all @ 9",
  "delete @",
  "delete -f @",
  "state @",
  "pause @",
  "resume @",
  "update --pids-limit 100 @",
  "exec @ true",
  "start @",
] as const;
/** The words of runc's messages that engines match on. */
const PARSED = ["container not running", "container not paused", "does not exist"];

async function run(rt: Runtime, root: string, args: string[], quiet = false) {
  const [cmd, pre] = rt === "runc"
    ? ["runc", []]
    : [Deno.execPath(), ["run", "-A", "--quiet", `${REPO}/main.ts`]];
  const out = await new Deno.Command(cmd, {
    args: [...pre, "--root", root, ...args],
    stdin: "null",
    stdout: quiet ? "null" : "piped",
    stderr: quiet ? "null" : "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stderr: quiet ? "" : dec.decode(out.stderr) };
}

async function status(rt: Runtime, root: string, id: string): Promise<string | undefined> {
  const [cmd, pre] = rt === "runc"
    ? ["runc", []]
    : [Deno.execPath(), ["run", "-A", "--quiet", `${REPO}/main.ts`]];
  const out = await new Deno.Command(cmd, {
    args: [...pre, "--root", root, "state", id],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  try {
    return JSON.parse(new TextDecoder().decode(out.stdout)).status;
  } catch {
    return undefined;
  }
}

/** Brings a new container `id` into `state` (gone: nothing is made). */
async function make(rt: Runtime, root: string, bundle: string, id: string, state: string) {
  if (state === "gone") return;
  const c = await run(rt, root, ["create", "--bundle", bundle, id], true);
  assertEquals(c.code, 0, `${rt} create`);
  if (state === "created") return;
  assertEquals((await run(rt, root, ["start", id], true)).code, 0, `${rt} start`);
  if (state === "paused") assertEquals((await run(rt, root, ["pause", id], true)).code, 0);
  if (state === "stopped") {
    await run(rt, root, ["kill", id, "KILL"], true);
    for (let i = 0; i < 200 && await status(rt, root, id) !== "stopped"; i++) await sleep(20);
  }
  assertEquals(await status(rt, root, id), state, `${rt} ${id}`);
}

Deno.test({
  name: "engines: kill, kill --all, delete, state, pause, resume, update, exec, start in every " +
    "state: runc's exit status, runc's words where engines parse them",
  ignore: !isRoot() || !have("/usr/sbin/runc") && !have("/usr/bin/runc"),
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const bundle = await makeBundle(["sleep", "1000"]);
    const roots = {
      runc: await Deno.makeTempDir({ prefix: "capsule-eng-runc-" }),
      capsule: await Deno.makeTempDir({ prefix: "capsule-eng-" }),
    };
    const rows: string[] = [];
    const diffs: string[] = [];
    let n = 0;
    try {
      for (const state of STATES) {
        for (const command of COMMANDS) {
          const id = `eng${++n}-${Deno.pid}`;
          const res: Record<Runtime, { code: number; stderr: string }> = {} as never;
          for (const rt of ["runc", "capsule"] as const) {
            await make(rt, roots[rt], bundle, id, state);
            res[rt] = await run(rt, roots[rt], command.replace("@", id).split(" "));
            await run(rt, roots[rt], ["delete", "-f", id], true);
          }
          const r = res.runc, c = res.capsule;
          rows.push(`${state} | ${command} | ${r.code} | ${c.code} | ${c.stderr.trim()}`);
          if (r.code !== c.code) {
            diffs.push(
              `${state} ${command}: runc ${r.code} (${r.stderr.trim()}), capsule ` +
                `${c.code} (${c.stderr.trim()})`,
            );
          }
          for (const w of PARSED) {
            if (r.stderr.includes(w) && !c.stderr.includes(w)) {
              diffs.push(`${state} ${command}: runc says "${w}", capsule: ${c.stderr.trim()}`);
            }
          }
        }
      }
      console.log(rows.join("\n"));
      assertEquals(diffs, [], "capsule differs from runc");
      // Nothing left of either runtime's containers.
      for (const rt of ["runc", "capsule"] as const) {
        assert([...Deno.readDirSync(roots[rt])].length === 0, `${rt} left state`);
      }
    } finally {
      for (const rt of ["runc", "capsule"] as const) {
        for (const e of [...Deno.readDirSync(roots[rt])]) {
          await run(rt, roots[rt], ["delete", "-f", e.name], true);
        }
      }
      await removeAll(roots.runc, roots.capsule, bundle);
    }
  },
});
