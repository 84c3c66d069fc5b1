/**
 * Exact top-m sets of |τt| per task over one key: the m_t largest |τt|, the
 * entries tied at the m_t-th magnitude taken in tensor index order (mergekit's
 * exactly-k rule). A set is the float32 bits of the m-th largest |τt| and a
 * cut: entries above the bits, and those exactly at them with an index below
 * the cut. Used by mergekit:ties (topk_ties exact_k) and the breadcrumbs methods.
 */
import { runOp } from "../native";
import { chunkArgs } from "../engine/stream";
import type { StreamContext } from "../engine/context";
import type { KeyScan } from "./scan";
import { selectThresholdsK } from "./histogram";

/** The empty set (|τ| is finite, so nothing is above +∞'s bits) and the whole key. */
const EMPTY = { bits: 0x7f800000, cut: 0 };

/**
 * Per task, the tensor index below which entries exactly at the threshold
 * `bits[t]` are kept, so that exactly the `rank[t]` of them that the top-m set
 * needs are in it; `skip[t]` tasks get n (every tie).
 */
export async function tieCuts(ctx: StreamContext, scan: KeyScan, bits: number[], rank: number[], skip: boolean[], n: number): Promise<number[]> {
  const need = rank.slice();
  const cuts = skip.map((s) => (s ? n : -1));
  await scan.scan(async (c) => {
    if (cuts.every((x) => x >= 0)) return;
    const r = await runOp("magnitude_tie_cut", { ...chunkArgs(ctx, c), thresholds: bits, need: need.map((x, t) => (cuts[t] >= 0 ? 0 : x)) });
    const at = r.at as number[], count = r.count as number[];
    for (let t = 0; t < cuts.length; t++) {
      if (cuts[t] >= 0) continue;
      if (at[t] > 0) cuts[t] = c.offset + at[t];
      else need[t] -= count[t];
    }
  });
  if (cuts.some((x) => x < 0)) throw new Error(`the tied entries at the top-k threshold of ${scan.key} were not found again`);
  return cuts;
}

/** The top-m_t set of each task over `scan`'s key (n entries): m_t ≤ 0 is empty, m_t ≥ n the whole key. */
export async function topSets(ctx: StreamContext, scan: KeyScan, ms: number[], n: number): Promise<{ bits: number[]; cuts: number[] }> {
  const partial = ms.map((m) => m > 0 && m < n);
  if (!partial.some(Boolean)) return { bits: ms.map((m) => (m > 0 ? 0 : EMPTY.bits)), cuts: ms.map((m) => (m > 0 ? n : EMPTY.cut)) };
  const sel = await selectThresholdsK(ctx, scan.scan, scan.scan, ms.map((m) => Math.min(Math.max(m, 1), n)));
  const cuts = await tieCuts(ctx, scan, sel.bits, sel.rank, partial.map((p) => !p), n);
  return {
    bits: ms.map((m, t) => (partial[t] ? sel.bits[t] : m > 0 ? 0 : EMPTY.bits)),
    cuts: ms.map((m, t) => (partial[t] ? cuts[t] : m > 0 ? n : EMPTY.cut)),
  };
}
