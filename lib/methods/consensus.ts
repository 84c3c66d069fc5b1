/**
 * Consensus merging (Wang et al., "Localizing Task Information for Improved
 * Model Merging and Compression"): TALL masks mt = 1{|τt| > tall_lambda·|τMTL − τt|},
 * consensus mask c = 1{Σt mt ≥ k}, result θ0 + λ (c ⊙ τMTL), with τMTL = Σt τt
 * (consensus_ta) or the TIES disjoint sum (consensus_ties: density, scope as in
 * ties). k = 0 gives task arithmetic (resp. ties with merge_func "sum"); k > T gives θ0.
 */
import { mergeElementwise } from "../engine/stream";
import { defineMethod, ParamSpec } from "../engine/context";
import { KeyScan } from "../select/scan";
import { magnitudeArgs } from "../select/sign";
import { mergeWith, prepareTrim, rejectWeights, trimFor } from "./ties";

const common = (lambda: number) =>
  [
    { name: "k", type: "integer", default: 2, min: 0, description: "minimum number of tasks whose mask selects an entry" },
    { name: "tall_lambda", type: "number", default: 0.4, min: 0, description: "TALL mask λ" },
    { name: "lambda", type: "number", default: lambda, description: "scale of the masked τMTL" },
  ] as const satisfies readonly ParamSpec[];

export const consensusTa = defineMethod({
  name: "consensus_ta",
  description: "Consensus merging over task arithmetic: keep entries selected by at least k TALL masks",
  params: common(0.3),
  async prepare(ctx) {
    rejectWeights(ctx, "consensus_ta");
  },
  mergeTensor(ctx, key, sink) {
    const p = ctx.params;
    return mergeElementwise(ctx, key, sink, "consensus", { kind: "sum", k: p.k as number, tallLambda: p.tall_lambda as number, lambda: p.lambda as number });
  },
});

export const consensusTies = defineMethod({
  name: "consensus_ties",
  description: "Consensus merging over TIES: keep entries of the TIES disjoint sum selected by at least k TALL masks",
  params: [
    ...common(1.0),
    { name: "density", type: "number", default: 0.2, min: 0, max: 1, description: "TIES fraction of |τt| kept per task" },
    { name: "scope", type: "string", default: "global", choices: ["global", "tensor"], description: "TIES top-k scope" },
  ] as const,
  prepare: (ctx) => prepareTrim(ctx, "consensus_ties"),
  async mergeTensor(ctx, key, sink) {
    const p = ctx.params;
    const scan = new KeyScan(ctx, key);
    const t = await trimFor(ctx, scan, "tensors");
    await mergeWith(ctx, scan, sink, "consensus", {
      ...magnitudeArgs(t.thresholdBits),
      majority: t.majority,
      kind: "ties",
      k: p.k as number,
      tallLambda: p.tall_lambda as number,
      lambda: p.lambda as number,
    });
  },
});
