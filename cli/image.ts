// The image commands (image create/list/get/delete/run/destroyc) and named volumes. Thin:
// parse, call image/, print. The modules load lazily: `image run` never loads the tar code.
import { CapsuleError } from "../runtime/errors.ts";
import type { CommandDef, FlagDef, Globals } from "./types.ts";
import { formatFlag, listFlags, printJson, printListing } from "./output.ts";
import { forceFlag, networkFlags, networkOptions } from "./lifecycle.ts";
import { openRuntime } from "./runtime.ts";

function ago(iso: string): string {
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(s)) return iso;
  const [n, unit] = s < 60
    ? [s, "second"]
    : s < 3600
    ? [s / 60, "minute"]
    : s < 86400
    ? [s / 3600, "hour"]
    : [s / 86400, "day"];
  const v = Math.floor(n);
  return `${v} ${unit}${v === 1 ? "" : "s"} ago`;
}

export const imageRunFlags: FlagDef[] = [
  { name: "id", type: "string", arg: "ID", help: "container id (default: 12 random hex digits)" },
  {
    name: "detach",
    short: "d",
    type: "boolean",
    help: "return once started; output goes to the container's log",
  },
  {
    name: "cwd",
    short: "w",
    type: "string",
    arg: "DIR",
    help: "working directory in the container",
  },
  {
    name: "hostname",
    short: "h",
    type: "string",
    arg: "NAME",
    help: "host name (default: the id)",
  },
  { name: "env", short: "e", type: "list", arg: "KEY=VALUE", help: "set an environment variable" },
  { name: "user", short: "u", type: "string", arg: "UID[:GID]", help: "user (name or number)" },
  { name: "entrypoint", type: "string", arg: "CMD", help: "replace the image's Entrypoint" },
  { name: "cpushare", short: "c", type: "string", arg: "N", help: "cpu shares (1024 = one share)" },
  { name: "memory", short: "m", type: "string", arg: "BYTES", help: "memory limit, e.g. 512m" },
  ...networkFlags,
  { name: "label", short: "l", type: "list", arg: "KEY=VALUE", help: "annotation" },
  {
    name: "volume",
    short: "v",
    type: "list",
    arg: "[SRC:]CTR[:ro]",
    help: "volume: CTR (anonymous), NAME:CTR (named), /HOST:CTR (host directory)",
  },
  {
    name: "rm",
    type: "boolean",
    help: "remove the writable layer and anonymous volumes when the container is deleted",
  },
  { name: "read-only", type: "boolean", help: "mount the container's root read-only" },
  { name: "tty", short: "t", type: "boolean", help: "allocate a terminal (process.terminal)" },
];

