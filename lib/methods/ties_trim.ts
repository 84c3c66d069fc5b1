/**
 * Streaming passes shared by the TIES family (ties, dare_ties, consensus_ties,
 * TALL compression with a TIES τMTL): exact top-k magnitude thresholds per
 * task and the majority sign, over one key (scope "tensor") or over all float
 * keys (scope "global"), with memory bounded by a chunk and two histograms.
 */
import { runOp, OpArg } from "../native";
import { forEachChunk, chunkArgs, outBytes, Chunk } from "../engine/stream";
import { ProgressTracker } from "../engine/progress";
import { throwIfAborted } from "../errors";
import type { MergeContext, TensorSink } from "./types";

const HIGH_BINS = 1 << 15;
const LOW_BINS = 1 << 16;

export type OpArgs = Record<string, OpArg | undefined>;

/** Per-task thresholds and the majority sign of one scope. */
export interface TiesTrim {
  /** Float32 bits of the k-th largest |τt| per task: entries with |τ| ≥ it are kept. */
  thresholdBits: number[];
  /** sign(Σ s) over the scope, +1 when that is 0. */
  majority: 1 | -1;
  signSum: number;
  /** Entries per task in the scope and the k kept. */
  n: number;
  k: number;
}

export type ChunkFn = (c: Chunk) => Promise<void>;
/** Runs fn over every chunk of a scope; `report` says whether the pass counts towards progress. */
export type Scan = (fn: ChunkFn) => Promise<void>;

function silent(ctx: MergeContext): MergeContext {
  return { ...ctx, progress: new ProgressTracker() };
}

export function bitsToFloat(bits: number): number {
  const u = new Uint32Array([bits]);
  return new Float32Array(u.buffer)[0];
}

/**
 * One key scanned several times: a key that fits in one chunk is read once and
 * its buffers replayed by later passes; a larger one is streamed again each pass.
 * Only the final pass reports progress.
 */
export class KeyScan {
  private cached?: Chunk;
  constructor(private readonly ctx: MergeContext, readonly key: string) {}

  get numel(): number {
    return this.ctx.base.get(this.key).numel;
  }

  private get single(): boolean {
    return this.numel <= Math.max(1, this.ctx.chunkElems);
  }

  private async readSingle(ctx: MergeContext): Promise<Chunk | undefined> {
    if (!this.cached) await forEachChunk(ctx, this.key, async (c) => void (this.cached = c));
    return this.cached;
  }

  /** A pre-pass (thresholds, signs): no progress. */
  readonly scan: Scan = async (fn) => {
    if (!this.single) return forEachChunk(silent(this.ctx), this.key, fn);
    const c = await this.readSingle(silent(this.ctx));
    if (c) await fn(c);
  };

  /** The final pass: reports progress and releases the cached chunk. */
  async final(fn: ChunkFn): Promise<void> {
    if (!this.single) return forEachChunk(this.ctx, this.key, fn);
    const fresh = !this.cached;
    const c = await this.readSingle(fresh ? this.ctx : silent(this.ctx));
    this.cached = undefined;
    if (!c) return;
    if (!fresh) this.ctx.progress.bytes(c.base.length + c.experts.reduce((s, b) => s + b.length, 0), this.key);
    await fn(c);
  }
}

/** Streams the merged tensor of `scan.key` through a native elementwise op to `sink`, writing while computing. */
export async function mergeWith(ctx: MergeContext, scan: KeyScan, sink: TensorSink, op: string, args: OpArgs): Promise<void> {
  let pendingWrite: Promise<void> = Promise.resolve();
  try {
    await scan.final(async (c) => {
      const out = Buffer.allocUnsafe(outBytes(ctx, c.key, c.n));
      await runOp(op, { ...args, ...chunkArgs(ctx, c, out) });
      await pendingWrite;
      pendingWrite = sink(out);
      pendingWrite.catch(() => undefined); // surfaced by the next await
    });
  } finally {
    await pendingWrite;
  }
}

