/**
 * mergekit's `dtype` as the compute precision: the mergekit:* methods in
 * bfloat16 and float16 against mergekit's own torch op sequence
 * (test/reference/mergekit_torch.py, run with /usr/bin/python3's torch as a
 * peer), byte for byte on real safetensors files: task_arithmetic, ties
 * weighted and not with normalize on and off (and rescale), dare_linear and
 * dare_ties (normalize on and off) with taskmerge's Bernoulli mask given to
 * the peer, linear; float32 and float16 checkpoints. float32 compute is
 * taskmerge's float path, unchanged.
 *
 * The data avoid ties at every top-k boundary of |τ| in the compute dtype:
 * mergekit's torch.argsort picks among such ties in no specified order.
 */
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { merge } from "../lib";
import { readSafetensors, rng, runCli, tmpDir, writeSafetensors } from "./helpers/fixtures";
import { encode, quantize, RefFloat } from "./helpers/floatref";
import { dareKeep } from "./reference/dare";

// TASKMERGE_TORCH_PYTHON: another interpreter with torch, to check against another torch version.
const PYTHON = process.env.TASKMERGE_TORCH_PYTHON ?? "/usr/bin/python3";
const PEER = path.join(__dirname, "reference", "mergekit_torch.py");
const probe = spawnSync(PYTHON, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
const torchVersion = probe.status === 0 ? probe.stdout.trim() : undefined;
if (!torchVersion) console.warn(`mergekit_dtype.test.ts skipped: ${PYTHON} has no torch (install python3-torch)`);
const withTorch = torchVersion ? describe : describe.skip;

const KEYS: [string, number[]][] = [
  ["model.layers.0.self_attn.q_proj.weight", [24, 16]],
  ["model.layers.0.mlp.up_proj.weight", [40, 12]],
  ["model.layers.0.input_layernorm.weight", [16]],
  ["lm_head.weight", [6000]], // more than one 4096-entry block
];
const W = [1, 0.3, 1.7];
const D = [0.3, 0.5, 0.7];
const P: Record<string, RefFloat> = { bfloat16: "BF16", float16: "F16" };

let dir: string;
const file = (name: string) => path.join(dir, name);

/** Whether |τ| in dtype p ties at the k-th largest for any of the densities D. */
function tiedBoundary(base: Float64Array, x: Float64Array, t: number): boolean {
  for (const p of Object.values(P)) {
    const qb = quantize(base, p), qx = quantize(x, p);
    const tau = quantize(qx.map((v, i) => Math.fround(v - qb[i])), p).map(Math.abs).sort((a, b) => b - a);
    const k = Math.trunc(D[t] * tau.length);
    if (tau[k - 1] === tau[k]) return true;
  }
  return false;
}

/** base, task0..2 in `stored` dtype; task vectors spread over 12 binades so that magnitudes rarely tie. */
function makeModels(stored: RefFloat): void {
  const r = rng(stored === "F32" ? 11 : 12);
  const models: Record<string, Float64Array>[] = [{}, {}, {}, {}];
  for (const [key, shape] of KEYS) {
    const n = shape.reduce((a, b) => a * b, 1);
    const base = quantize(Array.from({ length: n }, () => r.normal() * 0.05), stored);
    models[0][key] = base;
    for (let t = 0; t < 3; t++) {
      let x: Float64Array;
      do {
        x = quantize(base.map((b) => b + (r.u() < 0.5 ? -1 : 1) * 2 ** (-3 - 12 * r.u())), stored);
      } while (tiedBoundary(base, x, t));
      models[t + 1][key] = x;
    }
  }
  ["base", "task0", "task1", "task2"].forEach((name, i) =>
    writeSafetensors(file(`${name}-${stored}.safetensors`), Object.fromEntries(KEYS.map(([k, shape]) => [k, { dtype: stored, shape, data: encode(models[i][k], stored) }]))),
  );
}

beforeAll(() => {
  dir = tmpDir("tm-mkdtype-");
  makeModels("F32");
  makeModels("BF16");
  if (!torchVersion) return;
  // One peer run for every case: importing torch takes a while.
  const specs = Object.entries(PEER_CASES).map(([id, c]) => peerSpec(id, c));
  execFileSync(PYTHON, [PEER, ...specs], { stdio: ["ignore", "ignore", "inherit"] });
}, 300_000);

let runs = 0;

interface Case {
  method: "task_arithmetic" | "ties" | "dare_linear" | "dare_ties" | "linear";
  dtype: "bfloat16" | "float16";
  stored: RefFloat;
  weights?: number[];
  densities?: number[];
  normalize: boolean;
  rescale?: boolean;
  lambda?: number;
  seed?: number;
}

/** Writes the peer's spec of a case (mergekit's result goes to peer-<id>.safetensors). */
function peerSpec(id: string, c: Case, lambda = c.lambda ?? 1): string {
  const models = [0, 1, 2].map((t) => ({ path: file(`task${t}-${c.stored}.safetensors`), weight: c.weights?.[t] ?? 1, density: c.densities?.[t] ?? 1 }));
  const spec: Record<string, unknown> = {
    method: c.method, dtype: c.dtype, normalize: c.normalize, rescale: c.rescale ?? c.method.startsWith("dare"), lambda,
    out: file(`peer-${id}.safetensors`),
  };
  if (c.method === "linear") spec.models = [{ path: file(`base-${c.stored}.safetensors`), weight: 0.7 }, ...models];
  else Object.assign(spec, { base: file(`base-${c.stored}.safetensors`), models });
  if (c.method.startsWith("dare")) {
    const masks: Record<string, { dtype: string; shape: number[]; data: Buffer }> = {};
    for (const [key, shape] of KEYS)
      for (let t = 0; t < 3; t++) {
        const n = shape.reduce((a, b) => a * b, 1);
        masks[`${key}/${t}`] = { dtype: "U8", shape: [n], data: Buffer.from(dareKeep(c.seed!, key, t, n, c.densities![t]).map(Number)) };
      }
    writeSafetensors(file(`masks-${id}.safetensors`), masks);
    spec.masks = file(`masks-${id}.safetensors`);
  }
  fs.writeFileSync(file(`spec-${id}.json`), JSON.stringify(spec));
  return file(`spec-${id}.json`);
}

/** mergekit's result of case `id`, computed by the peer in beforeAll: the bytes of every tensor. */
const peer = (id: string) => bytes(file(`peer-${id}.safetensors`));

function bytes(f: string): Record<string, Buffer> {
  return Object.fromEntries(Object.entries(readSafetensors(f)).map(([k, t]) => [k, t.data]));
}

/** taskmerge's result through the library: mergekit:<method> with compute_dtype, written in that dtype. */
async function ours(c: Case, lambda = c.lambda ?? 1, extra: Record<string, unknown> = {}): Promise<Record<string, Buffer>> {
  const out = file(`ours${runs++}.safetensors`);
  const params: Record<string, unknown> = { compute_dtype: c.dtype, normalize: String(c.normalize), ...extra };
  if (c.method === "linear") params.base_weight = 0.7;
  else params.lambda = lambda;
  if (c.rescale !== undefined) params.rescale = String(c.rescale);
  if (c.seed !== undefined) params.seed = c.seed;
  await merge({
    base: file(`base-${c.stored}.safetensors`), out, dtype: c.dtype === "bfloat16" ? "bf16" : "f16",
    method: { name: `mergekit:${c.method}`, ...params },
    experts: [0, 1, 2].map((t) => ({
      path: file(`task${t}-${c.stored}.safetensors`), name: `m${t}`,
      parameters: { weight: c.weights?.[t] ?? 1, ...(c.densities ? { density: c.densities[t] } : {}) },
    })),
  });
  return bytes(out);
}

function expectSameBytes(got: Record<string, Buffer>, want: Record<string, Buffer>): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const k of Object.keys(want)) if (!got[k].equals(want[k])) throw new Error(`${k}: taskmerge's bytes differ from mergekit's (torch ${torchVersion})`);
}

