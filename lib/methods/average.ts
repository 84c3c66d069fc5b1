/** average: θ0 + (1/T) Σ τt. */
import { mergeElementwise } from "../engine/stream";
import { defineMethod } from "../engine/context";

export const average = defineMethod({
  name: "average",
  description: "Mean of the experts: θ0 + (1/T) Σ τt",
  params: [],
  mergeTensor(ctx, key, sink) {
    const T = ctx.experts.length;
    return mergeElementwise(ctx, key, sink, "task_arithmetic", { coeffs: ctx.experts.map(() => 1 / T) });
  },
});
