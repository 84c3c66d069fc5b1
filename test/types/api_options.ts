/**
 * Type-checked by test/types.test.ts (never run): the library's options are
 * typed per method. Every `@ts-expect-error` line must be an error; if the
 * types become loose, the directive is unused and the check fails.
 */
import { compress, extract, merge, MethodSpec } from "../../lib";

const base = "base/";
const out = "out/";

// Accepted: every method's own parameters, with their declared value types.
export const ok = [
  merge({ base, experts: ["a/"], out, method: "ties" }),
  merge({ base, experts: ["a/"], out, method: { name: "ties", density: 0.2, scope: "tensor", merge_func: "sum", lambda: 1 } }),
  merge({ base, experts: ["a/"], out, method: { name: "lot", lambda: 1.2, ridge: 1e-6, solver: "eigh", rcond: 1e-8 }, dtype: "bf16" }),
  merge({ base, experts: ["a/"], out, method: { name: "consensus_ties", k: 2, tall_lambda: 0.4, density: 0.2 }, dtype: "f16" }),
  merge({ base, experts: [{ path: "a/", stats: "a.st" }], out, method: { name: "regmean", alpha: 0.9 }, baseModel: "org/base" }),
  extract({ bundle: "b/", task: "a", base, out, dtype: "f32" }),
  compress({ base, experts: ["a/"], out, dtype: "bf16" }),
];
export const spec: MethodSpec = { name: "dare_ties", density: 0.5, seed: 3 };

export const bad = [
  // @ts-expect-error a misspelt parameter
  merge({ base, experts: ["a/"], out, method: { name: "ties", densty: 0.2 } }),
  // @ts-expect-error a parameter of another method
  merge({ base, experts: ["a/"], out, method: { name: "task_arithmetic", density: 0.2 } }),
  // @ts-expect-error a value outside the declared choices
  merge({ base, experts: ["a/"], out, method: { name: "ties", scope: "layer" } }),
  // @ts-expect-error a string where a number is declared
  merge({ base, experts: ["a/"], out, method: { name: "lot", lambda: "1" } }),
  // @ts-expect-error an unknown method
  merge({ base, experts: ["a/"], out, method: "slerp" }),
  // @ts-expect-error average takes no parameters
  merge({ base, experts: ["a/"], out, method: { name: "average", lambda: 1 } }),
  // @ts-expect-error the library takes taskmerge's dtype names; mergekit's are for the CLI and YAML
  merge({ base, experts: ["a/"], out, method: "average", dtype: "bfloat16" }),
  // @ts-expect-error not a dtype
  extract({ bundle: "b/", task: "a", base, out, dtype: "bf17" }),
];
