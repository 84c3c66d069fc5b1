/** task_arithmetic: θ0 + λ Σ wt τt. */
import { mergeElementwise } from "../engine/stream";
import { defineMethod } from "../engine/context";

export const taskArithmetic = defineMethod({
  name: "task_arithmetic",
  description: "Task Arithmetic: θ0 + λ Σ wt τt",
  params: [{ name: "lambda", type: "number", default: 0.3, description: "scale of the summed task vectors" }],
  mergeTensor(ctx, key, sink) {
    const lambda = ctx.params.lambda as number;
    return mergeElementwise(ctx, key, sink, "task_arithmetic", { coeffs: ctx.experts.map((e) => lambda * e.weight) });
  },
});
