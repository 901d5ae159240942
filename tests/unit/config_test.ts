// Unit tests of runtime/config.ts: config.json parsing and validation (OCI runtime spec).
import { parseConfig, validateConfig } from "../../runtime/config.ts";
import { defaultSpec, type Spec } from "../../runtime/spec.ts";
import type { SeccompProfile } from "../../runtime/seccomp.ts";
import { checkConfig } from "../../runtime/validate.ts";
import { buildProcessPlan } from "../../runtime/plan.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { parseJson } from "../../runtime/json.ts";
import { assertEquals, assertStringIncludes, assertThrows } from "./helpers.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

function good(): Json {
  return JSON.parse(JSON.stringify(defaultSpec()));
}

/** validateConfig must fail with a CapsuleError whose message includes every part. */
function rejects(obj: unknown, ...parts: string[]): string {
  const e = assertThrows(() => validateConfig(obj), CapsuleError);
  for (const p of parts) assertStringIncludes(e.message, p);
  return e.message;
}

Deno.test("parseConfig: the default spec passes and round-trips", () => {
  const spec = parseConfig(JSON.stringify(defaultSpec()));
  assertEquals(spec.process!.args, ["sh"]);
  assertEquals(spec.root, { path: "rootfs", readonly: true });
  assertEquals(spec.mounts!.length, defaultSpec().mounts!.length);
  assertEquals(spec.linux!.namespaces, defaultSpec().linux!.namespaces);
});

Deno.test("parseConfig: malformed JSON -> CapsuleError saying 'not valid JSON', naming the file", () => {
  for (const text of ["{", "", "{'a': 1}", '{"ociVersion": "1.2.0",}', "nul"]) {
    const e = assertThrows(() => parseConfig(text), CapsuleError, "not valid JSON");
    assertStringIncludes(e.message, "config.json");
  }
  assertThrows(() => parseConfig("{", "/b/config.json"), CapsuleError, "/b/config.json");
});

Deno.test("validateConfig: process.args as a string is rejected, naming process.args", () => {
  const c = good();
  c.process.args = "sh -c true";
  const msg = rejects(c, "process.args");
  assertStringIncludes(msg, "config.json");
});

Deno.test("validateConfig: process.args empty is rejected (nothing to run)", () => {
  const c = good();
  c.process.args = [];
  rejects(c, "process.args");
});

Deno.test("validateConfig: a missing process.cwd is rejected", () => {
  const c = good();
  delete c.process.cwd;
  rejects(c, "process.cwd");
});

Deno.test("validateConfig: a relative process.cwd is rejected (the spec: MUST be absolute)", () => {
  for (const cwd of ["work", "./", "", "../x"]) {
    const c = good();
    c.process.cwd = cwd;
    rejects(c, "process.cwd");
  }
});

Deno.test("validateConfig: unknown fields are tolerated at every level (the spec says so)", () => {
  const c = good();
  c.vendorExtension = { x: 1 };
  c.process.futureField = true;
  c.linux.intelRdt = { closID: "x" };
  c.mounts[0].uidMappings = [];
  const spec = validateConfig(c) as Json;
  assertEquals(spec.process.args, ["sh"]);
});

Deno.test("validateConfig: a namespace type listed twice is rejected", () => {
  const c = good();
  c.linux.namespaces.push({ type: "network", path: "/proc/1/ns/net" });
  rejects(c, "linux.namespaces", "network");
});

Deno.test("validateConfig: an unknown namespace type is rejected", () => {
  const c = good();
  c.linux.namespaces.push({ type: "bogus" });
  rejects(c, "linux.namespaces");
});

Deno.test("validateConfig: a relative namespace path is rejected", () => {
  const c = good();
  c.linux.namespaces = [{ type: "network", path: "proc/1/ns/net" }];
  rejects(c, "linux.namespaces");
});

Deno.test("validateConfig: ociVersion is required and must be 1.x", () => {
  const c = good();
  delete c.ociVersion;
  rejects(c, "ociVersion");
  const d = good();
  d.ociVersion = "2.0.0";
  rejects(d, "ociVersion");
  const e = good();
  e.ociVersion = "1.0.2-dev";
  assertEquals(validateConfig(e).ociVersion, "1.0.2-dev");
});

Deno.test("validateConfig: missing root or process is rejected", () => {
  const c = good();
  delete c.root;
  rejects(c, "root");
  const d = good();
  delete d.process;
  rejects(d, "process");
  const e = good();
  e.root = { path: "" };
  rejects(e, "root.path");
});

Deno.test("validateConfig: a top level that is not an object is rejected", () => {
  for (const v of [null, [], 42, "config", true]) rejects(v);
});

