/**
 * Writing safetensors files: the header is written first from the known
 * shapes, then tensor data at its place, by position (PositionalWriter) or
 * appended in header order (SafetensorsWriter, on top of it). A file lives
 * under a temporary name until finish() renames it into place.
 */
import { promises as fsp } from "fs";
import { DTYPE_SIZE, DType } from "./dtypes";
import { quote, TaskmergeError } from "../errors";

export interface OutTensor {
  key: string;
  dtype: DType;
  shape: number[];
}

export function tensorBytes(t: OutTensor): number {
  return t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[t.dtype];
}

/**
 * The header bytes (length prefix included), padded with spaces to 8-byte
 * alignment. The JSON is written entry by entry, not from an object: a key
 * such as `__proto__` or "0" stays as it is and where it is.
 */
export function encodeHeader(tensors: OutTensor[], metadata?: Record<string, string>): Buffer {
  const parts: string[] = [];
  const meta = metadata ? Object.entries(metadata) : [];
  if (meta.length) parts.push(`"__metadata__":{${meta.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",")}}`);
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    if (t.key === "__metadata__" || seen.has(t.key))
      throw new TaskmergeError(t.key === "__metadata__" ? "a tensor cannot be named __metadata__" : "internal: tensor key written twice", undefined, t.key);
    seen.add(t.key);
    const n = tensorBytes(t);
    parts.push(`${JSON.stringify(t.key)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${offset},${offset + n}]}`);
    offset += n;
  }
  let json = Buffer.from(`{${parts.join(",")}}`, "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, json]);
}

/**
 * The one safetensors file writer: tensors filled at known positions in any
 * order (the header is fixed up front from the shapes). TALL masks are
 * produced key by key for every task at once but stored task by task, and a
 * progressive merge rewrites its partial checkpoint in place, so they write
 * by position; SafetensorsWriter appends through it. The file lives under
 * its temporary name until finish().
 */
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

  /** Flushes to disk and renames into place. */
  async finish(): Promise<void> {
    if (this.written !== this.total) throw new TaskmergeError(`internal: ${this.written} of ${this.total} bytes written`, this.finalPath);
    await this.fh.sync();
    await this.fh.close();
    await fsp.rename(this.tmpPath, this.finalPath);
  }

  /** Closes and removes the temporary file (finish's complement on failure). */
  async close(): Promise<void> {
    await this.fh.close().catch(() => undefined);
    await fsp.rm(this.tmpPath, { force: true });
  }
}

/** Streams one safetensors file in header order: each tensor's data appended after the previous one's. */
export class SafetensorsWriter {
  private index = 0; // tensor being written
  private written = 0; // bytes of it written so far

  private constructor(private readonly file: PositionalWriter, private readonly tensors: OutTensor[]) {}

  static async create(finalPath: string, tmpPath: string, tensors: OutTensor[], metadata?: Record<string, string>) {
    return new SafetensorsWriter(await PositionalWriter.create(finalPath, tmpPath, tensors, metadata), tensors);
  }

  get finalPath(): string {
    return this.file.finalPath;
  }

  get tmpPath(): string {
    return this.file.tmpPath;
  }

  /** The tensor expecting data next (empty tensors need none), or undefined when all are written. */
  pendingKey(): string | undefined {
    this.skipEmpty();
    return this.tensors[this.index]?.key;
  }

  /** Appends bytes of `key`, which must be the tensor in progress. */
  async write(key: string, data: Uint8Array): Promise<void> {
    this.skipEmpty();
    const t = this.tensors[this.index];
    if (!t || t.key !== key) throw new TaskmergeError(`internal: wrote ${quote(key)} but ${t ? quote(t.key) : "nothing"} was expected`, this.finalPath);
    const total = tensorBytes(t);
    if (this.written + data.length > total) throw new TaskmergeError("internal: too much data for tensor", this.finalPath, key);
    await this.file.write(key, this.written, data);
    this.written += data.length;
    if (this.written === total) {
      this.index++;
      this.written = 0;
    }
  }

  private skipEmpty(): void {
    while (this.index < this.tensors.length && this.written === 0 && tensorBytes(this.tensors[this.index]) === 0) this.index++;
  }

  /** Flushes to disk and renames into place. */
  async finish(): Promise<void> {
    this.skipEmpty();
    if (this.index !== this.tensors.length)
      throw new TaskmergeError(`internal: output incomplete at ${quote(this.tensors[this.index]?.key ?? "")}`, this.finalPath);
    await this.file.finish();
  }

  /** Closes and removes the temporary file (finish's complement on failure). */
  close(): Promise<void> {
    return this.file.close();
  }
}

/** Creates tmpPath (which must not exist) and writes the header; the data follows it. */
async function createWithHeader(
  tmpPath: string, tensors: OutTensor[], metadata?: Record<string, string>,
): Promise<{ fh: fsp.FileHandle; headerSize: number }> {
  const header = encodeHeader(tensors, metadata);
  const fh = await fsp.open(tmpPath, "wx");
  try {
    await writeAll(fh, header, 0, tmpPath);
  } catch (e) {
    await fh.close();
    await fsp.rm(tmpPath, { force: true });
    throw e;
  }
  return { fh, headerSize: header.length };
}

/** Writes all of data at pos, looping over short writes; a full disk is a clear error. */
async function writeAll(fh: fsp.FileHandle, data: Uint8Array, pos: number, file: string): Promise<void> {
  let done = 0;
  try {
    while (done < data.length) {
      const { bytesWritten } = await fh.write(data, done, data.length - done, pos + done);
      done += bytesWritten;
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === "ENOSPC" ? "disk full" : code === "EFBIG" ? "file size limit exceeded (EFBIG)" : code ?? (e as Error).message;
    throw new TaskmergeError(`write failed: ${why}`, file);
  }
}
