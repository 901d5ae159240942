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
  state,
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

rootTest(
  "deny-all holds for the container's own program too: open and a fresh node of /dev/kmsg",
  async (root) => {
    // The init itself (not an exec): /dev/kmsg of linux.devices, then a node it makes of the
    // same device (mknod is allowed, as runc's defaults allow it; opening it is not).
    const b = await makeBundle(
      "echo probe >/dev/kmsg; echo open=$?; mknod /tmp/k c 1 11; echo mknod=$?; " +
        "echo probe >/tmp/k; echo node=$?",
      (s) => {
        s.linux!.resources = { devices: [{ allow: false, access: "rwm" }] } as never;
        s.linux!.devices = [{ path: "/dev/kmsg", type: "c", major: 1, minor: 11, fileMode: 0o666 }];
        const caps = s.process!.capabilities as Record<string, string[]>;
        for (const set of ["bounding", "effective", "permitted"]) {
          caps[set] = [...(caps[set] ?? []), "CAP_MKNOD"];
        }
      },
      { ownRootfs: true },
    );
    try {
      const r = await capsule(root, ["run", "-b", b, "dev3"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout.trim().split("\n"), ["open=1", "mknod=0", "node=1"]);
      assertMatch(r.stderr, /Operation not permitted/);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  'device rules: unknown access letters are dropped (runc\'s "rwa"); a denied write refuses O_RDWR',
  async (root) => {
    // /dev/fuse (10:229): readable and writable, then writes denied again. Opening it for
    // reading works; for reading and writing it is a write: refused.
    const b = await makeBundle(
      "exec 3</dev/fuse; echo r=$?; exec 3<&-; (exec 4<>/dev/fuse) 2>/dev/null; echo rw=$?",
      (s) => {
        s.linux!.resources = {
          devices: [
            { allow: false, access: "rwm" },
            { allow: false, type: "c", major: 1, minor: 11, access: "rwa" },
            { allow: true, type: "c", major: 10, minor: 229, access: "rw" },
            { allow: false, type: "c", major: 10, minor: 229, access: "w" },
          ],
        } as never;
        s.linux!.devices = [{
          path: "/dev/fuse",
          type: "c",
          major: 10,
          minor: 229,
          fileMode: 0o666,
        }];
      },
    );
    try {
      const r = await capsule(root, ["run", "-b", b, "dev4"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stdout.trim().split("\n"), ["r=0", "rw=1"]);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "update with device rules never interrupts the container's use of an allowed device",
  async (root) => {
    // The program writes to /dev/null without pause and reports any refusal; each update
    // rewrites the rules (deny-all first on v1, then the allows).
    const b = await makeBundle(
      "while :; do echo x >/dev/null || echo refused; done",
      (s) => (s.linux!.resources = { devices: [{ allow: false, access: "rwm" }] } as never),
    );
    const rules = await Deno.makeTempFile({ suffix: ".json" });
    try {
      await Deno.writeTextFile(
        rules,
        JSON.stringify({ devices: [{ allow: false, access: "rwm" }], pids: { limit: 100 } }),
      );
      assertEquals((await capsule(root, ["run", "-d", "-b", b, "dev5"])).code, 0);
      for (let i = 0; i < 20; i++) {
        const u = await capsule(root, ["update", "-r", rules, "dev5"]);
        assertEquals(u.code, 0, u.stderr);
      }
      const log = await capsule(root, ["log", "dev5"]);
      assertEquals(log.stdout.includes("refused"), false, "a write to /dev/null was refused");
      assertEquals((await state(root, "dev5")).status, "running");
    } finally {
      await capsule(root, ["delete", "-f", "dev5"]);
      await removeAll(b, rules);
    }
  },
);
