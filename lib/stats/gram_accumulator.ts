/**
 * GramAccumulator: builds a statistics file (SPEC "Statistics files") from
 * activations seen in Node.js, e.g. an ONNX or WebGPU forward pass. For a
 * linear module it accumulates Σ x xᵀ (float64 SYRK in native code), Σ x and
 * the row count; for a normalisation module Σ x̂², Σ x̂ and the count.
 *
 *   const acc = new GramAccumulator();
 *   await acc.add("blocks.0.mlp.fc1", rows, 768);     // rows: Float32Array, k×768
 *   await acc.addNorm("blocks.0.norm1", xhat, 768);
 *   await acc.save("task.stats.safetensors", { checkpoint: "task/" });  // the weights the pass ran
 *
 * Calls are queued, so they may be issued without awaiting each; a row
 * buffer must not change until its call's promise settles.
 */
import { runOp } from "../native";
import { TaskmergeError, UsageError } from "../errors";
import { SafetensorsWriter, OutTensor } from "../safetensors/writer";
import { SafetensorsFile } from "../safetensors/file";
import { OutputSlot } from "../out_path/slot";
import { VERSION } from "../version";
import { Checkpoint } from "../checkpoint";
import { fingerprint, sameFingerprint } from "../fingerprint";
import { RecordedSource, recordedSource, sourceMetadata } from "./source";

type Rows = Float32Array | Float64Array;

interface ModuleAcc {
  kind: "linear" | "norm";
  width: number;
  /** [width,width] Gram (linear) or Σx̂² [width] (norm), float64. */
  main: Float64Array;
  sum: Float64Array;
  count: number;
}

export interface SaveOptions {
  /** Storage dtype of the Gram / sums: "f64" (default) or "f32". Counts are always F64. */
  dtype?: "f64" | "f32";
  /**
   * The checkpoint whose forward pass produced the activations: its fingerprint
   * is recorded in the file, and merges check it against the expert the file is
   * given for. Without it (and without a record from load()) merges warn.
   */
  checkpoint?: string;
  metadata?: Record<string, string>;
}

export class GramAccumulator {
  private readonly acc = new Map<string, ModuleAcc>();
  private queue: Promise<void> = Promise.resolve();
  /** The source checkpoint recorded in a file given to load(). */
  private source?: RecordedSource;

