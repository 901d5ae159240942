// User namespaces made by create (linux.uidMappings/gidMappings): the host uid that container
// root maps to, the single-threaded helpers that enter the namespace, and the maps written
// from the host. See README "user namespaces" and runtime spec config-linux "User namespace
// mappings".
import { CapsuleError } from "./errors.ts";
import type { Spec } from "./spec.ts";

/** One line of uid_map/gid_map: `size` ids from `containerID` map to `hostID` on the host. */
export type IdMap = { containerID: number; hostID: number; size: number };

/**
 * The uid and gid mappings of config.json. Throws CapsuleError when either is missing, empty or
 * holds a value that is not a non-negative integer.
 */
export function idMappings(raw: Spec): { uid: IdMap[]; gid: IdMap[] } {
  const ok = (m: unknown): m is IdMap[] =>
    Array.isArray(m) && m.length > 0 &&
    m.every((x) =>
      [x?.containerID, x?.hostID, x?.size].every((v) => Number.isInteger(v) && v >= 0)
    );
  const uid = raw.linux?.uidMappings, gid = raw.linux?.gidMappings;
  if (!ok(uid) || !ok(gid)) {
    throw new CapsuleError(
      `Invalid config.json: linux.uidMappings and linux.gidMappings are needed with a user ` +
        `namespace (e.g. [{"containerID": 0, "hostID": 100000, "size": 65536}])`,
    );
  }
  return { uid, gid };
}

/** The host uid and gid that the container's root maps to; throws CapsuleError if unmapped. */
export function mappedRoot(raw: Spec): { uid: number; gid: number } {
  const { uid, gid } = idMappings(raw);
  const host = (m: IdMap[], what: string) => {
    const r = m.find((x) => x.containerID === 0);
    if (!r) {
      throw new CapsuleError(
        `Invalid config.json: linux.${what}Mappings must map the container's ${what} 0`,
      );
    }
    return r.hostID;
  };
  return { uid: host(uid, "uid"), gid: host(gid, "gid") };
}

/**
 * The command that runs the init in a new user namespace: setpriv (as host root) becomes the
 * host uid that container root maps to, unshare(1) makes the user namespace (and, with
 * `newPid`, the PID namespace it owns, so /proc can be mounted inside) and forks PID 1, which
 * waits for a line on fd `gate` (the maps are written meanwhile), then execs the init.
 * `tools` are the absolute paths of setpriv ("" when rootless) and unshare.
 */
export function userNsWrapper(
  owner: { uid: number; gid: number },
  rootless: boolean,
  newPid: boolean,
  tools: [setpriv: string, unshare: string],
  gate: number,
): string[] {
  return [
    ...(rootless
      ? []
      : [tools[0], `--reuid=${owner.uid}`, `--regid=${owner.gid}`, "--clear-groups", "--"]),
    tools[1],
    "--user",
    ...(newPid ? ["--pid"] : []),
    "--fork",
    "--kill-child",
    "--",
    "/bin/bash", // dash cannot read from an fd above 9
    "-c",
    // bash would pass on PWD (a host path) and SHLVL: nothing of ours reaches the init
    `read -r _ <&${gate}; unset PWD OLDPWD SHLVL; exec "$0" "$@"`,
  ];
}

/**
 * The user namespace's uid_map and gid_map, written from here (host root) before the init
 * execs: any number of mappings, as the OCI spec gives them. Throws CapsuleError with the
 * kernel's reason when it refuses a map.
 */
export function writeIdMappings(id: string, pid: number, raw: Spec): void {
  const { uid, gid } = idMappings(raw);
  const text = (m: IdMap[]) => m.map((x) => `${x.containerID} ${x.hostID} ${x.size}`).join("\n");
  // An unprivileged user may map only itself, and only once setgroups is denied.
  if (Deno.uid() !== 0) Deno.writeTextFileSync(`/proc/${pid}/setgroups`, "deny");
  for (const [file, maps] of [["uid_map", uid], ["gid_map", gid]] as const) {
    try {
      Deno.writeTextFileSync(`/proc/${pid}/${file}`, text(maps) + "\n");
    } catch (e) {
      throw new CapsuleError(
        `Cannot create container "${id}": the kernel refused ${file} "${text(maps)}": ` +
          `${(e as Error).message}`,
      );
    }
  }
}
