/**
 * A safetensors file whose tensors are filled at known positions in any
 * order (the header is fixed up front from the shapes). TALL masks are produced
 * key by key for every task at once but stored task by task, so the writer
 * cannot simply append. Lives under a temporary name until finish().
 */
import { promises as fsp } from "fs";
import { createWithHeader, OutTensor, tensorBytes, writeAll } from "./writer";
import { TaskmergeError } from "../errors";

export class PositionalWriter {
  private readonly offsets = new Map<string, { start: number; bytes: number }>();
  private written = 0;
  private total = 0;

  private constructor(readonly finalPath: string, readonly tmpPath: string, private readonly fh: fsp.FileHandle, tensors: OutTensor[], headerSize: number) {
    let pos = headerSize;
    for (const t of tensors) {
      const bytes = tensorBytes(t);
      this.offsets.set(t.key, { start: pos, bytes });
      pos += bytes;
      this.total += bytes;
    }
  }

  static async create(finalPath: string, tmpPath: string, tensors: OutTensor[], metadata?: Record<string, string>): Promise<PositionalWriter> {
    const { fh, headerSize } = await createWithHeader(tmpPath, tensors, metadata);
    return new PositionalWriter(finalPath, tmpPath, fh, tensors, headerSize);
  }

  /** Writes `data` into tensor `key` at byte `at` of its data. */
  async write(key: string, at: number, data: Uint8Array): Promise<void> {
    const o = this.offsets.get(key);
    if (!o || at < 0 || at + data.length > o.bytes) throw new TaskmergeError(`internal: write of ${data.length} bytes at ${at} out of range`, this.finalPath, key);
    await writeAll(this.fh, data, o.start + at, this.finalPath);
    this.written += data.length;
  }

  async finish(): Promise<void> {
    if (this.written !== this.total) throw new TaskmergeError(`internal: ${this.written} of ${this.total} bytes written`, this.finalPath);
    await this.fh.sync();
    await this.fh.close();
    await fsp.rename(this.tmpPath, this.finalPath);
  }

  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
    await fsp.rm(this.tmpPath, { force: true });
  }
}
