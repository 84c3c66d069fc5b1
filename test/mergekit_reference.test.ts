/**
 * The mergekit:* methods (what a config in mergekit's form runs) against a
 * float64 reference written from mergekit's definitions (test/reference/mergekit.ts):
 * task_arithmetic, linear (with and without a base), ties (weighted and not,
 * normalize on and off, per-model density, both tie rules), dare_linear and
 * dare_ties (normalize on and off; DARE's masks are random, so they are read
 * back from runs with one real model, then checked statistically and the
 * merge checked exactly given them).
 */
import * as path from "path";
import { merge } from "../lib";
import { readSafetensors, tmpDir, values } from "./helpers/fixtures";
import { makeMkZoo, MkZoo } from "./helpers/mergekit_models";
import { deltaF32, gtaRef, GtaRefOptions, linearRef } from "./reference/mergekit";

let dir: string;
let zoo: MkZoo;
beforeAll(() => {
  dir = tmpDir("tm-mkref-");
  zoo = makeMkZoo(dir, 3);
});

const p = (name: string) => path.join(dir, name);
let runs = 0;

/** Runs method `name` (mergekit's definition) on experts task0.. with per-model parameters; returns the output floats. */
async function run(
  name: string, experts: { path: string; weight?: number; density?: number }[], params: Record<string, unknown> = {}, base = p("base"),
): Promise<Record<string, Float64Array>> {
  const out = p(`out${runs++}.safetensors`);
  await merge({
    base, out, method: { name: `mergekit:${name}`, ...params },
    experts: experts.map((e, i) => ({
      path: e.path, name: `m${i}`, parameters: { ...(e.weight !== undefined ? { weight: e.weight } : {}), ...(e.density !== undefined ? { density: e.density } : {}) },
    })),
  });
  return Object.fromEntries(Object.entries(readSafetensors(out)).map(([k, t]) => [k, values(t)]));
}

function expectClose(got: Float64Array, ref: Float64Array, what: string): void {
  for (let i = 0; i < ref.length; i++) {
    const tol = 4 * 2 ** -24 * (1 + Math.abs(ref[i]));
    if (!(Math.abs(got[i] - ref[i]) <= tol)) throw new Error(`${what}[${i}]: got ${got[i]}, reference ${ref[i]}`);
  }
}

const task = (t: number) => zoo.experts[t];

function compareGta(out: Record<string, Float64Array>, o: Omit<GtaRefOptions, "masks">, models = [0, 1, 2], masks?: (key: string) => Uint8Array[]): void {
  for (const k of zoo.keys)
    expectClose(out[k.name], gtaRef(zoo.base.floats[k.name], models.map((t) => task(t).floats[k.name]), { ...o, masks: masks?.(k.name) }), k.name);
}

const W = [1, 0.5, 2];
const D = [0.3, 0.5, 0.7];
const experts = (w?: number[], d?: number[]) => [0, 1, 2].map((t) => ({ path: p(`task${t}`), weight: w?.[t], density: d?.[t] }));

describe("mergekit:task_arithmetic", () => {
  test("defaults: λ = 1, no normalize: θ0 + Σ wt τt", async () => {
    compareGta(await run("task_arithmetic", experts([1, 0.5, -0.3])), {
      consensus: false, normalize: false, rescale: false, lambda: 1, weights: [1, 0.5, -0.3], densities: [1, 1, 1],
    });
  });
  test("normalize and λ", async () => {
    compareGta(await run("task_arithmetic", experts(W), { normalize: "true", lambda: 0.7 }), {
      consensus: false, normalize: true, rescale: false, lambda: 0.7, weights: W, densities: [1, 1, 1],
    });
  });
});

describe("mergekit:linear", () => {
  test("without a base: the first model is the engine's base, its weight base_weight", async () => {
    const ws = [0.2, 0.3, 0.5];
    for (const normalize of ["true", "false"]) {
      const out = await run("linear", [1, 2].map((t) => ({ path: p(`task${t}`), weight: ws[t] })), { normalize, base_weight: ws[0] }, p("task0"));
      for (const k of zoo.keys)
        expectClose(out[k.name], linearRef([0, 1, 2].map((t) => task(t).floats[k.name]), ws, normalize === "true"), `${normalize} ${k.name}`);
    }
  });
  test("with the base among the models (weight 1) and unnormalized weights", async () => {
    const out = await run("linear", [0, 1].map((t) => ({ path: p(`task${t}`), weight: [1.5, 0.7][t] })), { normalize: "false", base_weight: 1 });
    for (const k of zoo.keys)
      expectClose(out[k.name], linearRef([zoo.base.floats[k.name], task(0).floats[k.name], task(1).floats[k.name]], [1, 1.5, 0.7], false), k.name);
  });
});

