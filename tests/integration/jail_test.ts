// The container's jail (issue 12: namespaces not listed are inherited; issue 16: no-pivot-proc).
// A config without a mount namespace runs in the host's: create binds the rootfs privately on
// the host and the init chroots into it; delete (also -f of a running one, and a create that
// fails halfway) leaves the host's mount table exactly as it was. With --no-pivot, no host
// mount is left in the container's mount namespace, so a nested user namespace cannot mount a
// fresh proc. (Those host mounts never show in any mountinfo: they lie outside the root of
// every process there, setns included, which lands on the moved rootfs; the attack is the
// test.) Root only.
import { CAPABILITIES } from "../../runtime/consts.ts";
import type { Spec } from "../../runtime/spec.ts";
import {
  assert,
  assertEquals,
  assertMatch,
  capsule,
  makeBundle,
  removeAll,
  REPO,
  rootTest,
  state,
} from "../helpers.ts";

const mountinfo = () => Deno.readTextFileSync("/proc/self/mountinfo");

/** The lines of `after` that `before` lacks and the other way round ("" when the same). */
function mountDiff(before: string, after: string): string {
  const a = new Set(before.split("\n")), b = new Set(after.split("\n"));
  return [
    ...[...b].filter((l) => !a.has(l)).map((l) => `+ ${l}`),
    ...[...a].filter((l) => !b.has(l)).map((l) => `- ${l}`),
  ].join("\n");
}

/** No mount namespace, and none of what needs one (runc's default has masked paths). */
function hostMountNs(s: Spec): void {
  s.linux!.namespaces = s.linux!.namespaces!.filter((n) => n.type !== "mount");
  delete s.linux!.maskedPaths;
  delete s.linux!.readonlyPaths;
}

