/**
 * mergekit's `dtype` as the compute precision: mergekit casts every input to
 * `dtype` and runs its torch ops in it. In bfloat16 and float16 that rounds
 * the inputs, the task vectors and every intermediate result, so the merge
 * differs from one computed in float32; here the mergekit:* methods repeat
 * mergekit's op sequence with torch's CPU rounding (kernels/mergekit_lowp.cpp).
 * float32 (and float64) compute keeps taskmerge's float32/float64 path.
 *
 * compute_dtype "stored" is mergekit without `dtype`: each tensor computed in
 * the dtype it is stored in (GTA methods: the base's, as mergekit casts the
 * models to the base's dtype; linear: the models' common dtype, float32 when
 * they differ, as torch.stack promotes).
 */
import { allocState, freeState, runOp } from "../../native";
import type { OpResultOf } from "../../native";
import { chunkArgs } from "../../engine/stream";
import type { MergeContext, ParamSpec, TensorSink } from "../../engine/context";
import { KeyScan } from "../../select/scan";
import type { OpArgs } from "../../select/sign";
import { mergeWith } from "../ties";

export type LowDType = "BF16" | "F16";

export const COMPUTE_DTYPES = ["float32", "bfloat16", "float16", "stored"] as const;

export const computeDtypeParam: ParamSpec = {
  name: "compute_dtype", type: "string", default: "float32", choices: [...COMPUTE_DTYPES],
  description: "precision of the computation, as mergekit's `dtype` (stored: each tensor's own dtype, mergekit without `dtype`)",
};

/** The low precision `key` is computed in, or undefined for taskmerge's float32/float64 path. */
export function lowPrecisionOf(ctx: MergeContext, key: string, linear: boolean): LowDType | undefined {
  const c = ctx.params.compute_dtype as string;
  if (c === "bfloat16") return "BF16";
  if (c === "float16") return "F16";
  if (c !== "stored") return undefined;
  const stored = [ctx.base.get(key).dtype, ...(linear ? ctx.experts.map((e) => e.checkpoint.get(key).dtype) : [])];
  const d = stored[0];
  return (d === "BF16" || d === "F16") && stored.every((x) => x === d) ? d : undefined;
}

/** Each value rounded to P as torch.tensor(values, dtype=P) stores it: to float32, then to P. */
async function toLow(values: number[], p: LowDType): Promise<number[]> {
  const src = new Float32Array(values);
  const mid = Buffer.alloc(2 * values.length);
  const back = new Float64Array(values.length);
  await runOp("convert", { fromDtype: "F32", toDtype: p, src: new Uint8Array(src.buffer), dst: mid });
  await runOp("convert", { fromDtype: p, toDtype: "F64", src: mid, dst: new Uint8Array(back.buffer) });
  return Array.from(back);
}

/** float32 bits of a P value (a threshold for core/trim.h's modes). */
function f32Bits(x: number): number {
  return new Uint32Array(new Float32Array([x]).buffer)[0];
}

/** P value of a 15-bit magnitude pattern. */
async function lowValue(pattern: number, p: LowDType): Promise<number> {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(pattern);
  const back = new Float64Array(1);
  await runOp("convert", { fromDtype: p, toDtype: "F64", src: b, dst: new Uint8Array(back.buffer) });
  return back[0];
}

/** float32 sum in order, as torch's sum over the models accumulates. */
function sumF32(xs: number[]): number {
  return xs.reduce((a, x) => Math.fround(a + x), 0);
}

export interface LowGta {
  p: LowDType;
  consensus: boolean;
  sparsify?: "magnitude" | "random";
  weights: number[];
  densities: number[];
  ks?: number[];
  exactK: boolean;
  rescale: boolean;
  normalize: boolean;
  lambda: number;
  seed: number;
}

/**
 * The trim of mergekit's sparsify in P: magnitude keeps the k largest |τt| of
 * P values (thresholds are P values; "exact_k" keeps the threshold's ties in
 * index order), random is the Bernoulli mask of the float32 path.
 */
