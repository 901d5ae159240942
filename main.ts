// capsule: a container runtime for Linux in the spirit of runc. The command tree is cli/main.ts;
// a container's init is not Deno but the native helper (runtime/native/init.c).
const { main } = await import("./cli/main.ts");
Deno.exit(await main(Deno.args));
