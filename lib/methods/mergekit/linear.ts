/**
 * mergekit's linear (merge_methods/linear.py): θ = Σi wi θi over the models,
 * divided by Σi wi when normalize (the default). Written against the base as
 * θ = W·θ0 + Σt wt τt with W = base_weight + Σt wt, which is the same sum
 * (Σi wi θi = W θ0 + Σt wt (θt − θ0)); base_weight is the base's own weight
 * when it is one of the models (0: the base only supplies the files).
 */
import { UsageError } from "../../errors";
import { isFloatDType } from "../../safetensors/dtypes";
import type { Checkpoint } from "../../checkpoint";
import type { Expert, MergeMethod, Params } from "../../engine/context";
import { mergeElementwise } from "../../engine/stream";
import { modelValue, shownSetting } from "./model_params";
import { computeDtypeParam, lowLinearMerge, lowPrecisionOf } from "./lowp";

function weights(base: Checkpoint, experts: readonly Expert[], key: string, params: Params) {
  const w = experts.map((e) => modelValue("mergekit:linear", base, e, "weight", key, 1));
  const W = (params.base_weight as number) + w.reduce((a, b) => a + b, 0);
  return { w, W };
}

export const linear: MergeMethod = {
  name: "linear",
  description: "mergekit's linear: Σ wi θi over the models (÷ Σ wi when normalize)",
  params: [
    { name: "normalize", type: "string", default: "true", choices: ["true", "false"], description: "divide by the sum of the weights" },
    { name: "base_weight", type: "number", default: 0, description: "weight of the base itself when it is one of the models; 0: it only supplies the files" },
    computeDtypeParam,
  ],
  validate(base, experts, params) {
    if (params.normalize !== "true") return;
    for (const key of base.keys())
      if (isFloatDType(base.get(key).dtype) && weights(base, experts, key, params).W === 0)
        throw new UsageError(`mergekit:linear: the weights of ${key} sum to 0; with normalize the merge would divide by zero`);
  },
  expertParameters: (e) => ({ weight: shownSetting(e, "weight", 1) }),
  async prepare(ctx) {
    ctx.details.definition = "mergekit";
  },
  mergeTensor(ctx, key, sink) {
    const { w, W } = weights(ctx.base, ctx.experts, key, ctx.params);
    const low = ctx.base.get(key).numel > 0 ? lowPrecisionOf(ctx, key, true) : undefined;
    if (low) return lowLinearMerge(ctx, key, sink, low, w, ctx.params.base_weight as number, ctx.params.normalize === "true");
    if (ctx.params.normalize === "true" || W === 1) {
      const div = ctx.params.normalize === "true" ? W : 1;
      return mergeElementwise(ctx, key, sink, "task_arithmetic", { coeffs: w.map((x) => x / div) });
    }
    return mergeElementwise(ctx, key, sink, "mergekit_gta", {
      weights: w, scales: w.map(() => 1), consensus: "none", normalize: 0, lambda: 1, baseScale: W,
    });
  },
};
