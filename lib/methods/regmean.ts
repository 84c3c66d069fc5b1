/**
 * regmean: RegMean. Per linear weight W = W0 + T*, T* = Σt Tt G̃t (Σt G̃t)⁻¹
 * (the SPEC's (Σ G̃t)⁻¹ Σ G̃t Wtᵀ, transposed, written with task vectors so
 * that a singular Σ G̃t keeps the base on its null space), with
 * G̃ = α G + (1−α) diag(G) and G the mean input Gram (Gram / input_count).
 * Every other float parameter: the mean of the experts.
 */
import { mergeElementwise } from "../engine/stream";
import { defineMethod, MergeContext } from "../engine/context";
import { PROGRESSIVE_PARAMS } from "../progressive/params";
import { TaskmergeError } from "../errors";
import { classifyStats, paramStats, statsSource } from "../stats/keys";
import { checkSolvePrecision, LinearSolveOptions, SOLVE_PRECISION_PARAM, solveLinear } from "./closed_form";
import type { SolvePrecision } from "../native";
import { checkCounts, readCount } from "../stats/read";

interface RegMeanDetails {
  linear: number;
  mean: number;
  eighFallback: string[];
}

function details(ctx: MergeContext): RegMeanDetails {
  return (ctx.details.regmean ??= { linear: 0, mean: 0, eighFallback: [] }) as RegMeanDetails;
}

/** RegMean's solve of linear weight `key` (shrunk mean Grams), or undefined when it has none. */
function linearLayer(ctx: MergeContext, key: string): LinearSolveOptions | undefined {
  const ps = paramStats(key, ctx.base.get(key).shape, ctx.experts);
  if (ps.kind !== "linear") return undefined;
  const alpha = ctx.params.alpha as number;
  return {
    out: ps.out, in: ps.in, grams: ps.grams,
    transforms: async () => (await Promise.all(ps.counts.map((c) => readCount(c!)))).map((n) => ({ scale: 1 / n, alpha })),
    solver: "auto", ridge: 0, rcond: ctx.params.rcond as number, lambda: 1, precision: ctx.params.solve_precision as SolvePrecision,
  };
}

export const regmean = defineMethod({
  name: "regmean",
  description: "RegMean: closed-form regression merge of linear layers from mean input Grams",
  needsStats: true,
  params: [
    { name: "alpha", type: "number", default: 0.95, min: 0, max: 1, description: "shrinkage α of the off-diagonal Gram" },
    { name: "rcond", type: "number", default: 0, min: 0, description: "eigen pseudo-inverse cut-off: eigenvalues ≤ rcond·max λ are dropped (0: in·ε of the least precise Gram dtype)" },
    SOLVE_PRECISION_PARAM,
    ...PROGRESSIVE_PARAMS,
  ],
  async prepare(ctx) {
    checkSolvePrecision("regmean", ctx);
    const classified = classifyStats("regmean", ctx.floatKeys.map((key) => ({ key, shape: ctx.base.get(key).shape })), ctx.experts, { group: ctx.collectedStats });
    const fallback: string[] = [];
    for (const [key, ps] of classified) {
      if (ps.kind === "fallback") fallback.push(key);
      if (ps.kind === "linear")
        ps.counts.forEach((c, t) => {
          if (!c) throw new TaskmergeError("regmean needs the row count beside the Gram to form the mean Gram", ps.grams[t].file.path, ps.grams[t].info.key.replace(/input_gram$/, "input_count"), statsSource(ps.grams[t]));
        });
    }
    await checkCounts(ctx.experts);
    ctx.details.statsFallback = fallback;
    details(ctx);
  },
  async mergeTensor(ctx, key, sink) {
    const ps = paramStats(key, ctx.base.get(key).shape, ctx.experts);
    const d = details(ctx);
    if (ps.kind === "linear") {
      const r = await solveLinear(ctx, key, sink, (k) => linearLayer(ctx, k));
      d.linear++;
      if (r.eigh) d.eighFallback.push(key);
      return;
    }
    d.mean++;
    const T = ctx.experts.length;
    return mergeElementwise(ctx, key, sink, "task_arithmetic", { coeffs: ctx.experts.map(() => 1 / T) });
  },
});
