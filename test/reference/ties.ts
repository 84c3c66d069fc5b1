/**
 * Float64 reference of the SPEC's TIES definition (and the TIES parts other
 * methods reuse), in plain loops over whole tensors. Written separately from
 * the streaming implementation: sorting instead of histograms, no chunks.
 */
import { readSafetensors, values, Zoo, Model } from "../helpers/fixtures";
import { EPS, RefFloat } from "../helpers/floatref";

export type Tensors = Record<string, Float64Array>;

export interface TiesOptions {
  density: number;
  scope: "global" | "tensor";
  lambda: number;
  mergeFunc?: "mean" | "sum";
}

/** τt = θt − θ0 for every key. */
export function taskVectors(base: Tensors, experts: Tensors[], keys: string[]): Tensors[] {
  return experts.map((e) => {
    const out: Tensors = {};
    for (const k of keys) {
      const v = new Float64Array(base[k].length);
      for (let i = 0; i < v.length; i++) v[i] = e[k][i] - base[k][i];
      out[k] = v;
    }
    return out;
  });
}

/** The k-th largest |x| over the listed keys of one task, k = max(1, floor(n·density)). */
export function kthLargest(tau: Tensors, keys: string[], density: number): number {
  const all: number[] = [];
  for (const k of keys) for (const x of tau[k]) all.push(Math.abs(x));
  if (!all.length) return 0;
  all.sort((a, b) => b - a);
  const k = Math.max(1, Math.floor(all.length * density));
  return all[k - 1];
}

function sign(x: number): number {
  return x > 0 ? 1 : x < 0 ? -1 : 0;
}

/** Scopes: every float key together, or each key alone. */
export function scopes(keys: string[], scope: "global" | "tensor"): string[][] {
  return scope === "global" ? [keys] : keys.map((k) => [k]);
}

/**
 * The TIES disjoint aggregate of already-trimmed task vectors over one scope:
 * elected sign per entry (majority sign of the scope where it is 0), then the
 * mean (or sum) of the entries agreeing with it.
 */
export function disjointMerge(trimmed: Tensors[], keys: string[], mergeFunc: "mean" | "sum"): Tensors {
  const T = trimmed.length;
  const elected: Tensors = {};
  let signSum = 0;
  for (const k of keys) {
    const s = new Float64Array(trimmed[0][k].length);
    for (let i = 0; i < s.length; i++) {
      let sum = 0;
      for (let t = 0; t < T; t++) sum += trimmed[t][k][i];
      s[i] = sign(sum);
      signSum += s[i];
    }
    elected[k] = s;
  }
  const majority = signSum < 0 ? -1 : 1;
  const out: Tensors = {};
  for (const k of keys) {
    const r = new Float64Array(elected[k].length);
    for (let i = 0; i < r.length; i++) {
      const s = elected[k][i] === 0 ? majority : elected[k][i];
      let acc = 0;
      let count = 0;
      for (let t = 0; t < T; t++) {
        const x = trimmed[t][k][i];
        if (x !== 0 && sign(x) === s) {
          acc += x;
          count++;
        }
      }
      r[i] = mergeFunc === "mean" ? acc / Math.max(1, count) : acc;
    }
    out[k] = r;
  }
  return out;
}

/** Magnitude trimming per task and scope; returns the trimmed vectors and thresholds[scope][task]. */
export function trimByMagnitude(tau: Tensors[], keys: string[], density: number, scope: "global" | "tensor") {
  const trimmed: Tensors[] = tau.map(() => ({}));
  const thresholds: number[][] = [];
  for (const sk of scopes(keys, scope)) {
    const th = tau.map((tv) => kthLargest(tv, sk, density));
    thresholds.push(th);
    tau.forEach((tv, t) => {
      for (const k of sk) trimmed[t][k] = tv[k].map((x) => (Math.abs(x) >= th[t] ? x : 0));
    });
  }
  return { trimmed, thresholds };
}

/** The TIES disjoint mean (or sum) of the task vectors, before scaling. */
export function tiesVector(tau: Tensors[], keys: string[], o: TiesOptions) {
  const { trimmed, thresholds } = trimByMagnitude(tau, keys, o.density, o.scope);
  const merged: Tensors = {};
  for (const sk of scopes(keys, o.scope)) Object.assign(merged, disjointMerge(trimmed, sk, o.mergeFunc ?? "mean"));
  return { merged, thresholds };
}

/** θ0 + λ · TIES(τ). */
export function tiesRef(base: Tensors, experts: Tensors[], keys: string[], o: TiesOptions) {
  const tau = taskVectors(base, experts, keys);
  const { merged, thresholds } = tiesVector(tau, keys, o);
  const out: Tensors = {};
  for (const k of keys) out[k] = base[k].map((b, i) => b + o.lambda * merged[k][i]);
  return { out, thresholds };
}

/**
 * Largest error of `got` against `want` in units of the allowed error: one
 * rounding of the output dtype plus float32 evaluation noise scaled by the
 * magnitudes involved (`scale`, e.g. |θ0| + Σ|τ|). ≤ 1 passes.
 */
export function errorUnits(got: Float64Array, want: Float64Array, eps: number, scale: (i: number) => number): { units: number; at: number } {
  let units = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const allowed = eps * Math.abs(want[i]) + 8 * 2 ** -24 * scale(i) + 1e-12;
    const u = Math.abs(got[i] - want[i]) / allowed;
    if (u > units) {
      units = u;
      at = i;
    }
  }
  return { units, at };
}

export function floatKeys(m: Model): string[] {
  return Object.keys(m.floats);
}

/** Checks every float key of `out` against the reference within the output dtype's rounding. */
export function expectMatches(out: string, zoo: Zoo, ref: Tensors, dtype: RefFloat): void {
  const got = readSafetensors(out);
  for (const k of Object.keys(zoo.base.raw)) {
    if (!(k in ref)) {
      expect(got[k].data.equals(zoo.base.raw[k].data)).toBe(true);
      continue;
    }
    const b = zoo.base.floats[k];
    const scale = (i: number) => Math.abs(b[i]) + zoo.experts.reduce((s, e) => s + Math.abs(e.floats[k][i]), 0);
    const { units, at } = errorUnits(values(got[k]), ref[k], 2 * EPS[dtype], scale);
    if (units > 1) throw new Error(`${k}[${at}]: got ${values(got[k])[at]}, want ${ref[k][at]} (${units.toFixed(1)}× the tolerance)`);
  }
}