const CASES: Omit<Case, "dtype" | "stored">[] = [
  { method: "task_arithmetic", weights: [1, 0.5, -0.3], normalize: false, lambda: 0.75 },
  { method: "task_arithmetic", weights: [1, 0.5, -0.3], normalize: true },
  { method: "ties", weights: W, densities: D, normalize: true },
  { method: "ties", weights: W, densities: D, normalize: false, lambda: 1.5 },
  { method: "ties", densities: D, normalize: true },
  { method: "ties", densities: D, normalize: false },
  { method: "ties", weights: W, densities: D, normalize: true, rescale: true },
  { method: "dare_linear", weights: W, densities: D, normalize: false, seed: 3 },
  { method: "dare_ties", weights: W, densities: D, normalize: false, seed: 4 },
  { method: "dare_ties", weights: W, densities: D, normalize: true, seed: 5 },
  { method: "linear", weights: [0.3, 0.5, 0.2], normalize: true },
  { method: "linear", weights: [0.3, 0.5, 0.2], normalize: false },
];

const DTYPES = ["bfloat16", "float16"] as const;
const STORED: RefFloat[] = ["F32", "BF16"];
const LAMBDA: Case = { method: "ties", weights: W, densities: D, normalize: true, lambda: 0.3, dtype: "bfloat16", stored: "F32" };
const TIES_BF16: Case = { method: "ties", weights: W, densities: D, normalize: true, dtype: "bfloat16", stored: "F32" };
const TIES_STORED: Case = { ...TIES_BF16, stored: "BF16" };
const PEER_CASES: Record<string, Case> = {
  ...Object.fromEntries(DTYPES.flatMap((dtype) => STORED.flatMap((stored) => CASES.map((c, i) => [`${dtype}-${stored}-${i}`, { ...c, dtype, stored }])))),
  lambda: LAMBDA, ties_bf16: TIES_BF16, ties_stored: TIES_STORED,
};

