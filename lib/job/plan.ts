/**
 * Dry run: everything a merge checks before it writes (headers, keys, shapes,
 * statistics, the output path, the method's parameters), plus what it would
 * write, read and hold in memory. Opens only headers; reads no tensor data.
 */
import * as path from "path";
import { Checkpoint, CheckpointLayout } from "../checkpoint";
import { SafetensorsFile } from "../safetensors/file";
import { DTYPE_SIZE, DType, FloatDType, isFloatDType } from "../safetensors/dtypes";
import { encodeHeader, OutTensor, tensorBytes } from "../safetensors/writer";
import { checkpointKind, DEFAULT_MAX_SHARD, isFileOutput, listOtherFiles, planShards, shardFileName } from "../output";
import { checkReplaceable } from "../out_path/owned";
import { checkInputClash } from "../out_path/clash";
import { TaskmergeError, throwIfAborted } from "../errors";
import { getMethod, resolveParams } from "../methods";
import type { Params } from "../engine/context";
import { namedPaths, openInputs } from "../engine/inputs";
import { classifyStats, paramStats, statsPrefix } from "../stats/keys";
import { EngineOptions, checkProgressive } from "./merge";
import { defaultChunkElems } from "../engine/stream";
import { formGroups } from "../progressive/engine";
import type { MergeContext } from "../engine/context";

export interface PlannedTensor {
  key: string;
  dtype: DType;
  shape: number[];
  bytes: number;
  /** Float tensors are merged; others are copied from the base. */
  action: "merge" | "copy";
}

export interface StatsCoverage {
  /** Weights with statistics from every expert: linear layers (Grams) and normalisation scales (Σx̂²). */
  withStats: string[];
  /** Weights whose statistics some expert lacks: they fall back to the mean of the experts. */
  fallback: { key: string; missingFrom: string[] }[];
  /** Bytes of statistics the merge reads. */
  bytes: number;
}

export interface MergePlan {
  method: string;
  params: Params;
  base: { path: string; layout: CheckpointLayout; tensors: number; bytes: number };
  experts: {
    name: string; path: string; weight: number; stats?: string; layout: CheckpointLayout; bytes: number;
    /** The method's resolved per-model parameters (mergekit:* methods), by name. */
    parameters?: Record<string, unknown>;
  }[];
  out: {
    path: string;
    kind: "file" | "directory";
    /** Output dtype of float tensors; "base" keeps each tensor's own. */
    dtype: FloatDType | "base";
    files: { name: string; bytes: number }[];
    /** The base directory's other files copied beside the weights. */
    copied: string[];
  };
  tensors: PlannedTensor[];
  /** Bytes read by one pass over base and experts (methods may make several), statistics read once, bytes written. */
  io: { bytesPerPass: number; statisticsBytes: number; bytesWritten: number };
  /** Estimated peak memory: streaming buffers + statistics + the runtime itself. */
  memory: { peakBytes: number; buffers: number; statistics: number; runtime: number };
  statistics?: StatsCoverage;
  /** Progressive merges: the layer groups in merge order (name, number of keys). */
  progressive?: { groups: { name: string; keys: number }[] };
  warnings: string[];
}

