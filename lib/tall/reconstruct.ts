/**
 * Streams θ̂t = θ0 + mt ⊙ τMTL for every key of the base (non-float keys are
 * copied), with mt read from a bundle's packed masks or computed on the fly
 * from an expert and a λ (a candidate while choosing λ from a grid).
 */
import { runOp } from "../native";
import type { Checkpoint } from "../checkpoint";
import type { SafetensorsFile } from "../safetensors/file";
import { DTYPE_SIZE, DType, FloatDType, isFloatDType } from "../safetensors/dtypes";
import type { ProgressTracker } from "../engine/progress";
import { throwIfAborted } from "../errors";
import { maskBytes, maskKey } from "./bundle";
import { copyChunks, readChunks } from "../engine/read_ahead";
import { withWriteBehind } from "../engine/write_behind";
import type { ResolvedDevice } from "../device";

export type MaskSource = { masks: SafetensorsFile; task: string } | { expert: Checkpoint; lambda: number };

export interface ReconstructOptions {
  base: Checkpoint;
  tau: SafetensorsFile;
  source: MaskSource;
  outDtype(key: string): FloatDType;
  /** Elements per chunk: a multiple of 8 so packed mask bytes align. */
  chunkElems: number;
  write(key: string, data: Uint8Array): Promise<void>;
  progress?: ProgressTracker;
  signal?: AbortSignal;
  /** The backend tall_apply runs on (the job's); "cpu" when absent. */
  device?: ResolvedDevice;
}

export const roundUp8 = (n: number) => Math.max(8, Math.ceil(n / 8) * 8);

async function readChunk(o: ReconstructOptions, key: string, offset: number, n: number) {
  const src = o.source;
  const [base, tau, extra] = await Promise.all([
    o.base.read(key, offset, n),
    o.tau.read(key, offset, n),
    "masks" in src ? src.masks.read(maskKey(src.task, key), offset / 8, maskBytes(n)) : src.expert.read(key, offset, n),
  ]);
  return { offset, n, base, tau, extra };
}

/** Writes every key of the base; returns the bytes written. */
export async function reconstruct(o: ReconstructOptions): Promise<number> {
  let written = 0;
  const step = roundUp8(o.chunkElems);
  for (const key of o.base.keys()) {
    throwIfAborted(o.signal);
    const t = o.base.get(key);
    if (!isFloatDType(t.dtype)) {
      await copyChunks(o.base, key, t.numel, step, async (buf) => {
        o.progress?.bytes(buf.length, key);
        await o.write(key, buf);
        written += buf.length;
      });
      o.progress?.tensorDone(key);
      continue;
    }
    const outType: DType = o.outDtype(key);
    const src = o.source;
    // The previous chunk's write runs while this one is computed (fresh output buffers: nothing to recycle).
    await withWriteBehind((writes) =>
      readChunks(t.numel, step, (offset, n) => readChunk(o, key, offset, n), async (c) => {
        const out = Buffer.allocUnsafe(c.n * DTYPE_SIZE[outType]);
        await runOp("tall_apply", {
          n: c.n, offset: c.offset, base: c.base, baseDtype: t.dtype, tau: c.tau, tauDtype: o.tau.tensor(key)!.dtype, out, outDtype: outType,
          ...("masks" in src ? { mask: c.extra } : { expert: c.extra, expertDtype: src.expert.get(key).dtype, lambda: src.lambda }),
          device: o.device,
        });
        o.progress?.bytes(c.base.length + c.tau.length + c.extra.length, key);
        await writes.push(() => [o.write(key, out)], []);
        written += out.length;
      }, { signal: o.signal }),
    );
    o.progress?.tensorDone(key);
  }
  return written;
}
