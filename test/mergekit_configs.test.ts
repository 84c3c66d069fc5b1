/**
 * mergekit's own example configs (test/fixtures/mergekit: written by hand after
 * arcee-ai/mergekit's examples/) through the CLI: the ones whose method
 * taskmerge supports parse, plan (--dry-run shows each model's resolved
 * parameters) and merge to what mergekit's definition gives (float64
 * reference, with the gradients and filters evaluated here as mergekit's
 * evaluate_setting does); the others are refused with one line saying why.
 */
import * as fs from "fs";
import * as path from "path";
import { readSafetensors, ROOT, runCli, tmpDir, values } from "./helpers/fixtures";
import { EPS } from "./helpers/floatref";
import { makeMkZoo, MkZoo } from "./helpers/mergekit_models";
import { gradientAt, gtaRef, linearRef } from "./reference/mergekit";

const FIXTURES = path.join(ROOT, "test", "fixtures", "mergekit");
let dir: string;
let zoo: MkZoo;
beforeAll(() => {
  dir = tmpDir("tm-mkcfg-");
  zoo = makeMkZoo(dir, 3);
  for (const f of fs.readdirSync(FIXTURES)) fs.copyFileSync(path.join(FIXTURES, f), path.join(dir, f));
});

const cfg = (name: string) => path.join(dir, name);

/**
 * A copy of a fixture computed in float32 and written in its dtype: mergekit's
 * dtype is its compute precision, and the float64 reference here is of the
 * definitions (float16 compute is test/mergekit_dtype.test.ts's, against torch).
 */
function float32Compute(name: string): string {
  const yml = fs.readFileSync(cfg(name), "utf8");
  if (!/^dtype: float16$/m.test(yml)) throw new Error(`${name} has no 'dtype: float16'`);
  const copy = name.replace(/\.yml$/, "-f32.yml");
  fs.writeFileSync(cfg(copy), yml.replace(/^dtype: float16$/m, "dtype: float32\nout_dtype: float16"));
  return copy;
}

/** mergekit's t for a tensor: layer i of the 4 at i/3, anything outside the layers at 0. */
const tOf = (key: string) => {
  const m = /\.layers\.(\d+)\./.exec(key);
  return m ? Number(m[1]) / 3 : 0;
};

function expectNear(got: Float64Array, ref: Float64Array, what: string): void {
  for (let i = 0; i < ref.length; i++) {
    const tol = 2 * EPS.F16 * Math.abs(ref[i]) + 1e-6;
    if (!(Math.abs(got[i] - ref[i]) <= tol)) throw new Error(`${what}[${i}]: got ${got[i]}, reference ${ref[i]}`);
  }
}

async function mergeOk(file: string, out: string, extra: string[] = []) {
  const r = await runCli(["merge", cfg(file), out, "-q", ...extra]);
  expect([r.code, r.stderr]).toEqual([0, ""]);
  const merged = readSafetensors(out);
  return Object.fromEntries(Object.entries(merged).map(([k, t]) => [k, { dtype: t.dtype, v: values(t) }]));
}