Deno.test("validateConfig: process.user ids must be non-negative integers", () => {
  for (const uid of [-1, 1.5, "0", 2 ** 32]) {
    const c = good();
    c.process.user.uid = uid;
    rejects(c, "process.user.uid");
  }
  const c = good();
  delete c.process.user;
  rejects(c, "process.user");
});

Deno.test("validateConfig: env entries must be KEY=VALUE", () => {
  const c = good();
  c.process.env = ["PATH=/bin", "NOVALUE"];
  rejects(c, "process.env.1");
  const d = good();
  d.process.env = ["EMPTY="];
  assertEquals(validateConfig(d).process!.env, ["EMPTY="]);
});

Deno.test("validateConfig: mounts need a destination; options must be strings", () => {
  const c = good();
  c.mounts.push({ type: "tmpfs", source: "tmpfs" });
  rejects(c, "mounts.6.destination");
  const d = good();
  d.mounts[0].options = "ro,nosuid";
  rejects(d, "mounts.0.options");
});

Deno.test("validateConfig: hook paths must be absolute", () => {
  const c = good();
  c.hooks = { prestart: [{ path: "bin/hook" }] };
  rejects(c, "hooks.prestart.0.path");
  const d = good();
  d.hooks = { poststop: [{ path: "/bin/true", args: ["true"], timeout: 5 }] };
  assertEquals(validateConfig(d).hooks!.poststop![0].path, "/bin/true");
});

Deno.test("validateConfig: masked/readonly paths must be absolute; rootfsPropagation known", () => {
  const c = good();
  c.linux.maskedPaths = ["proc/kcore"];
  rejects(c, "linux.maskedPaths.0");
  const d = good();
  d.linux.rootfsPropagation = "sideways";
  rejects(d, "linux.rootfsPropagation");
});

Deno.test("validateConfig: rlimits need an RLIMIT_* type and numeric soft/hard", () => {
  const c = good();
  c.process.rlimits = [{ type: "NOFILE", soft: 1, hard: 1 }];
  rejects(c, "process.rlimits.0.type");
  const d = good();
  d.process.rlimits = [{ type: "RLIMIT_NOFILE", soft: "1024", hard: 1024 }];
  rejects(d, "process.rlimits.0.soft");
});

Deno.test("config.json: rlimits are uint64, read exactly: 18446744073709551615 (RLIM_INFINITY, as Go writes ^uint64(0)) is unlimited and 18446744073709551614 is itself, as runc takes them; below 0, not an integer or past 2^64-1 is refused", async () => {
  const base = good();
  delete base.process.rlimits;
  const text = JSON.stringify(base).replace(
    '"process":{',
    '"process":{"rlimits":[{"type":"RLIMIT_CORE","soft":18446744073709551615,' +
      '"hard":18446744073709551615},{"type":"RLIMIT_AS","soft":9007199254740991,"hard":' +
      '18446744073709551615},{"type":"RLIMIT_CPU","soft":9007199254740993,"hard":' +
      '18446744073709551614},{"type":"RLIMIT_FSIZE","soft":18446744073709552000,"hard":' +
      "18446744073709552000}],",
  );
  for (const check of [checkConfig, (raw: unknown) => Promise.resolve(validateConfig(raw))]) {
    const spec = await check(parseJson(text));
    assertEquals(buildProcessPlan(spec.process!).rlimits, [
      { resource: 4, soft: "18446744073709551615", hard: "18446744073709551615" },
      { resource: 9, soft: "9007199254740991", hard: "18446744073709551615" },
      { resource: 0, soft: "9007199254740993", hard: "18446744073709551614" },
      // 2^64 as an older capsule wrote it (JSON.stringify of the double): unlimited, as before.
      { resource: 1, soft: "18446744073709551615", hard: "18446744073709551615" },
    ]);
  }
  // What JSON.parse made of RLIM_INFINITY before (the double 2^64) is still unlimited.
  const old = good();
  old.process.rlimits = [{
    type: "RLIMIT_CORE",
    soft: 2 ** 64,
    hard: JSON.parse("18446744073709551615"),
  }];
  assertEquals(buildProcessPlan(validateConfig(old).process!).rlimits, [
    { resource: 4, soft: "18446744073709551615", hard: "18446744073709551615" },
  ]);
  for (const bad of [-1, 1.5, 2 ** 65, JSON.parse("9007199254740993"), -1n, 2n ** 64n + 4096n]) {
    const c = good();
    c.process.rlimits = [{ type: "RLIMIT_NOFILE", soft: 1, hard: bad }];
    rejects(c, "process.rlimits.0.hard", "0 to 18446744073709551615");
    assertEquals(
      await checkConfig(c).then(() => "accepted", (e) => e.message),
      rejects(c),
    );
  }
});

