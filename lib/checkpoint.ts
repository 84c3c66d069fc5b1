/**
 * A checkpoint: one .safetensors file, a directory with model.safetensors, or
 * a directory with model.safetensors.index.json and its shards.
 */
import { promises as fsp } from "fs";
import * as path from "path";
import { createHash } from "crypto";
import { SafetensorsFile } from "./safetensors/file";
import { TensorInfo } from "./safetensors/header";
import { quote, TaskmergeError } from "./errors";
import { fileKind, readRegularFile } from "./input_file";
import { TimeSlicer } from "./time_slice";

export type CheckpointLayout = "file" | "directory" | "sharded";

export interface TensorRef extends TensorInfo {
  file: SafetensorsFile;
}

export class Checkpoint {
  private constructor(
    readonly path: string,
    readonly layout: CheckpointLayout,
    readonly files: SafetensorsFile[],
    /** Directory holding the checkpoint's other files (config, tokenizer), if any. */
    readonly dir: string | undefined,
    /** Keys in storage order (built by byKey: in slices, a huge header must not block). */
    private readonly refs: Map<string, TensorRef>,
  ) {}

  /** `signal` stops the reading of the headers (a large one's worker is terminated at once). */
  static async open(p: string, opts: { signal?: AbortSignal } = {}): Promise<Checkpoint> {
    const abs = path.resolve(p);
    let st;
    try {
      st = await fsp.stat(abs);
    } catch {
      throw new TaskmergeError("checkpoint not found", p);
    }
    if (st.isFile()) {
      const f = await SafetensorsFile.open(abs, opts);
      return new Checkpoint(abs, "file", [f], undefined, await byKey([f]));
    }
    if (!st.isDirectory()) throw new TaskmergeError(`not a regular file (${fileKind(st)}) nor a checkpoint directory`, p);
    const single = path.join(abs, "model.safetensors");
    const index = path.join(abs, "model.safetensors.index.json");
    if (await exists(index)) return Checkpoint.openSharded(abs, index, opts.signal);
    if (await exists(single)) {
      const f = await SafetensorsFile.open(single, opts);
      return new Checkpoint(abs, "directory", [f], abs, await byKey([f]));
    }
    throw new TaskmergeError("directory holds neither model.safetensors nor model.safetensors.index.json", p);
  }

  private static async openSharded(dir: string, indexPath: string, signal?: AbortSignal): Promise<Checkpoint> {
    let index: { weight_map?: unknown };
    try {
      const text = (await readRegularFile(indexPath)).toString("utf8");
      index = JSON.parse(text);
    } catch (e) {
      if (e instanceof TaskmergeError) throw e;
      throw new TaskmergeError(`invalid index JSON: ${(e as Error).message.split("\n")[0]}`, indexPath);
    }
    const wm = index.weight_map;
    if (typeof wm !== "object" || wm === null || Array.isArray(wm))
      throw new TaskmergeError("index has no weight_map object", indexPath);
    const shardNames: string[] = [];
    for (const [key, shard] of Object.entries(wm as Record<string, unknown>)) {
      if (typeof shard !== "string") throw new TaskmergeError("weight_map value is not a file name", indexPath, key);
      const resolved = path.resolve(dir, shard);
      if (path.isAbsolute(shard) || path.dirname(resolved) !== dir)
        throw new TaskmergeError(`shard name ${quote(shard)} escapes the checkpoint directory`, indexPath, key);
      if (!shardNames.includes(shard)) shardNames.push(shard);
    }
    shardNames.sort();
    const files: SafetensorsFile[] = [];
    try {
      for (const s of shardNames) files.push(await SafetensorsFile.open(path.join(dir, s), { signal }));
      const byShard = new Map(shardNames.map((s, i) => [s, files[i]]));
      // Storage order: shard by shard, tensors in data order.
      const wanted = new Map(Object.entries(wm as Record<string, string>));
      const order = await byKey(files, (t, i) => wanted.get(t.key) === shardNames[i]);
      for (const [key, shard] of wanted) {
        if (!byShard.get(shard)?.tensor(key))
          throw new TaskmergeError(`index lists key in shard ${quote(shard)} but the shard does not hold it`, indexPath, key);
      }
      return new Checkpoint(dir, "sharded", files, dir, order);
    } catch (e) {
      await Promise.all(files.map((f) => f.close()));
      throw e;
    }
  }

  /** Keys in storage order. */
  keys(): string[] {
    return [...this.refs.keys()];
  }

  tensor(key: string): TensorRef | undefined {
    return this.refs.get(key);
  }

  get(key: string): TensorRef {
    const r = this.refs.get(key);
    if (!r) throw new TaskmergeError("key not in checkpoint", this.path, key);
    return r;
  }

  read(key: string, start?: number, count?: number, into?: Buffer): Promise<Buffer> {
    return this.get(key).file.read(key, start, count, into);
  }

  get totalBytes(): number {
    let n = 0;
    for (const r of this.refs.values()) n += r.nbytes;
    return n;
  }

  get fileBytes(): number {
    return this.files.reduce((n, f) => n + f.size, 0);
  }

  /** Hash over the shard headers: identifies the checkpoint's layout and keys. */
  get headerHash(): string {
    const h = createHash("sha256");
    for (const f of this.files) h.update(f.headerHash);
    return h.digest("hex");
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.access(p);
    return true;
  } catch {
    return false;
  }
}

/** The tensors of `files` (those `keep` accepts) by key, in storage order; yields to the event loop on huge headers. */
async function byKey(files: SafetensorsFile[], keep?: (t: TensorInfo, fileIndex: number) => boolean): Promise<Map<string, TensorRef>> {
  const slicer = new TimeSlicer();
  const refs = new Map<string, TensorRef>();
  let n = 0;
  for (const [i, f] of files.entries())
    for (const t of f.tensors) {
      if (keep && !keep(t, i)) continue;
      // Built field by field: an object spread is several times slower on 10^5 tensors.
      refs.set(t.key, { key: t.key, dtype: t.dtype, shape: t.shape, numel: t.numel, nbytes: t.nbytes, offset: t.offset, file: f });
      if ((++n & 1023) === 0) await slicer.maybe();
    }
  return refs;
}
