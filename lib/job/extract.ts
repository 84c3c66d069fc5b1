/**
 * The extract job: one task's checkpoint θ̂t = θ0 + mt ⊙ τMTL from a bundle
 * and the base (lib/tall/reconstruct.ts), on the job skeleton (./run.ts).
 */
import * as path from "path";
import { checkpointKind, Output } from "../output";
import { openInputs } from "../engine/inputs";
import { FloatDType, isFloatDType } from "../safetensors/dtypes";
import { defaultChunkElems } from "../engine/stream";
import { ProgressTracker } from "../engine/progress";
import { TaskmergeError, throwIfAborted } from "../errors";
import { VERSION } from "../version";
import { BUNDLE_JSON, checkBase, maskKey, openBundle } from "../tall/bundle";
import { reconstruct } from "../tall/reconstruct";
import { runJob, CheckpointJobOptions, DeviceReport } from "./run";
import { extractCard } from "../model_card";
import { outputConfigFiles, readBaseInfo } from "../base_info";
import type { ResolvedDevice } from "../device";

export interface ExtractEngineOptions extends CheckpointJobOptions {
  bundle: string;
  task: string;
}

export interface ExtractReport extends DeviceReport {
  task: string;
  lambda: number;
  out: string;
  tensors: number;
  bytesRead: number;
  bytesWritten: number;
  seconds: number;
  /** Leftovers of killed runs on the same output that were removed or restored, one line each. */
  reclaimed: string[];
  /** The backend the native ops ran on. */
  device: ResolvedDevice;
}

export async function runExtract(o: ExtractEngineOptions): Promise<ExtractReport> {
  const t0 = Date.now();
  return runJob({
    named: [o.bundle, o.base],
    out: { path: o.out, kind: checkpointKind(o.out) },
    signal: o.signal,
  }, async (job) => {
    const bundle = job.track(await openBundle(o.bundle, o.signal));
    const task = bundle.manifest.tasks.find((t) => t.name === o.task);
    if (!task)
      throw new TaskmergeError(`task '${o.task}' is not in the bundle (tasks: ${bundle.manifest.tasks.map((t) => t.name).join(", ")})`, o.bundle);
    const inputs = job.track(await openInputs(o.base, [], false, { signal: o.signal }));
    const b = inputs.base;
    await checkBase(bundle.manifest, b, o.bundle);
    await job.checkInputFiles([path.join(o.bundle, BUNDLE_JSON), bundle.tau.path, bundle.masks.path, ...inputs.files]);
    const outDtype = (k: string): FloatDType => o.dtype ?? (b.get(k).dtype as FloatDType);
    const plan = b.keys().map((k) => ({ key: k, shape: b.get(k).shape, dtype: isFloatDType(b.get(k).dtype) ? outDtype(k) : b.get(k).dtype }));
    const manifest = { taskmerge: VERSION, method: "tall_extract", task: task.name, lambda: task.lambda, bundle: path.resolve(o.bundle), base: o.base, ...(o.dtype ? { dtype: o.dtype } : {}) };
    const output = job.output(await Output.create(job.slot, plan, { maxShardSize: o.maxShardSize, copyFrom: b.dir, metadata: { format: "pt" } }));
    const progress = new ProgressTracker(o.onProgress);
    // The tensor bytes reconstruct() reads: base, τMTL and this task's masks.
    const toRead = b.keys().reduce((sum, k) => {
      if (!isFloatDType(b.get(k).dtype)) return sum + b.get(k).nbytes;
      return sum + b.get(k).nbytes + (bundle.tau.tensor(k)?.nbytes ?? 0) + (bundle.masks.tensor(maskKey(task.name, k))?.nbytes ?? 0);
    }, 0);
    progress.phase("extract", plan.length, toRead);
    const bytesWritten = await reconstruct({
      base: b, tau: bundle.tau, source: { masks: bundle.masks, task: task.name }, outDtype, chunkElems: o.chunkElems ?? defaultChunkElems(),
      write: (k, d) => output.write(k, d), progress, signal: o.signal, device: o.device,
    });
    throwIfAborted(o.signal);
    const info = await readBaseInfo(b.dir, o.baseModel);
    await output.commit({ "README.md": extractCard(manifest, { outDir: o.out, base: info }), ...outputConfigFiles(info, o.dtype) }, manifest);
    return {
      task: task.name, lambda: task.lambda, out: path.resolve(o.out), tensors: plan.length, bytesRead: progress.bytesRead, bytesWritten,
      seconds: (Date.now() - t0) / 1000, reclaimed: job.slot.reclaimed, device: o.device ?? "cpu",
      ...job.deviceReport(),
    };
  });
}
