/**
 * Float64 reference of DARE, with the counter-based random numbers written
 * out in BigInt arithmetic from their definition (native/core/counter_rng.h):
 *   stream = sm(sm(sm(seed) ^ fnv1a64(key)) ^ t),  u(i) = (sm(stream + i·γ) >> 11) / 2^53,
 *   sm(x) = mix(x + γ), kept when u < density.
 */
import { disjointMerge, taskVectors, Tensors } from "./ties";

const M64 = (1n << 64n) - 1n;
const GAMMA = 0x9e3779b97f4a7c15n;

function mix(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
  return z ^ (z >> 31n);
}

const sm = (x: bigint) => mix((x + GAMMA) & M64);

export function fnv1a64(key: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(key, "utf8")) h = ((h ^ BigInt(b)) * 0x100000001b3n) & M64;
  return h;
}

/** Keep flags of task t's entries of `key`. */
export function dareKeep(seed: number, key: string, t: number, n: number, density: number): boolean[] {
  const stream = sm(sm(sm(BigInt(seed)) ^ fnv1a64(key)) ^ BigInt(t));
  const keep: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const u = Number(sm((stream + BigInt(i) * GAMMA) & M64) >> 11n) / 2 ** 53;
    keep.push(u < density);
  }
  return keep;
}

export interface DareOptions {
  density: number;
  seed: number;
  lambda: number;
  weights?: number[];
}

/** DARE-trimmed task vectors: dropped entries 0, kept ones τ/density. */
export function dareVectors(base: Tensors, experts: Tensors[], keys: string[], o: DareOptions): Tensors[] {
  const tau = taskVectors(base, experts, keys);
  return tau.map((tv, t) => {
    const out: Tensors = {};
    for (const k of keys) {
      const keep = dareKeep(o.seed, k, t, tv[k].length, o.density);
      out[k] = tv[k].map((x, i) => (keep[i] ? x / o.density : 0));
    }
    return out;
  });
}

/** dare_linear: θ0 + λ Σ wt τ̃t. */
export function dareLinearRef(base: Tensors, experts: Tensors[], keys: string[], o: DareOptions): Tensors {
  const tr = dareVectors(base, experts, keys, o);
  const out: Tensors = {};
  for (const k of keys)
    out[k] = base[k].map((b, i) => b + o.lambda * tr.reduce((s, tv, t) => s + (o.weights?.[t] ?? 1) * tv[k][i], 0));
  return out;
}

/** dare_ties: θ0 + λ · disjoint mean of τ̃ (majority sign per key). */
export function dareTiesRef(base: Tensors, experts: Tensors[], keys: string[], o: DareOptions): Tensors {
  const tr = dareVectors(base, experts, keys, o);
  const out: Tensors = {};
  for (const k of keys) {
    const m = disjointMerge(tr, [k], "mean")[k];
    out[k] = base[k].map((b, i) => b + o.lambda * m[i]);
  }
  return out;
}
