/**
 * The merge job: on the job skeleton (./run.ts), opens the inputs, checks
 * them, plans the output, runs the method key by key and commits the output.
 * It knows nothing of any particular method.
 */
import * as path from "path";
import { FloatDType, isFloatDType } from "../safetensors/dtypes";
import { OutTensor, tensorBytes } from "../safetensors/writer";
import { checkpointKind, Output } from "../output";
import { AbortError, TaskmergeError, UsageError, throwIfAborted } from "../errors";
import { getMethod, resolveParams } from "../methods";
import type { MergeContext, MergeMethod, Params } from "../engine/context";
import { namedPaths, openInputs, ResolvedExpert } from "../engine/inputs";
import { runJob, CheckpointJobOptions, DeviceReport } from "./run";
import { attribute, chunkInputs } from "../engine/provenance";
import { finiteSink } from "../engine/finite_output";
import { defaultChunkElems } from "../engine/stream";
import { copyChunks } from "../engine/read_ahead";
import { modelCard } from "../model_card";
import { outputConfigFiles, readBaseInfo } from "../base_info";
import { ProgressTracker } from "../engine/progress";
import { VERSION } from "../version";
import { mergeProgressive } from "../progressive/engine";
import type { CollectStats } from "../progressive/collect";
import type { ResolvedDevice } from "../device";

export type { ResolvedExpert } from "../engine/inputs";

export interface EngineOptions extends CheckpointJobOptions {
  experts: ResolvedExpert[];
  method: string;
  params: Record<string, unknown>;
  /** Called once per warning about the inputs, before merging starts (also listed in the report). */
  onWarning?: (message: string) => void;
  /** Statistics collector of a progressive merge (lot, regmean with progressive: true). */
  collectStats?: CollectStats;
}

export interface MergeReport extends DeviceReport {
  method: string;
  params: Params;
  out: string;
  tensors: number;
  bytesRead: number;
  bytesWritten: number;
  seconds: number;
  /** Warnings about the inputs (e.g. statistics that record no source checkpoint). */
  warnings: string[];
  details: Record<string, unknown>;
  /** Leftovers of killed runs on the same output that were removed or restored, one line each. */
  reclaimed: string[];
  /** The backend the native ops ran on. */
  device: ResolvedDevice;
}

