/** Rebuilds one task's checkpoint θ̂t = θ0 + mt ⊙ τMTL from a bundle and the base. */
import * as path from "path";
import { Checkpoint } from "../checkpoint";
import { checkpointKind, Output } from "../output";
import { OutputSlot } from "../out_path/slot";
import { checkInputClash, checkpointFiles } from "../out_path/clash";
import { FloatDType, isFloatDType } from "../safetensors/dtypes";
import { defaultChunkElems } from "../engine/stream";
import { Progress, ProgressTracker } from "../engine/progress";
import { TaskmergeError, throwIfAborted } from "../errors";
import { VERSION } from "../version";
import { Bundle, BUNDLE_JSON, checkBase, maskKey, openBundle } from "./bundle";
import { reconstruct } from "./reconstruct";
import { extractCard } from "../model_card";
import { outputConfigFiles, readBaseInfo } from "../base_info";

export interface ExtractEngineOptions {
  bundle: string;
  task: string;
  base: string;
  out: string;
  dtype?: FloatDType;
  /** The base's Hub id for the model card. */
  baseModel?: string;
  maxShardSize?: number;
  chunkElems?: number;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

export interface ExtractReport {
  task: string;
  lambda: number;
  out: string;
  tensors: number;
  bytesRead: number;
  bytesWritten: number;
  seconds: number;
  /** Leftovers of killed runs on the same output that were removed or restored, one line each. */
  reclaimed: string[];
}

export async function runExtract(o: ExtractEngineOptions): Promise<ExtractReport> {
  const t0 = Date.now();
  throwIfAborted(o.signal);
  // Before reading anything: no input at the output path, and the path ours to write.
  await checkInputClash(o.out, [o.bundle, o.base]);
  const slot = await OutputSlot.claim(o.out, checkpointKind(o.out), o.signal);
  let bundle: Bundle | undefined;
  let base: Checkpoint | undefined;
  let output: Output | undefined;
  try {
    bundle = await openBundle(o.bundle);
    const task = bundle.manifest.tasks.find((t) => t.name === o.task);
    if (!task)
      throw new TaskmergeError(`task '${o.task}' is not in the bundle (tasks: ${bundle.manifest.tasks.map((t) => t.name).join(", ")})`, o.bundle);
    base = await Checkpoint.open(o.base);
    await checkBase(bundle.manifest, base, o.bundle);
    await checkInputClash(o.out, [o.bundle, o.base, path.join(o.bundle, BUNDLE_JSON), bundle.tau.path, bundle.masks.path, ...checkpointFiles(base)]);
    const b = base;
    const bun = bundle;
    const outDtype = (k: string): FloatDType => o.dtype ?? (b.get(k).dtype as FloatDType);
    const plan = b.keys().map((k) => ({ key: k, shape: b.get(k).shape, dtype: isFloatDType(b.get(k).dtype) ? outDtype(k) : b.get(k).dtype }));
    const manifest = { taskmerge: VERSION, method: "tall_extract", task: task.name, lambda: task.lambda, bundle: path.resolve(o.bundle), base: o.base, ...(o.dtype ? { dtype: o.dtype } : {}) };
    output = await Output.create(slot, plan, { maxShardSize: o.maxShardSize, copyFrom: b.dir, metadata: { format: "pt" } });
    const out = output;
    const progress = new ProgressTracker(o.onProgress);
    // The tensor bytes reconstruct() reads: base, τMTL and this task's masks.
    const toRead = b.keys().reduce((sum, k) => {
      if (!isFloatDType(b.get(k).dtype)) return sum + b.get(k).nbytes;
      return sum + b.get(k).nbytes + (bun.tau.tensor(k)?.nbytes ?? 0) + (bun.masks.tensor(maskKey(task.name, k))?.nbytes ?? 0);
    }, 0);
    progress.phase("extract", plan.length, toRead);
    const bytesWritten = await reconstruct({
      base: b, tau: bundle.tau, source: { masks: bundle.masks, task: task.name }, outDtype, chunkElems: o.chunkElems ?? defaultChunkElems(),
      write: (k, d) => out.write(k, d), progress, signal: o.signal,
    });
    throwIfAborted(o.signal);
    const info = await readBaseInfo(b.dir, o.baseModel);
    await output.commit({ "README.md": extractCard(manifest, { outDir: o.out, base: info }), ...outputConfigFiles(info, o.dtype) }, manifest);
    return {
      task: task.name, lambda: task.lambda, out: path.resolve(o.out), tensors: plan.length, bytesRead: progress.bytesRead, bytesWritten,
      seconds: (Date.now() - t0) / 1000, reclaimed: slot.reclaimed,
    };
  } catch (e) {
    await output?.abort().catch(() => undefined);
    throw e;
  } finally {
    await bundle?.close();
    await base?.close();
    await slot.release();
  }
}
