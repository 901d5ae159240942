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
import { assertEquals, assertThrows } from "./helpers.ts";

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

Deno.test("seccomp: conditions on the same argument are ORed, as separate rules (runc)", () => {
  // runc gives libseccomp one rule per condition when an argument index repeats (ANDed they
  // could never both hold); a miss falls through to the next rule of that syscall.
  const p: SeccompProfile = {
    defaultAction: "SCMP_ACT_ERRNO",
    syscalls: [
      {
        names: ["process_vm_readv"],
        action: "SCMP_ACT_ALLOW",
        args: [{ index: 0, value: 100, op: "SCMP_CMP_EQ" }, {
          index: 0,
          value: 9001,
          op: "SCMP_CMP_EQ",
        }],
      },
      {
        names: ["process_vm_writev"],
        action: "SCMP_ACT_ERRNO",
        errnoRet: 55,
        args: [{ index: 0, value: 1337, op: "SCMP_CMP_EQ" }, {
          index: 0,
          value: 2020,
          op: "SCMP_CMP_EQ",
        }],
      },
      {
        names: ["dup3"],
        action: "SCMP_ACT_ALLOW",
        args: [{ index: 0, value: 1, op: "SCMP_CMP_EQ" }],
      },
      {
        names: ["dup3"],
        action: "SCMP_ACT_ALLOW",
        args: [{ index: 0, value: 2, op: "SCMP_CMP_GT" }],
      },
      {
        names: ["kcmp"],
        action: "SCMP_ACT_ALLOW",
        args: [{ index: 0, value: 0, op: "SCMP_CMP_EQ" }, {
          index: 1,
          value: 1337,
          op: "SCMP_CMP_EQ",
        }],
      },
    ],
  };
  assertEquals(run(p, "process_vm_readv", [100n]), SECCOMP_RET.ALLOW);
  assertEquals(run(p, "process_vm_readv", [9001n]), SECCOMP_RET.ALLOW);
  assertEquals(run(p, "process_vm_readv", [0n]), errno(1));
  assertEquals(run(p, "process_vm_writev", [1337n]), errno(55));
  assertEquals(run(p, "process_vm_writev", [2020n]), errno(55));
  assertEquals(run(p, "process_vm_writev", [0n]), errno(1));
  // Different rules of one syscall: either may allow it.
  assertEquals([0n, 1n, 2n, 3n].map((fd) => run(p, "dup3", [fd])), [
    errno(1),
    SECCOMP_RET.ALLOW,
    errno(1),
    SECCOMP_RET.ALLOW,
  ]);
  // Different arguments in one rule stay ANDed.
  assertEquals(run(p, "kcmp", [0n, 1337n]), SECCOMP_RET.ALLOW);
  assertEquals(run(p, "kcmp", [0n, 0n]), errno(1));
  assertEquals(run(p, "kcmp", [500n, 1337n]), errno(1));
});