/** All float keys in order, as one scope; progress under `phase`. */
export function globalScan(ctx: MergeContext, phase: string): Scan {
  return async (fn) => {
    const keys = ctx.floatKeys;
    const bytes = keys.reduce((s, k) => s + ctx.base.get(k).nbytes + ctx.experts.reduce((a, e) => a + e.checkpoint.get(k).nbytes, 0), 0);
    ctx.progress.phase(phase, keys.length, bytes);
    for (const key of keys) {
      throwIfAborted(ctx.signal);
      await forEachChunk(ctx, key, fn);
      ctx.progress.tensorDone(key);
    }
  };
}

/** Exact float32 bits of the k-th largest |τt| per task over a scope of n entries per task. */
export async function selectThresholds(ctx: MergeContext, scan: Scan, scan2: Scan, n: number, density: number): Promise<{ bits: number[]; k: number }> {
  const T = ctx.experts.length;
  const k = Math.max(1, Math.floor(n * density));
  if (n === 0) return { bits: new Array(T).fill(0), k: 0 };
  const high = new Float64Array(T * HIGH_BINS);
  await scan((c) => runOp("magnitude_hist", { ...chunkArgs(ctx, c), level: 0, hist: high }).then(() => undefined));
  const p0 = await runOp("magnitude_pick", { hist: high, bins: HIGH_BINS, ks: new Array(T).fill(k) });
  const bins0 = p0.bin as number[];
  const low = new Float64Array(T * LOW_BINS);
  await scan2((c) => runOp("magnitude_hist", { ...chunkArgs(ctx, c), level: 1, hist: low, prefix: bins0 }).then(() => undefined));
  const p1 = await runOp("magnitude_pick", { hist: low, bins: LOW_BINS, ks: p0.rank as number[] });
  const bins1 = p1.bin as number[];
  return { bits: bins0.map((b, t) => b * LOW_BINS + bins1[t]), k };
}

/** Σ over the scope of the elected signs of the trimmed task vectors, and its sign. */
export async function majoritySign(ctx: MergeContext, scan: Scan, trim: (key: string) => OpArgs): Promise<{ majority: 1 | -1; signSum: number }> {
  let signSum = 0;
  await scan(async (c) => {
    const r = await runOp("ties_signs", { ...chunkArgs(ctx, c), ...trim(c.key) });
    signSum += r.signSum as number;
  });
  return { majority: signSum < 0 ? -1 : 1, signSum };
}

export function magnitudeArgs(bits: number[]): OpArgs {
  return { trim: "magnitude", thresholds: bits };
}

/** TIES thresholds and majority sign over all float keys (three streamed passes). */
export async function globalTiesTrim(ctx: MergeContext, density: number): Promise<TiesTrim> {
  const n = ctx.floatKeys.reduce((s, k) => s + ctx.base.get(k).numel, 0);
  const { bits, k } = await selectThresholds(ctx, globalScan(ctx, "threshold 1/2"), globalScan(ctx, "threshold 2/2"), n, density);
  const args = magnitudeArgs(bits);
  const { majority, signSum } = await majoritySign(ctx, globalScan(ctx, "signs"), () => args);
  return { thresholdBits: bits, majority, signSum, n, k };
}

/** TIES thresholds and majority sign of one key. */
export async function tensorTiesTrim(ctx: MergeContext, scan: KeyScan, density: number): Promise<TiesTrim> {
  const n = scan.numel;
  const { bits, k } = await selectThresholds(ctx, scan.scan, scan.scan, n, density);
  const args = magnitudeArgs(bits);
  const { majority, signSum } = await majoritySign(ctx, scan.scan, () => args);
  return { thresholdBits: bits, majority, signSum, n, k };
}

/** The thresholds as floats by expert name, for reports. */
export function describeTrim(ctx: MergeContext, t: TiesTrim): Record<string, unknown> {
  return {
    n: t.n,
    k: t.k,
    thresholds: Object.fromEntries(ctx.experts.map((e, i) => [e.name, bitsToFloat(t.thresholdBits[i])])),
    majoritySign: t.majority,
    signSum: t.signSum,
  };
}
