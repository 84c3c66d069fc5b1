/**
 * Checks experts' statistics files against the base's weights (SPEC
 * "Statistics files") before a merge reads any data: statistics that are
 * present must have the right dtype and shape; missing ones mean a fallback
 * to the mean of the experts, which is reported, not an error.
 */
import type { Checkpoint } from "../checkpoint";
import type { SafetensorsFile } from "../safetensors/file";
import { DType, isFloatDType } from "../safetensors/dtypes";
import { TaskmergeError } from "../errors";

export interface StatsCoverage {
  /** Weight keys with statistics from every expert. */
  withStats: string[];
  /** Linear (2-D) weight keys lacking statistics from some expert: they fall back to the mean of the experts. */
  fallback: { key: string; missingFrom: string[] }[];
  bytes: number;
}

const STATS_DTYPES = new Set<DType>(["F32", "F64"]);
const SUFFIXES = ["input_gram", "input_sum", "input_count", "norm_sq_sum", "norm_sum"];

export function checkStatistics(
  base: Checkpoint,
  experts: { name: string; stats?: SafetensorsFile }[],
  warnings: string[] = [],
): StatsCoverage {
  const coverage: StatsCoverage = { withStats: [], fallback: [], bytes: 0 };
  const modules = new Set<string>();
  for (const key of base.keys()) {
    const w = base.get(key);
    if (!key.endsWith(".weight") || !isFloatDType(w.dtype) || (w.shape.length !== 1 && w.shape.length !== 2)) continue;
    const mod = key.slice(0, -".weight".length);
    modules.add(mod);
    const linear = w.shape.length === 2;
    const width = linear ? w.shape[1] : w.shape[0];
    const main = linear ? "input_gram" : "norm_sq_sum";
    const shapes: Record<string, number[]> = linear
      ? { input_gram: [width, width], input_sum: [width], input_count: [1] }
      : { norm_sq_sum: [width], norm_sum: [width], input_count: [1] };
    const missingFrom: string[] = [];
    for (const e of experts) {
      if (!e.stats?.tensor(`${mod}.${main}`)) {
        missingFrom.push(e.name);
        continue;
      }
      for (const [suffix, shape] of Object.entries(shapes)) {
        const t = e.stats.tensor(`${mod}.${suffix}`);
        if (!t) continue;
        const okShape = suffix === "input_count" ? t.numel === 1 : t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
        if (!STATS_DTYPES.has(t.dtype) || !okShape)
          throw new TaskmergeError(
            `statistics tensor is ${t.dtype} [${t.shape.join(", ")}]; expected F32 or F64 [${shape.join(", ")}] for '${key}' [${w.shape.join(", ")}]`,
            e.stats.path,
            t.key,
          );
        coverage.bytes += t.nbytes;
      }
      if (!e.stats.tensor(`${mod}.input_count`)) warnings.push(`${e.stats.path}: '${mod}.${main}' has no '${mod}.input_count'`);
    }
    if (!missingFrom.length) coverage.withStats.push(key);
    // A 1-D weight without any statistics is not a normalization scale to the methods; only partial coverage is a fallback.
    else if (linear || missingFrom.length < experts.length) coverage.fallback.push({ key, missingFrom });
  }
  // Statistics that match no weight usually mean a key prefix differs (e.g. "model." added or dropped).
  for (const e of experts) {
    if (!e.stats) continue;
    const stray = e.stats.tensors
      .map((t) => t.key)
      .filter((k) => {
        const suffix = SUFFIXES.find((s) => k.endsWith(`.${s}`));
        return !suffix || !modules.has(k.slice(0, -suffix.length - 1));
      });
    if (stray.length)
      warnings.push(
        `${e.stats.path}: ${stray.length} statistics tensor${stray.length === 1 ? "" : "s"} match no weight of the base (first: '${stray[0]}')`,
      );
  }
  return coverage;
}

