/** A safetensors file opened for streaming reads of its tensors by key. */
import { promises as fsp } from "fs";
import { Header, headerLength, TensorInfo } from "./header";
import { readHeader } from "./header_thread";
import { TaskmergeError } from "../errors";
import { openRegularFile } from "../input_file";
import { TimeSlicer } from "../time_slice";

export class SafetensorsFile {
  private constructor(
    readonly path: string,
    readonly size: number,
    readonly header: Header,
    /** sha256 of the raw header bytes: identifies the file's layout cheaply. */
    readonly headerHash: string,
    private fh: fsp.FileHandle | undefined,
    /** Built in open(), in slices: a huge header must not block the event loop. */
    private readonly byKey: Map<string, TensorInfo>,
  ) {}

  /** `signal` stops the header's reading (a large one's worker is terminated at once). */
  static async open(path: string, opts: { signal?: AbortSignal } = {}): Promise<SafetensorsFile> {
    const fh = await openRegularFile(path);
    try {
      const st = await fh.stat();
      const prefix = await readExactly(fh, 0, Math.min(8, st.size), path);
      const n = headerLength(prefix, st.size, path);
      const json = await readExactly(fh, 8, n, path);
      const { header, hash } = await readHeader(json, st.size, path, opts.signal);
      const slicer = new TimeSlicer();
      const byKey = new Map<string, TensorInfo>();
      for (const [i, t] of header.tensors.entries()) {
        byKey.set(t.key, t);
        if ((i & 1023) === 1023) await slicer.maybe();
      }
      return new SafetensorsFile(path, st.size, header, hash, fh, byKey);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  get tensors(): readonly TensorInfo[] {
    return this.header.tensors;
  }

  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  tensor(key: string): TensorInfo | undefined {
    return this.byKey.get(key);
  }

  /** Reads `count` elements of `key` starting at element `start` into `into` (or a new Buffer). */
  async read(key: string, start = 0, count?: number, into?: Buffer): Promise<Buffer> {
    const t = this.byKey.get(key);
    if (!t) throw new TaskmergeError("no such tensor", this.path, key);
    const esize = t.numel ? t.nbytes / t.numel : 0;
    const n = count ?? t.numel - start;
    if (start < 0 || n < 0 || start + n > t.numel) throw new TaskmergeError(`read of elements [${start}, ${start + n}) out of range`, this.path, key);
    const bytes = n * esize;
    const buf = into ? into.subarray(0, bytes) : Buffer.allocUnsafe(bytes);
    if (into && into.length < bytes) throw new TaskmergeError("read buffer too small", this.path, key);
    await readInto(this.handle(), t.offset + start * esize, buf, this.path, key);
    return buf;
  }

  private handle(): fsp.FileHandle {
    if (!this.fh) throw new TaskmergeError("file is closed", this.path);
    return this.fh;
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}

async function readExactly(fh: fsp.FileHandle, pos: number, n: number, path: string): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(n);
  await readInto(fh, pos, buf, path);
  return buf;
}

/** Fills buf from pos, looping over short reads; a premature end of file is an error. */
async function readInto(fh: fsp.FileHandle, pos: number, buf: Buffer, path: string, key?: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, pos + done);
    if (bytesRead === 0) throw new TaskmergeError("unexpected end of file (truncated?)", path, key);
    done += bytesRead;
  }
}
