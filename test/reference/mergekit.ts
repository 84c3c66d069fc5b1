/**
 * Float64 reference of mergekit's merges of one tensor, written from mergekit's
 * own definitions (mergekit/merge_methods/generalized_task_arithmetic.py,
 * linear.py, sparsify.py), in plain loops over whole tensors: sorting for the
 * top-k, masks given (DARE's are random), no chunks. Independent of lib/.
 *
 *   delta_t  = x_t − base, in float32 (mergekit computes in `dtype`, float32 here)
 *   sparsify: magnitude keeps the k = int(density·n) largest |delta| (argsort);
 *             random multiplies by a Bernoulli(density) mask; density ≥ 1: unchanged
 *   rescale:  masked · (‖delta‖₁ / ‖masked‖₁) unless a norm is < 1e-7
 *   weighted = w_t · delta_t
 *   consensus "sum": majority = (Σ weighted ≥ 0 ? +1 : −1); mask = sign(weighted) == majority;
 *             mixed = Σ weighted·mask; divisor = Σ w·mask (0 → 1)
 *   none:     mixed = Σ weighted; divisor = Σ w (|·| < 1e-8 → 1)
 *   normalize: mixed /= divisor;  λ ≠ 1: mixed *= λ;  result = base + mixed
 */

export interface GtaRefOptions {
  consensus: boolean;
  sparsify?: "magnitude" | "random";
  normalize: boolean;
  rescale: boolean;
  lambda: number;
  /** Per model. */
  weights: number[];
  densities: number[];
  /** Tied magnitudes at the k-th: "exact_k" keeps exactly k (lower index first), "keep_all" every tie. */
  ties?: "exact_k" | "keep_all";
  /** random: the keep mask of each model (1 kept, 0 dropped). */
  masks?: Uint8Array[];
}

export function deltaF32(base: ArrayLike<number>, x: ArrayLike<number>): Float64Array {
  const d = new Float64Array(base.length);
  for (let i = 0; i < d.length; i++) d[i] = Math.fround(x[i] - base[i]);
  return d;
}

/** sparsify.magnitude: a 0/1 mask of the k largest |delta|. */
export function magnitudeMask(delta: Float64Array, density: number, ties: "exact_k" | "keep_all"): Uint8Array {
  const n = delta.length;
  const mask = new Uint8Array(n);
  if (density >= 1) return mask.fill(1);
  const k = Math.trunc(density * n);
  if (!(k > 0)) throw new Error("not gonna zero out the whole tensor"); // mergekit's assert
  // A stable sort by |delta|, largest first: equal magnitudes stay in index order.
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => Math.abs(delta[b]) - Math.abs(delta[a]));
  if (ties === "exact_k") {
    for (let j = 0; j < k; j++) mask[order[j]] = 1;
  } else {
    const kth = Math.abs(delta[order[k - 1]]);
    for (let i = 0; i < n; i++) mask[i] = Math.abs(delta[i]) >= kth ? 1 : 0;
  }
  return mask;
}

function rescaled(delta: Float64Array, mask: Uint8Array, rescale: boolean): Float64Array {
  const masked = delta.map((x, i) => x * mask[i]);
  if (!rescale) return masked;
  let before = 0, after = 0;
  for (let i = 0; i < delta.length; i++) {
    before += Math.abs(delta[i]);
    after += Math.abs(masked[i]);
  }
  if (before < 1e-7 || after < 1e-7) return masked;
  return masked.map((x) => x * (before / after));
}

/** mergekit's generalized task arithmetic of one tensor. */
export function gtaRef(base: ArrayLike<number>, experts: ArrayLike<number>[], o: GtaRefOptions): Float64Array {
  const n = base.length;
  const T = experts.length;
  const deltas = experts.map((x, t) => {
    const d = deltaF32(base, x);
    if (!o.sparsify || o.densities[t] >= 1) return d;
    const mask = o.sparsify === "magnitude" ? magnitudeMask(d, o.densities[t], o.ties ?? "keep_all") : o.masks![t];
    return rescaled(d, mask, o.rescale);
  });
  const out = new Float64Array(n);
  const sumW = o.weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < n; i++) {
    const weighted = deltas.map((d, t) => o.weights[t] * d[i]);
    let mixed = 0, divisor = 0;
    if (o.consensus) {
      const majority = weighted.reduce((a, b) => a + b, 0) >= 0 ? 1 : -1;
      for (let t = 0; t < T; t++)
        if (Math.sign(weighted[t]) === majority) {
          mixed += weighted[t];
          divisor += o.weights[t];
        }
      if (divisor === 0) divisor = 1;
    } else {
      mixed = weighted.reduce((a, b) => a + b, 0);
      divisor = Math.abs(sumW) < 1e-8 ? 1 : sumW;
    }
    if (o.normalize) mixed /= divisor;
    if (o.lambda !== 1) mixed *= o.lambda;
    out[i] = base[i] + mixed;
  }
  return out;
}

/** mergekit's linear: Σ w_i x_i over all models (÷ Σ w_i when normalize). */
export function linearRef(models: ArrayLike<number>[], weights: number[], normalize: boolean): Float64Array {
  const out = new Float64Array(models[0].length);
  const W = weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    for (let m = 0; m < models.length; m++) s += weights[m] * models[m][i];
    out[i] = normalize ? s / W : s;
  }
  return out;
}

/** mergekit's evaluate_setting for a gradient (a list of numbers) at t ∈ [0, 1]. */
export function gradientAt(list: number[], t: number): number {
  const scaled = t * (list.length - 1);
  const i0 = Math.floor(scaled);
  const i1 = Math.min(list.length - 1, i0 + 1);
  const frac = scaled - i0;
  return (1 - frac) * list[i0] + frac * list[i1];
}
