// Unit tests of runtime/spec.ts: the starter config `capsule spec` writes (runc's).
import { assert, assertEquals } from "../helpers.ts";
import { defaultSpec, rootlessSpec, starterSpec } from "../../runtime/spec.ts";

const nsTypes = (s: ReturnType<typeof starterSpec>) => s.linux!.namespaces!.map((n) => n.type);

Deno.test("starterSpec: runc's: interactive sh, tty group on devpts, ro cgroup mount", () => {
  const s = starterSpec(false);
  assertEquals(s.process!.args, ["sh"]);
  assertEquals(s.process!.terminal, true);
  assert(s.mounts!.find((m) => m.type === "devpts")!.options!.includes("gid=5"));
  const cg = s.mounts!.find((m) => m.destination === "/sys/fs/cgroup")!;
  assertEquals([cg.type, cg.options!.includes("ro")], ["cgroup", true]);
  // The base config is left as it was (no terminal for captured output).
  assertEquals(defaultSpec().process!.terminal, false);
});

Deno.test("starterSpec: a cgroup namespace on cgroup v2 hosts only, as runc's", () => {
  assertEquals(nsTypes(starterSpec(false)), ["pid", "network", "ipc", "uts", "mount"]);
  assertEquals(nsTypes(starterSpec(true)), ["pid", "network", "ipc", "uts", "mount", "cgroup"]);
});

Deno.test("rootlessSpec: a user namespace and no uid=/gid= mount options", () => {
  const s = rootlessSpec(1000, 1000);
  assert(nsTypes(s).includes("user"));
  assert(s.mounts!.every((m) => !(m.options ?? []).some((o) => /^[ug]id=/.test(o))));
  assertEquals(s.linux!.uidMappings, [{ containerID: 0, hostID: 1000, size: 1 }]);
});
