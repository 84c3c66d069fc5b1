/**
 * mergekit's generalized task arithmetic (merge_methods/generalized_task_arithmetic.py,
 * sparsify.py) with the defaults its registry declares, per tensor:
 *
 *   τ̂t = sparsify(τt, density_t)      magnitude: the k = ⌊density·n⌋ largest |τt| (ties);
 *                                        random: a Bernoulli(density) mask (dare_*);
 *                                        density ≥ 1 keeps τt whole
 *   τ̂t ·= ‖τt‖₁ / ‖τ̂t‖₁               when rescale (and both norms ≥ 1e-7)
 *   dt = wt · τ̂t
 *   consensus (ties, dare_ties): m = sign(Σt dt) (+1 at 0), mixed = Σ_{sign(dt) = m} dt,
 *       divisor = Σ_{sign(dt) = m} wt (1 where 0)
 *   otherwise: mixed = Σt dt, divisor = Σt wt (1 where |·| < 1e-8)
 *   θ = θ0 + λ · (normalize ? mixed / divisor : mixed)
 *
 * wt and density_t are per model and may vary per tensor (gradients, filters).
 * The one choice mergekit leaves open: entries tied at the k-th largest |τt|.
 * topk_ties "keep_all" (default) keeps all of them; "exact_k" keeps exactly k,
 * the tied ones in index order (mergekit keeps exactly k in torch.argsort's order).
 * compute_dtype bfloat16/float16 (mergekit's dtype) runs mergekit's op sequence
 * with torch's rounding instead (lowp.ts); float32 is the path below.
 */
import { UsageError } from "../../errors";
import { runOp } from "../../native";
import { chunkArgs } from "../../engine/stream";
import type { Checkpoint } from "../../checkpoint";
import type { Expert, MergeContext, MergeMethod, ParamSpec } from "../../engine/context";
import { isFloatDType } from "../../safetensors/dtypes";
import { KeyScan } from "../../select/scan";
import { bitsToFloat, magnitudeArgs, OpArgs } from "../../select/sign";
import { selectThresholdsK } from "../../select/histogram";
import { tieCuts } from "../../select/top_sets";
import { mergeWith } from "../ties";
import { modelValue, shownSetting } from "./model_params";
import { computeDtypeParam, lowGtaMerge, lowPrecisionOf } from "./lowp";

export interface GtaDefinition {
  name: "task_arithmetic" | "ties" | "dare_linear" | "dare_ties";
  description: string;
  consensus: boolean;
  sparsify?: "magnitude" | "random";
  normalize: boolean;
  rescale: boolean;
}

const bool = (name: string, def: boolean, description: string): ParamSpec => ({
  name, type: "string", default: String(def), choices: ["true", "false"], description,
});

function paramsOf(d: GtaDefinition): ParamSpec[] {
  return [
    { name: "lambda", type: "number", default: 1, description: "scale of the merged task vector" },
    bool("normalize", d.normalize, "divide the mix by the sum of the (agreeing) weights"),
    bool("rescale", d.rescale, "rescale each sparsified τt to its L1 norm before the mix"),
    bool("int8_mask", false, "mergekit's memory option: accepted, no effect on the result"),
    computeDtypeParam,
    ...(d.sparsify === "random"
      ? [{ name: "seed", type: "integer", default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, description: "random seed of the DARE masks" } as ParamSpec]
      : []),
    ...(d.sparsify === "magnitude"
      ? [{ name: "topk_ties", type: "string", default: "keep_all", choices: ["keep_all", "exact_k"], description: "entries tied at the k-th largest |τ|: keep all, or exactly k (lower index first)" } as ParamSpec]
      : []),
  ];
}

/** The weights and densities of every expert for `key`. */
function tensorParams(name: string, base: Checkpoint, experts: readonly Expert[], key: string, sparsify: boolean) {
  return {
    w: experts.map((e) => modelValue(name, base, e, "weight", key, 1)),
    d: experts.map((e) => (sparsify ? modelValue(name, base, e, "density", key, 1) : 1)),
  };
}

/** mergekit's k = int(density · n) per task (n for density ≥ 1); it refuses k = 0. */
function topK(name: string, experts: readonly Expert[], key: string, n: number, d: number[]): number[] {
  return d.map((x, t) => {
    if (x >= 1) return n;
    const k = Math.trunc(x * n);
    if (!(k > 0))
      throw new UsageError(
        `${name}: density ${x} of model '${experts[t].name}' keeps no entry of ${key} (${n} entries, k = ⌊density·n⌋ = ${k}); mergekit refuses this too`,
      );
    return k;
  });
}

