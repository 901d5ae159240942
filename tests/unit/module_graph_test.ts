// The project's module graph has no cycles: no two modules import each other in a circle,
// directly or through others, by static, dynamic or type-only imports (issue 11). The graph
// is Deno's own (`deno info --json`) from each entry point.
import { assert, assertEquals } from "./helpers.ts";

const REPO = new URL("../../", import.meta.url);
const ENTRIES = ["main.ts", "mod.ts"];

interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
}

/** The project's own modules (file: URLs under the repository) and what each imports. */
async function projectGraph(entry: string): Promise<Map<string, string[]>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", entry],
    cwd: REPO,
    env: { NO_COLOR: "1" },
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as { modules: InfoModule[] };
  const ours = (s: string) => s.startsWith(REPO.href) && !s.includes("/node_modules/");
  const graph = new Map<string, string[]>();
  for (const m of info.modules) {
    if (!ours(m.specifier)) continue;
    const deps = (m.dependencies ?? []).flatMap((d) => [d.code?.specifier, d.type?.specifier])
      .filter((s): s is string => !!s && ours(s));
    graph.set(m.specifier.slice(REPO.href.length), deps.map((s) => s.slice(REPO.href.length)));
  }
  return graph;
}

/** Every cycle, as one path per strongly connected component (Tarjan), e.g. a -> b -> a. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>(), low = new Map<string, number>();
  const stack: string[] = [], onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    for (let w = ""; w !== v;) {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    }
    if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(pathThrough(graph, scc));
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

/** One closed path through a strongly connected component, for the failure message. */
function pathThrough(graph: Map<string, string[]>, scc: string[]): string[] {
  const members = new Set(scc);
  const start = [...scc].sort()[0];
  // Breadth-first from start back to start, inside the component.
  const prev = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!members.has(w)) continue;
      if (w === start) {
        const path: string[] = [];
        for (let u = v; u !== start; u = prev.get(u)!) path.unshift(u);
        return [start, ...path, start];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return scc;
}

Deno.test("cycles: finds a direct circle, a longer one and a self-import; none in a tree", () => {
  const g = (o: Record<string, string[]>) => new Map(Object.entries(o));
  assertEquals(cycles(g({ a: ["b"], b: ["a"] })), [["a", "b", "a"]]);
  assertEquals(cycles(g({ a: ["b"], b: ["c"], c: ["a"], d: ["a"] })), [["a", "b", "c", "a"]]);
  assertEquals(cycles(g({ a: ["a"] })), [["a", "a"]]);
  assertEquals(cycles(g({ a: ["b", "c"], b: ["c"], c: [] })), []);
});

for (const entry of ENTRIES) {
  Deno.test(`module graph from ${entry}: no two modules import each other in a circle`, async () => {
    const graph = await projectGraph(entry);
    assert(graph.size > 10, `deno info found only ${graph.size} modules from ${entry}`);
    const found = cycles(graph).map((c) => c.join(" -> "));
    assertEquals(found, [], `import cycles from ${entry}:\n${found.join("\n")}`);
  });
}