  /** Adds rows (k rows of `width` values, row-major) of the input of linear module `module`. */
  add(module: string, rows: Rows, width: number): Promise<void> {
    let m: ModuleAcc;
    try {
      m = this.module(module, "linear", rows, width);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.enqueue(async () => {
      if (!this.acc.has(module)) this.acc.set(module, m); // dropped after an earlier failed first chunk
      await runOp("gram_accumulate", { linalg: process.env.TASKMERGE_LINALG, rows, rowsDtype: dtypeOf(rows), width, gram: m.main, sum: m.sum });
      m.count += rows.length / width;
    }, module);
  }

  /** Adds normalised inputs x̂ (before the affine step) of normalisation module `module`. */
  addNorm(module: string, xhat: Rows, width: number): Promise<void> {
    let m: ModuleAcc;
    try {
      m = this.module(module, "norm", xhat, width);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.enqueue(async () => {
      if (!this.acc.has(module)) this.acc.set(module, m);
      await runOp("norm_accumulate", { rows: xhat, rowsDtype: dtypeOf(xhat), width, sqsum: m.main, sum: m.sum });
      m.count += xhat.length / width;
    }, module);
  }

  /**
   * An accumulator holding the statistics of an existing file (F32 or F64), to
   * continue accumulating, e.g. over a dataset processed in several runs.
   */
  static async load(file: string): Promise<GramAccumulator> {
    const acc = new GramAccumulator();
    const f = await SafetensorsFile.open(file);
    try {
      acc.source = recordedSource(f);
      const read = async (key: string, n: number): Promise<Float64Array> => {
        const t = f.tensor(key);
        if (!t) throw new TaskmergeError("missing statistics tensor", file, key);
        if ((t.dtype !== "F32" && t.dtype !== "F64") || t.numel !== n)
          throw new TaskmergeError(`expected F32 or F64 with ${n} values, found ${t.dtype} [${t.shape.join(", ")}]`, file, key);
        const b = await f.read(key);
        const out = new Float64Array(n);
        for (let i = 0; i < n; i++) out[i] = t.dtype === "F64" ? b.readDoubleLE(8 * i) : b.readFloatLE(4 * i);
        if (!out.every(Number.isFinite)) throw new TaskmergeError("statistics hold a non-finite value", file, key);
        return out;
      };
      for (const t of f.tensors) {
        const m = /^(.*)\.(input_gram|norm_sq_sum)$/.exec(t.key);
        if (!m) continue;
        const [, name, kind] = m;
        const linear = kind === "input_gram";
        const width = t.shape[t.shape.length - 1] ?? 0;
        if (linear ? t.shape.length !== 2 || t.shape[0] !== width : t.shape.length !== 1)
          throw new TaskmergeError(`unexpected shape [${t.shape.join(", ")}]`, file, t.key);
        const main = await read(t.key, linear ? width * width : width);
        const sumKey = `${name}.${linear ? "input_sum" : "norm_sum"}`;
        const sum = f.tensor(sumKey) ? await read(sumKey, width) : new Float64Array(width);
        const [count] = await read(`${name}.input_count`, 1);
        acc.acc.set(name, { kind: linear ? "linear" : "norm", width, main, sum, count });
      }
    } finally {
      await f.close();
    }
    return acc;
  }

  /** Modules seen so far, in first-seen order. */
  modules(): string[] {
    return [...this.acc.keys()];
  }

  /** Rows accumulated for a module (0 when unknown). */
  count(module: string): number {
    return this.acc.get(module)?.count ?? 0;
  }

  /** Writes the statistics file atomically (temporary name in the same directory, then rename). */
  async save(file: string, opts: SaveOptions = {}): Promise<void> {
    await this.queue;
    const dtype = opts.dtype ?? "f64";
    if (dtype !== "f64" && dtype !== "f32") throw new UsageError(`save: dtype must be f64 or f32 (got '${dtype}')`);
    if (!this.acc.size) throw new UsageError("save: no statistics were added");
    const D = dtype === "f64" ? "F64" : "F32";
    const tensors: (OutTensor & { data: Uint8Array })[] = [];
    const bytes = (a: Float64Array) => (dtype === "f64" ? a : Float32Array.from(a));
    const view = (a: Float64Array | Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    for (const [name, m] of this.acc) {
      const count = { key: `${name}.input_count`, dtype: "F64" as const, shape: [1], data: view(Float64Array.of(m.count)) };
      if (m.kind === "linear") {
        tensors.push({ key: `${name}.input_gram`, dtype: D, shape: [m.width, m.width], data: view(bytes(m.main)) });
        tensors.push({ key: `${name}.input_sum`, dtype: D, shape: [m.width], data: view(bytes(m.sum)) });
      } else {
        tensors.push({ key: `${name}.norm_sq_sum`, dtype: D, shape: [m.width], data: view(bytes(m.main)) });
        tensors.push({ key: `${name}.norm_sum`, dtype: D, shape: [m.width], data: view(bytes(m.sum)) });
      }
      tensors.push(count);
    }
    const source = await this.sourceRecord(opts.checkpoint);
    // The same path every output takes: lock, leftovers reclaimed, only a safetensors file replaced.
    const slot = await OutputSlot.claim(file, { kind: "file" });
    try {
      const staged = await slot.stage("file");
      const tmp = staged.path;
      let w: SafetensorsWriter;
      try {
        w = await SafetensorsWriter.create(tmp, tmp, tensors.map(({ key, dtype, shape }) => ({ key, dtype, shape })), {
          format: "taskmerge-stats", producer: `taskmerge ${VERSION} GramAccumulator`, dtype, ...opts.metadata, ...source,
        });
      } catch (e) {
        if (e instanceof TaskmergeError) throw e;
        throw new TaskmergeError(`cannot write statistics: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, file);
      }
      try {
        for (const t of tensors) await w.write(t.key, t.data);
        await w.finish();
        await staged.commit();
      } catch (e) {
        await w.close();
        throw e;
      }
    } finally {
      await slot.release();
    }
  }

  /** Metadata naming the source checkpoint: `checkpoint`'s fingerprint, else the one load() found. */
  private async sourceRecord(checkpoint: string | undefined): Promise<Record<string, string>> {
    if (checkpoint === undefined) return this.source ? sourceMetadata(this.source.path, this.source.fingerprint) : {};
    if (typeof checkpoint !== "string" || !checkpoint) throw new UsageError("save: checkpoint must be a path");
    const ck = await Checkpoint.open(checkpoint);
    let fp;
    try {
      fp = await fingerprint(ck);
    } finally {
      await ck.close();
    }
    if (this.source && !sameFingerprint(this.source.fingerprint, fp))
      throw new UsageError(`save: the loaded statistics were collected from ${this.source.path}, not from ${checkpoint}`);
    return sourceMetadata(checkpoint, fp);
  }

  private module(name: string, kind: "linear" | "norm", rows: Rows, width: number): ModuleAcc {
    if (typeof name !== "string" || !name) throw new UsageError("module name must be a non-empty string");
    const tag = Object.prototype.toString.call(rows); // realm-independent typed-array check
    if (tag !== "[object Float32Array]" && tag !== "[object Float64Array]")
      throw new UsageError(`${name}: rows must be a Float32Array or Float64Array`);
    if (!Number.isInteger(width) || width <= 0) throw new UsageError(`${name}: width must be a positive integer (got ${width})`);
    if (rows.length % width !== 0)
      throw new UsageError(`${name}: ${rows.length} values is not a whole number of rows of width ${width}`);
    let m = this.acc.get(name);
    if (!m) {
      m = { kind, width, main: new Float64Array(kind === "linear" ? width * width : width), sum: new Float64Array(width), count: 0 };
      this.acc.set(name, m);
    }
    if (m.kind !== kind)
      throw new UsageError(`${name}: already accumulated as a ${m.kind} module; use ${m.kind === "linear" ? "add" : "addNorm"}`);
    if (m.width !== width) throw new UsageError(`${name}: width ${width} differs from the earlier ${m.width}`);
    return m;
  }

  private enqueue(job: () => Promise<void>, module: string): Promise<void> {
    const p = this.queue.then(job).catch((e: unknown) => {
      // A module whose every chunk was rejected must not be saved as empty statistics.
      if (this.acc.get(module)?.count === 0) this.acc.delete(module);
      throw e instanceof Error && !(e instanceof TaskmergeError) ? new TaskmergeError(`${module}: ${e.message}`) : e;
    });
    this.queue = p.catch(() => undefined);
    return p;
  }
}

function dtypeOf(rows: Rows): "F32" | "F64" {
  return Object.prototype.toString.call(rows) === "[object Float64Array]" ? "F64" : "F32";
}
