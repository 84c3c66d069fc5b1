/**
 * Which statistics belong to a parameter (SPEC "Statistics files"): a linear
 * weight `M.weight` [out,in] (or `M_weight`, as in MultiheadAttention's
 * in_proj_weight) has `M.input_gram` [in,in]; a normalisation scale `M.weight`
 * [d] has `M.norm_sq_sum` [d]. Shapes and dtypes are checked here, with errors
 * naming the statistics file and key.
 */
import type { SafetensorsFile } from "../safetensors/file";
import type { TensorInfo } from "../safetensors/header";
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
  /** The expert whose statistics these are: position (--expert order) and name. */
  expert: { index: number; name: string };
}

/** The statistics format stores sums in F32 or F64 (SPEC "Statistics files"); F16/BF16 lose too much. */
export const STATS_DTYPES: readonly string[] = ["F32", "F64"];
const isStatsDType = (d: string) => STATS_DTYPES.includes(d);

/** The provenance of errors about a statistics tensor. */
export function statsSource(s: StatTensor) {
  return { role: "stats" as const, index: s.expert.index, name: s.expert.name };
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

function statTensor(e: StatsExpert, index: number, key: string): StatTensor | undefined {
  const info = e.stats?.tensor(key);
  return e.stats && info ? { file: e.stats, info, expert: { index, name: e.name } } : undefined;
}

function expectShape(s: StatTensor, shape: number[], key: string, wshape: number[]): void {
  const ok = s.info.shape.length === shape.length && s.info.shape.every((d, i) => d === shape[i]);
  if (!isStatsDType(s.info.dtype) || !ok)
    throw new TaskmergeError(
      `statistics tensor is ${s.info.dtype} [${s.info.shape.join(", ")}] but ${quote(key)} [${wshape.join(", ")}] needs an F32 or F64 [${shape.join(", ")}]`,
      s.file.path,
      s.info.key,
      statsSource(s),
    );
}

/** The statistics tensor a weight's merge reads (its Gram or Σx̂²), or undefined for a key that has none. */
export function mainStatKey(key: string, shape: number[]): string | undefined {
  const prefix = statsPrefix(key);
  if (prefix === undefined || (shape.length !== 1 && shape.length !== 2)) return undefined;
  return shape.length === 2 ? `${prefix}.input_gram` : `${prefix}.norm_sq_sum`;
}

/**
 * Classifies parameter `key` of shape `shape`: a 2-D weight is linear when
 * every expert has its Gram, else a reported fallback; a 1-D weight is a
 * normalisation scale when every expert has Σx̂², a fallback when only some do.
 */
export function paramStats(key: string, shape: number[], experts: StatsExpert[]): ParamStats {
  const main = mainStatKey(key, shape);
  if (main === undefined) return { kind: "other" };
  const prefix = statsPrefix(key)!;
  const linear = shape.length === 2;
  const found = experts.map((e, i) => statTensor(e, i, main));
  const missingFrom = experts.filter((_, i) => !found[i]).map((e) => e.name);
  const present = found.filter((s): s is StatTensor => !!s);
  // Shapes are checked wherever statistics exist, also when falling back.
  for (const s of present) expectShape(s, linear ? [shape[1], shape[1]] : [shape[0]], key, shape);
  const counts = experts.map((e, i) => statTensor(e, i, `${prefix}.input_count`));
  for (const c of counts)
    if (c && (!isStatsDType(c.info.dtype) || c.info.numel !== 1))
      throw new TaskmergeError(`input_count must hold one F64 (or F32) value, found ${c.info.dtype} [${c.info.shape.join(", ")}]`, c.file.path, c.info.key, statsSource(c));
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

/**
 * Classifies every float key for a statistics method and checks that the
 * statistics are of use: a file that covers no weight of the model (a key
 * prefix differs, or it belongs to another model) is an error, and so is a set
 * of files that leaves every weight to the mean — not a silent fallback.
 */
export function classifyStats(
  method: string, keys: { key: string; shape: number[] }[], experts: StatsExpert[], opts: { group?: boolean } = {},
): Map<string, ParamStats> {
  requireStatsFiles(method, experts);
  const out = new Map(keys.map(({ key, shape }) => [key, paramStats(key, shape, experts)]));
  // One layer group of a progressive merge may hold no weight that statistics describe (embeddings, a head's bias).
  if (opts.group && !keys.some(({ key, shape }) => mainStatKey(key, shape) !== undefined)) return out;
  experts.forEach((e, index) => {
    if (keys.some(({ key, shape }) => { const m = mainStatKey(key, shape); return m !== undefined && !!e.stats!.tensor(m); })) return;
    const first = e.stats!.tensors[0]?.key;
    const weight = keys.find(({ key, shape }) => mainStatKey(key, shape) !== undefined)?.key;
    throw new TaskmergeError(
      `statistics of expert '${e.name}' cover no weight of the model (${first === undefined ? "the file holds no tensor" : `first statistics key '${first}'`}` +
        `${weight ? `, first weight '${weight}'` : ""}); were they collected from another model, or does a key prefix differ?`,
      e.stats!.path, undefined, { role: "stats", index, name: e.name },
    );
  });
  if (![...out.values()].some((p) => p.kind === "linear" || p.kind === "norm"))
    throw new TaskmergeError(`${method}: no weight has statistics from every expert, so every weight would fall back to the mean of the experts`);
  return out;
}

/** Methods that need statistics need a file for every expert. */
export function requireStatsFiles(method: string, experts: StatsExpert[]): void {
  const without = experts.filter((e) => !e.stats).map((e) => e.name);
  if (without.length)
    throw new TaskmergeError(
      `${method} needs a statistics file per expert (--stats, or stats: in the config); none for ${without.map((n) => `'${n}'`).join(", ")}`,
    );
}
