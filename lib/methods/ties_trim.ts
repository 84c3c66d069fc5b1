/**
 * Streaming passes shared by the TIES family (ties, dare_ties, consensus_ties,
 * TALL compression with a TIES τMTL): exact top-k magnitude thresholds per
 * task and the majority sign, over one key (scope "tensor") or over all float
 * keys (scope "global"): one sampled-window pass (ties_window.ts), or, when
 * the window misses, two histogram passes with memory bounded by a chunk and
 * two histograms.
 */
import { runOp, OpArg } from "../native";
import { forEachChunk, chunkArgs, Chunk, mergeElementwise, releaseChunk } from "../engine/stream";
import { ProgressTracker } from "../engine/progress";
import { throwIfAborted } from "../errors";
import type { MergeContext, TensorSink } from "./types";
import { blaming, chunkInputs } from "../engine/provenance";
import { entrySign, windowThresholds, WindowMiss, WindowSelection } from "./ties_window";
import { envNumber, envValue } from "../env";

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
  /** Whether the sign sum came with the threshold passes or needed a pass of its own. */
  signPass: "fused" | "separate";
  /** One sampled-window pass, or the two histogram passes (when the window missed, or for small keys). */
  select: "window" | "histogram" | "memory";
  selectDetails?: Record<string, unknown>;
}

export type ChunkFn = (c: Chunk) => Promise<void>;
/** Runs fn over every chunk of a scope (one key, or all float keys). */
export type Scan = (fn: ChunkFn) => Promise<void>;

/** Progress of a pre-pass: counts the bytes read towards the run's total, not towards the phase. */
class ReadCounter extends ProgressTracker {
  constructor(private readonly parent: ProgressTracker) {
    super();
  }
  override bytes(n: number): void {
    this.parent.bytesRead += n;
  }
}

function silent(ctx: MergeContext): MergeContext {
  return { ...ctx, progress: new ReadCounter(ctx.progress) };
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
    if (c) await blaming(chunkInputs(this.ctx, this.key), () => fn(c));
  };

  /** The final pass: reports progress and releases the cached chunk. */
  async final(fn: ChunkFn): Promise<void> {
    if (!this.single) return forEachChunk(this.ctx, this.key, fn);
    const fresh = !this.cached;
    const c = await this.readSingle(fresh ? this.ctx : silent(this.ctx));
    this.cached = undefined;
    if (!c) return;
    if (!fresh) {
      // Progress of this pass; the bytes were counted as read by the pre-pass that read them.
      const n = c.base.length + c.experts.reduce((s, b) => s + b.length, 0);
      this.ctx.progress.bytes(n, this.key);
      this.ctx.progress.bytesRead -= n;
    }
    await blaming(chunkInputs(this.ctx, this.key), () => fn(c));
  }
}

/** Streams the merged tensor of `scan.key` through a native elementwise op to `sink`, writing while computing. */
export function mergeWith(ctx: MergeContext, scan: KeyScan, sink: TensorSink, op: string, args: OpArgs): Promise<void> {
  return mergeElementwise(ctx, scan.key, sink, op, args, (fn) => scan.final(fn));
}

/** All float keys in order, as one scope; progress under `phase`. */
export function globalScan(ctx: MergeContext, phase: string): Scan {
  return async (fn) => {
    const keys = ctx.floatKeys;
    const bytes = keys.reduce((s, k) => s + ctx.base.get(k).nbytes + ctx.experts.reduce((a, e) => a + e.checkpoint.get(k).nbytes, 0), 0);
    ctx.progress.phase(phase, keys.length, bytes);
    for (const key of keys) {
      throwIfAborted(ctx.signal);
      // Pre-pass callbacks keep no reference to a chunk: its buffers are recycled.
      await forEachChunk(ctx, key, async (c) => {
        await fn(c);
        releaseChunk(c);
      });
      ctx.progress.tensorDone(key);
    }
  };
}

/**
 * Entries with several tasks at their threshold's high bits kept for the
 * fused sign sum. TASKMERGE_TIES_CANDIDATES overrides it (a test knob; −1
 * turns the fused sum off).
 */
function candidateCap(T: number): number {
  return envNumber("TASKMERGE_TIES_CANDIDATES") ?? Math.floor((32 << 20) / (4 * T));
}

