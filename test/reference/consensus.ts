/** Float64 reference of TALL masks and Consensus merging (SPEC). */
import { taskVectors, tiesVector, Tensors } from "./ties";

/** τMTL: Σt τt ("sum") or the TIES disjoint sum ("ties"). */
export function tauMtl(tau: Tensors[], keys: string[], kind: "sum" | "ties", density = 0.2, scope: "global" | "tensor" = "global"): Tensors {
  if (kind === "ties") return tiesVector(tau, keys, { density, scope, lambda: 1, mergeFunc: "sum" }).merged;
  const out: Tensors = {};
  for (const k of keys) out[k] = tau[0][k].map((_, i) => tau.reduce((s, tv) => s + tv[k][i], 0));
  return out;
}

/** mt[i] = |τt[i]| > λ · |τMTL[i] − τt[i]|. */
export function tallMask(tauT: Float64Array, mtl: Float64Array, lambda: number): boolean[] {
  return Array.from(tauT, (x, i) => Math.abs(x) > lambda * Math.abs(mtl[i] - x));
}

export interface ConsensusOptions {
  kind: "sum" | "ties";
  k: number;
  tallLambda: number;
  lambda: number;
  density?: number;
  scope?: "global" | "tensor";
}

/** θ0 + λ (c ⊙ τMTL), c = 1{Σt mt ≥ k}. */
export function consensusRef(base: Tensors, experts: Tensors[], keys: string[], o: ConsensusOptions): Tensors {
  const tau = taskVectors(base, experts, keys);
  const mtl = tauMtl(tau, keys, o.kind, o.density, o.scope);
  const out: Tensors = {};
  for (const k of keys) {
    const masks = tau.map((tv) => tallMask(tv[k], mtl[k], o.tallLambda));
    out[k] = base[k].map((b, i) => {
      const count = masks.reduce((s, m) => s + (m[i] ? 1 : 0), 0);
      return count >= o.k ? b + o.lambda * mtl[k][i] : b;
    });
  }
  return out;
}
