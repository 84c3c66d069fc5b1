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
import { mergeWith } from "../ties";
import { modelValue, shownSetting } from "./model_params";

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

/** Per task, the tensor index below which entries exactly at the threshold are kept (exactly k in all). */
async function tieCuts(ctx: MergeContext, scan: KeyScan, bits: number[], rank: number[], d: number[], n: number): Promise<number[]> {
  const need = rank.slice();
  const cuts = d.map((x) => (x >= 1 ? n : -1));
  await scan.scan(async (c) => {
    if (cuts.every((x) => x >= 0)) return;
    const r = await runOp("magnitude_tie_cut", { ...chunkArgs(ctx, c), thresholds: bits, need: need.map((x, t) => (cuts[t] >= 0 ? 0 : x)) });
    const at = r.at, count = r.count;
    for (let t = 0; t < cuts.length; t++) {
      if (cuts[t] >= 0) continue;
      if (at[t] > 0) cuts[t] = c.offset + at[t];
      else need[t] -= count[t];
    }
  });
  if (cuts.some((x) => x < 0)) throw new Error(`mergekit ties: the tied entries at the threshold of ${scan.key} were not found again`);
  return cuts;
}

/** mergekit's L1 rescale factors ‖τt‖₁/‖τ̂t‖₁ (1 where a norm is below 1e-7 or the task is not sparsified). */
async function rescaleFactors(ctx: MergeContext, scan: KeyScan, trim: OpArgs, d: number[]): Promise<number[]> {
  const T = d.length;
  const l1 = new Array(T).fill(0), kept = new Array(T).fill(0);
  await scan.scan(async (c) => {
    const r = await runOp("trim_l1", { ...chunkArgs(ctx, c), ...trim });
    for (let t = 0; t < T; t++) {
      l1[t] += r.l1[t];
      kept[t] += r.l1Kept[t];
    }
  });
  return d.map((x, t) => (x >= 1 || l1[t] < 1e-7 || kept[t] < 1e-7 ? 1 : l1[t] / kept[t]));
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
      let trim: OpArgs = {};
      if (def.sparsify === "magnitude" && sparse && n > 0) {
        const ks = topK(label, ctx.experts, key, n, d);
        const sel = await selectThresholdsK(ctx, scan.scan, scan.scan, ks);
        const bits = sel.bits.map((b, t) => (d[t] >= 1 ? 0 : b));
        trim = p.topk_ties === "exact_k"
          ? { trim: "magnitude_cut", thresholds: bits, cuts: await tieCuts(ctx, scan, bits, sel.rank, d, n) }
          : magnitudeArgs(bits);
        const per = (ctx.details.tensors ??= {}) as Record<string, unknown>;
        per[key] = { n, k: Object.fromEntries(ctx.experts.map((e, t) => [e.name, ks[t]])), thresholds: Object.fromEntries(ctx.experts.map((e, t) => [e.name, bitsToFloat(bits[t])])) };
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
