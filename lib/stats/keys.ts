/**
 * Which statistics belong to a parameter (SPEC "Statistics files"): a linear
 * weight `M.weight` [out,in] (or `M_weight`, as in MultiheadAttention's
 * in_proj_weight) has `M.input_gram` [in,in]; a normalisation scale `M.weight`
 * [d] has `M.norm_sq_sum` [d]. Shapes and dtypes are checked here, with errors
 * naming the statistics file and key.
 */
import type { SafetensorsFile } from "../safetensors/file";
import type { TensorInfo } from "../safetensors/header";
import { isFloatDType } from "../safetensors/dtypes";
import { quote, TaskmergeError } from "../errors";

/** The module prefix of a weight key, or undefined when the key is not a weight. */
export function statsPrefix(key: string): string | undefined {
  if (key.endsWith(".weight")) return key.slice(0, -".weight".length);
  if (key.endsWith("_weight")) return key.slice(0, -"_weight".length);
  return undefined;
}

export interface StatTensor {
  file: SafetensorsFile;
  info: TensorInfo;
}

export type ParamStats =
  /** Linear weight with a Gram from every expert (and the counts, when present). */
  | { kind: "linear"; out: number; in: number; grams: StatTensor[]; counts: (StatTensor | undefined)[] }
  /** Normalisation scale with Σx̂² from every expert. */
  | { kind: "norm"; scales: StatTensor[] }
  /** Should have statistics but some expert lacks them: the mean of the experts, reported. */
  | { kind: "fallback"; missingFrom: string[] }
  /** Not a statistics-bearing parameter (bias, embedding without stats, 1-D without any stats...). */
  | { kind: "other" };

interface StatsExpert {
  name: string;
  stats?: SafetensorsFile;
}

function statTensor(file: SafetensorsFile | undefined, key: string): StatTensor | undefined {
  const info = file?.tensor(key);
  return file && info ? { file, info } : undefined;
}

function expectShape(s: StatTensor, shape: number[], key: string, wshape: number[]): void {
  const ok = s.info.shape.length === shape.length && s.info.shape.every((d, i) => d === shape[i]);
  if (!isFloatDType(s.info.dtype) || !ok)
    throw new TaskmergeError(
      `statistics tensor is ${s.info.dtype} [${s.info.shape.join(", ")}] but ${quote(key)} [${wshape.join(", ")}] needs a float [${shape.join(", ")}]`,
      s.file.path,
      s.info.key,
    );
}

/**
 * Classifies parameter `key` of shape `shape`: a 2-D weight is linear when
 * every expert has its Gram, else a reported fallback; a 1-D weight is a
 * normalisation scale when every expert has Σx̂², a fallback when only some do.
 */
export function paramStats(key: string, shape: number[], experts: StatsExpert[]): ParamStats {
  const prefix = statsPrefix(key);
  if (prefix === undefined || (shape.length !== 1 && shape.length !== 2)) return { kind: "other" };
  const linear = shape.length === 2;
  const main = linear ? `${prefix}.input_gram` : `${prefix}.norm_sq_sum`;
  const found = experts.map((e) => statTensor(e.stats, main));
  const missingFrom = experts.filter((_, i) => !found[i]).map((e) => e.name);
  const present = found.filter((s): s is StatTensor => !!s);
  // Shapes are checked wherever statistics exist, also when falling back.
  for (const s of present) expectShape(s, linear ? [shape[1], shape[1]] : [shape[0]], key, shape);
  const counts = experts.map((e) => statTensor(e.stats, `${prefix}.input_count`));
  for (const c of counts)
    if (c && (!isFloatDType(c.info.dtype) || c.info.numel !== 1))
      throw new TaskmergeError(`input_count must hold one float, found ${c.info.dtype} [${c.info.shape.join(", ")}]`, c.file.path, c.info.key);
  if (missingFrom.length) {
    if (linear || present.length) return { kind: "fallback", missingFrom };
    return { kind: "other" };
  }
  if (linear) return { kind: "linear", out: shape[0], in: shape[1], grams: present, counts };
  return { kind: "norm", scales: present };
}

/** Machine epsilon of a statistics dtype: sets the pseudo-inverse cut-off. */
export function dtypeEps(dtype: string): number {
  return ({ F64: 2 ** -52, F32: 2 ** -23, F16: 2 ** -10, BF16: 2 ** -7 } as Record<string, number>)[dtype] ?? 2 ** -7;
}

/** Methods that need statistics need a file for every expert. */
export function requireStatsFiles(method: string, experts: StatsExpert[]): void {
  const without = experts.filter((e) => !e.stats).map((e) => e.name);
  if (without.length)
    throw new TaskmergeError(
      `${method} needs a statistics file per expert (--stats, or stats: in the config); none for ${without.map((n) => `'${n}'`).join(", ")}`,
    );
}
