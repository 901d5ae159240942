// OCI hooks (config.json "hooks"): run on the host with the container's state on stdin.
import { CapsuleError } from "./errors.ts";
import type { HookRecord } from "./state.ts";

export async function runHooks(
  kind: string,
  hooks: readonly HookRecord[] | undefined,
  state: unknown,
): Promise<void> {
  for (const h of hooks ?? []) {
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
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (h.timeout) timer = setTimeout(() => child.kill("SIGKILL"), h.timeout * 1000);
    const [status, err] = await Promise.all([child.status, new Response(child.stderr).text()]);
    if (timer !== undefined) clearTimeout(timer);
    if (!status.success) {
      const why = status.signal ? `killed by ${status.signal}` : `exit status ${status.code}`;
      throw new CapsuleError(
        `${kind} hook ${h.path} failed (${why})${err.trim() ? `: ${err.trim()}` : ""}`,
      );
    }
  }
}
