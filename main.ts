// capsule: a container runtime for Linux in the spirit of runc. The command tree is cli/main.ts;
// a container's init is not Deno but the native helper (runtime/native/init.c).
import { warmMigration } from "./runtime/cgroup_warm.ts";

// exec moves its program into the container's cgroup: the kernel's grace period starts now,
// while the command tree loads (runtime/cgroup_warm.ts); a word that only looks like it costs a
// no-op. In the bundle this module's imports are inside the hot path's one chunk
// (scripts/build.ts rechunk), so the warm-up starts once that chunk has loaded. A 1 KB chunk of
// their own, loaded before it, made the CLI's exec no faster (98.4/100.6, 101.3/97.9,
// 100.0/100.0 ms: hyperfine rounds of `--debug exec ID true`, this layout first) and costs every
// command one module more. create and run need none: the helper clones the init into its cgroup (plan.ts
// InitPlacement), and a warm-up would hold the cgroup lock their mkdirs wait for.
if (Deno.args.includes("exec")) warmMigration();
const { main } = await import("./cli/main.ts");
Deno.exit(await main(Deno.args));