Deno.test("parseConfig: integers past 2^53-1 keep their exact value (linux.resources, seccomp arguments)", () => {
  const c = good();
  c.linux.resources = { memory: { limit: 123456789, swap: 123456789 }, pids: { limit: 987654321 } };
  c.linux.seccomp = {
    defaultAction: "SCMP_ACT_ALLOW",
    syscalls: [{
      names: ["personality"],
      action: "SCMP_ACT_ERRNO",
      args: [{ index: 0, value: 1, valueTwo: 2, op: "SCMP_CMP_MASKED_EQ" }],
    }],
  };
  const text = JSON.stringify(c).replaceAll("123456789", "9223372036854775807")
    .replace("987654321", "-9223372036854775808")
    .replace('"value":1', '"value":18446744073709551615')
    .replace('"valueTwo":2', '"valueTwo":9223372036854775808');
  const spec = parseConfig(text);
  assertEquals(spec.linux!.resources, {
    memory: { limit: 9223372036854775807n, swap: 9223372036854775807n },
    pids: { limit: -9223372036854775808n },
  });
  assertEquals((spec.linux!.seccomp as SeccompProfile).syscalls![0].args![0], {
    index: 0,
    value: 18446744073709551615n,
    valueTwo: 9223372036854775808n,
    op: "SCMP_CMP_MASKED_EQ",
  });
});

Deno.test("config.json: a seccomp argument value is a uint64 (or the negative int64 of the same 64 bits): past that range is refused, naming the field and the range", async () => {
  for (
    const [value, ok] of [
      [18446744073709551615n, true],
      [-9223372036854775808n, true],
      [18446744073709551616n, false],
      [-9223372036854775809n, false],
    ] as const
  ) {
    const c = good();
    c.linux.seccomp = {
      defaultAction: "SCMP_ACT_ALLOW",
      syscalls: [{
        names: ["read"],
        action: "SCMP_ACT_ERRNO",
        args: [{ index: 0, value, op: "SCMP_CMP_EQ" }],
      }],
    };
    if (ok) {
      const arg = (spec: Spec) => (spec.linux!.seccomp as SeccompProfile).syscalls![0].args![0];
      assertEquals(arg(validateConfig(c)).value, value);
      assertEquals(arg(await checkConfig(c)).value, value);
    } else {
      const msg = rejects(
        c,
        "linux.seccomp.syscalls.0.args.0.value",
        "-9223372036854775808 to 18446744073709551615",
      );
      assertEquals(await checkConfig(c).then(() => "accepted", (e) => e.message), msg);
    }
  }
});

Deno.test("config.json: an integer field capsule reads as a number refuses a literal past 2^53-1 naming the field and the value as written, never a rounded one", async () => {
  const cases: [(c: Json) => void, string, string][] = [
    [(c) => c.process.user.uid = 9999999999999999999n, "process.user.uid", "0 to 4294967295"],
    [(c) => c.process.user.gid = 9999999999999999999n, "process.user.gid", "0 to 4294967295"],
    [
      (c) => c.process.user.additionalGids = [9999999999999999999n],
      "process.user.additionalGids.0",
      "0 to 4294967295",
    ],
    [(c) => c.process.oomScoreAdj = 9999999999999999999n, "process.oomScoreAdj", "-1000 to 1000"],
    [
      (c) => c.process.consoleSize = { height: 9999999999999999999n, width: 80 },
      "process.consoleSize.height",
      "0 to 4294967295",
    ],
    [
      (c) => c.hooks = { prestart: [{ path: "/bin/true", timeout: 9999999999999999999n }] },
      "hooks.prestart.0.timeout",
      "1 to 9007199254740991",
    ],
    [
      (c) =>
        c.linux.devices = [{ type: "c", path: "/dev/x", major: 9999999999999999999n, minor: 1 }],
      "linux.devices.0.major",
      "-9007199254740991 to 9007199254740991",
    ],
    [
      (c) => c.linux.uidMappings = [{ containerID: 0, hostID: 9999999999999999999n, size: 1 }],
      "linux.uidMappings.0.hostID",
      "0 to 4294967295",
    ],
  ];
  for (const [mutate, field, range] of cases) {
    const c = good();
    mutate(c);
    const msg = rejects(
      c,
      `${field}: 9999999999999999999 is out of range: must be an integer ${range}`,
    );
    assertEquals(await checkConfig(c).then(() => "accepted", (e) => e.message), msg);
  }
  // From the text, as create reads it.
  const text = JSON.stringify(good()).replace('"uid":0', '"uid":9999999999999999999');
  assertThrows(
    () => parseConfig(text),
    CapsuleError,
    "process.user.uid: 9999999999999999999 is out of range",
  );
});