withTorch("bfloat16 and float16 compute: byte for byte what mergekit's torch ops give", () => {
  for (const dtype of DTYPES)
    for (const stored of STORED)
      test.each(CASES.map((c, i) => [`${c.method} ${JSON.stringify({ ...c, method: undefined })}`, i] as const))(
        `${dtype} from ${stored} checkpoints: %s`,
        async (_name, i) => expectSameBytes(await ours({ ...CASES[i], dtype, stored }), peer(`${dtype}-${stored}-${i}`)),
      );

  test("λ that the compute dtype cannot hold: torch ≥ 2 multiplies by it in float32, torch 1 by its bfloat16 rounding", async () => {
    const c = LAMBDA;
    const torch2 = Number(torchVersion!.split(".")[0]) >= 2;
    // taskmerge follows torch ≥ 2 (mergekit requires it); torch 1's result is taskmerge's with λ = bf16(0.3) = 0.30078125.
    expectSameBytes(await ours(c, torch2 ? 0.3 : 0.30078125), peer("lambda"));
    // The two rules differ on these data: the case tells them apart.
    const other = await ours(c, torch2 ? 0.30078125 : 0.3);
    expect(Object.keys(other).some((k) => !other[k].equals(peer("lambda")[k]))).toBe(true);
  });

  test("streamed in chunks of 1000 entries (several per tensor), and with exactly-k ties: the same bytes", async () => {
    process.env.TASKMERGE_CHUNK_ELEMS = "1000";
    try {
      const exact = await ours({ ...TIES_BF16, rescale: false }, 1, { topk_ties: "exact_k" });
      expectSameBytes(exact, peer("ties_bf16"));
      const dare = CASES.findIndex((c) => c.method === "dare_ties" && c.normalize);
      expectSameBytes(await ours({ ...CASES[dare], dtype: "float16", stored: "F32" }), peer(`float16-F32-${dare}`));
    } finally {
      delete process.env.TASKMERGE_CHUNK_ELEMS;
    }
  });

  test("a config in mergekit's form: dtype is the compute precision and the output dtype; out_dtype overrides the output", async () => {
    const models = [0, 1, 2].map((t) => `  - model: task${t}-F32.safetensors\n    parameters: {weight: ${W[t]}, density: ${D[t]}}`).join("\n");
    const yml = (extra: string) => `merge_method: ties\nbase_model: base-F32.safetensors\nmodels:\n${models}\n${extra}`;
    fs.writeFileSync(file("mk-bf16.yml"), yml("dtype: bfloat16\n"));
    fs.writeFileSync(file("mk-bf16-f32.yml"), yml("dtype: bfloat16\nout_dtype: float32\n"));
    const [a, b] = await Promise.all([
      runCli(["merge", file("mk-bf16.yml"), file("mk-bf16.safetensors"), "-q"]),
      runCli(["merge", file("mk-bf16-f32.yml"), file("mk-bf16-f32.safetensors"), "-q"]),
    ]);
    expect([a.code, a.stderr, b.code, b.stderr]).toEqual([0, "", 0, ""]);
    expectSameBytes(bytes(file("mk-bf16.safetensors")), peer("ties_bf16"));
    const f32 = readSafetensors(file("mk-bf16-f32.safetensors"));
    const want = readSafetensors(file("peer-ties_bf16.safetensors"));
    for (const k of Object.keys(want)) {
      expect(f32[k].dtype).toBe("F32");
      expect(Array.from(new Float32Array(new Uint8Array(f32[k].data).buffer))).toEqual(Array.from(bf16Values(want[k].data)));
    }
  });

  test("without dtype mergekit computes in the stored dtype: bfloat16 checkpoints merge in bfloat16", async () => {
    const models = [0, 1, 2].map((t) => `  - model: task${t}-BF16.safetensors\n    parameters: {weight: ${W[t]}, density: ${D[t]}}`).join("\n");
    fs.writeFileSync(file("mk-stored.yml"), `merge_method: ties\nbase_model: base-BF16.safetensors\nmodels:\n${models}\n`);
    const r = await runCli(["merge", file("mk-stored.yml"), file("mk-stored.safetensors"), "-q"]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    expectSameBytes(bytes(file("mk-stored.safetensors")), peer("ties_stored"));
  });
});

/** bfloat16 bytes as float64 values. */
function bf16Values(b: Buffer): Float64Array {
  const out = new Float64Array(b.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = new Float32Array(new Uint32Array([b.readUInt16LE(2 * i) << 16]).buffer)[0];
  return out;
}

test("float32 compute is taskmerge's float path: a mergekit-form dtype: float32 merges as mergekit:ties with its defaults", async () => {
  const models = [0, 1, 2].map((t) => `  - model: task${t}-BF16.safetensors\n    parameters: {weight: ${W[t]}, density: ${D[t]}}`).join("\n");
  fs.writeFileSync(file("mk-f32.yml"), `merge_method: ties\nbase_model: base-BF16.safetensors\nmodels:\n${models}\ndtype: float32\nout_dtype: bfloat16\n`);
  const r = await runCli(["merge", file("mk-f32.yml"), file("mk-f32.safetensors"), "-q"]);
  expect([r.code, r.stderr]).toEqual([0, ""]);
  const out = file("lib-f32.safetensors");
  await merge({
    base: file("base-BF16.safetensors"), out, dtype: "bf16", method: { name: "mergekit:ties" },
    experts: [0, 1, 2].map((t) => ({ path: file(`task${t}-BF16.safetensors`), name: `task${t}-BF16`, parameters: { weight: W[t], density: D[t] } })),
  });
  expect(fs.readFileSync(file("mk-f32.safetensors")).equals(fs.readFileSync(out))).toBe(true);
  // The bfloat16 computation differs from it: the precision changes the result.
  const low = file("lib-bf16.safetensors");
  await merge({
    base: file("base-BF16.safetensors"), out: low, dtype: "bf16", method: { name: "mergekit:ties", compute_dtype: "bfloat16" },
    experts: [0, 1, 2].map((t) => ({ path: file(`task${t}-BF16.safetensors`), name: `task${t}-BF16`, parameters: { weight: W[t], density: D[t] } })),
  });
  expect(fs.readFileSync(low).equals(fs.readFileSync(out))).toBe(false);
});
