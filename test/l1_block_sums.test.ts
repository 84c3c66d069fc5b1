/**
 * The L1 sums of trim_l1 and breadcrumbs_l1 (mergekit's and breadcrumbs' L1
 * rescale) follow one order on every backend and thread count
 * (native/backend/backend.h; docs/cuda.md): each block of 4096 entries from
 * the chunk's start is summed in index order from 0, and the block sums are
 * added in block order. Checked against a plain float64 reference written
 * here, on data whose magnitudes span many binades so that another order
 * changes the last bits.
 */
import { runRawOp as runOp } from "../lib/native";
import { rng } from "./helpers/fixtures";

const BLOCK = 4096;

interface Data {
  n: number;
  offset: number;
  base: Float32Array;
  experts: Float32Array[];
}

function makeData(seed: number, T: number, n: number): Data {
  const r = rng(seed);
  const wide = () => r.normal() * 2 ** Math.floor(r.u() * 40 - 20);
  const base = Float32Array.from({ length: n }, wide);
  const experts = Array.from({ length: T }, () => Float32Array.from(base, (b) => b + wide()));
  return { n, offset: 8 * Math.floor(r.u() * 1000), base, experts };
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
const chunkArgs = (d: Data) => ({ n: d.n, offset: d.offset, base: bytes(d.base), baseDtype: "F32", experts: d.experts.map(bytes), expertDtypes: d.experts.map(() => "F32") });

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const absBits = (x: number) => ((f32[0] = x), u32[0] & 0x7fffffff);

/** Σ|τ| and Σ|τ| over `kept` entries, per block in index order, the block sums added in block order (or reversed). */
function reference(d: Data, t: number, kept: (i: number, tau: number) => boolean, reversed = false): [number, number] {
  const blocks: [number, number][] = [];
  for (let start = 0; start < d.n; start += BLOCK) {
    let a = 0;
    let k = 0;
    for (let i = start; i < Math.min(d.n, start + BLOCK); i++) {
      const tau = Math.fround(d.experts[t][i] - d.base[i]);
      a += Math.abs(tau);
      if (kept(i, tau)) k += Math.abs(tau);
    }
    blocks.push([a, k]);
  }
  if (reversed) blocks.reverse();
  let l1 = 0;
  let l1Kept = 0;
  for (const [a, k] of blocks) (l1 += a), (l1Kept += k);
  return [l1, l1Kept];
}

const T = 3;
const n = 24 * BLOCK + 123; // many blocks, so that several threads take part

test("trim_l1: block sums in index order, added in block order, on any schedule", async () => {
  let orderMatters = false;
  for (let seed = 1; seed <= 5; seed++) {
    const d = makeData(seed, T, n);
    const thresholds = d.experts.map((e) => absBits(Math.fround(e[7] - d.base[7])));
    const r = (await runOp("trim_l1", { ...chunkArgs(d), trim: "magnitude", thresholds })) as { l1: number[]; l1Kept: number[] };
    for (let t = 0; t < T; t++) {
      const keep = (_: number, tau: number) => absBits(tau) >= thresholds[t];
      const [l1, kept] = reference(d, t, keep);
      expect([r.l1[t], r.l1Kept[t]]).toEqual([l1, kept]);
      const [l1r, keptr] = reference(d, t, keep, true);
      if (l1r !== l1 || keptr !== kept) orderMatters = true;
    }
  }
  expect(orderMatters).toBe(true); // the data tells the orders apart
});

test("breadcrumbs_l1: the same order, over the entries each task keeps", async () => {
  for (let seed = 11; seed <= 15; seed++) {
    const d = makeData(seed, T, n);
    // Keep the entries ranked below the 50th entry's |τ| and at or above the 9th's, ties cut at mid-tensor.
    const bitsAt = (t: number, i: number) => absBits(Math.fround(d.experts[t][i] - d.base[i]));
    const dropBits = [0, 1, 2].map((t) => bitsAt(t, 9));
    const keepBits = [0, 1, 2].map((t) => bitsAt(t, 50));
    const dropCuts = [0, 1, 2].map(() => d.offset + n / 2);
    const keepCuts = dropCuts;
    const r = (await runOp("breadcrumbs_l1", { ...chunkArgs(d), dropBits, dropCuts, keepBits, keepCuts })) as { l1: number[]; l1Kept: number[] };
    for (let t = 0; t < T; t++) {
      const inSet = (u: number, index: number, bits: number, cut: number) => u > bits || (u === bits && index < cut);
      const keep = (i: number, tau: number) => {
        const u = absBits(tau);
        return inSet(u, d.offset + i, keepBits[t], keepCuts[t]) && !inSet(u, d.offset + i, dropBits[t], dropCuts[t]);
      };
      expect([r.l1[t], r.l1Kept[t]]).toEqual(reference(d, t, keep));
    }
  }
});
