/**
 * TIES selection of one scope: exact top-k magnitude thresholds per task and
 * the majority sign, over one key (scope "tensor") or all float keys (scope
 * "global"). Used by the TIES family of methods (ties, dare_ties,
 * consensus_*) and by TALL compression with a TIES τMTL: one sampled-window
 * pass (window.ts), or, when the window misses, the two histogram passes
 * (histogram.ts); small keys in memory.
 */
import { runOp, OpResultOf } from "../native";
import { chunkArgs } from "../engine/stream";
import type { StreamContext } from "../engine/context";
import { globalScan, KeyScan, Scan } from "./scan";
import { candidateCap, selectThresholds } from "./histogram";
import { bitsToFloat, fromSum, magnitudeArgs, majoritySign } from "./sign";
import { windowThresholds, WindowMiss, WindowSelection } from "./window";
import { envValue } from "../env";

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

/**
 * The sampled-window selection unless TASKMERGE_TIES_SELECT=histogram (a test
 * and benchmark knob that forces the exact histogram passes).
 */
function windowEnabled(): boolean {
  return envValue("TASKMERGE_TIES_SELECT") !== "histogram";
}

/** A trim from a window selection: its sign sum, or a sign pass of its own when that overflowed. */
async function fromWindow(ctx: StreamContext, w: WindowSelection, n: number, scan: Scan): Promise<TiesTrim> {
  const base = { thresholdBits: w.bits, n, k: w.k, select: "window" as const, selectDetails: w.details };
  if (w.signSum !== undefined) return { ...base, majority: fromSum(w.signSum), signSum: w.signSum, signPass: "fused" };
  const args = magnitudeArgs(w.bits);
  return { ...base, ...(await majoritySign(ctx, scan, () => args)), signPass: "separate" };
}

/** Thresholds and majority sign by the two exact histogram passes (and a sign pass if needed). */
async function histogramTrim(ctx: StreamContext, scan: Scan, scan2: Scan, signs: Scan, n: number, density: number, missed?: WindowMiss): Promise<TiesTrim> {
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
export async function globalTiesTrim(ctx: StreamContext, density: number): Promise<TiesTrim> {
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
export async function tensorTiesTrim(ctx: StreamContext, scan: KeyScan, density: number): Promise<TiesTrim> {
  const n = scan.numel;
  if (n > 0 && n <= SMALL_KEY && n <= ctx.chunkElems && candidateCap(ctx.experts.length) >= 0) {
    const k = Math.max(1, Math.floor(n * density));
    let r: OpResultOf<"magnitude_small"> = { thresholds: [], signSum: 0 };
    await scan.scan(async (c) => void (r = await runOp("magnitude_small", { ...chunkArgs(ctx, c), k })));
    const signSum = r.signSum;
    return { thresholdBits: r.thresholds, majority: fromSum(signSum), signSum, n, k, signPass: "fused", select: "memory" };
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
export function describeTrim(ctx: StreamContext, t: TiesTrim): Record<string, unknown> {
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