/** mergekit's L1 rescale factors ‖τt‖₁/‖τ̂t‖₁ (1 where a norm is below 1e-7 or the task is not sparsified). */
async function rescaleFactors(ctx: MergeContext, scan: KeyScan, trim: OpArgs, d: number[]): Promise<number[]> {
  const T = d.length;
  const l1 = new Array(T).fill(0), kept = new Array(T).fill(0);
  await scan.scan(async (c) => {
    const r = await runOp("trim_l1", { ...chunkArgs(ctx, c), ...trim });
    for (let t = 0; t < T; t++) {
      l1[t] += (r.l1 as number[])[t];
      kept[t] += (r.l1Kept as number[])[t];
    }
  });
  return d.map((x, t) => (x >= 1 || l1[t] < 1e-7 || kept[t] < 1e-7 ? 1 : l1[t] / kept[t]));
}

/** The report's per-tensor k and threshold of each model. */
function tensorDetails(ctx: MergeContext, key: string, n: number, ks: number[], thresholds: number[]): void {
  const per = (ctx.details.tensors ??= {}) as Record<string, unknown>;
  per[key] = { n, k: Object.fromEntries(ctx.experts.map((e, t) => [e.name, ks[t]])), thresholds: Object.fromEntries(ctx.experts.map((e, t) => [e.name, thresholds[t]])) };
}

export function gtaMethod(def: GtaDefinition): MergeMethod {
  const label = `mergekit:${def.name}`;
  return {
    name: def.name,
    description: def.description,
    params: paramsOf(def),
    validate(base, experts) {
      for (const key of base.keys()) {
        if (!isFloatDType(base.get(key).dtype)) continue;
        const { d } = tensorParams(label, base, experts, key, !!def.sparsify);
        if (def.sparsify === "magnitude") topK(label, experts, key, base.get(key).numel, d);
      }
    },
    expertParameters: (e) => ({ weight: shownSetting(e, "weight", 1), ...(def.sparsify ? { density: shownSetting(e, "density", 1) } : {}) }),
    async prepare(ctx) {
      ctx.details.definition = "mergekit";
    },
    async mergeTensor(ctx, key, sink) {
      const p = ctx.params;
      const n = ctx.base.get(key).numel;
      const { w, d } = tensorParams(label, ctx.base, ctx.experts, key, !!def.sparsify);
      const scan = new KeyScan(ctx, key);
      const sparse = d.some((x) => x < 1);
      const low = n > 0 ? lowPrecisionOf(ctx, key, false) : undefined;
      if (low) {
        const ks = def.sparsify === "magnitude" && sparse ? topK(label, ctx.experts, key, n, d) : undefined;
        const thresholds = await lowGtaMerge(ctx, key, sink, {
          p: low, consensus: def.consensus, sparsify: def.sparsify, weights: w, densities: d, ks, exactK: p.topk_ties === "exact_k",
          rescale: p.rescale === "true", normalize: p.normalize === "true", lambda: p.lambda as number, seed: (p.seed as number) ?? 0,
        });
        if (ks && thresholds) tensorDetails(ctx, key, n, ks, thresholds);
        return;
      }
      let trim: OpArgs = {};
      if (def.sparsify === "magnitude" && sparse && n > 0) {
        const ks = topK(label, ctx.experts, key, n, d);
        const sel = await selectThresholdsK(ctx, scan.scan, scan.scan, ks);
        const bits = sel.bits.map((b, t) => (d[t] >= 1 ? 0 : b));
        trim = p.topk_ties === "exact_k"
          ? { trim: "magnitude_cut", thresholds: bits, cuts: await tieCuts(ctx, scan, bits, sel.rank, d.map((x) => x >= 1), n) }
          : magnitudeArgs(bits);
        tensorDetails(ctx, key, n, ks, bits.map(bitsToFloat));
      } else if (def.sparsify === "random" && sparse) {
        trim = { trim: "bernoulli", densities: d, seed: p.seed as number, key };
      }
      const scales = p.rescale === "true" && trim.trim ? await rescaleFactors(ctx, scan, trim, d) : d.map(() => 1);
      const lambda = p.lambda as number;
      const normalize = p.normalize === "true";
      if (def.consensus) {
        await mergeWith(ctx, scan, sink, "mergekit_gta", { ...trim, weights: w, scales, consensus: "sum", normalize: normalize ? 1 : 0, lambda });
        return;
      }
      // No consensus: a linear combination, θ0 + Σt (λ·wt·st/divisor) τ̂t, through the shared accumulation.
      const W = w.reduce((a, b) => a + b, 0);
      const divisor = normalize && Math.abs(W) >= 1e-8 ? W : 1;
      const coeffs = w.map((x, t) => (lambda * x * scales[t]) / divisor);
      await mergeWith(ctx, scan, sink, trim.trim ? "dare_linear" : "task_arithmetic", { ...trim, coeffs });
    },
  };
}
