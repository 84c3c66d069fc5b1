/**
 * Model Breadcrumbs (Davari & Belilovsky, 2023): per tensor and task, drop the
 * largest fraction gamma of |τt| (outliers) and keep the next fraction
 * density, zero the rest; then task arithmetic (breadcrumbs) or TIES-style
 * sign election and disjoint mean (breadcrumbs_ties). Per tensor of n entries:
 *
 *   k = ⌊density·n⌋ (n when density ≥ 1), top = min(⌊gamma·n⌋, n − k)
 *   τ̂t = τt on the entries ranked [top, top + k) by |τt|, largest first
 *        (tied magnitudes in tensor index order), else 0
 *   dt = wt · st · τ̂t   (wt the expert's weight; st = 1, or mergekit's L1 rescale)
 *   breadcrumbs:       θ = θ0 + λ Σt dt
 *   breadcrumbs_ties:  m = +1 where Σt dt ≥ 0, else −1;
 *                      θ = θ0 + λ · Σ_{sign(dt) = m} dt / Σ_{sign(dt) = m} wt (1 where 0)
 *
 * "mergekit:breadcrumbs" / "mergekit:breadcrumbs_ties" are mergekit's
 * (merge_methods/registry.py: generalized task arithmetic with the
 * magnitude_outliers sparsification of sparsify.py): per-model, per-tensor
 * weight, density (default 1) and gamma (default 0.01); normalize and rescale
 * off by default; λ = 1. Where mergekit's ⌊gamma·n⌋ is 0 and density < 1 its
 * mask is empty (indices[n_bot:-0]), so the model adds nothing to that
 * tensor; that form does the same, taskmerge's own keeps the top k.
 */
import { UsageError } from "../errors";
import type { Checkpoint } from "../checkpoint";
import { defineMethod, Expert, MergeContext, MergeMethod, ParamSpec, Params, TensorSink } from "../engine/context";
import { isFloatDType } from "../safetensors/dtypes";
import { runOp, TopSetArgs } from "../native";
import { chunkArgs } from "../engine/stream";
import { KeyScan } from "../select/scan";
import { topSets } from "../select/top_sets";
import { mergeWith } from "./ties";
import { modelValue, shownSetting } from "./mergekit/model_params";

/** One task's ranks kept: [top, top + k). */
interface Window {
  top: number;
  k: number;
}

/** The ranks a task keeps of a tensor of n entries; `mergekit`: an empty mask where ⌊gamma·n⌋ is 0, as mergekit's slice gives. */
function windowOf(n: number, density: number, gamma: number, mergekit: boolean): Window {
  if (density >= 1) return { top: 0, k: n };
  const k = Math.trunc(density * n);
  const top = Math.min(Math.trunc(gamma * n), n - k);
  return mergekit && top === 0 ? { top: 0, k: 0 } : { top, k };
}

/** Per task: weight, density and gamma for `key` (mergekit's per-model settings, or the method's parameters). */
interface TensorParams {
  w: number[];
  d: number[];
  g: number[];
}

interface Definition {
  consensus: boolean;
  mergekit: boolean;
  tensorParams(base: Checkpoint, experts: readonly Expert[], params: Params, key: string): TensorParams;
}

function checkRanges(label: string, experts: readonly Expert[], key: string, p: TensorParams): void {
  experts.forEach((e, t) => {
    if (!(p.d[t] >= 0)) throw new UsageError(`${label}: model '${e.name}': density ${p.d[t]} for ${key}; expected a number ≥ 0`);
    if (!(p.g[t] >= 0 && p.g[t] <= 1)) throw new UsageError(`${label}: model '${e.name}': gamma ${p.g[t]} for ${key}; expected a number in [0, 1]`);
  });
}

/** mergekit's L1 rescale factors ‖τt‖₁/‖τ̂t‖₁ (1 where a task keeps all, or a norm is below 1e-7). */
async function rescaleFactors(ctx: MergeContext, scan: KeyScan, sets: TopSetArgs, whole: boolean[]): Promise<number[]> {
  const T = whole.length;
  const l1 = new Array(T).fill(0), kept = new Array(T).fill(0);
  await scan.scan(async (c) => {
    const r = await runOp("breadcrumbs_l1", { ...chunkArgs(ctx, c), ...sets });
    for (let t = 0; t < T; t++) {
      l1[t] += (r.l1 as number[])[t];
      kept[t] += (r.l1Kept as number[])[t];
    }
  });
  return whole.map((w, t) => (w || l1[t] < 1e-7 || kept[t] < 1e-7 ? 1 : l1[t] / kept[t]));
}

