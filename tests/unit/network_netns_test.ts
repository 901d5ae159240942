// `ip netns exec NS capsule ...` runs capsule in a mount namespace whose /sys was remounted
// without the cgroup mounts: cgroup detection says so and what to run instead.
import { detectCgroups } from "../../runtime/cgroups/mod.ts";
import { CapsuleError } from "../../runtime/errors.ts";
import { assertThrows } from "./helpers.ts";

const SYS_ONLY = "48 45 0:39 / /sys rw,relatime - sysfs cgt rw\n";
const HOST = SYS_ONLY +
  "30 48 0:26 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n";

Deno.test("network netns: no cgroup mount here but on the host names ip netns exec", () => {
  assertThrows(
    () => detectCgroups({ mountinfo: SYS_ONLY, procSelfCgroup: "", initMountinfo: HOST }),
    CapsuleError,
    "nsenter --net=/run/netns/NAME capsule",
  );
  assertThrows(
    () => detectCgroups({ mountinfo: SYS_ONLY, procSelfCgroup: "", initMountinfo: SYS_ONLY }),
    CapsuleError,
    "/proc/self/mountinfo has no cgroup or cgroup2 mount",
  );
});
