/**
 * No import cycles between the folders of lib/ (type-only imports included:
 * a cycle of types is a cycle of ideas). Each folder of lib/ is one node (its
 * subfolders belong to it, e.g. methods/mergekit is methods); each top-level
 * file of lib/ is a node of its own ("lib/errors.ts"), since they sit at
 * different levels: errors.ts, env.ts, native/, units.ts, version.ts are leaves
 * everyone may use, checkpoint.ts sits on safetensors, index.ts (the public
 * entry) on everything. docs/architecture.md gives the direction the imports
 * go: cli → api → job → tall → methods → select / progressive → engine →
 * stats → out_path → safetensors → errors.ts. Files do not import each other
 * around a loop either.
 */
import * as fs from "fs";
import * as path from "path";
import * as ts from "typescript";

const LIB = path.join(__dirname, "..", "lib");

/**
 * Folder edges that still close a cycle, to be removed by the seam redesign
 * (issue 13). The test fails when one is no longer needed, so the list only shrinks.
 */
const KNOWN_EXCEPTIONS: readonly string[] = [];

function libFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = path.join(dir, d.name);
    if (d.isDirectory()) return libFiles(p);
    return d.name.endsWith(".ts") ? [p] : [];
  });
}

/** The node of a file or folder inside lib/: its first folder, or the top-level file itself. */
function nodeOf(abs: string): string {
  const rel = path.relative(LIB, abs).split(path.sep);
  if (rel.length > 1 || fs.existsSync(abs) && fs.statSync(abs).isDirectory()) return rel[0];
  return `lib/${rel[0].endsWith(".ts") ? rel[0] : `${rel[0]}.ts`}`;
}

/** Every relative import of a file that lands in lib/ (import, import type, export from, import(), require). */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(fs.readFileSync(file, "utf8"), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((s) => s.startsWith("."))
    .map((s) => path.resolve(path.dirname(file), s))
    .filter((p) => !path.relative(LIB, p).startsWith(".."));
}

/** Folder graph: node → node → the files whose imports make that edge. */
function folderGraph(): Map<string, Map<string, Set<string>>> {
  const g = new Map<string, Map<string, Set<string>>>();
  for (const file of libFiles(LIB)) {
    const from = nodeOf(file);
    if (!g.has(from)) g.set(from, new Map());
    for (const target of importsOf(file)) {
      const to = nodeOf(target);
      if (to === from || KNOWN_EXCEPTIONS.includes(`${from} -> ${to}`)) continue;
      const edges = g.get(from)!;
      if (!edges.has(to)) edges.set(to, new Set());
      edges.get(to)!.add(path.relative(LIB, file));
    }
  }
  return g;
}

/** File graph: file → the files it imports (a folder import is its index.ts). */
function fileGraph(): Map<string, Map<string, Set<string>>> {
  const g = new Map<string, Map<string, Set<string>>>();
  for (const file of libFiles(LIB)) {
    const from = path.relative(LIB, file);
    const edges = new Map<string, Set<string>>();
    for (const target of importsOf(file)) {
      const to = path.relative(LIB, fs.existsSync(`${target}.ts`) ? `${target}.ts` : path.join(target, "index.ts"));
      edges.set(to, new Set([from]));
    }
    g.set(from, edges);
  }
  return g;
}

/** Strongly connected components with more than one node (Tarjan). */
function cycles(g: Map<string, Map<string, Set<string>>>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    for (const w of g.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (stack.includes(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do scc.push((w = stack.pop()!));
    while (w !== v);
    if (scc.length > 1) out.push(scc.sort());
  };
  for (const v of [...g.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

/** One cycle's edges with the files that make them, for the failure message. */
function describe_(g: Map<string, Map<string, Set<string>>>, scc: string[]): string {
  const lines = scc.flatMap((a) =>
    [...(g.get(a) ?? new Map<string, Set<string>>()).entries()]
      .filter(([b]) => scc.includes(b))
      .map(([b, files]) => `  ${a} -> ${b}  (${[...files].sort().join(", ")})`),
  );
  return `cycle between ${scc.join(", ")}:\n${lines.join("\n")}`;
}

describe("architecture", () => {
  const g = folderGraph();

  it("has no import cycle between the folders of lib/", () => {
    const found = cycles(g).map((scc) => describe_(g, scc));
    expect(found.join("\n\n")).toBe("");
  });

  it("has no import cycle between the files of lib/", () => {
    // Within a folder too (ties_trim.ts and ties_window.ts once imported each other).
    const files = fileGraph();
    expect(cycles(files).map((scc) => describe_(files, scc)).join("\n\n")).toBe("");
  });

  it("sees the imports it checks (type-only, export-from, folder index)", () => {
    // The graph is not empty by accident: known edges of each import form are present.
    expect(g.get("engine")?.has("safetensors")).toBe(true);
    expect(g.get("lib/index.ts")?.has("methods")).toBe(true); // "./methods" (a folder's index.ts)
    expect(g.get("cli")?.get("job")).toEqual(new Set(["cli/plan_view.ts"])); // `import type` only
    expect(g.get("progressive")?.get("engine")).toContain("progressive/params.ts"); // `import type` only
    // `export type { ... } from`
    expect(importsOf(path.join(LIB, "index.ts"))).toContain(path.join(LIB, "engine", "context"));
  });

  it("lists only known exceptions that are still imported", () => {
    const all = new Set<string>();
    for (const file of libFiles(LIB)) for (const t of importsOf(file)) all.add(`${nodeOf(file)} -> ${nodeOf(t)}`);
    expect(KNOWN_EXCEPTIONS.filter((e) => !all.has(e))).toEqual([]);
  });

  it("detects a cycle", () => {
    const fake = new Map([
      ["a", new Map([["b", new Set(["a/x.ts"])]])],
      ["b", new Map([["c", new Set(["b/y.ts"])]])],
      ["c", new Map([["a", new Set(["c/z.ts"])]])],
      ["d", new Map([["a", new Set(["d/w.ts"])]])],
    ]);
    expect(cycles(fake)).toEqual([["a", "b", "c"]]);
  });
});