async function mergeTensor(def: Definition, ctx: MergeContext, key: string, sink: TensorSink): Promise<void> {
  const n = ctx.base.get(key).numel;
  const p = def.tensorParams(ctx.base, ctx.experts, ctx.params, key);
  const win = ctx.experts.map((_, t) => windowOf(n, p.d[t], p.g[t], def.mergekit));
  const scan = new KeyScan(ctx, key);
  const drop = await topSets(ctx, scan, win.map((x) => x.top), n);
  const keep = await topSets(ctx, scan, win.map((x) => x.top + x.k), n);
  const sets = { dropBits: drop.bits, dropCuts: drop.cuts, keepBits: keep.bits, keepCuts: keep.cuts };
  const whole = win.map((x) => x.top === 0 && x.k >= n);
  const scales = ctx.params.rescale === "true" ? await rescaleFactors(ctx, scan, sets, whole) : whole.map(() => 1);
  // taskmerge's breadcrumbs_ties takes the disjoint mean; mergekit's forms divide only with `normalize`.
  const normalize = def.mergekit ? ctx.params.normalize === "true" : def.consensus;
  const W = p.w.reduce((a, b) => a + b, 0);
  const per = (ctx.details.tensors ??= Object.create(null)) as Record<string, unknown>; // keyed by tensor keys
  per[key] = { n, window: Object.fromEntries(ctx.experts.map((e, t) => [e.name, [win[t].top, win[t].top + win[t].k]])) };
  await mergeWith(ctx, scan, sink, "breadcrumbs_merge", {
    ...sets, weights: p.w, scales, consensus: def.consensus ? 1 : 0, normalize: normalize ? 1 : 0,
    lambda: ctx.params.lambda as number, divisor: Math.abs(W) < 1e-8 ? 1 : W,
  });
}

/** mergekit's settings may vary per tensor: each is checked for every float key before any data is read. */
function validate(label: string, def: Definition) {
  return (base: Checkpoint, experts: readonly Expert[], params: Params) => {
    for (const key of base.keys()) if (isFloatDType(base.get(key).dtype)) checkRanges(label, experts, key, def.tensorParams(base, experts, params, key));
  };
}

// taskmerge's definition: one density and gamma for every task, the experts' weights.
const own = (consensus: boolean): Definition => ({
  consensus, mergekit: false,
  tensorParams: (_base, experts, params) => ({
    w: experts.map((e) => e.weight), d: experts.map(() => params.density as number), g: experts.map(() => params.gamma as number),
  }),
});

const SPARSIFY = [
  { name: "density", type: "number", default: 0.9, min: 0, max: 1, description: "fraction of |τt| kept per tensor, after the largest gamma" },
  { name: "gamma", type: "number", default: 0.01, min: 0, max: 1, description: "fraction of the largest |τt| dropped per tensor" },
] as const;

export const breadcrumbs = defineMethod({
  name: "breadcrumbs",
  description: "Model Breadcrumbs: per tensor drop the largest gamma of |τt|, keep the next density, then task arithmetic",
  params: [...SPARSIFY, { name: "lambda", type: "number", default: 0.3, description: "scale of the summed task vectors" }],
  mergeTensor: (ctx, key, sink) => mergeTensor(own(false), ctx, key, sink),
});

export const breadcrumbsTies = defineMethod({
  name: "breadcrumbs_ties",
  description: "Model Breadcrumbs with TIES: breadcrumbs masks, sign election by Σ wt τ̂t, weighted disjoint mean",
  params: [...SPARSIFY, { name: "lambda", type: "number", default: 1, description: "scale of the merged task vector" }],
  mergeTensor: (ctx, key, sink) => mergeTensor(own(true), ctx, key, sink),
});

// mergekit's definition: per-model, per-tensor settings with mergekit's defaults.
const mk = (consensus: boolean): Definition => ({
  consensus, mergekit: true,
  tensorParams: (base, experts, _params, key) => {
    const label = `mergekit:breadcrumbs${consensus ? "_ties" : ""}`;
    return {
      w: experts.map((e) => modelValue(label, base, e, "weight", key, 1)),
      d: experts.map((e) => modelValue(label, base, e, "density", key, 1)),
      g: experts.map((e) => modelValue(label, base, e, "gamma", key, 0.01)),
    };
  },
});

const bool = (name: string, description: string): ParamSpec => ({ name, type: "string", default: "false", choices: ["true", "false"], description });

const MERGEKIT_PARAMS: ParamSpec[] = [
  { name: "lambda", type: "number", default: 1, description: "scale of the merged task vector" },
  bool("normalize", "divide the mix by the sum of the (agreeing) weights"),
  bool("rescale", "rescale each sparsified τt to its L1 norm before the mix"),
  bool("int8_mask", "mergekit's memory option: accepted, no effect on the result"),
];

function mergekitForm(name: "breadcrumbs" | "breadcrumbs_ties", description: string): MergeMethod {
  const def = mk(name === "breadcrumbs_ties");
  return {
    name, description, params: MERGEKIT_PARAMS,
    validate: validate(`mergekit:${name}`, def),
    expertParameters: (e) => ({ weight: shownSetting(e, "weight", 1), density: shownSetting(e, "density", 1), gamma: shownSetting(e, "gamma", 0.01) }),
    async prepare(ctx) {
      ctx.details.definition = "mergekit";
    },
    mergeTensor: (ctx, key, sink) => mergeTensor(def, ctx, key, sink),
  };
}

export const mergekitBreadcrumbs = mergekitForm("breadcrumbs", "mergekit's breadcrumbs: magnitude_outliers masks per tensor and model (gamma, density), weighted sum");
export const mergekitBreadcrumbsTies = mergekitForm(
  "breadcrumbs_ties", "mergekit's breadcrumbs_ties: magnitude_outliers masks, weighted sign election and disjoint sum",
);
