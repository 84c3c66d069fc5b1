/**
 * The merge engine: opens the inputs, checks them, plans the output, runs the
 * method key by key and commits the output atomically. It knows nothing of
 * any particular method.
 */
import * as path from "path";
import { Checkpoint } from "../checkpoint";
import { FloatDType, isFloatDType } from "../safetensors/dtypes";
import { OutTensor, tensorBytes } from "../safetensors/writer";
import { Output } from "../output";
import { AbortError, TaskmergeError, UsageError, throwIfAborted } from "../errors";
import { getMethod, resolveParams } from "../methods";
import type { Expert, MergeContext, MergeMethod, Params } from "../methods/types";
import { openInputs, Inputs, ResolvedExpert } from "./inputs";
import { modelCard } from "../model_card";
import { Progress, ProgressTracker } from "./progress";
import { VERSION } from "../version";
import { mergeProgressive } from "../progressive/engine";
import type { CollectStats } from "../progressive/collect";

export type { ResolvedExpert } from "./inputs";

export interface EngineOptions {
  base: string;
  experts: ResolvedExpert[];
  method: string;
  params: Record<string, unknown>;
  out: string;
  dtype?: FloatDType;
  maxShardSize?: number;
  chunkElems?: number;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
  /** Statistics collector of a progressive merge (lot, regmean with progressive: true). */
  collectStats?: CollectStats;
}

export interface MergeReport {
  method: string;
  params: Params;
  out: string;
  tensors: number;
  bytesRead: number;
  bytesWritten: number;
  seconds: number;
  details: Record<string, unknown>;
}

export const DEFAULT_CHUNK_ELEMS = Number(process.env.TASKMERGE_CHUNK_ELEMS) || 4 << 20;

export async function runMerge(o: EngineOptions): Promise<MergeReport> {
  const t0 = Date.now();
  const method = getMethod(o.method);
  const params = resolveParams(method, o.params);
  if (!o.experts.length) throw new TaskmergeError("no experts given");
  const progressive = checkProgressive(method.name, params, o);
  throwIfAborted(o.signal);

  let inputs: Inputs | undefined;
  let output: Output | undefined;
  try {
    // A progressive merge collects its statistics itself.
    inputs = await openInputs(o.base, o.experts, !!method.needsStats && !progressive);
    const { base, experts } = inputs;

    const keys = base.keys();
    const isFloat = (k: string) => isFloatDType(base.get(k).dtype);
    const outDtype = (k: string): FloatDType => o.dtype ?? (base.get(k).dtype as FloatDType);
    const plan: OutTensor[] = keys.map((k) => ({ key: k, shape: base.get(k).shape, dtype: isFloat(k) ? outDtype(k) : base.get(k).dtype }));

    const progress = new ProgressTracker(o.onProgress);
    const ctx: MergeContext = {
      base, experts, params, floatKeys: keys.filter(isFloat), outDtype, signal: o.signal, progress,
      chunkElems: o.chunkElems ?? DEFAULT_CHUNK_ELEMS, details: {},
    };
    const manifest = {
      taskmerge: VERSION,
      method: method.name,
      params: progressive ? params : withoutProgressive(params),
      base: o.base,
      experts: o.experts.map((e) => ({ name: e.name, path: e.path, weight: e.weight, ...(e.stats ? { stats: e.stats } : {}) })),
      ...(o.dtype ? { dtype: o.dtype } : {}),
    };
    output = await Output.create(o.out, plan, {
      maxShardSize: o.maxShardSize,
      copyFrom: base.dir,
      metadata: { format: "pt" },
    });

    const out = output;
    const wrap = (e: unknown, key: string) => keyError(e, key, base, experts);
    let bytesWritten: number;
    if (progressive) {
      await mergeProgressive(ctx, { method, plan, collect: progressive, out: o.out, output: out, keyError: wrap });
      bytesWritten = plan.reduce((s, t) => s + tensorBytes(t), 0);
    } else bytesWritten = await mergeInKeyOrder(ctx, method, out, wrap);
    throwIfAborted(o.signal);
    // Written last so that they carry the method's report (thresholds, fallbacks).
    await output.commit({
      "taskmerge.json": JSON.stringify({ ...manifest, details: ctx.details }, null, 2) + "\n",
      "README.md": modelCard(manifest, ctx.details, method.description, path.basename(path.resolve(o.out))),
    });
    return {
      method: method.name, params, out: path.resolve(o.out), tensors: keys.length, bytesRead: progress.bytesRead,
      bytesWritten, seconds: (Date.now() - t0) / 1000, details: ctx.details,
    };
  } catch (e) {
    await output?.abort().catch(() => undefined);
    throw e;
  } finally {
    await inputs?.close();
  }
}

