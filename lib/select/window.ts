/**
 * TIES thresholds and majority sign of a scope in ONE streamed pass, for the
 * common case: a systematic sample of the scope (a few thousand small blocks,
 * ~2M entries per task, read directly) gives each task a window of |τ| float
 * bits that holds the k-th largest with overwhelming probability (z standard
 * errors either side; the error is the larger of the binomial one and the
 * block-to-block spread). The pass then collects every in-window |τ| (a few
 * percent of the entries; values the sample shows heavily tied are counted
 * per value instead), so the threshold is exact, and sums the elected
 * signs (native ties_window). A window that misses, or holds more entries
 * than the lists have room for, returns why, and the caller falls back to
 * the exact histogram passes.
 */
import { allocState, freeState, runOp } from "../native";
import type { StateHandle } from "../native";
import { blaming, chunkInputs } from "../engine/provenance";
import { chunkArgs, Chunk, readChunk } from "../engine/stream";
import type { StreamContext } from "../engine/context";
import type { Scan } from "./scan";
import { entrySign } from "./sign";
import { envNumber } from "../env";

/**
 * The sample: entries per task and the largest block. Over all keys, 2M
 * entries in 1024 blocks of 2048 (many blocks: layers differ); within one key
 * (tensor scope, once per key), 512K entries in 64 blocks of 8192, so a model
 * of a few hundred keys needs tens of thousands of reads, not hundreds.
 * z: standard errors either side of the sample's threshold. Test knobs
 * TASKMERGE_TIES_SAMPLE (entries, in at least 8 blocks) and
 * TASKMERGE_TIES_WINDOW_Z override them (a small sample with z = 0 misses
 * on purpose).
 */
function samplePlan(keys: number): { target: number; block: number } {
  const forced = envNumber("TASKMERGE_TIES_SAMPLE");
  const [target, block] = keys > 1 ? [1 << 21, 2048] : [1 << 19, 8192];
  if (forced === undefined) return { target, block };
  return { target: forced, block: Math.min(block, Math.ceil(forced / 8)) };
}
function windowZ(): number {
  return envNumber("TASKMERGE_TIES_WINDOW_Z") ?? 6;
}
/** Candidate lists (5 bytes per in-window entry per task) at most. */
const WINDOW_BYTES = 384 << 20;
/** Blocks read at once while sampling. */
const SAMPLE_CONCURRENCY = 16;

export interface WindowMiss {
  /** Why the window could not be used. */
  miss: string;
  details: Record<string, unknown>;
}

export interface WindowSelection {
  miss?: undefined;
  bits: number[];
  k: number;
  /** Undefined when too many entries had several tasks inside their windows (a sign pass is needed). */
  signSum?: number;
  details: Record<string, unknown>;
}

interface SampleBlock {
  key: string;
  offset: number;
  n: number;
}

/** Systematic sample positions over the scope's keys taken as one sequence (everything when it is small). */
function sampleBlocks(ctx: StreamContext, keys: string[], n: number): SampleBlock[] {
  const blocks: SampleBlock[] = [];
  const { target, block: size } = samplePlan(keys.length);
  if (n <= target) {
    for (const key of keys) {
      const numel = ctx.base.get(key).numel;
      for (let o = 0; o < numel; o += size) blocks.push({ key, offset: o, n: Math.min(size, numel - o) });
    }
    return blocks;
  }
  const count = Math.ceil(target / size);
  const stride = n / count;
  let k = 0;
  let start = 0; // scope index of keys[k]'s first entry
  for (let j = 0; j < count; j++) {
    const centre = Math.floor((j + 0.5) * stride);
    while (start + ctx.base.get(keys[k]).numel <= centre) start += ctx.base.get(keys[k++]).numel;
    const numel = ctx.base.get(keys[k]).numel;
    const len = Math.min(size, numel);
    const offset = Math.min(Math.max(0, centre - start - Math.floor(len / 2)), numel - len);
    blocks.push({ key: keys[k], offset, n: len });
  }
  return blocks;
}

/** A sample block of every input, in fresh buffers: thousands of small reads at once would flush the chunk pool. */
function readBlock(ctx: StreamContext, b: SampleBlock): Promise<Chunk> {
  return readChunk(ctx, b.key, b.offset, b.n, (ck, key, offset, n) => ck.read(key, offset, n));
}

/** Float32 bits of |τt| of every sampled entry, task-major, into `bits` (a state of T × m uint32). */
async function sampleBits(ctx: StreamContext, blocks: SampleBlock[], m: number, bits: StateHandle): Promise<void> {
  const at: number[] = [];
  blocks.reduce((s, b) => (at.push(s), s + b.n), 0);
  let next = 0;
  const worker = async () => {
    while (next < blocks.length) {
      const i = next++;
      const c = await readBlock(ctx, blocks[i]);
      // Real reads: they count towards the run's bytes read.
      ctx.progress.bytesRead += c.base.length + c.experts.reduce((s, b) => s + b.length, 0);
      await blaming(chunkInputs(ctx, c.key), () => runOp("ties_sample", { ...chunkArgs(ctx, c), bits, m, at: at[i] }));
    }
  };
  await Promise.all(Array.from({ length: SAMPLE_CONCURRENCY }, worker));
}

