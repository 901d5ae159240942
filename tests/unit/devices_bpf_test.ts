// cgroup v2 device rules compiled to eBPF, run in an interpreter with the kernel's context
// layout (access_type = access << 16 | type; BPF_DEVCG_DEV_BLOCK 1, CHAR 2; ACC_MKNOD 1,
// READ 2, WRITE 4): the last matching rule decides, as with v1's devices.allow/deny.
import {
  deviceFilterInsns,
  packInsns,
  runDeviceFilter,
} from "../../runtime/cgroups/devices_bpf.ts";
import { DEFAULT_DEVICE_RULES, type LinuxDeviceCgroup } from "../../runtime/cgroups/mod.ts";
import { assertEquals } from "./helpers.ts";

const allowed = (
  rules: LinuxDeviceCgroup[],
  type: "b" | "c",
  major: number,
  minor: number,
  access: string,
) => runDeviceFilter(deviceFilterInsns(rules), { type, major, minor, access });

const CONTAINER = [{ allow: false, access: "rwm" }, ...DEFAULT_DEVICE_RULES];

Deno.test("device filter: deny-all plus runc's defaults", () => {
  assertEquals(allowed(CONTAINER, "c", 1, 3, "rw"), true); // /dev/null
  assertEquals(allowed(CONTAINER, "c", 1, 9, "r"), true); // /dev/urandom
  assertEquals(allowed(CONTAINER, "c", 136, 4, "rw"), true); // /dev/pts/4
  assertEquals(allowed(CONTAINER, "b", 8, 0, "r"), false); // /dev/sda: no
  assertEquals(allowed(CONTAINER, "b", 8, 0, "m"), true); // mknod of anything is allowed...
  assertEquals(allowed(CONTAINER, "b", 8, 0, "rm"), false); // ...but not opening it
  assertEquals(allowed(CONTAINER, "c", 10, 229, "rw"), false); // /dev/fuse
});

Deno.test("device filter: the last matching rule wins; an allow's access holds the request", () => {
  const rules: LinuxDeviceCgroup[] = [
    { allow: true, access: "rwm" },
    { allow: false, type: "c", major: 1, minor: 5, access: "w" },
  ];
  assertEquals(allowed(rules, "c", 1, 5, "r"), true);
  assertEquals(allowed(rules, "c", 1, 5, "w"), false);
  // A deny matches any access it shares with the request (as v1's exception list does): an
  // O_RDWR open is a write too.
  assertEquals(allowed(rules, "c", 1, 5, "rw"), false);
  assertEquals(allowed(rules, "c", 1, 6, "w"), true);
  assertEquals(allowed([], "c", 1, 3, "r"), false); // no rule: deny
  const wild: LinuxDeviceCgroup[] = [{ allow: true, type: "c", major: 4, minor: -1, access: "r" }];
  assertEquals(allowed(wild, "c", 4, 63, "r"), true);
  assertEquals(allowed(wild, "b", 4, 63, "r"), false);
  assertEquals(allowed(wild, "c", 4, 63, "w"), false);
});

Deno.test("device filter: packed as struct bpf_insn", () => {
  const bytes = packInsns(deviceFilterInsns([]));
  // ldxw r2, [r1+0]: code 0x61, dst 2, src 1 -> regs byte 0x12.
  assertEquals([bytes[0], bytes[1]], [0x61, 0x12]);
  // The last instruction is exit (0x95).
  assertEquals(bytes[bytes.length - 8], 0x95);
});

Deno.test("device filter: nothing follows a rule that matches everything (no unreachable code)", () => {
  const insns = deviceFilterInsns(CONTAINER);
  // The deny-all rule is emitted last (rules run in reverse) and ends the program.
  assertEquals(insns.at(-2)!.imm, 0);
  assertEquals(insns.filter((i) => i.code === 0x95).length, CONTAINER.length);
});

Deno.test("device filter: a deny inside an allow is not escaped by asking for more access", () => {
  // capsule's deny-all first, then the config's: /dev/kmsg readable and writable, then writes
  // denied again. v1 leaves "r" in the exception list: an O_RDWR open must fail.
  const rules: LinuxDeviceCgroup[] = [
    { allow: false, access: "rwm" },
    { allow: true, type: "c", major: 1, minor: 11, access: "rw" },
    { allow: false, type: "c", major: 1, minor: 11, access: "w" },
    ...DEFAULT_DEVICE_RULES,
  ];
  assertEquals(allowed(rules, "c", 1, 11, "r"), true);
  assertEquals(allowed(rules, "c", 1, 11, "w"), false);
  assertEquals(allowed(rules, "c", 1, 11, "rw"), false);
  assertEquals(allowed(rules, "c", 1, 11, "m"), true); // the defaults' mknod of any
});

Deno.test("device filter: access letters other than r, w, m are ignored (runc's reading)", () => {
  const rules: LinuxDeviceCgroup[] = [
    { allow: false, access: "rwm" },
    { allow: true, type: "c", major: 1, minor: 5, access: "rwa" },
    { allow: true, type: "c", major: 1, minor: 7, access: "xyz" },
  ];
  assertEquals(allowed(rules, "c", 1, 5, "rw"), true);
  assertEquals(allowed(rules, "c", 1, 5, "m"), false);
  assertEquals(allowed(rules, "c", 1, 7, "r"), false); // no known letter: allows nothing
});
