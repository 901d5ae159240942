// Unit tests of image/runspec.ts: the spec `image run` builds from an image's config and its
// flags, and the parsing of -v, -e, -l and users.
import {
  buildSpec,
  defaultNofile,
  mergeEnv,
  parseLabels,
  parseUlimits,
  parseVolume,
  parseVolumes,
  resolveUser,
  type RunFlags,
  volumeMount,
} from "../../image/runspec.ts";
import type { ImageConfig } from "../../image/store.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assertEquals, assertThrows } from "./helpers.ts";

const flags = (over: Partial<RunFlags> = {}): RunFlags => ({
  id: "c1",
  image: "img",
  command: [],
  ...over,
});

const spec = (config: ImageConfig, f: Partial<RunFlags> = {}, env: Record<string, string> = {}) =>
  buildSpec({
    config,
    flags: flags(f),
    rootfs: "/store/containers/c1/merged",
    mounts: [],
    hostEnv: (k) => env[k],
    passwd: "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/false\n",
    group: "root:x:0:\nadm:x:4:\n",
  });

Deno.test("buildSpec: Entrypoint + Cmd, a command replaces Cmd only", () => {
  const cfg = { Entrypoint: ["/init", "--"], Cmd: ["serve", "-v"] };
  assertEquals(spec(cfg).process!.args, ["/init", "--", "serve", "-v"]);
  assertEquals(spec(cfg, { command: ["sh", "-c", "ls"] }).process!.args, [
    "/init",
    "--",
    "sh",
    "-c",
    "ls",
  ]);
  assertEquals(spec({ Cmd: ["redis-server"] }).process!.args, ["redis-server"]);
  assertEquals(spec(cfg, { entrypoint: "", command: ["x"] }).process!.args, ["x"]);
  assertEquals(spec(cfg, { entrypoint: "sh", command: ["-c", "id"] }).process!.args, [
    "sh",
    "-c",
    "id",
  ]);
});

Deno.test("buildSpec: no command anywhere is a clear error", () => {
  assertThrows(() => spec({}), CapsuleError, 'Image "img" has no command');
  assertThrows(() => spec({ Entrypoint: null, Cmd: null }), CapsuleError, "capsule image run img");
});

Deno.test("buildSpec: env is image first, then -e; -e KEY takes the host value", () => {
  const s = spec(
    { Env: ["PATH=/opt/bin:/bin", "FOO=image", "KEEP=1"], Cmd: ["sh"] },
    { env: ["FOO=flag", "FROMHOST", "UNSET", "NEW=a=b"] },
    { FROMHOST: "h" },
  );
  assertEquals(s.process!.env, [
    "PATH=/opt/bin:/bin",
    "FOO=flag",
    "KEEP=1",
    "HOSTNAME=c1",
    "FROMHOST=h",
    "NEW=a=b",
  ]);
  assertThrows(() => spec({ Cmd: ["sh"] }, { env: ["=x"] }), CapsuleError, "Invalid environment");
});

Deno.test("buildSpec: cwd, hostname, user, root, read-only", () => {
  const s = spec({ Cmd: ["sh"], WorkingDir: "/srv", User: "www" });
  assertEquals(s.process!.cwd, "/srv");
  assertEquals(s.process!.user, { uid: 33, gid: 34 });
  assertEquals(s.hostname, "c1");
  assertEquals(s.root, { path: "/store/containers/c1/merged", readonly: false });
  const t = spec({ Cmd: ["sh"], WorkingDir: "/srv" }, {
    cwd: "/tmp",
    hostname: "web",
    user: "1000:adm",
    readOnly: true,
  });
  assertEquals([t.process!.cwd, t.hostname, t.root!.readonly], ["/tmp", "web", true]);
  assertEquals(t.process!.user, { uid: 1000, gid: 4 });
  assertThrows(() => spec({ Cmd: ["sh"] }, { cwd: "rel" }), CapsuleError, "absolute path");
  assertThrows(() => spec({ Cmd: ["sh"] }, { user: "nobody" }), CapsuleError, "/etc/passwd");
});

Deno.test("buildSpec: labels become annotations, -c and -m resources", () => {
  const s = spec({ Cmd: ["sh"], Labels: { a: "image", b: "image" } }, {
    labels: ["b=flag", "c=x=y"],
    cpuShares: 512,
    memory: 512 * 1024 * 1024,
  });
  assertEquals(s.annotations, { a: "image", b: "flag", c: "x=y" });
  const r = s.linux!.resources as Record<string, unknown>;
  assertEquals(r.cpu, { shares: 512 });
  assertEquals(r.memory, { limit: 536870912 });
  assertThrows(() => spec({ Cmd: ["sh"] }, { cpuShares: 1 }), CapsuleError, "cpu shares");
  assertThrows(() => parseLabels(["novalue"]), CapsuleError, "KEY=VALUE");
});

Deno.test("buildSpec: volume mounts come after the default mounts", () => {
  const m = volumeMount(
    { kind: "bind", source: "/h", destination: "/data", readonly: true },
    "/h",
  );
  const s = buildSpec({
    config: { Cmd: ["sh"] },
    flags: flags(),
    rootfs: "/r",
    mounts: [m],
  });
  assertEquals(s.mounts!.at(-1), {
    destination: "/data",
    type: "bind",
    source: "/h",
    options: ["rbind", "ro", "nosuid", "nodev"],
  });
  assertEquals(s.mounts![0].destination, "/proc");
});