describe("mergekit:ties", () => {
  const base = { consensus: true, sparsify: "magnitude" as const, rescale: false, lambda: 1 };
  test.each([
    ["weighted, normalize (the default)", W, "true"],
    ["weighted, normalize off", W, "false"],
    ["unweighted, normalize", [1, 1, 1], "true"],
    ["unweighted, normalize off", [1, 1, 1], "false"],
  ] as const)("%s; per-model density", async (_, w, normalize) => {
    const out = await run("ties", experts([...w], D), { normalize });
    compareGta(out, { ...base, normalize: normalize === "true", weights: [...w], densities: D, ties: "keep_all" });
  });
  test("topk_ties exact_k keeps exactly k (ties by index), keep_all every tie; the data has ties", async () => {
    const exact = await run("ties", experts(W, D), { topk_ties: "exact_k" });
    const all = await run("ties", experts(W, D));
    compareGta(exact, { ...base, normalize: true, weights: W, densities: D, ties: "exact_k" });
    const differ = zoo.keys.filter((k) => exact[k.name].some((x, i) => x !== all[k.name][i]));
    expect(differ.length).toBeGreaterThan(0);
  });
  test("density ≥ 1 keeps τ whole; rescale multiplies the kept entries by ‖τ‖₁/‖τ̂‖₁", async () => {
    const out = await run("ties", experts(W, [1, 0.4, 0.6]), { rescale: "true", lambda: 0.5, normalize: "false" });
    compareGta(out, { ...base, rescale: true, lambda: 0.5, normalize: false, weights: W, densities: [1, 0.4, 0.6], ties: "keep_all" });
  });
});

describe("DARE (random masks)", () => {
  const density = 0.4;
  /** Each model's keep mask, read back from a dare_linear run where it is the only real model (the others are the base). */
  async function masks(seed: number): Promise<Record<string, Uint8Array[]>> {
    const res: Record<string, Uint8Array[]> = {};
    for (let t = 0; t < 3; t++) {
      // Mask streams are per task index, so model t stays at index t; rescale off: kept entries are τ itself.
      const list = [0, 1, 2].map((i) => ({ path: i === t ? p(`task${i}`) : p("same"), density }));
      const out = await run("dare_linear", list, { seed, rescale: "false" });
      for (const k of zoo.keys) {
        const tau = deltaF32(zoo.base.floats[k.name], task(t).floats[k.name]);
        const m = new Uint8Array(tau.length);
        for (let i = 0; i < tau.length; i++) {
          const d = out[k.name][i] - zoo.base.floats[k.name][i];
          if (tau[i] !== 0) expect(d === 0 || Math.abs(d - tau[i]) <= 1e-6).toBe(true); // kept unscaled or dropped
          m[i] = tau[i] !== 0 && d !== 0 ? 1 : 0;
        }
        (res[k.name] ??= [])[t] = m;
      }
    }
    return res;
  }
  let m: Record<string, Uint8Array[]>;
  beforeAll(async () => {
    m = await masks(11);
  });

  test("kept fraction ≈ density and the mean rescale ≈ 1/density", () => {
    let kept = 0, nonzero = 0;
    const ratios: number[] = [];
    for (const k of zoo.keys)
      for (let t = 0; t < 3; t++) {
        const tau = deltaF32(zoo.base.floats[k.name], task(t).floats[k.name]);
        let l1 = 0, l1k = 0;
        tau.forEach((x, i) => {
          if (x === 0) return;
          nonzero++;
          kept += m[k.name][t][i];
          l1 += Math.abs(x);
          l1k += Math.abs(x) * m[k.name][t][i];
        });
        if (l1k > 0 && tau.length >= 256) ratios.push(l1 / l1k);
      }
    const sigma = Math.sqrt(density * (1 - density) / nonzero);
    expect(Math.abs(kept / nonzero - density)).toBeLessThan(5 * sigma);
    const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
    expect(Math.abs(mean * density - 1)).toBeLessThan(0.1);
  });

  test.each([
    ["dare_linear", false, "false"],
    ["dare_linear", false, "true"],
    ["dare_ties", true, "false"],
    ["dare_ties", true, "true"],
  ] as const)("%s (consensus %s), normalize %s: agrees with the reference given the masks; rescale on (the default)", async (name, consensus, normalize) => {
    // Zero entries of τ have no mask to read back; they contribute 0 either way.
    const out = await run(name, experts(W, [density, density, density]), { seed: 11, normalize });
    compareGta(out, { consensus, sparsify: "random", rescale: true, normalize: normalize === "true", lambda: 1, weights: W, densities: [density, density, density] }, [0, 1, 2], (k) => m[k]);
  });
});

test("chunking does not change the result (tie cuts and masks across chunk boundaries)", async () => {
  const fs = await import("fs");
  const { runMerge } = await import("../lib/job/merge");
  const ex = [0, 1, 2].map((t) => ({ path: p(`task${t}`), name: `m${t}`, weight: W[t], parameters: { density: D[t] } }));
  for (const [name, params] of [["ties", { topk_ties: "exact_k" }], ["dare_ties", { seed: 5 }], ["ties", {}]] as const) {
    const outs = [];
    for (const chunkElems of [undefined, 37]) {
      const out = p(`chunk${runs++}.safetensors`);
      await runMerge({ base: p("base"), experts: ex, method: `mergekit:${name}`, params: { ...params }, out, chunkElems });
      outs.push(fs.readFileSync(out));
    }
    expect(outs[1].equals(outs[0])).toBe(true);
  }
});