export function imageCommands(globals: () => Globals): CommandDef[] {
  const open = (needs: { id?: string; network?: boolean; image?: boolean; root?: string }) => {
    const g = globals();
    return openRuntime(needs.root ? { ...g, root: needs.root } : g, needs);
  };
  return [
    {
      name: "image",
      summary: "import images and run containers from them",
      subcommands: [
        {
          name: "create",
          aliases: ["import"],
          summary: "import a rootfs tarball (docker export), docker-archive or OCI archive",
          usage: "<name> <file.tar[.gz|.zst]|oci-dir>",
          args: [2, 2],
          flags: [{ name: "quiet", short: "q", type: "boolean", help: "no progress, no id" }],
          run: async ({ flags, args }) => {
            const { importImage } = await import("../image/import.ts");
            const rec = await importImage({
              store: globals().store,
              name: args[0],
              file: args[1],
              progress: flags.quiet ? false : undefined,
            });
            if (!flags.quiet) console.log(rec.id);
          },
        },
        {
          name: "list",
          aliases: ["ls"],
          summary: "list images",
          flags: listFlags,
          run: async ({ flags }) => {
            const { listImages, humanSize } = await import("../image/store.ts");
            const all = listImages(globals().store);
            printListing(flags, all, ["NAME", "ID", "SIZE", "CREATED"], (i) => [
              i.name,
              i.id.replace(/^sha256:/, "").slice(0, 12),
              humanSize(i.size),
              ago(i.created),
            ]);
          },
        },
        {
          name: "get",
          aliases: ["inspect"],
          summary: "print an image's record (JSON)",
          usage: "<name>",
          args: [1, 1],
          run: async ({ args }) => {
            const { readImage } = await import("../image/store.ts");
            printJson(readImage(globals().store, args[0]));
          },
        },
        {
          name: "delete",
          aliases: ["rm"],
          summary: "remove an image (refused while a container uses it)",
          usage: "<name>",
          args: [1, 1],
          flags: [{
            name: "force",
            short: "f",
            type: "boolean",
            help: "also remove kept writable layers of deleted containers; no error if missing",
          }],
          run: async ({ flags, args }) => {
            const { deleteImage } = await import("../image/run.ts");
            deleteImage(globals().store, globals().root, args[0], flags.force === true);
          },
        },
        {
          name: "run",
          aliases: ["runc"],
          summary: "run a container from an image (options before the image, then the command)",
          usage: "<image> [command [args...]]",
          args: [1, Infinity],
          stopAfter: 1,
          flags: imageRunFlags,
          run: async ({ flags, args }) => {
            const { runImage, randomId } = await import("../image/run.ts");
            const g = globals();
            let memory: number | undefined;
            if (flags.memory !== undefined) {
              const { parseMemory } = await import("../runtime/cgroups/mod.ts");
              memory = parseMemory(flags.memory as string);
            }
            const shares = flags.cpushare as string | undefined;
            if (shares !== undefined && !/^\d+$/.test(shares)) {
              throw new CapsuleError(`Invalid --cpushare "${shares}": expected a whole number`);
            }
            return await runImage({
              store: g.store,
              root: g.root,
              id: (flags.id as string | undefined) ?? randomId(),
              image: args[0],
              command: args.slice(1),
              entrypoint: flags.entrypoint as string | undefined,
              cwd: flags.cwd as string | undefined,
              hostname: flags.hostname as string | undefined,
              env: (flags.env as string[] | undefined) ?? [],
              user: flags.user as string | undefined,
              cpuShares: shares === undefined ? undefined : Number(shares),
              memory,
              labels: (flags.label as string[] | undefined) ?? [],
              volumes: (flags.volume as string[] | undefined) ?? [],
              readOnly: flags["read-only"] === true,
              tty: flags.tty === true,
              detach: flags.detach === true,
              rm: flags.rm === true,
              network: networkOptions(flags),
            }, open);
          },
        },
        {
          name: "destroyc",
          summary: "delete a container from an image with its writable layer and anonymous volumes",
          usage: "<container-id>",
          args: [1, 1],
          flags: [forceFlag],
          run: async ({ flags, args }) => {
            const { destroyContainer } = await import("../image/run.ts");
            const g = globals();
            await destroyContainer(g.store, g.root, args[0], flags.force === true, open);
          },
        },
      ],
    },
    {
      name: "volume",
      summary: "named volumes (-v NAME:/path in image run)",
      subcommands: [
        {
          name: "list",
          aliases: ["ls"],
          summary: "list named volumes",
          flags: [formatFlag],
          run: async ({ flags }) => {
            const { listVolumes } = await import("../image/run.ts");
            const all = listVolumes(globals().store);
            printListing(flags, all, ["NAME", "PATH", "USED BY"], (v) => [
              v.name,
              v.path,
              v.usedBy.join(","),
            ]);
          },
        },
        {
          name: "create",
          summary: "create an empty named volume",
          usage: "<name>",
          args: [1, 1],
          run: async ({ args }) => {
            const { createVolume } = await import("../image/run.ts");
            console.log(createVolume(globals().store, args[0]));
          },
        },
        {
          name: "rm",
          aliases: ["delete"],
          summary: "remove a named volume and its data (refused while a container uses it)",
          usage: "<name>",
          args: [1, 1],
          run: async ({ args }) => {
            const { removeVolume } = await import("../image/run.ts");
            removeVolume(globals().store, args[0]);
          },
        },
      ],
    },
  ];
}
