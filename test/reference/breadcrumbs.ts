/**
 * Float64 reference of the breadcrumbs methods, written from their definitions
 * (Model Breadcrumbs; mergekit's sparsify.magnitude_outliers and
 * generalized_task_arithmetic.py), in plain loops over whole tensors: one sort
 * per task, no chunks, no thresholds. Independent of lib/.
 *
 *   delta_t = x_t − base in float32
 *   mask: sort |delta| ascending (equal magnitudes: higher index first, so that
 *         descending order takes the lower index first); with target = int(density·n),
 *         n_top = int(gamma·n), n_bot = n − target − n_top (if < 0: n_top += n_bot,
 *         n_bot = 0), keep order[n_bot : −n_top] as Python slices it (mergekit's
 *         form: −0 is 0, an empty slice), or order[n_bot : n − n_top] (taskmerge's);
 *         density ≥ 1 keeps all
 *   rescale: masked · (‖delta‖₁ / ‖masked‖₁) unless a norm is < 1e-7
 *   weighted = w_t · delta_t
 *   consensus: majority = (Σ weighted ≥ 0 ? +1 : −1); mixed = Σ of the weighted with
 *              sign = majority, divisor = Σ of their w (0 → 1)
 *   else:      mixed = Σ weighted, divisor = Σ w (|·| < 1e-8 → 1)
 *   result = base + λ · (normalize ? mixed / divisor : mixed)
 */

export interface BreadcrumbsRefOptions {
  consensus: boolean;
  normalize: boolean;
  rescale: boolean;
  lambda: number;
  /** mergekit's slice (an empty mask where int(gamma·n) = 0) or taskmerge's. */
  mergekit: boolean;
  /** Per model. */
  weights: number[];
  densities: number[];
  gammas: number[];
}

/** Python's list[a:b] for 0 ≤ a, with b negative or zero counted from the end as Python does (b = −0 is 0). */
function pySlice<T>(list: T[], a: number, b: number): T[] {
  const end = b < 0 ? list.length + b : b;
  return list.slice(a, Math.max(a, end));
}

export function breadcrumbsMask(delta: Float64Array, density: number, gamma: number, mergekit: boolean): Uint8Array {
  const n = delta.length;
  const mask = new Uint8Array(n);
  if (density >= 1) return mask.fill(1);
  const target = Math.trunc(density * n);
  let nTop = Math.trunc(gamma * n);
  let nBot = n - target - nTop;
  if (nBot < 0) {
    nTop += nBot;
    nBot = 0;
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => Math.abs(delta[a]) - Math.abs(delta[b]) || b - a);
  const kept = mergekit ? pySlice(order, nBot, -nTop) : order.slice(nBot, n - nTop);
  for (const i of kept) mask[i] = 1;
  return mask;
}

export function breadcrumbsRef(base: ArrayLike<number>, experts: ArrayLike<number>[], o: BreadcrumbsRefOptions): Float64Array {
  const n = base.length;
  const deltas = experts.map((x, t) => {
    const d = new Float64Array(n);
    for (let i = 0; i < n; i++) d[i] = Math.fround(x[i] - base[i]);
    const mask = breadcrumbsMask(d, o.densities[t], o.gammas[t], o.mergekit);
    const masked = d.map((v, i) => v * mask[i]);
    if (!o.rescale || o.densities[t] >= 1) return masked;
    let before = 0, after = 0;
    for (let i = 0; i < n; i++) {
      before += Math.abs(d[i]);
      after += Math.abs(masked[i]);
    }
    return before < 1e-7 || after < 1e-7 ? masked : masked.map((v) => v * (before / after));
  });
  const sumW = o.weights.reduce((a, b) => a + b, 0);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const weighted = deltas.map((d, t) => o.weights[t] * d[i]);
    let mixed = 0, divisor = 0;
    if (o.consensus) {
      const majority = weighted.reduce((a, b) => a + b, 0) >= 0 ? 1 : -1;
      weighted.forEach((v, t) => {
        if (Math.sign(v) === majority) {
          mixed += v;
          divisor += o.weights[t];
        }
      });
      if (divisor === 0) divisor = 1;
    } else {
      mixed = weighted.reduce((a, b) => a + b, 0);
      divisor = Math.abs(sumW) < 1e-8 ? 1 : sumW;
    }
    out[i] = base[i] + o.lambda * (o.normalize ? mixed / divisor : mixed);
  }
  return out;
}
