/**
 * The breadcrumbs methods (lib/methods/breadcrumbs.ts, native/kernels/breadcrumbs.cpp)
 * against a float64 reference written from the definition (test/reference/breadcrumbs.ts),
 * on checkpoints whose |τ| has many exact ties (the tie rule matters): taskmerge's
 * breadcrumbs and breadcrumbs_ties through the CLI and the API, mergekit's through
 * mergekit YAML files (per-model density, gamma as a filter list, rescale, normalize,
 * the empty mask where ⌊gamma·n⌋ = 0); chunking; parameter validation.
 */
import * as fs from "fs";
import * as path from "path";
import { merge } from "../lib";
import { readSafetensors, runCli, tmpDir, values } from "./helpers/fixtures";
import { makeMkZoo, MkZoo } from "./helpers/mergekit_models";
import { breadcrumbsMask, breadcrumbsRef, BreadcrumbsRefOptions } from "./reference/breadcrumbs";

let dir: string;
let zoo: MkZoo;
beforeAll(() => {
  dir = tmpDir("tm-breadcrumbs-");
  zoo = makeMkZoo(dir, 3);
});
const p = (name: string) => path.join(dir, name);
const tasks = [0, 1, 2].map((t) => `task${t}`);
let runs = 0;
const outPath = () => p(`out${runs++}.safetensors`);

function read(out: string): Record<string, Float64Array> {
  return Object.fromEntries(Object.entries(readSafetensors(out)).map(([k, t]) => [k, values(t)]));
}

/** Each key against the reference with the per-key options `o(key)`, within float32 rounding of the output. */
function compare(out: string, o: (key: string) => BreadcrumbsRefOptions): void {
  const got = read(out);
  for (const k of zoo.keys) {
    const ref = breadcrumbsRef(zoo.base.floats[k.name], zoo.experts.map((e) => e.floats[k.name]), o(k.name));
    for (let i = 0; i < ref.length; i++) {
      const tol = 4 * 2 ** -24 * (1 + Math.abs(ref[i]));
      if (!(Math.abs(got[k.name][i] - ref[i]) <= tol)) throw new Error(`${k.name}[${i}]: got ${got[k.name][i]}, reference ${ref[i]}`);
    }
  }
}

const own = (consensus: boolean, density: number, gamma: number, lambda: number, weights = [1, 1, 1]): BreadcrumbsRefOptions => ({
  consensus, normalize: consensus, rescale: false, lambda, mergekit: false, weights, densities: [density, density, density], gammas: [gamma, gamma, gamma],
});

