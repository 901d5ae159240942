// The seccomp compiler, checked by running its BPF in an interpreter with the kernel's
// semantics (seccomp_data: nr at 0, arch at 4, args at 16 + 8 * i, little-endian).
import {
  AUDIT_ARCH,
  compileSeccomp,
  runFilter,
  SECCOMP_RET,
  type SeccompProfile,
} from "../../runtime/seccomp.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { SYSCALLS_X86_64 as NR } from "../../runtime/syscalls_x86_64.ts";
import { assertEquals, assertThrows } from "./fake_rootfs_ops.ts";

const X86 = AUDIT_ARCH.X86_64;
const errno = (e: number) => (SECCOMP_RET.ERRNO | e) >>> 0;
const run = (p: SeccompProfile, name: string, args: bigint[] = [], arch: number = X86) =>
  runFilter(compileSeccomp(p).program, arch, NR[name], args);

Deno.test("seccomp: syscall numbers are the kernel's (x86_64)", () => {
  assertEquals([NR.read, NR.write, NR.execve, NR.clone3, NR.mkdir, NR.personality], [
    0,
    1,
    59,
    435,
    83,
    135,
  ]);
});

Deno.test("seccomp: allow-list with a default errno", () => {
  const p: SeccompProfile = {
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: 38,
    syscalls: [{ names: ["read", "write", "no_such_call"], action: "SCMP_ACT_ALLOW" }],
  };
  assertEquals(run(p, "read"), SECCOMP_RET.ALLOW);
  assertEquals(run(p, "write"), SECCOMP_RET.ALLOW);
  assertEquals(run(p, "mkdir"), errno(38));
});

Deno.test("seccomp: deny-list; errno defaults to EPERM; kill actions", () => {
  const p: SeccompProfile = {
    defaultAction: "SCMP_ACT_ALLOW",
    syscalls: [
      { names: ["mkdir", "mkdirat"], action: "SCMP_ACT_ERRNO" },
      { names: ["reboot"], action: "SCMP_ACT_KILL_PROCESS" },
      { names: ["kexec_load"], action: "SCMP_ACT_KILL" },
    ],
  };
  assertEquals(run(p, "mkdir"), errno(1));
  assertEquals(run(p, "mkdirat"), errno(1));
  assertEquals(run(p, "reboot"), SECCOMP_RET.KILL_PROCESS);
  assertEquals(run(p, "kexec_load"), SECCOMP_RET.KILL_THREAD);
  assertEquals(run(p, "read"), SECCOMP_RET.ALLOW);
});

Deno.test("seccomp: another architecture or the x32 ABI never bypasses a deny-list", () => {
  const p: SeccompProfile = {
    defaultAction: "SCMP_ACT_ALLOW",
    syscalls: [{ names: ["mkdir"], action: "SCMP_ACT_ERRNO" }],
  };
  assertEquals(run(p, "mkdir", [], AUDIT_ARCH.I386), SECCOMP_RET.KILL_PROCESS);
  const prog = compileSeccomp(p).program;
  assertEquals(runFilter(prog, X86, NR.mkdir | 0x40000000), SECCOMP_RET.KILL_PROCESS);
  // With a default that denies, a foreign architecture gets that default.
  const strict: SeccompProfile = { defaultAction: "SCMP_ACT_ERRNO", syscalls: [] };
  assertEquals(run(strict, "read", [], AUDIT_ARCH.I386), errno(1));
});

Deno.test("seccomp: argument conditions (EQ, NE, MASKED_EQ, LT, LE, GT, GE), 64-bit", () => {
  const rule = (op: string, value: number, valueTwo?: number): SeccompProfile => ({
    defaultAction: "SCMP_ACT_ERRNO",
    syscalls: [{
      names: ["personality"],
      action: "SCMP_ACT_ALLOW",
      args: [{ index: 0, value, valueTwo, op }],
    }],
  });
  const ok = SECCOMP_RET.ALLOW, no = errno(1);
  const cases: [SeccompProfile, bigint, number][] = [
    [rule("SCMP_CMP_EQ", 8), 8n, ok],
    [rule("SCMP_CMP_EQ", 8), 8n + (1n << 32n), no], // the high word counts
    [rule("SCMP_CMP_NE", 8), 9n, ok],
    [rule("SCMP_CMP_NE", 8), 8n, no],
    [rule("SCMP_CMP_NE", 8), 8n + (1n << 32n), ok],
    [rule("SCMP_CMP_MASKED_EQ", 0xff, 0x08), 0x1208n, ok],
    [rule("SCMP_CMP_MASKED_EQ", 0xff, 0x08), 0x1209n, no],
    [rule("SCMP_CMP_LT", 10), 9n, ok],
    [rule("SCMP_CMP_LT", 10), 10n, no],
    [rule("SCMP_CMP_LE", 10), 10n, ok],
    [rule("SCMP_CMP_LE", 10), 11n, no],
    [rule("SCMP_CMP_GT", 10), 11n, ok],
    [rule("SCMP_CMP_GT", 10), 10n, no],
    [rule("SCMP_CMP_GT", 10), 1n << 33n, ok],
    [rule("SCMP_CMP_GE", 10), 10n, ok],
    [rule("SCMP_CMP_GE", 10), 9n, no],
    [rule("SCMP_CMP_LT", 10), 1n << 33n, no],
  ];
  for (const [p, arg, want] of cases) {
    const a = p.syscalls![0].args![0];
    assertEquals(run(p, "personality", [arg]), want, `${a.op} ${a.value} on ${arg}`);
  }
});

Deno.test("seccomp: several conditions are ANDed; a failed rule falls through to the next", () => {
  const p: SeccompProfile = {
    defaultAction: "SCMP_ACT_ERRNO",
    syscalls: [
      {
        names: ["socket"],
        action: "SCMP_ACT_ALLOW",
        args: [{ index: 0, value: 1, op: "SCMP_CMP_EQ" }, {
          index: 1,
          value: 1,
          op: "SCMP_CMP_EQ",
        }],
      },
      { names: ["socket"], action: "SCMP_ACT_ERRNO", errnoRet: 97 },
      { names: ["read"], action: "SCMP_ACT_ALLOW" },
    ],
  };
  assertEquals(run(p, "socket", [1n, 1n]), SECCOMP_RET.ALLOW);
  assertEquals(run(p, "socket", [1n, 2n]), errno(97));
  assertEquals(run(p, "socket", [2n, 1n]), errno(97));
  assertEquals(run(p, "read"), SECCOMP_RET.ALLOW); // nr reloaded after the argument checks
});

Deno.test("seccomp: what cannot be expressed is refused by name", () => {
  assertThrows(
    () => compileSeccomp({ defaultAction: "SCMP_ACT_NOTIFY" }),
    CapsuleError,
    "SCMP_ACT_NOTIFY",
  );
  assertThrows(
    () => compileSeccomp({ defaultAction: "SCMP_ACT_ALLOW", flags: ["SECCOMP_FILTER_FLAG_NEW"] }),
    CapsuleError,
    "SECCOMP_FILTER_FLAG_NEW",
  );
  assertThrows(
    () =>
      compileSeccomp({
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [{
          names: ["read"],
          action: "SCMP_ACT_ERRNO",
          args: [{ index: 0, value: 1, op: "SCMP_CMP_FOO" }],
        }],
      }),
    CapsuleError,
    "SCMP_CMP_FOO",
  );
});
