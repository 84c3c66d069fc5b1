/**
 * DARE (Yu et al., "Language Models are Super Mario"): drop each entry of τt
 * with probability 1 − density and rescale the survivors by 1/density, then
 * task arithmetic (dare_linear) or TIES sign election and disjoint mean with
 * no magnitude trimming (dare_ties; the majority sign of an entry electing 0
 * is taken over its key). The random numbers are counter-based on (seed, key,
 * task, element), so the result does not depend on threads or chunking.
 */
import { UsageError } from "../errors";
import { mergeElementwise } from "../engine/stream";
import { defineMethod, MergeContext, ParamSpec } from "../engine/context";
import { KeyScan } from "../select/scan";
import { majoritySign, OpArgs } from "../select/sign";
import { mergeWith, rejectWeights } from "./ties";

const PARAMS = [
  { name: "density", type: "number", default: 0.5, min: 0, max: 1, description: "probability of keeping an entry" },
  { name: "seed", type: "integer", default: 0, min: 0, max: Number.MAX_SAFE_INTEGER, description: "random seed" },
  { name: "lambda", type: "number", default: 1.0, description: "scale of the merged task vector" },
] as const satisfies readonly ParamSpec[];

function dareArgs(ctx: MergeContext, key: string): OpArgs {
  const density = ctx.params.density as number;
  if (!(density > 0)) throw new UsageError(`dare: parameter 'density' must be > 0 (got ${density})`);
  return { trim: "dare", density, seed: ctx.params.seed as number, key };
}

export const dareLinear = defineMethod({
  name: "dare_linear",
  description: "DARE random drop and rescale, then task arithmetic",
  params: PARAMS,
  mergeTensor(ctx, key, sink) {
    const lambda = ctx.params.lambda as number;
    return mergeElementwise(ctx, key, sink, "dare_linear", { ...dareArgs(ctx, key), coeffs: ctx.experts.map((e) => lambda * e.weight) });
  },
});

export const dareTies = defineMethod({
  name: "dare_ties",
  description: "DARE random drop and rescale, then TIES sign election and disjoint mean",
  params: PARAMS,
  async prepare(ctx) {
    rejectWeights(ctx, "dare_ties");
  },
  async mergeTensor(ctx, key, sink) {
    const args = dareArgs(ctx, key);
    const scan = new KeyScan(ctx, key);
    const { majority } = await majoritySign(ctx, scan.scan, () => args);
    await mergeWith(ctx, scan, sink, "ties_merge", { ...args, majority, merge: "mean", lambda: ctx.params.lambda as number });
  },
});
