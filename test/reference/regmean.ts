/**
 * Float64 reference of RegMean exactly as the SPEC writes it: per linear
 * weight W = (Σt G̃t)⁻¹ Σt G̃t Wtᵀ, transposed back, G̃ = α G + (1−α) diag(G)
 * of the mean Gram G = Gram / count; everything else the mean of the experts.
 * (Full weights, not task vectors: the native path uses task vectors.)
 */
import type { KeySpec, Model } from "../helpers/fixtures";
import type { TaskStats } from "./lot";
import { gaussJordanSolve, matmul, transpose } from "./linalg";

export function regmeanReference(keys: KeySpec[], base: Model, experts: Model[], stats: TaskStats[], alpha: number): Record<string, Float64Array> {
  const T = experts.length;
  const res: Record<string, Float64Array> = {};
  for (const k of keys) {
    if (!(k.dtype.startsWith("F") || k.dtype === "BF16")) continue;
    const prefix = k.name.endsWith(".weight") ? k.name.slice(0, -".weight".length) : "";
    if (k.shape.length === 2 && stats.every((s) => s.grams[prefix])) {
      const [out, inn] = k.shape;
      const A = new Float64Array(inn * inn);
      const B = new Float64Array(inn * out);
      experts.forEach((e, t) => {
        const G = stats[t].grams[prefix];
        const c = stats[t].counts[prefix];
        const Gs = new Float64Array(inn * inn);
        for (let i = 0; i < inn; i++)
          for (let j = 0; j < inn; j++) Gs[i * inn + j] = (i === j ? G[i * inn + j] : alpha * G[i * inn + j]) / c;
        for (let i = 0; i < inn * inn; i++) A[i] += Gs[i];
        const GW = matmul(Gs, transpose(e.floats[k.name], out, inn), inn, inn, out);
        for (let i = 0; i < inn * out; i++) B[i] += GW[i];
      });
      res[k.name] = transpose(gaussJordanSolve(A, B, inn, out), inn, out);
    } else {
      const w0 = base.floats[k.name];
      res[k.name] = w0.map((_, i) => experts.reduce((s, e) => s + e.floats[k.name][i], 0) / T);
    }
  }
  return res;
}