Deno.test("parseVolume: anonymous, named, host, modes", () => {
  assertEquals(parseVolume("/data"), { kind: "anon", destination: "/data", readonly: false });
  assertEquals(parseVolume("/data/:ro"), { kind: "anon", destination: "/data", readonly: true });
  assertEquals(parseVolume("db:/var/lib/db"), {
    kind: "named",
    name: "db",
    destination: "/var/lib/db",
    readonly: false,
  });
  assertEquals(parseVolume("/srv/www:/www:ro"), {
    kind: "bind",
    source: "/srv/www",
    destination: "/www",
    readonly: true,
  });
  assertEquals(parseVolume("./here:/x:rw").kind, "bind");
  assertThrows(() => parseVolume("data"), CapsuleError, "absolute path");
  assertThrows(() => parseVolume("/"), CapsuleError, "root cannot be a volume");
  assertThrows(() => parseVolume("a:b:c:d"), CapsuleError, "Invalid volume");
  assertThrows(() => parseVolume("bad name!:/x"), CapsuleError, "neither a host path");
  assertThrows(() => parseVolumes(["/a", "v:/a/"]), CapsuleError, "given twice");
});

Deno.test("mergeEnv and resolveUser", () => {
  assertEquals(mergeEnv(["A=1", "B=2"], ["A=3", "C"]), ["A=3", "B=2", "C"]);
  assertEquals(resolveUser("33", "www:x:33:34::/:/bin/false\n", undefined), { uid: 33, gid: 34 });
  assertEquals(resolveUser("5:6", undefined, undefined), { uid: 5, gid: 6 });
});

Deno.test("buildSpec: -m below 6 MiB is refused naming the minimum; 0 and -1 mean no limit", () => {
  const min = "minimum memory limit allowed is 6MB (6291456 bytes";
  assertThrows(() => spec({ Cmd: ["sh"] }, { memory: 512 }), CapsuleError, min);
  assertThrows(() => spec({ Cmd: ["sh"] }, { memory: 6291455 }), CapsuleError, min);
  const ok = spec({ Cmd: ["sh"] }, { memory: 6291456 }).linux!.resources as Record<
    string,
    unknown
  >;
  assertEquals(ok.memory, { limit: 6291456 });
  const zero = spec({ Cmd: ["sh"] }, { memory: 0 }).linux!.resources as Record<string, unknown>;
  assertEquals(zero.memory, undefined);
  const inf = spec({ Cmd: ["sh"] }, { memory: -1 }).linux!.resources as Record<string, unknown>;
  assertEquals(inf.memory, { limit: -1 });
});

Deno.test("--ulimit: docker's syntax; the default nofile is capsule's own hard limit", () => {
  assertEquals(parseUlimits(["nofile=100:200", "nproc=50", "nofile=300:400"]), [
    { type: "RLIMIT_NOFILE", soft: 300, hard: 400 },
    { type: "RLIMIT_NPROC", soft: 50, hard: 50 },
  ]);
  for (const bad of ["nofile", "nofile=a", "files=1", "nofile=-2", "nofile=2:1", "NOFILE=1"]) {
    assertThrows(() => parseUlimits([bad]), CapsuleError, "--ulimit");
  }
  // -1 (docker's) or "unlimited": no limit, as config.json carries it (RLIM_INFINITY, 2^64-1,
  // exactly as Go writes ^uint64(0): a bigint, written by stringifyJson).
  const inf = 18446744073709551615n;
  assertEquals(parseUlimits(["memlock=-1:-1", "core=0:unlimited", "stack=-1"]), [
    { type: "RLIMIT_MEMLOCK", soft: inf, hard: inf },
    { type: "RLIMIT_CORE", soft: 0, hard: inf },
    { type: "RLIMIT_STACK", soft: inf, hard: inf },
  ]);
  assertThrows(
    () => parseUlimits(["nofile=-1:1024"]),
    CapsuleError,
    "soft limit unlimited is above the hard limit 1024",
  );
  assertEquals(defaultNofile([1024n, 524288n]), {
    type: "RLIMIT_NOFILE",
    soft: 524288,
    hard: 524288,
  });
  assertEquals(defaultNofile([1024n, 1n << 40n]).hard, 1048576);
  assertEquals(defaultNofile(undefined).hard, 1024);
  const s = buildSpec({
    config: { Cmd: ["sh"] },
    flags: flags({ ulimits: ["core=0"] }),
    rootfs: "/r",
    mounts: [],
    nofile: [1024n, 65536n],
  });
  assertEquals(s.process!.rlimits, [
    { type: "RLIMIT_NOFILE", soft: 65536, hard: 65536 },
    { type: "RLIMIT_CORE", soft: 0, hard: 0 },
  ]);
  const own = buildSpec({
    config: { Cmd: ["sh"] },
    flags: flags({ ulimits: ["nofile=10:20"] }),
    rootfs: "/r",
    mounts: [],
    nofile: [1024n, 65536n],
  });
  assertEquals(own.process!.rlimits, [{ type: "RLIMIT_NOFILE", soft: 10, hard: 20 }]);
});
