/**
 * compress's τMTL options as ParamSpec declarations: `taskmerge compress`
 * generates its --tau, --density and --scope flags from them, and compress()
 * checks its options with them (engine/params.ts), as merge does for method
 * parameters. tallLambda is not among them: it is a number, one per expert or
 * a { grid, score } search (api/compress.ts checks it).
 */
import type { ParamSpec } from "../engine/context";
import { checkParam } from "../engine/params";

export const COMPRESS_PARAMS = [
  { name: "tau", type: "string", default: "sum", choices: ["sum", "ties"], description: "τMTL: Σ τt (sum) or the TIES disjoint sum (ties)" },
  { name: "density", type: "number", default: 0.2, min: 0, max: 1, description: "TIES density for --tau ties" },
  { name: "scope", type: "string", default: "global", choices: ["global", "tensor"], description: "TIES top-k scope for --tau ties" },
] as const satisfies readonly ParamSpec[];

export interface CompressParams {
  tau: "sum" | "ties";
  density: number;
  scope: "global" | "tensor";
}

/** The options checked against COMPRESS_PARAMS, defaults filled in (strings from flags converted). */
export function resolveCompressParams(given: { tau?: unknown; density?: unknown; scope?: unknown }): CompressParams {
  const v = (p: (typeof COMPRESS_PARAMS)[number]) => checkParam("compress", p, given[p.name] ?? p.default);
  const [tau, density, scope] = COMPRESS_PARAMS.map(v);
  return { tau: tau as CompressParams["tau"], density: density as number, scope: scope as CompressParams["scope"] };
}
