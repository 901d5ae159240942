// capsule: a container runtime for Linux in the spirit of runc. This entry stays tiny: the
// init process (`capsule init`, inside a new container) must not load the command tree.
if (Deno.args[0] === "init") {
  await import("./runtime/init_main.ts");
} else {
  const { main } = await import("./cli/main.ts");
  Deno.exit(await main(Deno.args));
}
