// `capsule network create|delete|list|show|prune`: parse, call network/mod.ts, print.
import type { CommandDef, Globals } from "./types.ts";
import { listFlags, printJson, printListing } from "./output.ts";

export function networkCommands(globals: () => Globals): CommandDef[] {
  const nets = async () => {
    const { Networks } = await import("../network/mod.ts");
    return new Networks(globals().root, undefined, globals().store);
  };
  return [{
    name: "network",
    summary: "manage bridge networks for containers",
    subcommands: [
      {
        name: "create",
        summary: "create a bridge network (the subnet's first address is the gateway)",
        usage: "<name>",
        args: [1, 1],
        flags: [
          { name: "driver", short: "d", type: "string", arg: "DRIVER", help: "bridge (default)" },
          {
            name: "subnet",
            type: "string",
            arg: "CIDR",
            help: "IPv4 subnet, /16 to /30, e.g. 10.89.0.0/24 (default: a free one, as docker)",
            once: true,
          },
          {
            name: "gateway",
            type: "string",
            arg: "IP",
            help: "gateway address (default: the first of the subnet)",
            once: true,
          },
        ],
        run: async ({ flags, args }) => {
          const n = await (await nets()).create(args[0], {
            subnet: flags.subnet as string | undefined,
            gateway: flags.gateway as string | undefined,
            driver: flags.driver as string | undefined,
          });
          console.log(n.name);
        },
      },
      {
        name: "delete",
        aliases: ["rm"],
        summary: "delete networks (refused while containers are attached); finishes a " +
          "half-deleted one",
        usage: "<name>...",
        args: [1, 100],
        run: async ({ args }) => {
          const n = await nets();
          for (const name of args) await n.delete(name);
        },
      },
      {
        name: "list",
        aliases: ["ls"],
        summary: "list networks",
        flags: listFlags,
        run: async ({ flags }) => {
          const all = await (await nets()).list();
          printListing(
            flags,
            all,
            ["NAME", "GATEWAY", "SUBNET", "DRIVER", "CONTAINERS", "STATUS"],
            (n) => [n.name, n.gateway, n.subnet, n.driver, String(n.containers), n.status],
          );
        },
      },
      {
        name: "show",
        aliases: ["inspect"],
        summary: "show a network and its containers (JSON)",
        usage: "<name>",
        args: [1, 1],
        run: async ({ args }) => {
          printJson(await (await nets()).show(args[0]));
        },
      },
      {
        name: "prune",
        summary: "delete every network that has no containers (half-deleted ones included)",
        run: async () => {
          for (const name of await (await nets()).prune()) console.log(name);
        },
      },
    ],
  }];
}