rootTest(
  "jail: no mount namespace: create/start/exec/delete -f in the host's, mount table restored",
  async (root) => {
    const b = await makeBundle("echo started > /tmp/started; exec sleep 1000", hostMountNs, {
      ownRootfs: true,
    });
    const before = mountinfo();
    try {
      await Deno.writeTextFile(`${b}/rootfs/marker`, "inside\n");
      const c = await capsule(root, ["create", "-b", b, "nomnt"]);
      assertEquals(c.code, 0, c.stderr);
      const rootfs = `${root}/nomnt/rootfs`;
      const binds = () => mountinfo().split("\n").filter((l) => l.split(" ")[4] === rootfs);
      assertEquals(binds().length, 1, "create bound the rootfs once, in its state directory");
      assertMatch(binds()[0], / \/[^ ]*\/rootfs \/[^ ]*\/nomnt\/rootfs /);
      assertEquals((await capsule(root, ["start", "nomnt"])).code, 0);
      const pid = (await state(root, "nomnt")).pid;
      assertEquals(
        Deno.readLinkSync(`/proc/${pid}/ns/mnt`),
        Deno.readLinkSync("/proc/self/ns/mnt"),
        "the container is in the host's mount namespace",
      );
      const r = await capsule(root, ["exec", "nomnt", "sh", "-c", "cat /marker; ls /proc/1/"]);
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, /^inside\n/);
      assert(r.stdout.includes("cmdline"), "the container's own /proc: " + r.stdout);
      // Its /proc (its PID namespace) and /dev are mounts below the bind, seen on the host.
      assert(
        mountinfo().includes(` ${rootfs}/proc `) && mountinfo().includes(` ${rootfs}/dev `),
        "proc and /dev below the rootfs",
      );
      const d = await capsule(root, ["delete", "-f", "nomnt"]);
      assertEquals(d.code, 0, d.stderr);
      assertEquals(mountDiff(before, mountinfo()), "", "the host's mount table after delete");
    } finally {
      await capsule(root, ["delete", "-f", "nomnt"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "jail: no mount namespace: a create that fails halfway (a missing bind source) unmounts all",
  async (root) => {
    const b = await makeBundle("true", (s) => {
      hostMountNs(s);
      s.mounts!.push({ destination: "/data", type: "bind", source: "/nonexistent-capsule-src" });
    }, { ownRootfs: true });
    const before = mountinfo();
    try {
      const c = await capsule(root, ["create", "-b", b, "half"]);
      assertEquals(c.code, 1, c.stderr);
      assertMatch(c.stderr, /nonexistent-capsule-src/);
      assertEquals(mountDiff(before, mountinfo()), "", "the host's mount table after the failure");
      assertEquals((await capsule(root, ["list", "-q"])).stdout, "");
    } finally {
      await capsule(root, ["delete", "-f", "half"]);
      await removeAll(b);
    }
  },
);

rootTest(
  "jail: no mount namespace: masked paths, read-only paths, rootfsPropagation refused by name",
  async (root) => {
    const cases: [string, (s: Spec) => void][] = [
      ["maskedPaths", (s) => s.linux!.maskedPaths = ["/proc/kcore"]],
      ["readonlyPaths", (s) => s.linux!.readonlyPaths = ["/proc/sys"]],
      ["rootfsPropagation", (s) => s.linux!.rootfsPropagation = "shared"],
    ];
    const before = mountinfo();
    for (const [field, set] of cases) {
      const b = await makeBundle("true", (s) => {
        hostMountNs(s);
        set(s);
      });
      try {
        const c = await capsule(root, ["create", "-b", b, "refused"]);
        assertEquals(c.code, 1, c.stderr);
        assert(
          c.stderr.includes(`linux.${field} needs a mount namespace`),
          `${field}: ${c.stderr}`,
        );
      } finally {
        await capsule(root, ["delete", "-f", "refused"]);
        await removeAll(b);
      }
    }
    assertEquals(mountDiff(before, mountinfo()), "");
  },
);

/** runc's no_pivot.bats attack, without touching the host: mount a fresh proc from a userns. */
function attacker(s: Spec): void {
  s.process!.args = ["unshare", "-mrpf", "sh", "-c", "mount -t proc none /proc && echo MOUNTED"];
  const caps = s.process!.capabilities!;
  caps.bounding = [...caps.bounding!, "CAP_SETFCAP"];
  caps.permitted = [...caps.permitted!, "CAP_SETFCAP"];
  s.root!.readonly = false;
}

rootTest(
  "jail: --no-pivot: a nested user namespace cannot mount proc (no host proc left)",
  async (root) => {
    assert(CAPABILITIES.includes("CAP_SETFCAP"));
    const b = await makeBundle("", attacker, { ownRootfs: true });
    try {
      const r = await capsule(root, ["run", "--no-pivot", "-b", b, "np"]);
      assert(!r.stdout.includes("MOUNTED"), `proc was mounted: ${r.stdout}${r.stderr}`);
      assertEquals(r.code, 1, r.stdout + r.stderr);
      assertMatch(r.stdout + r.stderr, /mount: permission denied/);
      // The same with pivot_root (the reference): refused as well.
      const p = await capsule(root, ["run", "-b", b, "pv"]);
      assert(!p.stdout.includes("MOUNTED"), p.stdout);
    } finally {
      await removeAll(b);
    }
  },
);

rootTest(
  "jail: no mount namespace: two containers of one rootfs, each deleted alone, nothing left",
  async (root) => {
    const b = await makeBundle("exec sleep 1000", hostMountNs);
    const before = mountinfo();
    try {
      for (const id of ["two1", "two2"]) {
        const c = await capsule(root, ["run", "-d", "-b", b, id]);
        assertEquals(c.code, 0, c.stderr);
      }
      assertEquals((await capsule(root, ["delete", "-f", "two1"])).code, 0);
      const r = await capsule(root, ["exec", "two2", "ls", "/bin/busybox"]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals((await capsule(root, ["delete", "-f", "two2"])).code, 0);
      assertEquals(mountDiff(before, mountinfo()), "");
    } finally {
      for (const id of ["two1", "two2"]) await capsule(root, ["delete", "-f", id]);
      await removeAll(b);
    }
  },
);

rootTest(
  "jail: no mount namespace on a host whose / is shared: nothing leaks to the host, delete keeps its mounts",
  async (root) => {
    // A systemd host's "/" is shared: a bind of a host directory then joins the host's peer group.
    // Played in a private mount namespace of the test's own, made rshared like such a host.
    const t = await Deno.makeTempDir({ prefix: "capsule-shared-" });
    const b = await makeBundle("exec sleep 1000", (s) => {
      hostMountNs(s);
      s.mounts = [
        ...(s.mounts ?? []),
        { destination: "/data", type: "bind", source: `${t}/shared`, options: ["rbind"] },
        { destination: "/d2", type: "bind", source: `${t}/shared2`, options: ["bind"] },
        { destination: "/d2/inner", type: "tmpfs", source: "tmpfs" },
      ];
    }, { ownRootfs: true });
    const cli = `${Deno.execPath()} run -A --quiet ${REPO}/main.ts --root ${root}`;
    const script = `set -e
      mount --make-rshared /
      mkdir -p ${t}/shared/sub ${t}/shared2
      mount -t tmpfs hostsub ${t}/shared/sub
      ${cli} run -d -b ${b} shr >/dev/null
      echo "leaked=$(grep -c " ${t}/shared2/inner " /proc/self/mountinfo || true)"
      ${cli} delete -f shr
      grep -q " ${t}/shared/sub " /proc/self/mountinfo && echo sub=kept || echo sub=gone
      umount ${t}/shared/sub || true`;
    try {
      const out = await new Deno.Command("unshare", {
        args: ["-m", "--propagation", "private", "sh", "-c", script],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
      assertMatch(text, /leaked=0\n/, "a mount of the container's appeared on the host");
      assertMatch(text, /sub=kept\n/, "delete unmounted a mount of the host's");
    } finally {
      await capsule(root, ["delete", "-f", "shr"]);
      await removeAll(b, t);
    }
  },
);
