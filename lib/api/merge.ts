/** The public merge() call: normalises user options into the engine's. */
import * as path from "path";
import { runMerge, MergeReport, EngineOptions } from "../job/merge";
import { Progress } from "../engine/progress";
import { parseOutputDType, FloatDType, OutputDType } from "../safetensors/dtypes";
import type { MergekitMethodSpec, MethodName, MethodSpec } from "../methods";
import { parseByteSize } from "../units";
import { UsageError } from "../errors";
import { resolveDevice, Device } from "../device";
import type { CollectStats, CollectStatsRequest } from "../progressive/collect";
import type { Setting } from "../methods/mergekit/settings";
import { isHubId } from "../base_info";

export interface ExpertSpec {
  path: string;
  /** Defaults to the file or directory name without extension. */
  name?: string;
  /** Per-expert weight (task_arithmetic). */
  weight?: number;
  /** Statistics file for regmean / lot. */
  stats?: string;
  /** Per-model settings of the mergekit:* methods (weight, density), as mergekit's `models[].parameters`. */
  parameters?: Record<string, Setting>;
}

export interface MergeOptions {
  base: string;
  experts: (string | ExpertSpec)[];
  /** A method name, or the name and parameters typed per method: `{ name: "ties", density: 0.2 }`. */
  method: MethodName | MethodSpec | MergekitMethodSpec;
  out: string;
  /** Output dtype of float tensors (default: the base's). */
  dtype?: OutputDType;
  device?: Device;
  /**
   * The base's Hugging Face Hub id, for the model card's `base_model` (default:
   * `_name_or_path` of the base's config.json when that is a Hub id).
   */
  baseModel?: string;
  /** Shard limit for directory output, bytes or "5GB". */
  maxShardSize?: string | number;
  onProgress?: (p: Progress) => void;
  /** Warnings about the inputs, e.g. statistics files that record no source checkpoint (also in the report). */
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
  /**
   * Progressive lot / regmean (method { progressive: true }): called once per
   * layer group and expert to write that group's statistics, computed on the
   * partially merged checkpoint `model`; returns the statistics file's path.
   */
  collectStats?: CollectStats;
}

export type { MergeReport, Progress, MethodName, MethodSpec, MergekitMethodSpec, OutputDType, CollectStats, CollectStatsRequest };

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
    return {
      path: spec.path, name: spec.name ?? expertName(spec.path), weight, stats: spec.stats,
      ...(spec.parameters ? { parameters: spec.parameters } : {}),
    };
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
  // Checked at run time too: JavaScript callers, flags and YAML reach here untyped.
  const method: { name: string } = typeof opts.method === "string" ? { name: opts.method } : opts.method;
  if (!method?.name) throw new UsageError("method is required");
  const { name, ...params } = method;
  const device = resolveDevice(opts.device);
  let maxShardSize: number | undefined;
  try {
    maxShardSize = opts.maxShardSize === undefined ? undefined : parseByteSize(opts.maxShardSize);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (opts.baseModel !== undefined && !isHubId(opts.baseModel))
    throw new UsageError(`baseModel must be a Hugging Face Hub id such as org/name (got '${opts.baseModel}')`);
  const experts = normalizeExperts(opts.experts);
  return {
    base: opts.base,
    experts,
    method: name,
    params,
    out: opts.out,
    dtype: parseDTypeOption(opts.dtype),
    baseModel: opts.baseModel,
    maxShardSize,
    onProgress: opts.onProgress,
    onWarning: opts.onWarning,
    signal: opts.signal,
    collectStats: opts.collectStats,
    device,
  };
}
