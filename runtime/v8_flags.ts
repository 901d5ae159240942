// V8's flags of capsule's Deno processes: the launchers' (scripts/build.ts runDeno) and capsule's
// when it runs itself again (runtime/waiter.ts selfCommand). Both must pick the same: Deno keeps
// its code cache per set of V8 flags, so a process under other flags compiles capsule again and
// rewrites the cache for the next (a run -d; exec; delete cycle 151-157 ms with the same flags,
// 214-231 with the waiter's capsule started without them).

/**
 * V8's flags for a short command (everything but `image ...`): `--no-lazy` compiles every function
 * of a module when it loads, so Deno's code cache holds them all and none is compiled again from
 * source on its first call (by default the cache keeps only the functions compiled at load);
 * `--single-threaded` starts no V8 worker threads (concurrent GC and compilers), which a command of
 * some 50 ms never pays back. `run true`, interleaved medians of 40 (the same bundle): 51 ms
 * without flags, 46 with --no-lazy, 49 with --single-threaded, 43 with both.
 */
export const V8_FLAGS = "--no-lazy,--single-threaded";

/**
 * V8's flags for `image ...` commands: an import of hundreds of MB keeps V8's garbage collector
 * busy, which is better done on its worker threads (a 740 MB tar into a tmpfs store: 5.8-6.4 s
 * without flags or with --no-lazy, 6.6 s single-threaded).
 */
export const V8_FLAGS_IMAGE = "--no-lazy";

/** The flags for a capsule command line `args`: V8_FLAGS_IMAGE when any word is `image`. */
export function v8FlagsFor(args: readonly string[]): string {
  return args.includes("image") ? V8_FLAGS_IMAGE : V8_FLAGS;
}
