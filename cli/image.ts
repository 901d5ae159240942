// The image commands (image create/pull/list/get/delete/tag/run/destroyc/login/logout) and
// named volumes. Thin: parse, call image/, print. The modules load lazily: `image run` never
// loads the tar or registry code.
import { CapsuleError, execFailureStatus, NotFoundError, UsageError } from "../runtime/errors.ts";
import { SysError } from "../ffi/libc.ts";
import type { CommandDef, FlagDef, Globals, Parsed } from "./types.ts";
import { parseFlags } from "./parse.ts";
import { ExitWith, formatFlag, listFlags, printJson, printListing } from "./output.ts";
import { forceFlag, graceFlag, graceSeconds, networkFlags, networkOptions } from "./lifecycle.ts";
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
  { name: "name", type: "string", arg: "ID", help: "the same as --id (docker's spelling)" },
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
  {
    name: "memory",
    short: "m",
    type: "string",
    arg: "BYTES",
    help: "memory limit, e.g. 512m (a number alone is bytes; at least 6m)",
  },
  {
    name: "ulimit",
    type: "list",
    arg: "NAME=SOFT[:HARD]",
    help: "process limit, e.g. nofile=65536:65536, core=-1 (-1: unlimited; default nofile: " +
      "capsule's own hard limit)",
  },
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
    name: "log-max-size",
    type: "string",
    arg: "BYTES",
    help: "with -d: rotate the container's log past this size (default 10m; 0: never)",
  },
  {
    name: "log-max-files",
    type: "string",
    arg: "N",
    help: "with -d: log files kept, the current one included (default 3)",
  },
  {
    name: "rm",
    type: "boolean",
    help: "remove the writable layer and anonymous volumes when the container is deleted",
  },
  { name: "read-only", type: "boolean", help: "mount the container's root read-only" },
  { name: "tty", short: "t", type: "boolean", help: "allocate a terminal (process.terminal)" },
  {
    name: "interactive",
    short: "i",
    type: "boolean",
    help: "keep stdin attached (it always is in the foreground; accepted for docker's -i and -it)",
  },
];

/** --id or --name (docker's spelling); both only when they agree. */
function containerId(flags: Parsed["flags"]): string | undefined {
  const id = flags.id as string | undefined, name = flags.name as string | undefined;
  if (id !== undefined && name !== undefined && id !== name) {
    throw new UsageError(`Give the container's id once: --id "${id}" and --name "${name}" differ`);
  }
  return id ?? name;
}

/** Whether `tok` is an option of `image run` (--name, -name, -d, --name=value, -p=80). */
function isRunOption(tok: string): boolean {
  if (tok.length < 2 || !tok.startsWith("-") || tok === "--") return false;
  const key = tok.replace(/^--?/, "").split("=")[0];
  return imageRunFlags.some((f) => f.name === key || f.short === key);
}

/** The two spellings that never take a program's flag for capsule's, as a hint. */
const RUNC_HINT = `to give them to the program, put -- before the command ` +
  `("capsule image runc IMAGE -- CMD ARGS..."), or use "capsule image run [OPTIONS] IMAGE CMD ARGS..."`;

/**
 * `image runc`'s arguments after the image, as the original tool spells them: the command,
 * then the options (`redis-server -id r1 -d -p 6379:6379`; single-dash long names; the first
 * argument that is an option of `image run` starts the options); a command given as one
 * argument with spaces is split at the spaces. A `--` before the first option ends option
 * parsing (it is dropped, the rest is the program's: `image runc IMG -- ls -l -d /`; one after
 * the command is dropped too, with a `note`, since the program may have meant it). Options
 * taken give `note`, one line for stderr naming them and the other spellings: a program's own
 * flag that is also capsule's (`echo -e`, `sh -c`) is never taken silently. Throws UsageError
 * (with the same hint) for a word after the options that is neither an option nor its value, an
 * option `image run` does not know, or a missing value.
 */
