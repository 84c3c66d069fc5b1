/**
 * Float64 reference of LOT Merging (SPEC "lot") and the statistics fixtures the
 * LOT / RegMean / drift tests share. Plain loops; solves through the
 * Gauss–Jordan and range-basis routines of ./linalg, not the native path.
 */
import * as path from "path";
import { writeSafetensors, rng, RawTensor, KeySpec, Model, Zoo, makeZoo, readSafetensors, tmpDir, values } from "../helpers/fixtures";
import { encode, quantize, RefFloat } from "../helpers/floatref";
import { gram, gaussJordanSolve, pinvSolve, transpose, matmul } from "./linalg";

/** A small transformer-like layout: linear weights, a norm, biases, an embedding and an integer buffer. */
export function lotModel(dtype: RefFloat = "F32"): KeySpec[] {
  return [
    { name: "embed.weight", shape: [10, 6], dtype },
    { name: "blocks.0.norm1.weight", shape: [6], dtype },
    { name: "blocks.0.norm1.bias", shape: [6], dtype },
    { name: "blocks.0.attn.qkv.weight", shape: [18, 6], dtype },
    { name: "blocks.0.attn.qkv.bias", shape: [18], dtype },
    { name: "blocks.0.mlp.fc1.weight", shape: [12, 6], dtype },
    { name: "blocks.0.mlp.fc2.weight", shape: [6, 12], dtype },
    { name: "position_ids", shape: [4], dtype: "I64" },
  ];
}

export interface TaskStats {
  /** Gram per linear module prefix ([in,in], float64 exact values). */
  grams: Record<string, Float64Array>;
  counts: Record<string, number>;
  /** Σx̂² per norm prefix. */
  norms: Record<string, Float64Array>;
}

/**
 * Random activation statistics for every linear weight and 1-D `.weight` of
 * `keys`: `rows` input rows per task (fewer than a width gives a rank-deficient
 * Gram), with per-feature scales so that tasks weigh features differently.
 */
export function makeStats(keys: KeySpec[], T: number, rows: number, seed = 7): TaskStats[] {
  const out: TaskStats[] = [];
  for (let t = 0; t < T; t++) {
    const r = rng(seed * 100 + t);
    const s: TaskStats = { grams: {}, counts: {}, norms: {} };
    for (const k of keys) {
      if (!k.name.endsWith(".weight") || k.name === "embed.weight") continue;
      const prefix = k.name.slice(0, -".weight".length);
      if (k.shape.length === 2) {
        const n = k.shape[1];
        const scale = Array.from({ length: n }, () => 0.3 + 2 * r.u());
        const X = new Float64Array(rows * n);
        for (let i = 0; i < rows; i++) for (let j = 0; j < n; j++) X[i * n + j] = Math.fround(scale[j] * r.normal());
        s.grams[prefix] = gram(X, rows, n);
        s.counts[prefix] = rows;
      } else {
        s.norms[prefix] = Float64Array.from({ length: k.shape[0] }, () => rows * (0.05 + 2 * r.u()));
        s.counts[prefix] = rows;
      }
    }
    out.push(s);
  }
  return out;
}

export interface WriteStatsOptions {
  dtype?: "F32" | "F64";
  /** Prefixes to leave out of this file. */
  omit?: string[];
  /** Replace tensors (e.g. a wrong shape, a NaN). */
  override?: Record<string, RawTensor>;
}

/** Writes one task's statistics as a safetensors file (test writer, not the library's). */
export function writeStats(file: string, s: TaskStats, o: WriteStatsOptions = {}): string {
  const dtype = o.dtype ?? "F64";
  const tensors: Record<string, RawTensor> = {};
  const put = (key: string, shape: number[], v: ArrayLike<number>, dt: RefFloat = dtype) =>
    (tensors[key] = { dtype: dt, shape, data: encode(v, dt) });
  for (const [p, G] of Object.entries(s.grams)) {
    if (o.omit?.includes(p)) continue;
    const n = Math.round(Math.sqrt(G.length));
    put(`${p}.input_gram`, [n, n], G);
    put(`${p}.input_count`, [1], [s.counts[p]], "F64");
  }
  for (const [p, v] of Object.entries(s.norms)) {
    if (o.omit?.includes(p)) continue;
    put(`${p}.norm_sq_sum`, [v.length], v);
    put(`${p}.input_count`, [1], [s.counts[p]], "F64");
  }
  Object.assign(tensors, o.override ?? {});
  writeSafetensors(file, tensors, { format: "taskmerge-stats" });
  return file;
}

export function writeAllStats(dir: string, stats: TaskStats[], o: WriteStatsOptions = {}): string[] {
  return stats.map((s, t) => writeStats(path.join(dir, `task${t}.stats.safetensors`), s, o));
}

/** The values a stats file holds after rounding to its dtype. */
export function storedStats(s: TaskStats, dtype: "F32" | "F64"): TaskStats {
  const q = (v: Float64Array) => quantize(v, dtype);
  return {
    grams: Object.fromEntries(Object.entries(s.grams).map(([k, v]) => [k, q(v)])),
    norms: Object.fromEntries(Object.entries(s.norms).map(([k, v]) => [k, q(v)])),
    counts: s.counts,
  };
}

export type LinearSolve = { kind: "exact" } | { kind: "ridge"; eps: number } | { kind: "pinv" };