/** The usual merge: every key in the base's order, straight into the output. Returns the bytes written. */
async function mergeInKeyOrder(ctx: MergeContext, method: MergeMethod, out: Output, wrap: (e: unknown, key: string) => unknown): Promise<number> {
  const { base, experts } = ctx;
  const keys = base.keys();
  const isFloat = (k: string) => isFloatDType(base.get(k).dtype);
  if (method.prepare) await method.prepare(ctx);
  let bytesWritten = 0;
  const totalBytes = keys.reduce((s, k) => s + base.get(k).nbytes * (isFloat(k) ? 1 + experts.length : 1), 0);
  ctx.progress.phase("merge", keys.length, totalBytes);
  for (const key of keys) {
    throwIfAborted(ctx.signal);
    const sink = async (data: Uint8Array) => {
      bytesWritten += data.length;
      await out.write(key, data);
    };
    try {
      if (isFloat(key)) await method.mergeTensor(ctx, key, sink);
      else await copyTensor(ctx, key, sink);
    } catch (e) {
      throw wrap(e, key);
    }
    ctx.progress.tensorDone(key);
  }
  return bytesWritten;
}

/** A usual merge's parameters, without the progressive ones it leaves at their defaults. */
function withoutProgressive(params: Params): Params {
  const { progressive, granularity, module_order, ...rest } = params;
  return progressive === undefined ? params : rest;
}

/** The collector of a progressive merge, or undefined for a usual one; misuse is a usage error. */
export function checkProgressive(method: string, params: Params, o: EngineOptions): CollectStats | undefined {
  if (params.progressive !== true) {
    if (o.collectStats) throw new UsageError(`a statistics collector (collectStats, --stats-command) is used only by a progressive merge; set progressive: true on ${method}`);
    return undefined;
  }
  if (typeof o.collectStats !== "function")
    throw new UsageError(`progressive ${method} needs a statistics collector: collectStats (library) or --stats-command (CLI)`);
  const given = o.experts.filter((e) => e.stats).map((e) => e.name);
  if (given.length)
    throw new UsageError(`progressive ${method} collects its statistics on the partially merged model; drop the statistics files given for ${given.map((n) => `'${n}'`).join(", ")}`);
  return o.collectStats;
}

/** Non-float tensors (integer buffers, bool) come from the base unchanged. */
async function copyTensor(ctx: MergeContext, key: string, sink: (d: Uint8Array) => Promise<void>): Promise<void> {
  const t = ctx.base.get(key);
  const step = Math.max(1, ctx.chunkElems);
  for (let i = 0; i < t.numel; i += step) {
    const buf = await ctx.base.read(key, i, Math.min(step, t.numel - i));
    ctx.progress.bytes(buf.length, key);
    await sink(buf);
  }
}

/** Gives native and internal errors the key and, where known, the file they concern. */
function keyError(e: unknown, key: string, base: Checkpoint, experts: Expert[]): unknown {
  if (e instanceof TaskmergeError || e instanceof AbortError || !(e instanceof Error)) return e;
  const m = /\bexpert (\d+)\b/.exec(e.message);
  const file = m ? experts[Number(m[1])]?.checkpoint.path : /\bbase\b/.test(e.message) ? base.path : undefined;
  return new TaskmergeError(e.message, file, key);
}