export async function planMerge(o: EngineOptions): Promise<MergePlan> {
  const method = getMethod(o.method);
  const params = resolveParams(method, o.params);
  if (!o.experts.length) throw new TaskmergeError("no experts given");
  throwIfAborted(o.signal);
  // The checks runMerge makes before it writes, in the same order.
  const progressive = params.progressive === true;
  const named = namedPaths(o.base, o.experts);
  await checkInputClash(o.out, named);
  await checkReplaceable(path.resolve(o.out), o.out, checkpointKind(o.out));
  const inputs = await openInputs(o.base, o.experts, !!method.needsStats && !progressive, { signal: o.signal });
  try {
    const { base } = inputs;
    method.validate?.(base, inputs.experts, params);
    const experts = inputs.experts.map((e, i) => ({
      spec: o.experts[i], ck: e.checkpoint, stats: e.stats, parameters: method.expertParameters?.(e, params),
    }));
    await checkInputClash(o.out, [...named, ...inputs.files]);
    const warnings: string[] = [...inputs.warnings];
    let statistics: StatsCoverage | undefined;
    let progressiveGroups: { name: string; keys: number }[] | undefined;
    if (progressive) {
      // What the merge checks before its first collector run: the collector, the groups.
      checkProgressive(method.name, params, o);
      const floatKeys = base.keys().filter((k) => isFloatDType(base.get(k).dtype));
      const groups = await formGroups({ params, floatKeys } as Pick<MergeContext, "params" | "floatKeys"> as MergeContext);
      progressiveGroups = groups.map((g) => ({ name: g.name, keys: g.keys.length }));
    } else if (method.needsStats) {
      // The same checks the statistics methods make before reading data (lib/stats/keys.ts).
      const se = experts.map((e) => ({ name: e.spec.name, stats: e.stats }));
      classifyStats(method.name, base.keys().filter((k) => isFloatDType(base.get(k).dtype)).map((key) => ({ key, shape: base.get(key).shape })), se);
      statistics = statsCoverage(base, se, warnings);
    }

    const tensors: PlannedTensor[] = base.keys().map((key) => {
      const t = base.get(key);
      const merge = isFloatDType(t.dtype);
      const dtype: DType = merge ? o.dtype ?? t.dtype : t.dtype;
      return { key, dtype, shape: t.shape, bytes: tensorBytes({ key, dtype, shape: t.shape }), action: merge ? "merge" : "copy" };
    });
    const outTensors: OutTensor[] = tensors.map(({ key, dtype, shape }) => ({ key, dtype, shape }));
    const file = isFileOutput(path.resolve(o.out));
    const shards = file ? [outTensors] : planShards(outTensors, o.maxShardSize ?? DEFAULT_MAX_SHARD);
    // Exact file sizes: the header runMerge writes (metadata {format: "pt"}) plus the data.
    const files = shards.map((s, i) => ({
      name: file ? path.basename(o.out) : shardFileName(i, shards.length),
      bytes: encodeHeader(s, { format: "pt" }).length + s.reduce((n, t) => n + tensorBytes(t), 0),
    }));
    const copied = !file && base.dir ? await listOtherFiles(base.dir) : [];

    // Bytes of one pass over the inputs. How many passes a method makes is its own business
    // (TIES-family thresholds take extra ones): the plan states the per-pass figure.
    let bytesPerPass = 0;
    let buffers = 0;
    const chunk = Math.max(1, o.chunkElems ?? defaultChunkElems());
    for (const t of tensors) {
      const b = base.get(t.key);
      const n = Math.min(chunk, b.numel);
      if (t.action === "copy") {
        bytesPerPass += b.nbytes;
        buffers = Math.max(buffers, n * DTYPE_SIZE[b.dtype]);
        continue;
      }
      const inSize = DTYPE_SIZE[b.dtype] + experts.reduce((s, e) => s + DTYPE_SIZE[e.ck.get(t.key).dtype], 0);
      bytesPerPass += b.numel * inSize;
      // The current chunk and the read-ahead of every input, the output chunk and the pending write.
      buffers = Math.max(buffers, 2 * n * inSize + 2 * n * DTYPE_SIZE[t.dtype]);
    }
    const statsMemory = statistics ? statisticsMemory(base, statistics, experts.length) : 0;
    const runtime = process.memoryUsage().rss;
    return {
      method: method.name,
      params,
      base: { path: base.path, layout: base.layout, tensors: tensors.length, bytes: base.fileBytes },
      experts: experts.map((e) => ({
        name: e.spec.name, path: e.ck.path, weight: e.spec.weight, ...(e.spec.stats ? { stats: path.resolve(e.spec.stats) } : {}),
        layout: e.ck.layout, bytes: e.ck.fileBytes, ...(e.parameters ? { parameters: e.parameters } : {}),
      })),
      out: { path: path.resolve(o.out), kind: file ? "file" : "directory", dtype: o.dtype ?? "base", files, copied },
      tensors,
      io: { bytesPerPass, statisticsBytes: statistics?.bytes ?? 0, bytesWritten: files.reduce((n, f) => n + f.bytes, 0) },
      memory: { peakBytes: buffers + statsMemory + runtime, buffers, statistics: statsMemory, runtime },
      ...(statistics ? { statistics } : {}),
      ...(progressiveGroups ? { progressive: { groups: progressiveGroups } } : {}),
      warnings,
    };
  } finally {
    await inputs.close();
  }
}

/** Which weights merge from statistics and which fall back; warns about statistics that match no weight. */
function statsCoverage(base: Checkpoint, experts: { name: string; stats?: SafetensorsFile }[], warnings: string[]): StatsCoverage {
  const cov: StatsCoverage = { withStats: [], fallback: [], bytes: 0 };
  const prefixes = new Set<string>();
  for (const key of base.keys()) {
    const t = base.get(key);
    if (!isFloatDType(t.dtype)) continue;
    const prefix = statsPrefix(key);
    if (prefix !== undefined) prefixes.add(prefix);
    const ps = paramStats(key, t.shape, experts);
    if (ps.kind === "fallback") cov.fallback.push({ key, missingFrom: ps.missingFrom });
    if (ps.kind !== "linear" && ps.kind !== "norm") continue;
    cov.withStats.push(key);
    if (ps.kind === "linear")
      ps.counts.forEach((c, t) => {
        if (!c) warnings.push(`${ps.grams[t].file.path}: '${ps.grams[t].info.key}' has no input_count beside it (regmean needs one)`);
      });
    const used = ps.kind === "linear" ? [...ps.grams, ...ps.counts.filter((c) => c !== undefined)] : ps.scales;
    cov.bytes += used.reduce((n, s) => n + (s?.info.nbytes ?? 0), 0);
  }
  // Statistics that match no weight usually mean a key prefix differs (e.g. "model." added or dropped).
  for (const e of experts) {
    const stray = (e.stats?.tensors ?? []).map((t) => t.key).filter((k) => !prefixes.has(k.slice(0, k.lastIndexOf("."))));
    if (stray.length)
      warnings.push(`${e.stats!.path}: ${stray.length} statistics tensor${stray.length === 1 ? "" : "s"} match${stray.length === 1 ? "es" : ""} no weight of the base (first: '${stray[0]}')`);
  }
  return cov;
}

/** Per linear weight: the experts' Grams, their sum and its factor in float64, and the weights in float64. */
function statisticsMemory(base: Checkpoint, s: StatsCoverage, T: number): number {
  let peak = 0;
  for (const key of s.withStats) {
    const shape = base.get(key).shape;
    if (shape.length !== 2) continue;
    const [out, inp] = shape;
    peak = Math.max(peak, 8 * ((T + 2) * inp * inp + (T + 1) * out * inp));
  }
  return peak;
}
