/**
 * Every example config in examples/configs/ runs through the CLI against
 * generated checkpoints (laid out as the configs expect: models/base,
 * models/math, models/code and their statistics), once as a dry run and once
 * for real. The list comes from the method registry: every registered method
 * must have an example; an example for a method not registered yet is skipped.
 */
import * as fs from "fs";
import * as path from "path";
import YAML from "yaml";
import { listMethods } from "../lib/methods";
import { Checkpoint } from "../lib/checkpoint";
import { fingerprint } from "../lib/fingerprint";
import { sourceMetadata } from "../lib/stats/source";
import { ROOT, genTensors, saveModel, smallModel, writeSafetensors, readSafetensors, values, rng, runCli, tmpDir, Model } from "./helpers/fixtures";

const CONFIGS = path.join(ROOT, "examples", "configs");
const registered = listMethods().map((m) => m.name);
const examples = fs.readdirSync(CONFIGS).filter((f) => f.endsWith(".yaml")).map((f) => f.replace(/\.yaml$/, ""));

/** Input Grams for the linear layers and Σx̂² for the norm; none for the embedding, which must fall back. */
function writeStats(file: string, seed: number, metadata: Record<string, string>): void {
  const r = rng(seed);
  const rows = 40;
  const tensors: Record<string, { dtype: string; shape: number[]; data: Buffer }> = {};
  const count = () => ({ dtype: "F64", shape: [1], data: Buffer.from(new Float64Array([rows]).buffer) });
  for (const [mod, inDim] of [["blocks.0.attn.qkv", 8], ["blocks.0.mlp.fc1", 8], ["blocks.0.mlp.fc2", 32]] as const) {
    const x = Array.from({ length: rows * inDim }, () => r.normal());
    const g = new Float32Array(inDim * inDim);
    for (let i = 0; i < inDim; i++)
      for (let j = 0; j < inDim; j++) for (let n = 0; n < rows; n++) g[i * inDim + j] += x[n * inDim + i] * x[n * inDim + j];
    tensors[`${mod}.input_gram`] = { dtype: "F32", shape: [inDim, inDim], data: Buffer.from(g.buffer) };
    tensors[`${mod}.input_count`] = count();
  }
  const sq = new Float32Array(8).map(() => rows * (0.5 + r.u()));
  tensors["blocks.0.norm.norm_sq_sum"] = { dtype: "F32", shape: [8], data: Buffer.from(sq.buffer) };
  tensors["blocks.0.norm.input_count"] = count();
  writeSafetensors(file, tensors, metadata);
}

/** The checkpoints the example configs name, relative to their directory; statistics record their expert, as collectors write them. */
async function makeModels(dir: string): Promise<void> {
  const keys = smallModel("F32");
  const models = path.join(dir, "models");
  fs.mkdirSync(models);
  const base: Model = genTensors(keys, 7);
  saveModel(base, path.join(models, "base"), "dir");
  fs.writeFileSync(path.join(models, "base", "config.json"), '{"model_type": "toy"}');
  for (const [t, name] of ["math", "code"].entries()) {
    const p = saveModel(genTensors(keys, 100 + t, base, 0.1), path.join(models, name), "dir");
    const ck = await Checkpoint.open(p);
    writeStats(path.join(models, `${name}.stats.safetensors`), 200 + t, sourceMetadata(p, await fingerprint(ck)));
    await ck.close();
  }
}

/** What the config asks for, read independently of lib/cli/config.ts. */
/** mergekit's methods, which a config in mergekit's form runs with mergekit's meaning (per-model weight and density). */
const MERGEKIT = new Set(["linear", "task_arithmetic", "ties", "dare_linear", "dare_ties"]);

function expected(doc: Record<string, any>): {
  method: string; params: Record<string, unknown>; weights: number[]; out: string; modelParams?: Record<string, unknown>[];
} {
  if (doc.merge_method) {
    const mk = MERGEKIT.has(doc.merge_method);
    const params: Record<string, unknown> = {};
    // mergekit's booleans are the methods' "true"/"false"; top-level weight and density are every model's default.
    for (const [k, v] of Object.entries(doc.parameters ?? {}))
      if (!(mk && (k === "weight" || k === "density"))) params[k] = typeof v === "boolean" ? String(v) : v;
    const models = doc.models.filter((m: any) => m.model !== doc.base_model);
    if (!mk) for (const m of models) if (m.parameters?.density !== undefined) params.density = m.parameters.density;
    const modelParams = models.map((m: any) => {
      const density = m.parameters?.density ?? doc.parameters?.density;
      return { weight: m.parameters?.weight ?? doc.parameters?.weight ?? 1, ...(density !== undefined ? { density } : {}) };
    });
    return { method: doc.merge_method, params, weights: models.map((m: any) => m.parameters?.weight ?? 1), out: doc.out, ...(mk ? { modelParams } : {}) };
  }
  const nonParams = new Set(["base", "experts", "stats", "method", "out", "dtype", "device", "max_shard_size"]);
  const { name, ...methodParams } = typeof doc.method === "string" ? { name: doc.method } : doc.method;
  const params = { ...methodParams, ...Object.fromEntries(Object.entries(doc).filter(([k]) => !nonParams.has(k))) };
  return { method: name, params, weights: doc.experts.map((e: any) => (typeof e === "string" ? 1 : e.weight ?? 1)), out: doc.out };
}

