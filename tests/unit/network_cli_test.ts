// `capsule network create` refuses a repeated --subnet or --gateway (a network has one of
// each) with a usage error while its command line is parsed, before it makes anything (the
// flags' `once`); the globals throw if anything got as far as opening the networks.
import { parseFlags } from "../../cli/parse.ts";
import { tree } from "../../cli/main.ts";
import type { Globals } from "../../cli/types.ts";
import { UsageError } from "../../runtime/errors.ts";
import { assert, assertThrows } from "./helpers.ts";

const globals = (): Globals => {
  throw new Error("the command went on to open the networks");
};

async function networkCreate() {
  const net = (await tree(globals, "network")).subcommands!.find((c) => c.name === "network")!;
  return net.subcommands!.find((c) => c.name === "create")!;
}

Deno.test("network cli: a repeated --subnet or --gateway is a usage error", async () => {
  const create = await networkCreate();
  for (
    const [argv, flag] of [
      [["h7", "--subnet", "10.64.0.0/24", "--subnet", "10.65.0.0/24"], "--subnet"],
      [["h7", "--subnet=10.64.0.0/24", "--subnet", "10.64.0.0/24"], "--subnet"],
      [
        ["h7", "--subnet", "10.64.0.0/24", "--gateway", "10.64.0.9", "--gateway=10.64.0.7"],
        "--gateway",
      ],
    ] as const
  ) {
    assertThrows(
      () => parseFlags([...argv], create.flags ?? [], undefined, "capsule network create"),
      UsageError,
      `${flag} is given twice`,
    );
  }
});

Deno.test("network cli: --subnet and --gateway show as single values in help", async () => {
  const create = await networkCreate();
  const { helpText } = await import("../../cli/parse.ts");
  const h = helpText(create, ["capsule", "network", "create"], []);
  assert(/--subnet CIDR\s+IPv4 subnet/.test(h), h);
  assert(!/repeatable/.test(h), h);
});