async function lowTrim(ctx: MergeContext, scan: KeyScan, o: LowGta): Promise<{ trim: OpArgs; thresholds?: number[] }> {
  const sparse = o.densities.some((x) => x < 1);
  if (!sparse || !o.sparsify) return { trim: {} };
  if (o.sparsify === "random") return { trim: { trim: "bernoulli", densities: o.densities, seed: o.seed, key: scan.key } };
  const T = ctx.experts.length, bins = 1 << 15;
  // The low-precision entries exist on the CPU backend only (backend.h), so the
  // histogram and its passes run there whatever the job's device: a state must
  // live on the device of the ops that use it.
  const hist = await allocState(T * bins * 8, "cpu");
  let pick: OpResultOf<"magnitude_pick">;
  try {
    await scan.scan((c) => runOp("mergekit_lowp_hist", { ...chunkArgs(ctx, c), device: "cpu", compute: o.p, hist }).then(() => undefined));
    pick = await runOp("magnitude_pick", { hist, bins, ks: o.ks!, device: "cpu" });
  } finally {
    await freeState(hist);
  }
  const values = await Promise.all((pick.bin as number[]).map((b) => lowValue(b, o.p)));
  const bits = values.map((v, t) => (o.densities[t] >= 1 ? 0 : f32Bits(v)));
  if (!o.exactK) return { trim: { trim: "magnitude", thresholds: bits }, thresholds: values };
  // Exactly k: all above the threshold, then its ties in index order up to rank of them.
  const rank = pick.rank as number[];
  const need = rank.slice();
  const cuts = o.densities.map((d) => (d >= 1 ? scan.numel : -1));
  await scan.scan(async (c) => {
    if (cuts.every((x) => x >= 0)) return;
    const r = await runOp("mergekit_lowp_tie_cut", {
      ...chunkArgs(ctx, c), compute: o.p, thresholds: bits, need: need.map((x, t) => (cuts[t] >= 0 ? 0 : x)),
    });
    const at = r.at as number[], count = r.count as number[];
    for (let t = 0; t < T; t++) {
      if (cuts[t] >= 0) continue;
      if (at[t] > 0) cuts[t] = c.offset + at[t];
      else need[t] -= count[t];
    }
  });
  if (cuts.some((x) => x < 0)) throw new Error(`mergekit ties: the tied entries at the threshold of ${scan.key} were not found again`);
  return { trim: { trim: "magnitude_cut", thresholds: bits, cuts }, thresholds: values };
}

/**
 * rescaled_masked_tensor's factor ‖τ‖₁/‖τ̂‖₁ in torch's dtypes: the norms and
 * their ratio in P, except DARE in float16, whose mask mergekit applies in
 * float32 on the CPU (torch.bernoulli has no float16 kernel there).
 */
async function lowScales(ctx: MergeContext, scan: KeyScan, trim: OpArgs, o: LowGta): Promise<number[]> {
  const T = ctx.experts.length;
  const l1 = new Array(T).fill(0), kept = new Array(T).fill(0);
  await scan.scan(async (c) => {
    const r = await runOp("mergekit_lowp_l1", { ...chunkArgs(ctx, c), ...trim, compute: o.p });
    for (let t = 0; t < T; t++) {
      l1[t] += (r.l1 as number[])[t];
      kept[t] += (r.l1Kept as number[])[t];
    }
  });
  const work32 = o.sparsify === "random" && o.p === "F16";
  const round = async (xs: number[]) => (work32 ? xs.map(Math.fround) : toLow(xs, o.p));
  const [before, after] = [await round(l1), await round(kept)];
  const ratios = await round(before.map((b, t) => Math.fround(b / after[t])));
  return o.densities.map((d, t) => (d >= 1 || before[t] < 1e-7 || after[t] < 1e-7 ? 1 : ratios[t]));
}

/** mergekit's GTA task (generalized_task_arithmetic.py) for one tensor, in P. */
export async function lowGtaMerge(ctx: MergeContext, key: string, sink: TensorSink, o: LowGta): Promise<number[] | undefined> {
  const scan = new KeyScan(ctx, key);
  const { trim, thresholds } = await lowTrim(ctx, scan, o);
  const scales = o.rescale && trim.trim ? await lowScales(ctx, scan, trim, o) : o.weights.map(() => 1);
  const w = await toLow(o.weights, o.p);
  const W = (await toLow([sumF32(w)], o.p))[0];
  await mergeWith(ctx, scan, sink, "mergekit_lowp_gta", {
    ...trim, compute: o.p, weights: w, scales, consensus: o.consensus ? "sum" : "none",
    normalize: o.normalize ? 1 : 0, divisor: Math.abs(W) < 1e-8 ? 1 : W, lambda: Math.fround(o.lambda),
  });
  return thresholds;
}

/** mergekit's linear (linear.py) for one tensor, in P: the base (weight baseWeight) first, then the experts. */
export async function lowLinearMerge(
  ctx: MergeContext, key: string, sink: TensorSink, p: LowDType, weights: number[], baseWeight: number, normalize: boolean,
): Promise<void> {
  const all = await toLow([baseWeight, ...weights], p);
  const divisor = (await toLow([sumF32(baseWeight !== 0 ? all : all.slice(1))], p))[0];
  await mergeWith(ctx, new KeyScan(ctx, key), sink, "mergekit_lowp_linear", {
    compute: p, baseWeight: all[0], weights: all.slice(1), normalize: normalize ? 1 : 0, divisor,
  });
}
