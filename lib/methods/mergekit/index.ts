/**
 * mergekit's definitions of the methods it shares with taskmerge, by name as
 * "mergekit:<name>" (what a config in mergekit's form runs): mergekit's
 * defaults, per-model weights and densities, weighted sign election.
 */
import { UsageError } from "../../errors";
import type { MergeMethod } from "../../engine/context";
import { gtaMethod } from "./gta";
import { linear } from "./linear";
import { mergekitBreadcrumbs, mergekitBreadcrumbsTies } from "../breadcrumbs";

const METHODS: MergeMethod[] = [
  linear,
  gtaMethod({ name: "task_arithmetic", description: "mergekit's task_arithmetic: θ0 + λ Σ wt τt", consensus: false, normalize: false, rescale: false }),
  gtaMethod({
    name: "ties", description: "mergekit's TIES: top-k per tensor and model, weighted sign election, weighted disjoint mean",
    consensus: true, sparsify: "magnitude", normalize: true, rescale: false,
  }),
  gtaMethod({
    name: "dare_linear", description: "mergekit's DARE linear: Bernoulli masks, L1 rescale, weighted sum",
    consensus: false, sparsify: "random", normalize: false, rescale: true,
  }),
  gtaMethod({
    name: "dare_ties", description: "mergekit's DARE TIES: Bernoulli masks, L1 rescale, weighted sign election and disjoint sum",
    consensus: true, sparsify: "random", normalize: false, rescale: true,
  }),
  mergekitBreadcrumbs,
  mergekitBreadcrumbsTies,
];

export const MERGEKIT_PREFIX = "mergekit:";

export function listMergekitMethods(): readonly MergeMethod[] {
  return METHODS;
}

/** Methods mergekit has that taskmerge does not run with mergekit's meaning. */
export const MERGEKIT_UNSUPPORTED = [
  "slerp", "nuslerp", "multislerp", "passthrough", "model_stock", "arcee_fusion", "karcher", "della", "della_linear", "sce", "nearswap", "ram",
];

export function getMergekitMethod(name: string): MergeMethod {
  const m = METHODS.find((x) => x.name === name);
  if (!m)
    throw new UsageError(
      `unknown method '${MERGEKIT_PREFIX}${name}' (mergekit's methods with mergekit's meaning: ${METHODS.map((x) => x.name).join(", ")})`,
    );
  return m;
}
