// cli/main.ts loads only the command module of the command given (COMMAND_GROUPS): its table
// of names must be each module's own, or a command would be "unknown" until help loaded all.
import { COMMAND_GROUPS, tree } from "../../cli/main.ts";
import type { Globals } from "../../cli/types.ts";
import { assert, assertEquals } from "./helpers.ts";

const globals = (): Globals => {
  throw new Error("no command runs here");
};

Deno.test("cli: each command group's table names exactly the commands and aliases of its module", async () => {
  for (const grp of COMMAND_GROUPS) {
    const names = (await grp.load())(globals).flatMap((c) => [c.name, ...(c.aliases ?? [])]);
    assertEquals(names, grp.names);
  }
});

Deno.test("cli: a command's tree holds its group alone; no name (help) or an unknown one holds all", async () => {
  const all = (await tree(globals)).subcommands!.map((c) => c.name);
  assertEquals(all, (await tree(globals, "no-such-command")).subcommands!.map((c) => c.name));
  for (const name of ["run", "rm", "exec", "logs", "pause", "network", "volume"]) {
    const sub = (await tree(globals, name)).subcommands!;
    assert(sub.some((c) => c.name === name || c.aliases?.includes(name)), name);
    assert(sub.length < all.length, `${name} loaded every group`);
  }
  // Every name of the table is one command of the whole tree.
  const every = (await tree(globals)).subcommands!.flatMap((c) => [c.name, ...(c.aliases ?? [])]);
  assertEquals(COMMAND_GROUPS.flatMap((g) => g.names).sort(), every.sort());
});
