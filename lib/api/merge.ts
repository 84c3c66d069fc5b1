/** The public merge() call: normalises user options into the engine's. */
import * as path from "path";
import { runMerge, MergeReport, EngineOptions } from "../engine/merge";
import { Progress } from "../engine/progress";
import { parseOutputDType, FloatDType } from "../safetensors/dtypes";
import { parseByteSize } from "../units";
import { UsageError } from "../errors";
import { resolveDevice, Device } from "../device";
import type { CollectStats, CollectStatsRequest } from "../progressive/collect";

export interface ExpertSpec {
  path: string;
  /** Defaults to the file or directory name without extension. */
  name?: string;
  /** Per-expert weight (task_arithmetic). */
  weight?: number;
  /** Statistics file for regmean / lot. */
  stats?: string;
}

export interface MethodSpec {
  name: string;
  [param: string]: unknown;
}

export interface MergeOptions {
  base: string;
  experts: (string | ExpertSpec)[];
  method: string | MethodSpec;
  out: string;
  /** Output dtype of float tensors: f32 | f16 | bf16 (default: the base's). */
  dtype?: string;
  device?: Device;
  /** Shard limit for directory output, bytes or "5GB". */
  maxShardSize?: string | number;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
  /**
   * Progressive lot / regmean (method { progressive: true }): called once per
   * layer group and expert to write that group's statistics, computed on the
   * partially merged checkpoint `model`; returns the statistics file's path.
   */
  collectStats?: CollectStats;
}

export type { MergeReport, Progress, CollectStats, CollectStatsRequest };

export function expertName(p: string): string {
  return path.basename(path.resolve(p)).replace(/\.safetensors$/, "");
}

export function normalizeExperts(experts: (string | ExpertSpec)[]) {
  if (!Array.isArray(experts) || experts.length === 0) throw new UsageError("at least one expert is required");
  const out = experts.map((e) => {
    const spec: ExpertSpec = typeof e === "string" ? { path: e } : e;
    if (!spec || typeof spec.path !== "string" || !spec.path) throw new UsageError("every expert needs a path");
    const weight = spec.weight ?? 1;
    if (typeof weight !== "number" || !Number.isFinite(weight)) throw new UsageError(`expert ${spec.path}: weight must be a finite number`);
    return { path: spec.path, name: spec.name ?? expertName(spec.path), weight, stats: spec.stats };
  });
  const names = new Set<string>();
  for (const e of out) {
    if (names.has(e.name)) throw new UsageError(`two experts are named '${e.name}'; give them distinct names`);
    names.add(e.name);
  }
  return out;
}

export function parseDTypeOption(d: string | undefined): FloatDType | undefined {
  if (d === undefined) return undefined;
  try {
    return parseOutputDType(d);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

export async function merge(opts: MergeOptions): Promise<MergeReport> {
  return runMerge(engineOptions(opts));
}

/** Checks and normalises user options into the engine's (shared by merge() and planMerge()). */
export function engineOptions(opts: MergeOptions): EngineOptions {
  if (!opts || typeof opts !== "object") throw new UsageError("merge() needs an options object");
  if (!opts.base) throw new UsageError("base is required");
  if (!opts.out) throw new UsageError("out is required");
  const method: MethodSpec = typeof opts.method === "string" ? { name: opts.method } : opts.method;
  if (!method?.name) throw new UsageError("method is required");
  const { name, ...params } = method;
  resolveDevice(opts.device);
  let maxShardSize: number | undefined;
  try {
    maxShardSize = opts.maxShardSize === undefined ? undefined : parseByteSize(opts.maxShardSize);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const experts = normalizeExperts(opts.experts);
  // Replacing an input with the output would destroy it when the output is renamed into place.
  const out = path.resolve(opts.out);
  const clash = [opts.base, ...experts.flatMap((e) => (e.stats ? [e.path, e.stats] : [e.path]))].find((p) => {
    const abs = path.resolve(p);
    return abs === out || abs.startsWith(out + path.sep);
  });
  if (clash)
    throw new UsageError(
      `the output ${opts.out} ${path.resolve(clash) === out ? "is also" : "contains"} an input (${clash}); write the merge somewhere else`,
    );
  return {
    base: opts.base,
    experts,
    method: name,
    params,
    out: opts.out,
    dtype: parseDTypeOption(opts.dtype),
    maxShardSize,
    onProgress: opts.onProgress,
    signal: opts.signal,
    collectStats: opts.collectStats,
  };
}