describe("supported: parse, plan, merge as mergekit defines it", () => {
  test("ties.yml: density and weight gradients, a filtered weight", async () => {
    const dry = await runCli(["merge", cfg("ties.yml"), cfg("ties-out"), "--dry-run", "--json"]);
    expect([dry.code, dry.stderr]).toEqual([0, ""]);
    const plan = JSON.parse(dry.stdout);
    expect(plan).toMatchObject({ method: "ties", params: { normalize: "true", int8_mask: "true", lambda: 1, topk_ties: "keep_all" } });
    expect(plan.out.dtype).toBe("F16");
    expect(plan.experts.map((e: { parameters: unknown }) => e.parameters)).toEqual([
      { weight: 1, density: [1, 0.7, 0.1] },
      { weight: [0, 0.3, 0.7, 1], density: 0.5 },
      { weight: [{ filter: "mlp", value: 0.5 }, { value: 0 }], density: 0.33 },
    ]);
    const text = await runCli(["merge", cfg("ties.yml"), cfg("ties-out"), "--dry-run"]);
    expect(text.stdout).toContain("task0: ");
    expect(text.stdout).toContain("weight 1, density [1, 0.7, 0.1]");
    expect(text.stdout).toContain("weight [mlp: 0.5, *: 0], density 0.33");

    const out = await mergeOk(float32Compute("ties.yml"), cfg("ties-out-f32"));
    for (const k of zoo.keys) {
      const t = tOf(k.name);
      const weights = [1, gradientAt([0, 0.3, 0.7, 1], t), k.name.includes("mlp") ? 0.5 : 0];
      const densities = [gradientAt([1, 0.7, 0.1], t), 0.5, 0.33];
      const ref = gtaRef(zoo.base.floats[k.name], zoo.experts.map((e) => e.floats[k.name]), {
        consensus: true, sparsify: "magnitude", normalize: true, rescale: false, lambda: 1, weights, densities,
      });
      expect(out[k.name].dtype).toBe("F16");
      expectNear(out[k.name].v, ref, k.name);
    }
    const manifest = JSON.parse(fs.readFileSync(path.join(cfg("ties-out-f32"), "taskmerge.json"), "utf8"));
    expect(manifest.details.definition).toBe("mergekit");
  });

  test("bio-merge.yml: weighted TIES with normalize off; out_dtype overrides dtype", async () => {
    const out = await mergeOk(float32Compute("bio-merge.yml"), cfg("bio-out"));
    for (const k of zoo.keys) {
      const ref = gtaRef(zoo.base.floats[k.name], [0, 1].map((t) => zoo.experts[t].floats[k.name]), {
        consensus: true, sparsify: "magnitude", normalize: false, rescale: false, lambda: 1, weights: [0.5, 0.5], densities: [0.5, 0.5],
      });
      expect(out[k.name].dtype).toBe("F16"); // out_dtype over dtype: float32
      expectNear(out[k.name].v, ref, k.name);
    }
  });

  test("linear.yml: the weighted mean of three models, no base (the first model supplies the files)", async () => {
    const out = await mergeOk(float32Compute("linear.yml"), cfg("linear-out-f32"));
    for (const k of zoo.keys)
      expectNear(out[k.name].v, linearRef(zoo.experts.map((e) => e.floats[k.name]), [1, 0.3, 0.5], true), k.name);
  });

  test("--method names mergekit's definition in a mergekit-form file", async () => {
    const r = await runCli(["merge", cfg("bio-merge.yml"), cfg("bio-ta"), "--method", "task_arithmetic", "--dry-run", "--json"]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    expect(JSON.parse(r.stdout)).toMatchObject({ method: "task_arithmetic", params: { lambda: 1, normalize: "false" } });
  });

  test("a density that keeps no entry of a tensor is refused before anything is written, as mergekit refuses it", async () => {
    fs.writeFileSync(cfg("tiny.yml"), "merge_method: ties\nbase_model: base\nmodels:\n  - model: task0\n    parameters: {density: 0.05}\n");
    const r = await runCli(["merge", cfg("tiny.yml"), cfg("tiny-out")]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(
      "taskmerge: mergekit:ties: density 0.05 of model 'task0' keeps no entry of model.layers.0.input_layernorm.weight (16 entries, k = ⌊density·n⌋ = 0); mergekit refuses this too",
    );
    expect(fs.existsSync(cfg("tiny-out"))).toBe(false);
  });
});

test.each(["ties", "linear"])("the model card's merge.yaml of %s.yml is in mergekit's form and reproduces the merge", async (name) => {
  const outDir = cfg(`${name}-out`);
  if (!fs.existsSync(outDir)) await mergeOk(`${name}.yml`, outDir);
  const card = fs.readFileSync(path.join(outDir, "README.md"), "utf8");
  const yml = /```yaml\n([\s\S]*?)```/.exec(card)![1];
  expect(yml).toMatch(/^merge_method: /m);
  // Its paths are relative to the output directory, where the card says to save it.
  const saved = path.join(outDir, "merge.yaml");
  fs.writeFileSync(saved, yml);
  const again = cfg(`${name}-again`);
  const r = await runCli(["merge", "--config", saved, "--out", again, "-q"]);
  expect([r.code, r.stderr]).toEqual([0, ""]);
  expect(fs.readFileSync(path.join(again, "model.safetensors")).equals(fs.readFileSync(path.join(outDir, "model.safetensors")))).toBe(true);
});

describe("not supported: one line saying why, exit 2", () => {
  test.each([
    ["arcee_fusion.yml", /^merge_method: unknown method 'arcee_fusion' \(available: .*\); mergekit's 'arcee_fusion' is not supported/],
    ["gradient-slerp.yml", /^slices: unknown key \(mergekit's slices \(layer ranges\) are not supported: .*\) \(line 2\)/],
    ["orcamini-platy-44layer.yml", /^slices: unknown key \(mergekit's slices \(layer ranges\) are not supported: .*\) \(line 2\)/],
  ])("%s", async (file, expected) => {
    const r = await runCli(["merge", cfg(file), cfg(`${file}-out`)]);
    expect(r.code).toBe(2);
    const prefix = `taskmerge: ${cfg(file)}: `;
    expect(r.stderr.startsWith(prefix)).toBe(true);
    expect(r.stderr.trim().slice(prefix.length)).toMatch(expected);
    expect(fs.existsSync(cfg(`${file}-out`))).toBe(false);
  });
});