/** T* [out,in] = (Bᵀ solved): A = Σ Gt, B = Σ Gt Ttᵀ. */
export function lotLinearTask(grams: Float64Array[], taus: Float64Array[], out: number, inn: number, solve: LinearSolve): Float64Array {
  const A = new Float64Array(inn * inn);
  const B = new Float64Array(inn * out);
  grams.forEach((G, t) => {
    for (let i = 0; i < inn * inn; i++) A[i] += G[i];
    const GTt = matmul(G, transpose(taus[t], out, inn), inn, inn, out);
    for (let i = 0; i < inn * out; i++) B[i] += GTt[i];
  });
  let X: Float64Array;
  if (solve.kind === "pinv") X = pinvSolve(A, B, inn, out);
  else {
    if (solve.kind === "ridge") {
      let mean = 0;
      for (let i = 0; i < inn; i++) mean += A[i * inn + i] / inn;
      for (let i = 0; i < inn; i++) A[i * inn + i] += solve.eps * mean;
    }
    X = gaussJordanSolve(A, B, inn, out);
  }
  return transpose(X, inn, out);
}

export interface LotRefOptions {
  lambda?: number;
  solve?: LinearSolve;
  /** Per-prefix overrides of the solve (e.g. rank-deficient layers). */
  solveFor?: Record<string, LinearSolve>;
}

/** Merged float values per key (before rounding to the output dtype). */
export function lotReference(keys: KeySpec[], base: Model, experts: Model[], stats: (TaskStats | undefined)[], o: LotRefOptions = {}): Record<string, Float64Array> {
  const lambda = o.lambda ?? 1;
  const T = experts.length;
  const res: Record<string, Float64Array> = {};
  for (const k of keys) {
    if (!(k.dtype.startsWith("F") || k.dtype === "BF16")) continue;
    const w0 = base.floats[k.name];
    const taus = experts.map((e) => e.floats[k.name].map((v, i) => v - w0[i]));
    // `M.weight`, or `M_weight` as in MultiheadAttention's in_proj_weight.
    const prefix = /[._]weight$/.test(k.name) ? k.name.slice(0, -".weight".length) : "";
    const grams = stats.map((s) => s?.grams[prefix]);
    const norms = stats.map((s) => s?.norms[prefix]);
    let tstar: Float64Array;
    if (k.shape.length === 2 && grams.every((g) => g)) {
      tstar = lotLinearTask(grams as Float64Array[], taus, k.shape[0], k.shape[1], o.solveFor?.[prefix] ?? o.solve ?? { kind: "exact" });
    } else if (k.shape.length === 1 && norms.every((v) => v)) {
      tstar = new Float64Array(w0.length);
      for (let d = 0; d < w0.length; d++) {
        let num = 0, den = 0;
        for (let t = 0; t < T; t++) {
          num += norms[t]![d] * taus[t][d];
          den += norms[t]![d];
        }
        tstar[d] = num / den;
      }
    } else {
      tstar = new Float64Array(w0.length);
      for (let i = 0; i < w0.length; i++) for (let t = 0; t < T; t++) tstar[i] += taus[t][i] / T;
    }
    res[k.name] = w0.map((v, i) => v + lambda * tstar[i]);
  }
  return res;
}

// ---- fixtures shared by the lot / regmean / drift tests

export const FLOAT_KEYS = (keys: KeySpec[]) => keys.filter((k) => k.dtype.startsWith("F") || k.dtype === "BF16").map((k) => k.name);

/** max |a − b| over a key / max |b − base| (the size of the change the merge makes). */
export function relErr(out: Float64Array, ref: Float64Array, base: Float64Array): number {
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    num = Math.max(num, Math.abs(out[i] - ref[i]));
    den = Math.max(den, Math.abs(ref[i] - base[i]));
  }
  return num / (den || 1);
}

/**
 * Every float key within `tol` of the reference, relative to the size of the
 * merge's change. Elementwise parameters (norms, biases, the mean) go through
 * the float32 elementwise kernels, so they get float32's tolerance instead.
 */
export function expectClose(file: string, zoo: Zoo, keys: KeySpec[], ref: Record<string, Float64Array>, tol: number, meanKeys: string[] = []): void {
  const got = readSafetensors(file);
  for (const k of FLOAT_KEYS(keys)) {
    const linear = zoo.base.raw[k].shape.length === 2 && k !== "embed.weight" && !meanKeys.includes(k);
    const t = linear ? tol : Math.max(tol, 1e-5);
    const e = relErr(values(got[k]), ref[k], zoo.base.floats[k]);
    if (!(e <= t)) throw new Error(`${k}: relative error ${e} > ${t}`);
  }
  for (const k of keys.filter((x) => !FLOAT_KEYS(keys).includes(x.name))) expect(got[k.name].data.equals(zoo.base.raw[k.name].data)).toBe(true);
}

export interface Setup {
  dir: string;
  zoo: Zoo;
  keys: KeySpec[];
  stats: TaskStats[];
  files: string[];
}

export function setup(T: number, rows: number, o: { statsDtype?: "F32" | "F64"; seed?: number } = {}): Setup {
  const dir = tmpDir("tm-lot-");
  const keys = lotModel("F64");
  const zoo = makeZoo(dir, { T, keys, seed: o.seed ?? 3, scale: 0.05 });
  const stats = makeStats(keys, T, rows, o.seed ?? 3);
  const files = writeAllStats(dir, stats, { dtype: o.statsDtype });
  return { dir, zoo, keys, stats, files };
}

export const experts = (s: Setup) => s.files.map((stats, t) => ({ path: path.join(s.dir, `task${t}.safetensors`), stats }));

