/**
 * lot: LOT Merging. Per linear weight T* = (Σt Gt)⁺ Σt Gt Ttᵀ (transposed
 * back), Gt the raw input Gram of task t; per normalisation scale the
 * Σx̂²-weighted mean of the task vectors; everything else the mean task
 * vector. Result θ0 + λ T*. Parameters without statistics fall back to the
 * mean and are listed in the report (details.statsFallback).
 */
import { mergeElementwise } from "../engine/stream";
import { defineMethod, MergeContext } from "../engine/context";
import { classifyStats, paramStats } from "../stats/keys";
import { checkSolvePrecision, LinearSolveOptions, SOLVE_PRECISION_PARAM, solveLinear } from "./closed_form";
import type { SolvePrecision } from "../native";
import { checkCounts, readScale } from "../stats/read";
import { PROGRESSIVE_PARAMS } from "../progressive/params";

interface LotDetails {
  linear: number;
  norm: number;
  mean: number;
  /** Linear weights whose solve fell back from Cholesky to the eigen pseudo-inverse. */
  eighFallback: string[];
}

function lotDetails(ctx: MergeContext): LotDetails {
  return (ctx.details.lot ??= { linear: 0, norm: 0, mean: 0, eighFallback: [] }) as LotDetails;
}

/** LOT's solve of linear weight `key` (raw Grams), or undefined when it has none. */
function linearLayer(ctx: MergeContext, key: string): LinearSolveOptions | undefined {
  const ps = paramStats(key, ctx.base.get(key).shape, ctx.experts);
  if (ps.kind !== "linear") return undefined;
  return {
    out: ps.out, in: ps.in, grams: ps.grams, transforms: async () => ps.grams.map(() => ({ scale: 1, alpha: 1 })),
    solver: ctx.params.solver as string, ridge: ctx.params.ridge as number, rcond: ctx.params.rcond as number,
    lambda: ctx.params.lambda as number, precision: ctx.params.solve_precision as SolvePrecision,
  };
}

export const lot = defineMethod({
  name: "lot",
  description: "LOT Merging: closed-form feature-drift minimiser per linear layer from input Gram statistics",
  needsStats: true,
  params: [
    { name: "lambda", type: "number", default: 1.0, description: "scale of the merged task vector" },
    { name: "ridge", type: "number", default: 1e-6, min: 0, description: "Cholesky ridge ε, relative to mean(diag ΣG)" },
    { name: "solver", type: "string", default: "auto", choices: ["auto", "cholesky", "eigh"], description: "linear solver" },
    { name: "rcond", type: "number", default: 0, min: 0, description: "eigen pseudo-inverse cut-off: eigenvalues ≤ rcond·max λ are dropped (0: in·ε of the least precise Gram dtype)" },
    SOLVE_PRECISION_PARAM,
    ...PROGRESSIVE_PARAMS,
  ],
  async prepare(ctx) {
    checkSolvePrecision("lot", ctx);
    // Check every statistics tensor's shape and dtype, the coverage and the counts before any weight is read.
    const classified = classifyStats("lot", ctx.floatKeys.map((key) => ({ key, shape: ctx.base.get(key).shape })), ctx.experts, { group: ctx.collectedStats });
    await checkCounts(ctx.experts);
    ctx.details.statsFallback = ctx.floatKeys.filter((key) => classified.get(key)!.kind === "fallback");
    lotDetails(ctx);
  },
  async mergeTensor(ctx, key, sink) {
    const lambda = ctx.params.lambda as number;
    const ps = paramStats(key, ctx.base.get(key).shape, ctx.experts);
    const d = lotDetails(ctx);
    if (ps.kind === "linear") {
      const r = await solveLinear(ctx, key, sink, (k) => linearLayer(ctx, k));
      d.linear++;
      if (r.eigh && ctx.params.solver !== "eigh") d.eighFallback.push(key);
      return;
    }
    if (ps.kind === "norm") {
      const scales = await Promise.all(ps.scales.map(readScale));
      d.norm++;
      return mergeElementwise(ctx, key, sink, "lot_norm", {
        scales, scaleDtypes: ps.scales.map((s) => s.info.dtype), total: ctx.base.get(key).numel, lambda,
      });
    }
    d.mean++;
    const T = ctx.experts.length;
    return mergeElementwise(ctx, key, sink, "task_arithmetic", { coeffs: ctx.experts.map(() => lambda / T) });
  },
});