Deno.test("validateConfig: the error names the file given", () => {
  const c = good();
  c.process.args = "sh";
  const e = assertThrows(() => validateConfig(c, "/b/config.json"), CapsuleError);
  assertStringIncludes(e.message, "/b/config.json");
  assertStringIncludes(e.message, "process.args");
});

// ---- linux.sysctl, hostname, domainname: only what a private namespace holds (runc's rule) ----

function withNs(types: string[], over: (c: Json) => void = () => {}): Json {
  const c = good();
  c.linux.namespaces = types.map((type) => ({ type }));
  delete c.hostname; // the default spec names one
  over(c);
  return c;
}

Deno.test("validateConfig: namespaced sysctls pass with their namespace", () => {
  const c = withNs(["pid", "mount", "network", "ipc", "uts"], (c) => {
    c.linux.sysctl = {
      "net.ipv4.ip_forward": "1",
      "net/ipv4/conf/eth0.100/rp_filter": "1",
      "kernel.shmmax": "1000000",
      "kernel.msgmax": "8192",
      "kernel.sem": "250 32000 32 128",
      "fs.mqueue.msg_max": "20",
      "kernel.domainname": "example.org",
    };
  });
  validateConfig(c);
});

Deno.test("validateConfig: a host-global sysctl is refused, naming the key", () => {
  for (const key of ["kernel.core_pattern", "vm.overcommit_memory", "kernel/core_pattern"]) {
    const c = withNs(["pid", "mount", "network", "ipc", "uts"], (c) => {
      c.linux.sysctl = { [key]: "x" };
    });
    rejects(c, "linux.sysctl", `"${key}"`, "not in a separate kernel namespace");
  }
  rejects(
    withNs(["mount", "network", "ipc", "uts"], (c) => c.linux.sysctl = { "fs.file-max": "1" }),
    '"fs.file-max"',
    "separate kernel namespace",
  );
});

Deno.test("validateConfig: a namespaced sysctl without its namespace names the key and namespace", () => {
  const cases: [string, string[], string][] = [
    ["net.ipv4.ip_forward", ["mount", "ipc", "uts"], "network"],
    ["kernel.shmmax", ["mount", "network", "uts"], "ipc"],
    ["kernel.msgmnb", ["mount", "network", "uts"], "ipc"],
    ["fs.mqueue.queues_max", ["mount", "network", "uts"], "ipc"],
    ["kernel.domainname", ["mount", "network", "ipc"], "uts"],
  ];
  for (const [key, types, ns] of cases) {
    rejects(withNs(types, (c) => c.linux.sysctl = { [key]: "1" }), `"${key}"`, `"${ns}"`);
  }
});

Deno.test("validateConfig: kernel.hostname conflicts with the hostname field; bad key paths are refused", () => {
  const all = ["mount", "network", "ipc", "uts"];
  rejects(withNs(all, (c) => c.linux.sysctl = { "kernel.hostname": "h" }), "hostname");
  for (const key of ["net..ipv4", "net.ipv4.", "net/../kernel/core_pattern", ""]) {
    rejects(withNs(all, (c) => c.linux.sysctl = { [key]: "1" }), "linux.sysctl");
  }
});

Deno.test("validateConfig: hostname and domainname need a private UTS namespace", () => {
  rejects(withNs(["mount"], (c) => c.hostname = "h"), "hostname", '"uts"');
  rejects(withNs(["mount"], (c) => c.domainname = "d"), "domainname", '"uts"');
  validateConfig(withNs(["mount", "uts"], (c) => {
    c.hostname = "h";
    c.domainname = "d";
  }));
});

Deno.test("validateConfig: a namespace joined by path counts as private unless it is the host's own", () => {
  const c = withNs(["mount"], (c) => {
    c.linux.namespaces.push({ type: "network", path: "/proc/self/ns/net" });
    c.linux.namespaces.push({ type: "uts", path: "/proc/self/ns/uts" });
    c.linux.sysctl = { "net.ipv4.ip_forward": "1" };
  });
  // This process's own namespaces are the "host" ones.
  rejects(c, '"net.ipv4.ip_forward"', "host's network namespace");
  c.linux.sysctl = {};
  c.hostname = "h";
  rejects(c, "hostname", "host's UTS namespace");
  // A path that is not the host's (here: a plain file stands for another namespace).
  const other = Deno.makeTempFileSync();
  try {
    c.linux.namespaces = [{ type: "mount" }, { type: "network", path: other }, {
      type: "uts",
      path: other,
    }];
    c.linux.sysctl = { "net.ipv4.ip_forward": "1" };
    validateConfig(c);
  } finally {
    Deno.removeSync(other);
  }
});
