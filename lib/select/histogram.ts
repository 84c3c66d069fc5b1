/**
 * Exact top-k magnitude thresholds per task by two streamed histogram passes
 * (the high then the low 16 bits of |τ|'s float32 bits), memory bounded by a
 * chunk and two histograms; the second pass can also sum the elected signs.
 */
import { runOp } from "../native";
import { chunkArgs } from "../engine/stream";
import type { StreamContext } from "../engine/context";
import type { Scan } from "./scan";
import { entrySign } from "./sign";
import { envNumber } from "../env";

const HIGH_BINS = 1 << 15;
const LOW_BINS = 1 << 16;

/**
 * Entries with several tasks at their threshold's high bits kept for the
 * fused sign sum. TASKMERGE_TIES_CANDIDATES overrides it (a test knob; −1
 * turns the fused sum off).
 */
export function candidateCap(T: number): number {
  return envNumber("TASKMERGE_TIES_CANDIDATES") ?? Math.floor((32 << 20) / (4 * T));
}

/**
 * Exact float32 bits of the k-th largest |τt| per task over a scope of n
 * entries per task; with `withSigns`, the second pass also gathers the
 * majority-sign sum for these thresholds (undefined when too many entries were
 * ambiguous and a separate signs pass is needed).
 */
export async function selectThresholds(
  ctx: StreamContext, scan: Scan, scan2: Scan, n: number, density: number, withSigns = false,
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
  ctx: StreamContext, scan: Scan, scan2: Scan, ks: number[], withSigns = false,
): Promise<{ bits: number[]; rank: number[]; signSum?: number }> {
  const T = ctx.experts.length;
  const high = new Float64Array(T * HIGH_BINS);
  await scan((c) => runOp("magnitude_hist", { ...chunkArgs(ctx, c), level: 0, hist: high }).then(() => undefined));
  const p0 = await runOp("magnitude_pick", { hist: high, bins: HIGH_BINS, ks, device: ctx.device });
  const bins0 = p0.bin;
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
    signBase += r.signBase ?? 0;
    const m = r.multi;
    if (!m?.length) return;
    // Own, aligned copy: the addon's buffer may sit at any offset.
    multi.push(Buffer.from(m));
    multiCount += m.length / (4 * T);
  });
  const p1 = await runOp("magnitude_pick", { hist: low, bins: LOW_BINS, ks: p0.rank, device: ctx.device });
  const bins1 = p1.bin;
  const bits = bins0.map((b, t) => b * LOW_BINS + bins1[t]);
  const rank = p1.rank;
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