let models: Promise<string> | undefined;
/** One set of checkpoints for all configs, made on first use (concurrent tests do not wait for beforeAll). */
const work = () => (models ??= Promise.resolve().then(async () => {
  const d = tmpDir("tm-examples-");
  await makeModels(d);
  return d;
}));

test("every registered method has an example config", () => {
  expect(registered.filter((m) => !examples.includes(m))).toEqual([]);
});

for (const name of examples.filter((e) => !registered.includes(e)))
  test.skip(`examples/configs/${name}.yaml — skipped: method '${name}' is not registered yet`, () => undefined);

describe.each(registered.filter((m) => examples.includes(m)))("examples/configs/%s.yaml", (name) => {
  test.concurrent("dry run, then the merge it describes", async () => {
    const dir = path.join(await work(), name); // a directory per config: outputs do not collide
    fs.mkdirSync(dir);
    fs.symlinkSync(path.join(path.dirname(dir), "models"), path.join(dir, "models"));
    const file = path.join(dir, `${name}.yaml`);
    fs.copyFileSync(path.join(CONFIGS, `${name}.yaml`), file);
    const doc = YAML.parse(fs.readFileSync(file, "utf8"));
    const want = expected(doc);
    expect(want.method).toBe(name);
    const out = path.resolve(dir, want.out);

    const dry = await runCli(["merge", "--config", file, "--dry-run", "--json"]);
    expect(dry.stderr).toBe("");
    expect(dry.code).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan).toMatchObject({ method: name, params: want.params });
    expect(plan.experts.map((e: { name: string; weight: number }) => [e.name, e.weight])).toEqual([["math", want.weights[0]], ["code", want.weights[1]]]);
    if (want.modelParams) expect(plan.experts.map((e: { parameters: unknown }) => e.parameters)).toEqual(want.modelParams);
    expect(fs.existsSync(out)).toBe(false);
    const needsStats = listMethods().find((m) => m.name === name)!.needsStats;
    if (needsStats) {
      expect(plan.statistics.withStats.sort()).toEqual(["blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight", "blocks.0.norm.weight"]);
      expect(plan.statistics.fallback).toEqual([{ key: "embed.weight", missingFrom: ["math", "code"] }]);
    }

    const r = await runCli(["merge", "--config", file, "-q"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const manifest = JSON.parse(fs.readFileSync(path.join(out, "taskmerge.json"), "utf8"));
    expect(manifest).toMatchObject({ method: name, params: want.params, base: path.join(dir, "models", "base") });
    expect(manifest.experts.map((e: { name: string; weight: number }) => [e.name, e.weight])).toEqual([["math", want.weights[0]], ["code", want.weights[1]]]);
    if (needsStats) expect(JSON.stringify(manifest.details)).toContain("embed.weight"); // the fallback is reported
    expect(fs.readFileSync(path.join(out, "README.md"), "utf8")).toContain(`**${name}**`);
    // config.json is the base's; a config's dtype (f32 or mergekit's float32) sets its torch_dtype.
    const torchDtype = ({ f32: "float32", f16: "float16", bf16: "bfloat16" } as Record<string, string>)[doc.dtype] ?? doc.dtype;
    if (doc.dtype) expect(JSON.parse(fs.readFileSync(path.join(out, "config.json"), "utf8"))).toEqual({ model_type: "toy", torch_dtype: torchDtype });
    else expect(fs.readFileSync(path.join(out, "config.json"), "utf8")).toBe('{"model_type": "toy"}');
    const merged = readSafetensors(out);
    expect(Object.keys(merged)).toEqual(smallModel().map((k) => k.name));
    for (const [k, t] of Object.entries(merged))
      if (t.dtype.startsWith("F")) expect({ k, finite: values(t).every(Number.isFinite) }).toEqual({ k, finite: true });
  });
});
