/**
 * The partially merged checkpoint of a progressive merge: one .safetensors
 * file with the output's keys, dtypes and shapes, created from the base and
 * then updated in place, tensor by tensor, through positional writes: an
 * expert's weights of the group being collected, then the group's merged
 * weights. Collectors read it between updates.
 */
import type { Checkpoint } from "../checkpoint";
import { runOp } from "../native";
import { throwIfAborted } from "../errors";
import { DTYPE_SIZE } from "../safetensors/dtypes";
import type { TensorSink } from "../engine/context";
import { PositionalWriter, OutTensor } from "../safetensors/writer";
import { SafetensorsFile } from "../safetensors/file";
import { copyChunks } from "../engine/read_ahead";

export class PartialCheckpoint {
  private readonly byKey: Map<string, OutTensor>;

  private constructor(readonly path: string, private readonly w: PositionalWriter, plan: OutTensor[], private readonly chunkElems: number) {
    this.byKey = new Map(plan.map((t) => [t.key, t]));
  }

  /** Creates the file at `file` (which must not exist) holding the base, in the output's dtypes. */
  static async create(file: string, base: Checkpoint, plan: OutTensor[], chunkElems: number, signal?: AbortSignal): Promise<PartialCheckpoint> {
    // Never finished: the file lives and dies under its temporary name.
    const w = await PositionalWriter.create(file, file, plan, { format: "pt", producer: "taskmerge progressive merge (partial)" });
    const p = new PartialCheckpoint(file, w, plan, chunkElems);
    try {
      for (const t of plan) await p.copyFrom(base, t.key, signal);
    } catch (e) {
      await w.close();
      throw e;
    }
    return p;
  }

  /** Overwrites tensor `key` with the checkpoint's, converted to this file's dtype. */
  async copyFrom(ck: Checkpoint, key: string, signal?: AbortSignal): Promise<void> {
    const src = ck.get(key);
    const to = this.byKey.get(key)!.dtype;
    throwIfAborted(signal);
    await copyChunks(ck, key, src.numel, this.chunkElems, async (data, i) => {
      if (src.dtype !== to) {
        const dst = Buffer.allocUnsafe((data.length / DTYPE_SIZE[src.dtype]) * DTYPE_SIZE[to]);
        await runOp("convert", { fromDtype: src.dtype, toDtype: to, src: data, dst });
        data = dst;
      }
      await this.w.write(key, i * DTYPE_SIZE[to], data);
    }, { signal });
  }

  /** A sink that writes tensor `key` from its start, piece after piece (pieces are in this file's dtype). */
  sink(key: string): TensorSink {
    let at = 0;
    return async (data) => {
      await this.w.write(key, at, data);
      at += data.length;
    };
  }

  /** Opens the file for reading (the caller closes it). */
  open(): Promise<SafetensorsFile> {
    return SafetensorsFile.open(this.path);
  }

  /** Closes and removes the file. */
  close(): Promise<void> {
    return this.w.close();
  }
}