export function trailingOptions(
  rest: string[],
): { command: string[]; flags: Parsed["flags"]; note?: string } {
  let at = rest.findIndex(isRunOption);
  if (at < 0) at = rest.length;
  const dash = rest.indexOf("--");
  if (dash >= 0 && dash < at) {
    const command = [...rest.slice(0, dash), ...rest.slice(dash + 1)];
    if (dash === 0) return { command, flags: {} };
    // After the command a program may mean the -- itself (grep -- -v f): dropped, but said.
    const before = JSON.stringify(rest.slice(0, dash).join(" "));
    return {
      command,
      flags: {},
      note: `capsule image runc: dropping the "--" after ${before}: it ends capsule's options; ` +
        `to give the program a "--", put one right after the image ` +
        `("capsule image runc IMAGE -- CMD -- ARGS...")`,
    };
  }
  let command = rest.slice(0, at);
  if (command.length === 1 && /\s/.test(command[0].trim())) {
    command = command[0].trim().split(/\s+/);
  }
  const taken = rest.slice(at);
  if (!taken.length) return { command, flags: {} };
  const named = JSON.stringify(taken.join(" "));
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(taken, imageRunFlags, undefined, "capsule image runc");
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    throw new UsageError(`${e.message} (in ${named}, taken as capsule's options); ${RUNC_HINT}`);
  }
  if (parsed.args.length) {
    throw new UsageError(
      `capsule image runc: "${parsed.args[0]}" comes after the options (${named}), which are ` +
        `capsule's; give the command first ("capsule image runc IMAGE CMD ARGS... -id NAME -d"); ` +
        RUNC_HINT,
    );
  }
  return {
    command,
    flags: parsed.flags,
    note:
      `capsule image runc: taking ${named} as capsule's options, not the program's; ${RUNC_HINT}`,
  };
}

/**
 * Runs an image command that creates a container: a program that cannot be exec'd exits
 * 127 (missing) or 126 (not executable), as docker's run and start do, not 1.
 */
async function dockerExecStatus(run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (e) {
    const code = e instanceof CapsuleError ? execFailureStatus(e.message) : undefined;
    if (code !== undefined) throw new ExitWith(code, e as Error);
    throw e;
  }
}

/**
 * Runs `fn` for each of `ids` as docker's rm, rmi and volume rm do: each one done is printed,
 * a failure is reported and the others still go; returns 1 if any failed. One id alone
 * throws its error as before.
 */
async function eachOf(
  ids: string[],
  fn: (id: string) => unknown,
): Promise<number | undefined> {
  let failed = 0;
  for (const id of ids) {
    try {
      // false: nothing there, and not an error (-f): not printed as removed.
      if (await fn(id) !== false) console.log(id);
    } catch (e) {
      if (ids.length === 1 || !(e instanceof CapsuleError || e instanceof SysError)) throw e;
      console.error(`capsule: ${e.message}`);
      failed++;
    }
  }
  return failed ? 1 : undefined;
}

/** Options given before the image and after the command, together (lists joined). */
function mergeFlags(a: Parsed["flags"], b: Parsed["flags"]): Parsed["flags"] {
  const out: Parsed["flags"] = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = Array.isArray(cur) && Array.isArray(v) ? [...cur, ...v] : v;
  }
  return out;
}