/**
 * Exact float32 bits of the k-th largest |τt| per task over a scope of n
 * entries per task; with `withSigns`, the second pass also gathers the
 * majority-sign sum for these thresholds (undefined when too many entries were
 * ambiguous and a separate signs pass is needed).
 */
export async function selectThresholds(
  ctx: MergeContext, scan: Scan, scan2: Scan, n: number, density: number, withSigns = false,
): Promise<{ bits: number[]; k: number; signSum?: number }> {
  const T = ctx.experts.length;
  const k = Math.max(1, Math.floor(n * density));
  if (n === 0) return { bits: new Array(T).fill(0), k: 0, signSum: 0 };
  const { bits, signSum } = await selectThresholdsK(ctx, scan, scan2, new Array(T).fill(k), withSigns);
  return signSum === undefined ? { bits, k } : { bits, k, signSum };
}

/**
 * The same two histogram passes with a k of its own per task (1 ≤ k_t ≤ n):
 * the float32 bits of each task's k_t-th largest |τt|, and `rank`, how many of
 * the entries exactly at that value the k_t largest include.
 */
export async function selectThresholdsK(
  ctx: MergeContext, scan: Scan, scan2: Scan, ks: number[], withSigns = false,
): Promise<{ bits: number[]; rank: number[]; signSum?: number }> {
  const T = ctx.experts.length;
  const high = new Float64Array(T * HIGH_BINS);
  await scan((c) => runOp("magnitude_hist", { ...chunkArgs(ctx, c), level: 0, hist: high }).then(() => undefined));
  const p0 = await runOp("magnitude_pick", { hist: high, bins: HIGH_BINS, ks });
  const bins0 = p0.bin as number[];
  const low = new Float64Array(T * LOW_BINS);
  const cap = candidateCap(T);
  const signDiff = withSigns && cap >= 0 ? new Float64Array(T * LOW_BINS) : undefined;
  let signBase = 0;
  let overflow = false;
  const multi: Buffer[] = [];
  let multiCount = 0;
  await scan2(async (c) => {
    const r = await runOp("magnitude_hist", {
      ...chunkArgs(ctx, c), level: 1, hist: low, prefix: bins0, ...(signDiff && !overflow ? { signDiff, multiCap: cap - multiCount } : {}),
    });
    if (!signDiff || overflow) return;
    if (r.overflow) overflow = true;
    signBase += r.signBase as number;
    const m = r.multi as Buffer;
    if (!m.length) return;
    // Own, aligned copy: the addon's buffer may sit at any offset.
    multi.push(Buffer.from(m));
    multiCount += m.length / (4 * T);
  });
  const p1 = await runOp("magnitude_pick", { hist: low, bins: LOW_BINS, ks: p0.rank as number[] });
  const bins1 = p1.bin as number[];
  const bits = bins0.map((b, t) => b * LOW_BINS + bins1[t]);
  const rank = p1.rank as number[];
  if (!signDiff || overflow) return { bits, rank };
  // Entries with one task inside its threshold's bin: kept where the low bits reach the threshold's.
  let signSum = signBase;
  for (let t = 0; t < T; t++) for (let l = bins1[t]; l < LOW_BINS; l++) signSum += signDiff[t * LOW_BINS + l];
  for (const m of multi) {
    const f = new Float32Array(new Uint8Array(m).buffer);
    const u = new Uint32Array(f.buffer);
    for (let e = 0; e < f.length; e += T) signSum += entrySign(f.subarray(e, e + T), u.subarray(e, e + T), bits);
  }
  return { bits, rank, signSum };
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

const fromSum = (signSum: number): 1 | -1 => (signSum < 0 ? -1 : 1);

/**
 * The sampled-window selection unless TASKMERGE_TIES_SELECT=histogram (a test
 * and benchmark knob that forces the exact histogram passes).
 */
function windowEnabled(): boolean {
  return envValue("TASKMERGE_TIES_SELECT") !== "histogram";
}

/** A trim from a window selection: its sign sum, or a sign pass of its own when that overflowed. */
async function fromWindow(ctx: MergeContext, w: WindowSelection, n: number, scan: Scan): Promise<TiesTrim> {
  const base = { thresholdBits: w.bits, n, k: w.k, select: "window" as const, selectDetails: w.details };
  if (w.signSum !== undefined) return { ...base, majority: fromSum(w.signSum), signSum: w.signSum, signPass: "fused" };
  const args = magnitudeArgs(w.bits);
  return { ...base, ...(await majoritySign(ctx, scan, () => args)), signPass: "separate" };
}

/** Thresholds and majority sign by the two exact histogram passes (and a sign pass if needed). */
async function histogramTrim(ctx: MergeContext, scan: Scan, scan2: Scan, signs: Scan, n: number, density: number, missed?: WindowMiss): Promise<TiesTrim> {
  const sel = await selectThresholds(ctx, scan, scan2, n, density, true);
  const args = magnitudeArgs(sel.bits);
  const { majority, signSum, signPass } =
    sel.signSum !== undefined
      ? { majority: fromSum(sel.signSum), signSum: sel.signSum, signPass: "fused" as const }
      : { ...(await majoritySign(ctx, signs, () => args)), signPass: "separate" as const };
  return { thresholdBits: sel.bits, majority, signSum, n, k: sel.k, signPass, select: "histogram", ...(missed ? { selectDetails: { ...missed.details, windowMissed: missed.miss } } : {}) };
}

/**
 * TIES thresholds and majority sign over all float keys: one sampled-window
 * pass; when the window misses, two exact histogram passes (the second also
 * summing the elected signs), and a sign pass only if that overflowed.
 */
export async function globalTiesTrim(ctx: MergeContext, density: number): Promise<TiesTrim> {
  const n = ctx.floatKeys.reduce((s, k) => s + ctx.base.get(k).numel, 0);
  let missed: WindowMiss | undefined;
  if (n > 0 && windowEnabled()) {
    const w = await windowThresholds(ctx, ctx.floatKeys, n, density, globalScan(ctx, "threshold"), candidateCap(ctx.experts.length));
    if (w.miss === undefined) return fromWindow(ctx, w, n, globalScan(ctx, "signs"));
    missed = w;
  }
  return histogramTrim(ctx, globalScan(ctx, "threshold 1/2"), globalScan(ctx, "threshold 2/2"), globalScan(ctx, "signs"), n, density, missed);
}

/** Keys up to this size that fit in one chunk are selected in memory (one op instead of three histogram passes). */
const SMALL_KEY = 1 << 16;

/** TIES thresholds and majority sign of one key. */
export async function tensorTiesTrim(ctx: MergeContext, scan: KeyScan, density: number): Promise<TiesTrim> {
  const n = scan.numel;
  if (n > 0 && n <= SMALL_KEY && n <= ctx.chunkElems && candidateCap(ctx.experts.length) >= 0) {
    const k = Math.max(1, Math.floor(n * density));
    let r: Record<string, unknown> = {};
    await scan.scan(async (c) => void (r = await runOp("magnitude_small", { ...chunkArgs(ctx, c), k })));
    const signSum = r.signSum as number;
    return { thresholdBits: r.thresholds as number[], majority: fromSum(signSum), signSum, n, k, signPass: "fused", select: "memory" };
  }
  // A key larger than a chunk is streamed again by every pass: one window pass
  // (after a small sample) instead of two histogram passes.
  let missed: WindowMiss | undefined;
  if (n > ctx.chunkElems && windowEnabled()) {
    const w = await windowThresholds(ctx, [scan.key], n, density, scan.scan, candidateCap(ctx.experts.length));
    if (w.miss === undefined) return fromWindow(ctx, w, n, scan.scan);
    missed = w;
  }
  return histogramTrim(ctx, scan.scan, scan.scan, scan.scan, n, density, missed);
}

/** The thresholds as floats by expert name, for reports. */
export function describeTrim(ctx: MergeContext, t: TiesTrim): Record<string, unknown> {
  return {
    n: t.n,
    k: t.k,
    thresholds: Object.fromEntries(ctx.experts.map((e, i) => [e.name, bitsToFloat(t.thresholdBits[i])])),
    majoritySign: t.majority,
    signSum: t.signSum,
    signPass: t.signPass,
    ...t.selectDetails,
    select: t.select,
  };
}