Deno.test("seccomp: a number above the profile's highest syscall gets ENOSYS (runc's stub)", () => {
  const ENOSYS = 38;
  const p: SeccompProfile = {
    defaultAction: "SCMP_ACT_ERRNO",
    architectures: ["SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_X86_64"],
    syscalls: [{ names: ["read", "write", "dup3", "no_such_call"], action: "SCMP_ACT_ALLOW" }],
  };
  const prog = compileSeccomp(p).program;
  // A syscall newer than the profile (libc falls back on ENOSYS, never on EPERM).
  assertEquals(runFilter(prog, X86, 1000), errno(ENOSYS));
  assertEquals(runFilter(prog, X86, NR.dup3 + 1), errno(ENOSYS));
  // Up to the highest one it names: the rules, then the default.
  assertEquals(runFilter(prog, X86, NR.dup3), SECCOMP_RET.ALLOW);
  assertEquals(runFilter(prog, X86, NR.mkdir), errno(1));
  // Other ABIs keep the default (capsule compiles rules for x86_64 only).
  assertEquals(runFilter(prog, X86, 1000 | 0x40000000), errno(1));
  assertEquals(runFilter(prog, AUDIT_ARCH.I386, 1000), errno(1));
  // As runc: no stub when the default allows, when it is ENOSYS already, or when x86_64 is
  // not among the profile's architectures.
  const allow = compileSeccomp({ ...p, defaultAction: "SCMP_ACT_ALLOW" }).program;
  assertEquals(runFilter(allow, X86, 1000), SECCOMP_RET.ALLOW);
  const log = compileSeccomp({ ...p, defaultAction: "SCMP_ACT_LOG" }).program;
  assertEquals(runFilter(log, X86, 1000), SECCOMP_RET.LOG);
  const noArch = compileSeccomp({ ...p, architectures: undefined }).program;
  assertEquals(runFilter(noArch, X86, 1000), errno(1));
  const native = compileSeccomp({ ...p, architectures: ["SCMP_ARCH_NATIVE"] }).program;
  assertEquals(runFilter(native, X86, 1000), errno(ENOSYS));
  const kill = compileSeccomp({ ...p, defaultAction: "SCMP_ACT_KILL_PROCESS" }).program;
  assertEquals(runFilter(kill, X86, 1000), errno(ENOSYS));
  assertEquals(runFilter(kill, X86, NR.mkdir), SECCOMP_RET.KILL_PROCESS);
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

Deno.test("seccomp: an argument value that is not an exact integer (a fraction, a double past 2^53-1) is refused, never compared as another number", () => {
  // JSON.parse reads 18446744073709551615 as 2^64, which BigInt.asUintN(64) would make 0 (capsule
  // reads config.json with parseJson, which gives the exact bigint).
  for (
    const [value, valueTwo] of [[JSON.parse("18446744073709551615"), undefined], [1.5, undefined], [
      0xff,
      2 ** 53,
    ]]
  ) {
    const p: SeccompProfile = {
      defaultAction: "SCMP_ACT_ALLOW",
      syscalls: [{
        names: ["personality"],
        action: "SCMP_ACT_ERRNO",
        args: [{ index: 0, value: value!, valueTwo, op: "SCMP_CMP_MASKED_EQ" }],
      }],
    };
    const e = assertThrows(() => compileSeccomp(p), CapsuleError);
    assertEquals(
      e.message.startsWith("Invalid linux.seccomp syscalls.0: argument 0's value"),
      true,
      e.message,
    );
  }
  // The largest integer JSON carries exactly is taken, and -1 is all 64 bits set.
  const minus1: SeccompProfile = {
    defaultAction: "SCMP_ACT_ALLOW",
    syscalls: [{
      names: ["personality"],
      action: "SCMP_ACT_ERRNO",
      args: [{ index: 0, value: -1, op: "SCMP_CMP_EQ" }],
    }],
  };
  assertEquals(run(minus1, "personality", [0xffffffffffffffffn]), errno(1));
  assertEquals(run(minus1, "personality", [0xffffffffn]), SECCOMP_RET.ALLOW);
  compileSeccomp({
    defaultAction: "SCMP_ACT_ALLOW",
    syscalls: [{
      names: ["personality"],
      action: "SCMP_ACT_ERRNO",
      args: [{ index: 0, value: 2 ** 53 - 1, op: "SCMP_CMP_EQ" }],
    }],
  });
});

Deno.test("seccomp: uint64 argument values past 2^53-1 (bigints, as parseJson reads them) are compared exactly, the same as the negative int64 of the same 64 bits", () => {
  const profile = (value: number | bigint, valueTwo: number | bigint | undefined, op: string) =>
    ({
      defaultAction: "SCMP_ACT_ALLOW",
      syscalls: [{
        names: ["personality"],
        action: "SCMP_ACT_ERRNO",
        args: [{ index: 0, value, valueTwo, op }],
      }],
    }) satisfies SeccompProfile;
  for (
    const [big, negative] of [
      [18446744073709551615n, -1],
      [18446744073709551614n, -2],
      [9223372036854775808n, -9223372036854775808n],
      [9223372036854775807n, 9223372036854775807n],
    ] as const
  ) {
    for (const op of ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_GT", "SCMP_CMP_LE"]) {
      assertEquals(
        compileSeccomp(profile(big, undefined, op)).program,
        compileSeccomp(profile(negative, undefined, op)).program,
        `${big} ${op}`,
      );
    }
    assertEquals(run(profile(big, undefined, "SCMP_CMP_EQ"), "personality", [big]), errno(1));
    assertEquals(
      run(profile(big, undefined, "SCMP_CMP_EQ"), "personality", [big - 1n]),
      SECCOMP_RET.ALLOW,
    );
  }
  // A mask and a datum past 2^53-1: (arg & value) == valueTwo, exactly.
  const masked = profile(0x8000000000000001n, 0x8000000000000000n, "SCMP_CMP_MASKED_EQ");
  assertEquals(run(masked, "personality", [0x8000000000000000n]), errno(1));
  assertEquals(run(masked, "personality", [0x8000000000000002n]), errno(1));
  assertEquals(run(masked, "personality", [0x8000000000000001n]), SECCOMP_RET.ALLOW);
  assertEquals(run(masked, "personality", [0x1n]), SECCOMP_RET.ALLOW);
});