test("the reference's mask keeps ranks [top, top + k) by |τ|, ties by index, and mergekit's slice is empty at top 0", () => {
  const d = Float64Array.from([0.5, -2, 1, 1, -3, 1, 0.25, 2]);
  // Descending |τ|, lower index first: 4, 1, 7, 2, 3, 5, 0, 6. density 0.5 → k 4; gamma 0.25 → top 2: 7, 2, 3, 5.
  expect(Array.from(breadcrumbsMask(d, 0.5, 0.25, false))).toEqual([0, 0, 1, 1, 0, 1, 0, 1]);
  expect(Array.from(breadcrumbsMask(d, 0.5, 0.25, true))).toEqual([0, 0, 1, 1, 0, 1, 0, 1]);
  // density + gamma > 1: k = 6 stay, top = min(4, 8 − 6) = 2 (mergekit's n_bot < 0 rule): 7, 2, 3, 5, 0, 6.
  expect(Array.from(breadcrumbsMask(d, 0.75, 0.5, false))).toEqual([1, 0, 1, 1, 0, 1, 1, 1]);
  // gamma·n < 1: taskmerge keeps the top k (4, 1, 7, 2), mergekit's order[n_bot:-0] nothing.
  expect(Array.from(breadcrumbsMask(d, 0.5, 0.1, false))).toEqual([0, 1, 1, 0, 1, 0, 0, 1]);
  expect(Array.from(breadcrumbsMask(d, 0.5, 0.1, true))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
});

describe("taskmerge's breadcrumbs and breadcrumbs_ties", () => {
  test("breadcrumbs from the CLI: θ0 + λ Σ τ̂t", async () => {
    const out = outPath();
    const r = await runCli(["merge", "--base", p("base"), ...tasks.flatMap((t) => ["--expert", p(t)]), "--method", "breadcrumbs", "--density", "0.5", "--gamma", "0.1", "--lambda", "0.7", "--out", out, "-q"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    compare(out, () => own(false, 0.5, 0.1, 0.7));
  });

  test("breadcrumbs_ties with expert weights and the defaults (density 0.9, gamma 0.01: ⌊gamma·n⌋ = 0 on small tensors)", async () => {
    const out = outPath();
    const w = [1, 0.5, 2];
    await merge({ base: p("base"), experts: tasks.map((t, i) => ({ path: p(t), weight: w[i] })), method: { name: "breadcrumbs_ties" }, out });
    compare(out, () => own(true, 0.9, 0.01, 1, w));
  });

  test("breadcrumbs_ties with a large gamma, and chunking does not change a byte", async () => {
    const outs: Buffer[] = [];
    for (const chunkElems of [undefined, 37]) {
      const out = outPath();
      const { runMerge } = await import("../lib/job/merge");
      await runMerge({ base: p("base"), experts: tasks.map((t) => ({ path: p(t), name: t, weight: 1 })), method: "breadcrumbs_ties", params: { density: 0.3, gamma: 0.4, lambda: 0.8 }, out, chunkElems });
      compare(out, () => own(true, 0.3, 0.4, 0.8));
      outs.push(fs.readFileSync(out));
    }
    expect(outs[1].equals(outs[0])).toBe(true);
  });

  test.each([
    [["--density", "1.5"], "breadcrumbs: parameter 'density' must be ≤ 1 (got 1.5)"],
    [["--gamma", "-0.1"], "breadcrumbs: parameter 'gamma' must be ≥ 0 (got -0.1)"],
    [["--gamma", "x"], "breadcrumbs: parameter 'gamma' must be a finite number (got \"x\")"],
  ])("%p is refused: exit 2, one line, nothing written", async (flags, message) => {
    const out = p(`bad${runs++}`);
    const r = await runCli(["merge", "--base", p("base"), "--expert", p("task0"), "--method", "breadcrumbs", ...flags, "--out", out]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`taskmerge: ${message}`);
    expect(fs.existsSync(out)).toBe(false);
  });

  test("taskmerge methods lists both with their parameters", async () => {
    const r = await runCli(["methods", "breadcrumbs_ties"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/breadcrumbs_ties\n.*\n\s+density\s+number in \[0, 1\]\s+default 0\.9/);
    expect(r.stdout).toMatch(/gamma\s+number in \[0, 1\]\s+default 0\.01/);
  });
});

describe("mergekit's breadcrumbs and breadcrumbs_ties from mergekit YAML", () => {
  const D = [0.3, 0.5, 0.7], W = [1, 0.5, 2];
  /** gamma per model: a filter list (mlp tensors 0.2, the rest 0.05: ⌊0.05·16⌋ = 0 on the norms). */
  const G = (key: string) => (key.includes("mlp") ? 0.2 : 0.05);
  const yaml = (method: string, parameters: string) =>
    `merge_method: ${method}\nbase_model: base\nmodels:\n  - model: base\n` +
    tasks.map((t, i) => `  - model: ${t}\n    parameters: {weight: ${W[i]}, density: ${D[i]}, gamma: [{filter: mlp, value: 0.2}, {value: 0.05}]}\n`).join("") +
    `parameters: ${parameters}\ndtype: float32\n`;

  test.each([
    ["breadcrumbs", "{lambda: 0.9}", false, false, false],
    ["breadcrumbs", "{normalize: true, rescale: true}", false, true, true],
    ["breadcrumbs_ties", "{lambda: 1.0}", true, false, false],
    ["breadcrumbs_ties", "{normalize: true, rescale: true, lambda: 0.5}", true, true, true],
  ] as const)("%s %s", async (method, params, consensus, normalize, rescale) => {
    const file = p(`mk${runs}.yaml`);
    fs.writeFileSync(file, yaml(method, params));
    const out = outPath();
    const r = await runCli(["merge", file, out, "-q"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lambda = Number(/lambda: ([\d.]+)/.exec(params)?.[1] ?? 1);
    compare(out, (key) => ({ consensus, normalize, rescale, lambda, mergekit: true, weights: W, densities: D, gammas: [G(key), G(key), G(key)] }));
    // The norms (16 entries, ⌊0.05·16⌋ = 0): mergekit's mask is empty, the base comes back unchanged.
    const got = read(out)["model.norm.weight"];
    expect(Array.from(got)).toEqual(Array.from(zoo.base.floats["model.norm.weight"]));
    const manifest = await runCli(["merge", file, p("dry"), "--dry-run", "--json"]);
    expect(JSON.parse(manifest.stdout).experts[0].parameters).toEqual({ weight: 1, density: 0.3, gamma: [{ filter: "mlp", value: 0.2 }, { value: 0.05 }] });
  });

  test("gamma only for the breadcrumbs methods; a gamma outside [0, 1] names the model and key", async () => {
    const bad = p("bad-gamma.yaml");
    fs.writeFileSync(bad, yaml("ties", "{lambda: 1.0}"));
    let r = await runCli(["merge", bad, p("x")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/models\[1\]\.parameters\.gamma: only breadcrumbs and breadcrumbs_ties take a per-model gamma \('ties' does not\)/);
    fs.writeFileSync(bad, yaml("breadcrumbs", "{gamma: 2}").replace(/, gamma: \[[^\]]*\]/g, ""));
    expect(fs.readFileSync(bad, "utf8")).not.toContain("filter");
    r = await runCli(["merge", bad, p("x")]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe("taskmerge: mergekit:breadcrumbs: model 'task0': gamma 2 for model.embed_tokens.weight; expected a number in [0, 1]");
    expect(fs.existsSync(p("x"))).toBe(false);
  });
});
