// capsule: a container runtime for Linux in the spirit of runc. The command tree is cli/main.ts;
// a container's init is not Deno but the native helper (runtime/native/init.c).
import { warmMigration } from "./runtime/cgroup_warm.ts";

// Commands that move a process into a cgroup start the kernel's grace period now, while the
// command tree loads (runtime/cgroup_warm.ts); a word that only looks like one costs a no-op.
if (Deno.args.some((a) => a === "run" || a === "create" || a === "exec")) warmMigration();
const { main } = await import("./cli/main.ts");
Deno.exit(await main(Deno.args));
