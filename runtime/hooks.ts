// OCI hooks (config.json "hooks", runtime spec "Lifecycle" and config.md "POSIX-platform Hooks"):
// run on the host with the container's state on stdin. prestart and createRuntime failures fail
// the operation (create then destroys the container); poststart and poststop failures are only
// warnings: the remaining hooks still run and start/delete succeed (runtime.md steps 9 and 12).
import { CapsuleError } from "./errors.ts";
import type { HookRecord } from "./state.ts";

/** After the hook exits, how long its stderr may still be read (a child may keep it open). */
const STDERR_GRACE_MS = 200;

/** What `warn` receives for each failed hook when failures are not fatal. */
export type HookWarning = (message: string) => void;

/**
 * Runs `hooks` in order, each with `state` (the OCI state JSON) on stdin, an environment of
 * exactly `env`, and `timeout` seconds at most (then SIGKILL). Without `warn`, the first failure
 * throws CapsuleError naming the kind, the path and the exit status or the timeout, and no later
 * hook runs; with `warn`, each failure is passed to `warn` and the next hook runs.
 */
export async function runHooks(
  kind: string,
  hooks: readonly HookRecord[] | undefined,
  state: unknown,
  warn?: HookWarning,
): Promise<void> {
  for (const h of hooks ?? []) {
    try {
      await runHook(kind, h, state);
    } catch (e) {
      if (!warn) throw e;
      warn((e as Error).message);
    }
  }
}

async function runHook(kind: string, h: HookRecord, state: unknown): Promise<void> {
  const cmd = new Deno.Command(h.path, {
    args: (h.args ?? [h.path]).slice(1),
    env: Object.fromEntries((h.env ?? []).map((e) => {
      const i = e.indexOf("=");
      return [e.slice(0, i), e.slice(i + 1)];
    })),
    clearEnv: true,
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  });
  let child: Deno.ChildProcess;
  try {
    child = cmd.spawn();
  } catch (e) {
    throw new CapsuleError(`${kind} hook ${h.path} could not start: ${(e as Error).message}`);
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(state))).catch(() => {});
  await writer.close().catch(() => {});
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (h.timeout) {
    timer = setTimeout(() => {
      timedOut = true;
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, h.timeout * 1000);
  }
  const stderr = new Response(child.stderr).text().catch(() => "");
  const status = await child.status;
  if (timer !== undefined) clearTimeout(timer);
  // A process the hook left behind may hold its stderr open: don't wait for it forever.
  let grace: ReturnType<typeof setTimeout> | undefined;
  const err = await Promise.race([
    stderr,
    new Promise<string>((r) => grace = setTimeout(() => r(""), STDERR_GRACE_MS)),
  ]);
  clearTimeout(grace);
  if (timedOut) {
    throw new CapsuleError(`${kind} hook ${h.path} timed out after ${h.timeout} s (killed)`);
  }
  if (!status.success) {
    const why = status.signal ? `killed by ${status.signal}` : `exit status ${status.code}`;
    throw new CapsuleError(
      `${kind} hook ${h.path} failed (${why})${err.trim() ? `: ${err.trim()}` : ""}`,
    );
  }
}