export async function runMerge(o: EngineOptions): Promise<MergeReport> {
  const t0 = Date.now();
  const method = getMethod(o.method);
  const params = resolveParams(method, o.params);
  if (!o.experts.length) throw new TaskmergeError("no experts given");
  const progressive = checkProgressive(method.name, params, o);
  throwIfAborted(o.signal);

  return runJob({
    named: namedPaths(o.base, o.experts),
    out: { path: o.out, kind: checkpointKind(o.out) },
    signal: o.signal,
  }, async (job) => {
    // A progressive merge collects its statistics itself.
    const inputs = job.track(await openInputs(o.base, o.experts, !!method.needsStats && !progressive, { signal: o.signal }));
    const { base, experts } = inputs;
    // Shards and index files of the inputs, now that they are known.
    await job.checkInputFiles(inputs.files);
    method.validate?.(base, experts, params);
    for (const w of inputs.warnings) o.onWarning?.(w);

    const keys = base.keys();
    const isFloat = (k: string) => isFloatDType(base.get(k).dtype);
    const outDtype = (k: string): FloatDType => o.dtype ?? (base.get(k).dtype as FloatDType);
    const plan: OutTensor[] = keys.map((k) => ({ key: k, shape: base.get(k).shape, dtype: isFloat(k) ? outDtype(k) : base.get(k).dtype }));

    const progress = new ProgressTracker(o.onProgress);
    const ctx: MergeContext = {
      base, experts, params, floatKeys: keys.filter(isFloat), outDtype, signal: o.signal, progress,
      chunkElems: o.chunkElems ?? defaultChunkElems(), details: {}, device: o.device,
    };
    const manifest = {
      taskmerge: VERSION,
      method: method.name,
      params: recordedParams(method, progressive ? progressiveParams(params) : withoutProgressive(params)),
      base: o.base,
      experts: o.experts.map((e, i) => {
        const parameters = method.expertParameters?.(experts[i], params);
        return { name: e.name, path: e.path, weight: e.weight, ...(e.stats ? { stats: e.stats } : {}), ...(parameters ? { parameters } : {}) };
      }),
      ...(o.dtype ? { dtype: o.dtype } : {}),
      ...commandOf(progressive),
    };
    const output = job.output(await Output.create(job.slot, plan, {
      maxShardSize: o.maxShardSize,
      copyFrom: base.dir,
      metadata: { format: "pt" },
    }));

    const baseInfo = await readBaseInfo(base.dir, o.baseModel);
    const wrap = (e: unknown, key: string) => keyError(e, key, ctx);
    let bytesWritten: number;
    if (progressive) {
      await mergeProgressive(ctx, { method, plan, collect: progressive, slot: job.slot, output, keyError: wrap });
      bytesWritten = plan.reduce((s, t) => s + tensorBytes(t), 0);
    } else bytesWritten = await mergeInKeyOrder(ctx, method, output, wrap);
    throwIfAborted(o.signal);
    // Written last so that they carry the method's report (thresholds, fallbacks).
    await output.commit(
      {
        "README.md": modelCard(manifest, ctx.details, method.description, { outDir: o.out, base: baseInfo }),
        ...outputConfigFiles(baseInfo, o.dtype),
      },
      { ...manifest, details: ctx.details },
    );
    return {
      method: method.name, params, out: path.resolve(o.out), tensors: keys.length, bytesRead: progress.bytesRead,
      bytesWritten, seconds: (Date.now() - t0) / 1000, warnings: inputs.warnings, details: ctx.details, reclaimed: job.slot.reclaimed,
      device: o.device ?? "cpu",
      ...job.deviceReport(),
    };
  });
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
      if (isFloat(key)) await method.mergeTensor(ctx, key, finiteSink(key, ctx.outDtype(key), sink));
      else await copyTensor(ctx, key, sink);
    } catch (e) {
      throw wrap(e, key);
    }
    ctx.progress.tensorDone(key);
  }
  return bytesWritten;
}

/** The parameters the manifest records: those marked omitAtDefault only when not at their default. */
function recordedParams(method: MergeMethod, params: Params): Params {
  const omit = new Set(method.params.filter((p) => p.omitAtDefault && params[p.name] === p.default).map((p) => p.name));
  return Object.fromEntries(Object.entries(params).filter(([k]) => !omit.has(k)));
}

/** A usual merge's parameters, without the progressive ones it leaves at their defaults. */
function withoutProgressive(params: Params): Params {
  const { progressive, granularity, module_order, ...rest } = params;
  return progressive === undefined ? params : rest;
}

/** The --stats-command behind a collector, for the manifest and the model card. */
function commandOf(collect: CollectStats | undefined): { statsCommand?: string } {
  const command = (collect as { command?: unknown } | undefined)?.command;
  return typeof command === "string" ? { statsCommand: command } : {};
}

/** A progressive merge's parameters, module_order only when given. */
function progressiveParams(params: Params): Params {
  const { module_order, ...rest } = params;
  return module_order ? params : rest;
}

/** The collector of a progressive merge, or undefined for a usual one; misuse is a usage error. */
export function checkProgressive(method: string, params: Params, o: EngineOptions): CollectStats | undefined {
  if (params.progressive !== true) {
    const given = ["granularity", "module_order"].filter((k) => o.params[k] !== undefined);
    if (given.length) throw new UsageError(`${given.join(" and ")} only apply to a progressive merge; set progressive: true on ${method} (--progressive)`);
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
function copyTensor(ctx: MergeContext, key: string, sink: (d: Uint8Array) => Promise<void>): Promise<void> {
  return copyChunks(ctx.base, key, ctx.base.get(key).numel, ctx.chunkElems, (buf) => {
    ctx.progress.bytes(buf.length, key);
    return sink(buf);
  });
}

/** Gives native and internal errors the key and, for a bad input, its file (from the error's provenance). */
function keyError(e: unknown, key: string, ctx: MergeContext): unknown {
  if (e instanceof TaskmergeError || e instanceof AbortError || !(e instanceof Error)) return e;
  const a = attribute(e, chunkInputs(ctx, key));
  return a instanceof TaskmergeError ? a : new TaskmergeError(e.message, undefined, key);
}
