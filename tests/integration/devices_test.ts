// Device rules: a device node listed in linux.devices is created, but only the cgroup's rules
// (linux.resources.devices, behind deny-all) decide whether it can be used, by the program and
// by exec alike (runc's dev.bats "device cgroup deny").
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  makeBundle,
  removeAll,
  rootTest,
} from "../helpers.ts";

rootTest(
  "a denied device of linux.devices exists but cannot be opened, from run or exec",
  async (root) => {
    const b = await makeBundle("sleep 30", (s) => {
      s.linux!.resources = { devices: [{ allow: false, access: "rwm" }] } as never;
      s.linux!.devices = [{ path: "/dev/kmsg", type: "c", major: 1, minor: 11, fileMode: 0o666 }];
    });
    try {
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "dev1"])).code, 0);
      const e = await capsule(root, [
        "exec",
        "dev1",
        "sh",
        "-c",
        "ls -l /dev/kmsg; echo probe >/dev/kmsg",
      ]);
      assert(e.code !== 0, `writing /dev/kmsg was allowed: ${e.stdout}`);
      assertMatch(e.stdout, /\/dev\/kmsg/);
      assertMatch(e.stderr, /Operation not permitted/);
      const r = await capsule(root, ["exec", "dev1", "sh", "-c", "head -n 1 /dev/kmsg"]);
      assert(r.code !== 0, "reading /dev/kmsg was allowed");
    } finally {
      await capsule(root, ["delete", "-f", "dev1"]);
      await removeAll(b);
    }
  },
);

rootTest("an allowed device of linux.devices can be used", async (root) => {
  const b = await makeBundle("sleep 30", (s) => {
    s.linux!.resources = {
      devices: [{ allow: false, access: "rwm" }, {
        allow: true,
        type: "c",
        major: 1,
        minor: 9,
        access: "rw",
      }],
    } as never;
    s.linux!.devices = [{ path: "/dev/myurandom", type: "c", major: 1, minor: 9, fileMode: 0o666 }];
  });
  try {
    assertEquals((await capsule(root, ["run", "-d", "-b", b, "dev2"])).code, 0);
    const e = await capsule(root, ["exec", "dev2", "sh", "-c", "head -c 4 /dev/myurandom | wc -c"]);
    assertEquals(e.code, 0, e.stderr);
    assertEquals(e.stdout.trim(), "4");
  } finally {
    await capsule(root, ["delete", "-f", "dev2"]);
    await removeAll(b);
  }
});