/**
 * Exact per-task thresholds (float32 bits of the k-th largest |τt|) over a
 * scope of n entries per task, and the majority-sign sum, in one pass of
 * `scan`; or why the sampled window could not be used (a WindowMiss).
 */
export async function windowThresholds(
  ctx: StreamContext, keys: string[], n: number, density: number, scan: Scan, multiCap: number,
): Promise<WindowSelection | WindowMiss> {
  const T = ctx.experts.length;
  const device = ctx.device;
  const k = Math.max(1, Math.floor(n * density));
  const blocks = sampleBlocks(ctx, keys, n);
  const m = blocks.reduce((s, b) => s + b.n, 0);
  if (m === 0) return { miss: "empty scope", details: {} };
  // The sample, lists, cursors and tabled counts stay in the device's memory; bounds and pick read them once.
  let sample: StateHandle | undefined;
  const states: StateHandle[] = [];
  try {
    sample = await allocState(T * m * 4, device);
    await sampleBits(ctx, blocks, m, sample);
    const bounds = await runOp("ties_window_bounds", { bits: sample, m, blockLens: blocks.map((b) => b.n), p: k / n, z: windowZ() });
    await freeState(sample);
    sample = undefined;
    const lo = bounds.lo;
    const hi = bounds.hi;
    const table = bounds.table;
    // Room for every in-window entry: the sample's share of the scope with a wide margin.
    const expected = Math.max(...bounds.inWindow) * (n / m);
    const capacity = Math.ceil(1.5 * expected + 8 * Math.sqrt(expected) + 4096);
    const details: Record<string, unknown> = {
      sample: m, sampleBlocks: blocks.length, windowCapacity: capacity, tabledValues: table.filter((v) => v >= 0).length,
    };
    if (T * capacity * 5 > WINDOW_BYTES) return { miss: `window too wide (${capacity} entries per task)`, details };
    const state = async (bytes: number) => {
      const h = await allocState(bytes, device);
      states.push(h);
      return h;
    };
    const tableCounts = await state(table.length * 8);
    const tableDiffs = await state(table.length * 8);
    const cand = await state(T * capacity * 4);
    const candDiff = await state(T * capacity);
    const used = await state(T * 8);
    const above = new Array<number>(T).fill(0);
    const atHi = new Array<number>(T).fill(0);
    let signBase = 0;
    let overflow = false;
    let full = false;
    const multi: Float32Array[] = [];
    let multiCount = 0;
    await scan(async (c) => {
      const r = await runOp("ties_window", { ...chunkArgs(ctx, c), lo, hi, table, tableCounts, tableDiffs, capacity, cand, candDiff, used, multiCap: overflow ? 0 : multiCap - multiCount });
      r.above.forEach((a, t) => (above[t] += a));
      r.atHi.forEach((a, t) => (atHi[t] += a));
      signBase += r.signBase;
      if (r.full) full = true;
      if (overflow || r.overflow) return void (overflow = true);
      const buf = r.multi;
      if (!buf.length) return;
      // Own, aligned copy: the addon's buffer may sit at any offset.
      const f = new Float32Array(buf.length / 4);
      new Uint8Array(f.buffer).set(buf);
      multi.push(f);
      multiCount += f.length / T;
    });
    if (full) return { miss: `more entries inside the window than the ${capacity} expected`, details };
    const pick = await runOp("ties_window_pick", { cand, candDiff, used, capacity, table, tableCounts, tableDiffs, above, atHi, hi, k });
    const missed = pick.ok.findIndex((ok) => !ok);
    if (missed >= 0) {
      const side = above[missed] - atHi[missed] >= k ? "above" : "below";
      return { miss: `the k-th largest |τ| of expert '${ctx.experts[missed].name}' lies ${side} its window`, details: { ...details, lo, hi, above } };
    }
    const thr = pick.thresholds;
    details.undecided = multiCount;
    if (overflow) return { bits: thr, k, details: { ...details, undecided: "overflow" } };
    let signSum = signBase + pick.diffSum;
    for (const f of multi) {
      const u = new Uint32Array(f.buffer);
      for (let e = 0; e < f.length; e += T) signSum += entrySign(f.subarray(e, e + T), u.subarray(e, e + T), thr);
    }
    return { bits: thr, k, signSum, details };
  } finally {
    await freeState(sample, ...states);
  }
}
