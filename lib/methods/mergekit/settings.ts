/**
 * mergekit's per-tensor parameter settings (mergekit/config.py, evaluate_setting):
 * a number; a gradient (a list of numbers, interpolated over the layers); or a
 * list of {filter, value} whose first entry with no filter, "*" or a filter
 * that is a substring of the tensor name gives the value. A list none of whose
 * filters matches gives nothing, and the lookup falls through to the next level
 * (a model's own parameters, then the top-level `parameters`).
 */
import type { Conditional, Scalar, Setting } from "../../engine/context";

export type { Conditional, Scalar, Setting };

export function isConditionalList(s: Setting): s is Conditional[] {
  return Array.isArray(s) && s.length > 0 && s.every((e) => typeof e === "object" && e !== null && !Array.isArray(e));
}

/** The value of `s` for tensor `name` at layer position t ∈ [0, 1]; undefined when no filter matches. */
export function evaluateSetting(s: Setting, name: string, t: number): Scalar | undefined {
  if (!Array.isArray(s)) return s;
  if (isConditionalList(s)) {
    for (const c of s)
      if (c.filter === undefined || c.filter === null || c.filter === "*" || (name && name.includes(c.filter))) return evaluateSetting(c.value, name, t);
    return undefined;
  }
  const list = s as Scalar[];
  if (list.every((e) => typeof e === "number")) {
    // Linear interpolation between the anchors, as mergekit does.
    const scaled = t * (list.length - 1);
    const i0 = Math.trunc(scaled);
    const i1 = Math.min(list.length - 1, i0 + 1);
    const frac = scaled - i0;
    return (1 - frac) * (list[i0] as number) + frac * (list[i1] as number);
  }
  return list[Math.trunc(t * (list.length - 1))];
}

/**
 * A model's setting with the top-level one as its fallback: what mergekit's
 * lookup finds, as one setting (a model's conditional list that matches
 * nothing falls through to the top-level value).
 */
export function withFallback(own: Setting | undefined, global: Setting | undefined): Setting | undefined {
  if (own === undefined) return global;
  if (global === undefined || !isConditionalList(own)) return own;
  return [...own, ...(isConditionalList(global) ? global : [{ value: global as Scalar | number[] }])];
}

/** Whether a setting has the same value for every tensor. */
export function isConstant(s: Setting): s is Scalar {
  return !Array.isArray(s);
}

/**
 * Layer positions for gradients: mergekit evaluates a gradient at t = i/(L−1)
 * for the tensors of layer i of L (t = 1 when L = 1), and at t = 0 for the
 * tensors outside the layers (embeddings, final norm, head). Layers are found
 * by name: the number after "layers.", "h.", "blocks." or "layer.".
 */
const LAYER = /(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\./;

export function layerPositions(keys: readonly string[]): (key: string) => number {
  const index = (k: string) => {
    const m = LAYER.exec(k);
    return m ? Number(m[1]) : undefined;
  };
  const layers = new Set(keys.map(index).filter((i): i is number => i !== undefined));
  const L = layers.size ? Math.max(...layers) + 1 : 0;
  return (key) => {
    const i = index(key);
    if (i === undefined) return 0;
    return L > 1 ? i / (L - 1) : 1;
  };
}
