/**
 * The eigen pseudo-inverse cut-off `rcond` of lot and regmean: eigenvalues of
 * Σ G̃t at or below rcond·max λ are dropped. A Gram built from known
 * eigenvectors (eigenvalues 1-ish, 1e-4-ish and exactly 0) gives a float64
 * reference of A⁺ without an eigen solver: the default keeps the small
 * direction, rcond = 1e-3 drops it, and the default is byte-identical to the
 * cut-off taskmerge always used (in·ε of the Gram dtype).
 */
import * as fs from "fs";
import * as path from "path";
import { merge, MethodSpec } from "../lib";
import { readSafetensors, tmpDir, values, writeSafetensors } from "./helpers/fixtures";

const IN = 3;
const OUT = 2;
const r = Math.SQRT1_2;
/** Orthonormal eigenvectors (rows). */
const E = [[r, r, 0], [r, -r, 0], [0, 0, 1]];
/** Eigenvalues of each task's Gram: a strong, a weak and a null direction. */
const W = [[1, 1e-4, 0], [2, 3e-4, 0]];

const f64 = (xs: number[]) => Buffer.from(new Float64Array(xs).buffer);
const gram = (w: number[]) => {
  const g = new Array(IN * IN).fill(0);
  for (let j = 0; j < IN; j++) for (let a = 0; a < IN; a++) for (let b = 0; b < IN; b++) g[a * IN + b] += w[j] * E[j][a] * E[j][b];
  return g;
};

function setup() {
  const dir = tmpDir("rcond-");
  const w0 = [0.1, -0.2, 0.3, 0.05, 0.4, -0.1];
  const taus = [[0.5, -0.3, 0.2, 0.1, 0.7, -0.4], [-0.2, 0.6, 0.1, 0.3, -0.5, 0.2]];
  const save = (file: string, w: number[]) => writeSafetensors(file, { "fc.weight": { dtype: "F64", shape: [OUT, IN], data: f64(w) } });
  save(path.join(dir, "base.safetensors"), w0);
  const experts = taus.map((tau, t) => {
    const p = path.join(dir, `task${t}.safetensors`);
    save(p, w0.map((x, i) => x + tau[i]));
    const stats = path.join(dir, `task${t}.stats.safetensors`);
    writeSafetensors(stats, {
      "fc.input_gram": { dtype: "F64", shape: [IN, IN], data: f64(gram(W[t])) },
      "fc.input_count": { dtype: "F64", shape: [1], data: f64([1]) },
    });
    return { path: p, stats };
  });
  return { dir, w0, taus, experts };
}

/** W0 + T*, T* = (Σt Tt Gt) A⁺ with A⁺ = Σ over the kept eigenvalues of e eᵀ / w, in float64. */
function reference(w0: number[], taus: number[][], keep: boolean[]): number[] {
  const wsum = E.map((_, j) => W.reduce((s, w) => s + w[j], 0));
  const grams = W.map(gram);
  const bt = new Array(OUT * IN).fill(0);
  taus.forEach((tau, t) => {
    for (let o = 0; o < OUT; o++)
      for (let i = 0; i < IN; i++) for (let k = 0; k < IN; k++) bt[o * IN + i] += tau[o * IN + k] * grams[t][k * IN + i];
  });
  const pinv = new Array(IN * IN).fill(0);
  for (let j = 0; j < IN; j++)
    if (keep[j]) for (let a = 0; a < IN; a++) for (let b = 0; b < IN; b++) pinv[a * IN + b] += (E[j][a] * E[j][b]) / wsum[j];
  return w0.map((x, idx) => {
    const o = Math.floor(idx / IN);
    const i = idx % IN;
    let s = 0;
    for (let k = 0; k < IN; k++) s += bt[o * IN + k] * pinv[k * IN + i];
    return x + s;
  });
}

const read = (file: string) => Array.from(values(readSafetensors(file)["fc.weight"]));

function expectNear(got: number[], want: number[]) {
  const err = Math.max(...got.map((g, i) => Math.abs(g - want[i])));
  expect(err).toBeLessThan(1e-9);
}

// regmean with α = 1 solves the same system on the mean Grams (counts of 1): the same reference.
describe.each([
  { method: "lot", extra: { solver: "eigh" } },
  { method: "regmean", extra: { alpha: 1 } },
])("$method: rcond", ({ method, extra }) => {
  test("the default keeps the weak direction; rcond 1e-3 drops it; the default equals the old cut-off bytes", async () => {
    const s = setup();
    const run = async (tag: string, rcond?: number) => {
      const out = path.join(s.dir, `${tag}.safetensors`);
      const spec = { name: method, ...extra, ...(rcond === undefined ? {} : { rcond }) } as MethodSpec;
      const report = await merge({ base: path.join(s.dir, "base.safetensors"), experts: s.experts, method: spec, out });
      return { out, report };
    };
    const def = await run("default");
    const cut = await run("cut", 1e-3);
    // The cut-off taskmerge used before rcond was a parameter: in·ε of the (F64) Gram.
    const old = await run("old", IN * 2 ** -52);

    expect(def.report.params.rcond).toBe(0);
    expect(cut.report.params.rcond).toBe(1e-3);
    expectNear(read(def.out), reference(s.w0, s.taus, [true, true, false]));
    expectNear(read(cut.out), reference(s.w0, s.taus, [true, false, false]));
    // Dropping the weak direction changes the result by far more than rounding.
    const diff = Math.max(...read(def.out).map((x, i) => Math.abs(x - read(cut.out)[i])));
    expect(diff).toBeGreaterThan(1e-2);
    expect(fs.readFileSync(def.out).equals(fs.readFileSync(old.out))).toBe(true);
    const details = def.report.details[method] as { eighFallback: string[] };
    if (method === "regmean") expect(details.eighFallback).toEqual(["fc.weight"]);
  });

  test("a negative rcond is a usage error", async () => {
    const s = setup();
    const spec = { name: method, rcond: -1 } as MethodSpec;
    await expect(merge({ base: path.join(s.dir, "base.safetensors"), experts: s.experts, method: spec, out: path.join(s.dir, "neg.safetensors") })).rejects.toThrow(
      /parameter 'rcond' must be ≥ 0/,
    );
  });
});
