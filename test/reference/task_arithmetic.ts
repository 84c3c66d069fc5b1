/** Float64 references of the SPEC's average and task_arithmetic, written with plain loops. */
import type { Zoo } from "../helpers/fixtures";

/** θ0 + Σt ct (θt − θ0) for one key. */
export function linearCombination(zoo: Zoo, key: string, coeffs: number[]): Float64Array {
  const base = zoo.base.floats[key];
  const out = new Float64Array(base.length);
  for (let i = 0; i < base.length; i++) {
    let s = base[i];
    for (let t = 0; t < zoo.experts.length; t++) s += coeffs[t] * (zoo.experts[t].floats[key][i] - base[i]);
    out[i] = s;
  }
  return out;
}

export function averageRef(zoo: Zoo, key: string): Float64Array {
  const T = zoo.experts.length;
  return linearCombination(zoo, key, zoo.experts.map(() => 1 / T));
}

export function taskArithmeticRef(zoo: Zoo, key: string, lambda: number, weights?: number[]): Float64Array {
  return linearCombination(zoo, key, zoo.experts.map((_, t) => lambda * (weights?.[t] ?? 1)));
}
