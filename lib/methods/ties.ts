/**
 * ties (Yadav et al., TIES-Merging): per task keep the entries with |τt| ≥ the
 * k-th largest |τt| of the scope (k = max(1, floor(n·density))), elect the sign
 * of Σt τ̂t per entry (0 → the scope's majority sign), then average (or sum,
 * merge_func "sum") the kept entries that agree with it: θ0 + λ · that.
 * Scope "global" finds the thresholds over all float keys in prepare()
 * (streamed histogram passes); scope "tensor" per key.
 */
import { UsageError } from "../errors";
import { defineMethod, MergeContext, TensorSink } from "../engine/context";
import { mergeElementwise } from "../engine/stream";
import type { MergeOpArgs, MergeOpName } from "../native";
import { KeyScan } from "../select/scan";
import { magnitudeArgs, OpArgs } from "../select/sign";
import { describeTrim, globalTiesTrim, tensorTiesTrim, TiesTrim } from "../select/trim";

const globalTrims = new WeakMap<MergeContext, TiesTrim>();

/** Streams the merged tensor of `scan.key` through a native elementwise op to `sink`, writing while computing. */
export function mergeWith<K extends MergeOpName>(ctx: MergeContext, scan: KeyScan, sink: TensorSink, op: K, args: MergeOpArgs<K>): Promise<void> {
  return mergeElementwise(ctx, scan.key, sink, op, args, (fn) => scan.final(fn));
}

/** The trim of `key`'s scope: the global one from prepare(), or this key's own. */
export async function trimFor(ctx: MergeContext, scan: KeyScan, report: string): Promise<TiesTrim> {
  const g = globalTrims.get(ctx);
  if (g) return g;
  const t = await tensorTiesTrim(ctx, scan, ctx.params.density as number);
  const per = (ctx.details[report] ??= Object.create(null)) as Record<string, unknown>; // keyed by tensor keys
  per[scan.key] = describeTrim(ctx, t);
  return t;
}

/**
 * Methods whose definition has no per-expert weight refuse weights other than 1
 * rather than ignore them (mergekit's weighted TIES is mergekit:ties, lib/methods/mergekit).
 */
export function rejectWeights(ctx: MergeContext, method: string): void {
  const weighted = ctx.experts.find((e) => e.weight !== 1);
  if (weighted)
    throw new UsageError(`method '${method}' takes no per-expert weight (expert '${weighted.name}' has weight ${weighted.weight}); use task_arithmetic or dare_linear for weighted sums` +
      (method === "ties" || method === "dare_ties" ? `, or mergekit:${method} for mergekit's weighted sign election` : ""));
}

/** prepare() of the TIES-family methods: global thresholds and majority sign when scope is global. */
export async function prepareTrim(ctx: MergeContext, method: string): Promise<void> {
  rejectWeights(ctx, method);
  ctx.details.scope = ctx.params.scope;
  if (ctx.params.scope !== "global") return;
  const t = await globalTiesTrim(ctx, ctx.params.density as number);
  globalTrims.set(ctx, t);
  ctx.details.global = describeTrim(ctx, t);
}

export const ties = defineMethod({
  name: "ties",
  description: "TIES-Merging: trim to the top density of |τ|, elect signs, disjoint mean",
  params: [
    { name: "density", type: "number", default: 0.2, min: 0, max: 1, description: "fraction of |τt| kept per task" },
    { name: "scope", type: "string", default: "global", choices: ["global", "tensor"], description: "top-k over all float keys or per key" },
    { name: "lambda", type: "number", default: 1.0, description: "scale of the merged task vector" },
    { name: "merge_func", type: "string", default: "mean", choices: ["mean", "sum"], description: "disjoint mean (TIES) or disjoint sum" },
  ],
  prepare: (ctx) => prepareTrim(ctx, "ties"),
  async mergeTensor(ctx, key, sink) {
    const scan = new KeyScan(ctx, key);
    const t = await trimFor(ctx, scan, "tensors");
    await mergeWith(ctx, scan, sink, "ties_merge", {
      ...magnitudeArgs(t.thresholdBits),
      majority: t.majority,
      merge: ctx.params.merge_func as string,
      lambda: ctx.params.lambda as number,
    });
  },
});
