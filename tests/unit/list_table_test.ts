// `capsule list`'s table and JSON: runc's columns and keys first, capsule's after (PORTS as
// docker ps shows them).
import { assertEquals, assertMatch } from "../assert.ts";
import { printContainers } from "../../cli/lifecycle.ts";
import type { OciState } from "../../runtime/container.ts";

function printed(flags: Record<string, string | boolean>, states: OciState[]): string {
  const lines: string[] = [];
  const orig = console.log;
  console.log = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    printContainers(flags, states);
  } finally {
    console.log = orig;
  }
  return lines.join("\n") + "\n";
}

const base = (id: string, extra: Record<string, unknown> = {}): OciState => ({
  ociVersion: "1.2.0",
  id,
  pid: 0,
  status: "stopped",
  bundle: `/b/${id}`,
  rootfs: `/b/${id}/rootfs`,
  created: "2026-01-01T00:00:00Z",
  owner: "",
  annotations: {},
  ...extra,
});

Deno.test("list: a PORTS column, docker ps style, only when a container publishes", () => {
  const web = base("web", {
    status: "running",
    pid: 42,
    ip: "10.0.0.2",
    image: "nginx",
    ports: ["0.0.0.0:8080->80/tcp", "127.0.0.1:5353->53/udp"],
  });
  const out = printed({}, [web, base("plain")]);
  assertMatch(out, /^ID\s+PID\s+STATUS\s+BUNDLE\s+CREATED\s+OWNER\s+IP\s+IMAGE\s+PORTS\n/);
  assertMatch(
    out,
    /\nweb\s+42\s+running\s.*\s10\.0\.0\.2\s+nginx\s+0\.0\.0\.0:8080->80\/tcp, 127\.0\.0\.1:5353->53\/udp\n/,
  );
  assertMatch(out, /\nplain\s+0\s+stopped\s+\/b\/plain\s.*\n$/);
  assertEquals(/PORTS/.test(printed({}, [base("plain")])), false);
});

Deno.test("list --format json: runc's keys in runc's order, then ports and the others", () => {
  const s = base("web", { ip: "10.0.0.2", ports: ["0.0.0.0:8080->80/tcp"], exitCode: 0 });
  const [o] = JSON.parse(printed({ format: "json" }, [s]));
  assertEquals(Object.keys(o), [
    "ociVersion",
    "id",
    "pid",
    "status",
    "bundle",
    "rootfs",
    "created",
    "annotations",
    "owner",
    "ip",
    "ports",
    "exitCode",
  ]);
  assertEquals(o.ports, ["0.0.0.0:8080->80/tcp"]);
});