/** Reads a secret: without echo on a terminal (after a prompt on stderr), else one line. */
async function readSecret(prompt: string): Promise<string> {
  const enc = new TextEncoder();
  const tty = Deno.stdin.isTerminal();
  if (tty) {
    Deno.stderr.writeSync(enc.encode(prompt));
    Deno.stdin.setRaw(true);
  }
  const bytes: number[] = [];
  const buf = new Uint8Array(1);
  try {
    for (;;) {
      const n = await Deno.stdin.read(buf);
      if (n === null || n === 0) break;
      const b = buf[0];
      if (b === 0x0a || b === 0x0d) break;
      if (tty && b === 0x03) throw new CapsuleError("Interrupted");
      if (tty && (b === 0x7f || b === 0x08)) {
        bytes.pop();
        continue;
      }
      bytes.push(b);
    }
  } finally {
    if (tty) {
      Deno.stdin.setRaw(false);
      Deno.stderr.writeSync(enc.encode("\n"));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

const authFileFlag: FlagDef = {
  name: "authfile",
  type: "string",
  arg: "FILE",
  help: "containers-auth.json with credentials (default: podman's, $REGISTRY_AUTH_FILE or " +
    "$XDG_RUNTIME_DIR/containers/auth.json or /run/containers/UID/auth.json)",
};
const tlsFlag: FlagDef = {
  name: "tls-verify",
  type: "boolean",
  help: "--tls-verify=false: talk plain HTTP to a registry without TLS",
};

export function imageCommands(globals: () => Globals): CommandDef[] {
  const open = (needs: { id?: string; network?: boolean; image?: boolean; root?: string }) => {
    const g = globals();
    return openRuntime(needs.root ? { ...g, root: needs.root } : g, needs);
  };
  const runCommand = async (flags: Parsed["flags"], args: string[]) => {
    const { runImage, randomId } = await import("../image/run.ts");
    const g = globals();
    const waited = Deno.env.get("CAPSULE_WAITED");
    // Log limits: checked before anything starts, kept in container.json for image start.
    const sizeFlag = flags["log-max-size"] as string | undefined;
    const filesFlag = flags["log-max-files"] as string | undefined;
    let log: { maxSize: number; maxFiles: number } | undefined;
    if (sizeFlag !== undefined || filesFlag !== undefined || flags.detach === true) {
      const w = await import("../runtime/waiter.ts");
      const { parseMemory } = await import("../runtime/cgroups/mod.ts");
      log = w.parseLogOptions(sizeFlag, filesFlag, parseMemory);
    }
    if (flags.detach === true && !waited) {
      const w = await import("../runtime/waiter.ts");
      if (w.waiterAvailable()) {
        const id = containerId(flags) ?? randomId();
        // --rm: the waiter removes the container once it has exited, as docker does; a kept
        // one with a network gives back its ports and address (docker's stop semantics).
        const cleanup = flags.rm === true
          ? [
            ...w.selfCommand(),
            "--root",
            g.root,
            "--store",
            g.store,
            "image",
            "destroyc",
            "-f",
            id,
          ]
          : networkOptions(flags) !== undefined
          ? w.releaseCommand(g.root, g.store, id)
          : [];
        return await w.runUnderWaiter(id, `${g.root}/${id}`, cleanup);
      }
    }
    let memory: number | undefined;
    if (flags.memory !== undefined) {
      const { parseMemory } = await import("../runtime/cgroups/mod.ts");
      memory = parseMemory(flags.memory as string, "--memory");
    }
    const shares = flags.cpushare as string | undefined;
    if (shares !== undefined && !/^\d+$/.test(shares)) {
      throw new CapsuleError(`Invalid --cpushare "${shares}": expected a whole number`);
    }
    return await dockerExecStatus(() =>
      runImage({
        store: g.store,
        root: g.root,
        id: containerId(flags) ?? waited ?? randomId(),
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
        ulimits: (flags.ulimit as string[] | undefined) ?? [],
        readOnly: flags["read-only"] === true,
        tty: flags.tty === true,
        detach: flags.detach === true,
        rm: flags.rm === true,
        network: networkOptions(flags),
        log,
        keepLog: sizeFlag !== undefined || filesFlag !== undefined,
      }, open)
    );
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
          usage: "<name[:tag]> <file.tar[.gz|.zst]|oci-dir>",
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
          name: "pull",
          summary:
            "fetch an image from its registry: redis, redis:7, host:5000/team/app:1.2, name@sha256:...",
          usage: "<image>",
          args: [1, 1],
          flags: [
            {
              name: "platform",
              type: "string",
              arg: "OS/ARCH[/VARIANT]",
              help: "the image to pick from a multi-platform index (default linux/<this machine>)",
            },
            tlsFlag,
            {
              name: "creds",
              type: "string",
              arg: "USER[:PASS]",
              help: "credentials for this pull (without :PASS the password is read from stdin; " +
                "a password here shows in ps: prefer image login)",
            },
            authFileFlag,
            { name: "quiet", short: "q", type: "boolean", help: "no progress, only the id" },
          ],
          run: async ({ flags, args }) => {
            const { pullImage } = await import("../image/pull.ts");
            let credentials;
            if (typeof flags.creds === "string") {
              const c = flags.creds;
              const colon = c.indexOf(":");
              const username = colon < 0 ? c : c.slice(0, colon);
              if (!username) throw new CapsuleError(`Invalid --creds "": expected USER[:PASS]`);
              const password = colon < 0 ? await readSecret("Password: ") : c.slice(colon + 1);
              credentials = { username, password };
            }
            const rec = await pullImage({
              store: globals().store,
              ref: args[0],
              platform: flags.platform as string | undefined,
              insecure: flags["tls-verify"] === false,
              credentials,
              authFile: flags.authfile as string | undefined,
              out: flags.quiet ? () => {} : undefined,
            });
            console.log(rec.id);
          },
        },
        {
          name: "tag",
          summary: "give an image another name",
          usage: "<source> <target>",
          args: [2, 2],
          run: async ({ args }) => {
            const { tagImage } = await import("../image/run.ts");
            tagImage(globals().store, args[0], args[1]);
          },
        },
        {
          name: "login",
          summary: "store credentials for a registry (checked against it first)",
          usage: "<registry>",
          args: [1, 1],
          flags: [
            { name: "username", short: "u", type: "string", arg: "USER", help: "user name" },
            {
              name: "password-stdin",
              type: "boolean",
              help: "read the password from stdin (the default when stdin is no terminal)",
            },
            authFileFlag,
            tlsFlag,
          ],
          run: async ({ flags, args }) => {
            const { registryOf, storeCredentials, defaultAuthFile } = await import(
              "../image/auth.ts"
            );
            const { checkLogin } = await import("../image/registry.ts");
            const registry = registryOf(args[0]);
            let username = flags.username as string | undefined;
            if (!username) {
              if (!Deno.stdin.isTerminal() || flags["password-stdin"]) {
                throw new UsageError(
                  "capsule image login: give the user name with -u USER (the password is read " +
                    "from stdin)",
                );
              }
              username = (prompt("Username:") ?? "").trim();
            }
            if (!username || username.includes(":")) {
              throw new CapsuleError(`Invalid user name "${username}": empty or with ":"`);
            }
            const password = await readSecret("Password: ");
            if (!password) throw new CapsuleError(`No password given for ${registry}`);
            const creds = { username, password };
            await checkLogin(registry, creds, { insecure: flags["tls-verify"] === false });
            const file = (flags.authfile as string | undefined) ?? defaultAuthFile();
            storeCredentials(file, registry, creds);
            console.log(`Login Succeeded (${registry}, credentials in ${file})`);
          },
        },
        {
          name: "logout",
          summary: "remove the stored credentials of a registry",
          usage: "<registry>",
          args: [1, 1],
          flags: [authFileFlag],
          run: async ({ flags, args }) => {
            const { registryOf, removeCredentials, defaultAuthFile } = await import(
              "../image/auth.ts"
            );
            const registry = registryOf(args[0]);
            const file = (flags.authfile as string | undefined) ?? defaultAuthFile();
            if (!removeCredentials(file, registry)) {
              throw new CapsuleError(`Not logged in to ${registry} (no entry in ${file})`);
            }
            console.log(`Removed login credentials for ${registry}`);
          },
        },
        {
          name: "list",
          aliases: ["ls"],
          summary: "list images",
          flags: listFlags,
          run: async ({ flags }) => {
            const { listImages, humanSize } = await import("../image/store.ts");
            const { repoAndTag } = await import("../image/reference.ts");
            const all = listImages(globals().store);
            printListing(flags, all, ["REPOSITORY", "TAG", "ID", "SIZE", "CREATED"], (i) => {
              const { repository, tag } = repoAndTag(i.name);
              return [
                repository,
                tag,
                i.id.replace(/^sha256:/, "").slice(0, 12),
                humanSize(i.size),
                ago(i.created),
              ];
            });
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
          summary: "remove images (refused while a container uses one)",
          usage: "<name>...",
          args: [1, Infinity],
          flags: [{
            name: "force",
            short: "f",
            type: "boolean",
            help: "also remove kept writable layers of deleted containers; no error if missing",
          }],
          run: async ({ flags, args }) => {
            const { deleteImage } = await import("../image/run.ts");
            return await eachOf(
              args,
              (name) => deleteImage(globals().store, globals().root, name, flags.force === true),
            );
          },
        },
        {
          name: "run",
          summary: "run a container from an image (options before the image, then the command)",
          usage: "<image> [command [args...]]",
          args: [1, Infinity],
          stopAfter: 1,
          flags: imageRunFlags,
          run: ({ flags, args }) => runCommand(flags, args),
        },
        {
          name: "runc",
          summary: "image run, with the options also after the command (-id NAME -d -p ...)",
          usage: "<image> [command [args...]] [options]  (-- before a command that has options)",
          args: [1, Infinity],
          stopAfter: 1,
          flags: imageRunFlags,
          run: ({ flags, args }) => {
            const t = trailingOptions(args.slice(1));
            // Said once: a detached run repeats this command line under its waiter.
            if (t.note && !Deno.env.get("CAPSULE_WAITED")) console.error(t.note);
            return runCommand(mergeFlags(flags, t.flags), [args[0], ...t.command]);
          },
        },
        {
          name: "start",
          summary: "start a stopped container from an image again, from its kept writable layer",
          usage: "<container-id>",
          args: [1, 1],
          flags: [{
            name: "attach",
            short: "a",
            type: "boolean",
            help: "run in the foreground (default: detached, output to the container's log)",
          }],
          run: async ({ flags, args }) => {
            const { startContainer } = await import("../image/run.ts");
            const g = globals();
            if (!flags.attach && !Deno.env.get("CAPSULE_WAITED")) {
              const w = await import("../runtime/waiter.ts");
              const { readContainerInfo } = await import("../image/store.ts");
              if (w.waiterAvailable()) {
                const { validateId } = await import("../runtime/ids.ts");
                validateId(args[0]); // before it names a path for the waiter
                const { savedRoot } = await import("../image/run.ts");
                const info = readContainerInfo(g.store, args[0]);
                const root = savedRoot(info, args[0], g.root, g.rootGiven === true);
                // Its ports and address are given back when it exits, as after image run -d.
                const cleanup = info?.network !== undefined && !info.rm
                  ? w.releaseCommand(root, g.store, args[0])
                  : [];
                return await w.runUnderWaiter(args[0], `${root}/${args[0]}`, cleanup);
              }
            }
            return await dockerExecStatus(() =>
              startContainer(g.store, g.root, args[0], flags.attach === true, open, g.rootGiven)
            );
          },
        },
        {
          name: "restart",
          summary: "stop containers from an image, then start them again (docker restart)",
          usage: "<container-id>...",
          args: [1, Infinity],
          flags: [graceFlag],
          run: async ({ flags, args }) => {
            const timeout = graceSeconds(flags);
            const { readContainerInfo } = await import("../image/store.ts");
            const { savedRoot } = await import("../image/run.ts");
            const { validateId } = await import("../runtime/ids.ts");
            const { selfCommand } = await import("../runtime/waiter.ts");
            const g = globals();
            let failed = 0;
            for (const id of args) {
              try {
                validateId(id);
                const info = readContainerInfo(g.store, id);
                if (!info) {
                  throw new CapsuleError(
                    `No container "${id}" from an image in ${g.store}; see "capsule list"`,
                  );
                }
                if (info.rm) {
                  throw new CapsuleError(
                    `Container "${id}" was run with --rm: it is removed when it stops, so it ` +
                      `cannot be restarted; stop it ("capsule stop ${id}") and run it again`,
                  );
                }
                const root = savedRoot(info, id, g.root, g.rootGiven === true);
                // Stopped already (or kept without run-time state): nothing to stop.
                const rt = await open({ id, image: true, root });
                try {
                  await rt.stop(id, { timeout });
                } catch (e) {
                  if (!(e instanceof NotFoundError)) throw e;
                }
                // image start, as its own command: detached under its waiter; prints the id.
                const start = await new Deno.Command(selfCommand()[0], {
                  args: [
                    ...selfCommand().slice(1),
                    ...(g.rootGiven ? ["--root", g.root] : []),
                    "--store",
                    g.store,
                    "image",
                    "start",
                    id,
                  ],
                  stdin: "null",
                  stdout: "inherit",
                  stderr: "inherit",
                }).output();
                if (start.code !== 0) failed++;
              } catch (e) {
                if (!(e instanceof CapsuleError || e instanceof SysError)) throw e;
                console.error(`capsule: ${e.message}`);
                failed++;
              }
            }
            if (failed) return 1;
          },
        },
        {
          name: "destroyc",
          summary:
            "delete containers from an image with their writable layer and anonymous volumes",
          usage: "<container-id>...",
          args: [1, Infinity],
          flags: [forceFlag],
          run: async ({ flags, args }) => {
            const { destroyContainer } = await import("../image/run.ts");
            const g = globals();
            // As docker rm: each id removed is printed; a failure is reported and the rest go on.
            return await eachOf(
              args,
              (id) =>
                destroyContainer(g.store, g.root, id, flags.force === true, open, g.rootGiven),
            );
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
          summary: "remove named volumes and their data (refused while a container uses one)",
          usage: "<name>...",
          args: [1, Infinity],
          run: async ({ args }) => {
            const { removeVolume } = await import("../image/run.ts");
            return await eachOf(args, (name) => removeVolume(globals().store, name));
          },
        },
      ],
    },
  ];
}
