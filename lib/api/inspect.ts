/** inspect(): keys, dtypes, shapes and sizes of a checkpoint or statistics file. */
import { Checkpoint, CheckpointLayout } from "../checkpoint";
import { TimeSlicer } from "../time_slice";
import { DType } from "../safetensors/dtypes";

export interface InspectTensor {
  key: string;
  dtype: DType;
  shape: number[];
  numel: number;
  bytes: number;
  file: string;
}

export interface InspectReport {
  path: string;
  layout: CheckpointLayout;
  files: string[];
  tensors: InspectTensor[];
  totals: { tensors: number; params: number; bytes: number; byDtype: Record<string, { tensors: number; params: number; bytes: number }> };
  metadata: Record<string, string>;
}

export async function inspect(p: string): Promise<InspectReport> {
  const ck = await Checkpoint.open(p);
  try {
    // One pass, in time slices: a checkpoint of 10^5 tensors must not block the event loop.
    const slicer = new TimeSlicer();
    const tensors: InspectTensor[] = [];
    const byDtype: InspectReport["totals"]["byDtype"] = {};
    for (const k of ck.keys()) {
      const t = ck.get(k);
      tensors.push({ key: k, dtype: t.dtype, shape: t.shape, numel: t.numel, bytes: t.nbytes, file: t.file.path });
      const d = (byDtype[t.dtype] ??= { tensors: 0, params: 0, bytes: 0 });
      d.tensors++;
      d.params += t.numel;
      d.bytes += t.nbytes;
      if ((tensors.length & 1023) === 0) await slicer.maybe();
    }
    return {
      path: ck.path,
      layout: ck.layout,
      files: ck.files.map((f) => f.path),
      tensors,
      totals: {
        tensors: tensors.length,
        params: tensors.reduce((s, t) => s + t.numel, 0),
        bytes: tensors.reduce((s, t) => s + t.bytes, 0),
        byDtype,
      },
      metadata: mergedMetadata(ck),
    };
  } finally {
    await ck.close();
  }
}

/** Every file's metadata in one null-prototype object (a key such as `__proto__` stays a key). */
function mergedMetadata(ck: Checkpoint): Record<string, string> {
  if (ck.files.length === 1) return ck.files[0].metadata; // already one (a copy of a huge one would block)
  const out: Record<string, string> = Object.create(null);
  for (const f of ck.files) for (const k of Object.keys(f.metadata)) out[k] = f.metadata[k];
  return out;
}
