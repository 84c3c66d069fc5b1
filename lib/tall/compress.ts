/**
 * Compression into a TALL bundle: τMTL (Σt τt or the TIES disjoint sum) and
 * one mask per task, mt = 1{|τt| > λt·|τMTL − τt|}. With fixed λt it is one
 * streamed pass (after the TIES threshold passes for a TIES τMTL); with a λ
 * grid, τMTL is written first, each candidate θ̂t is extracted to a temporary
 * file and scored by the caller, then the masks are written with the winners.
 * These are the passes; the compress job (lib/job/compress.ts) opens the
 * inputs, stages the bundle directory and commits it.
 */
import { promises as fsp } from "fs";
import * as path from "path";
import { runOp } from "../native";
import { SafetensorsFile } from "../safetensors/file";
import { SafetensorsWriter, PositionalWriter, OutTensor } from "../safetensors/writer";
import { DTYPE_SIZE, FloatDType } from "../safetensors/dtypes";
import { Chunk, chunkArgs, forEachChunk, releaseChunk } from "../engine/stream";
import { chunkPool } from "../engine/buffer_pool";
import { TaskmergeError, throwIfAborted } from "../errors";
import type { Expert, StreamContext } from "../engine/context";
import { KeyScan } from "../select/scan";
import { magnitudeArgs, OpArgs } from "../select/sign";
import { describeTrim, tensorTiesTrim, TiesTrim } from "../select/trim";
import { withWriteBehind } from "../engine/write_behind";
import { reconstruct } from "./reconstruct";
import { MASKS_FILE, maskBytes, maskKey } from "./bundle";

export const DEFAULT_GRID = [0.2, 0.3, 0.4, 0.5, 0.6];
export const DEFAULT_TALL_LAMBDA = 0.4;

export interface LambdaSearch {
  grid?: number[];
  /** Scores a candidate checkpoint of `task` (a temporary .safetensors file); the highest score wins. */
  score: (task: string, candidatePath: string) => Promise<number> | number;
}

/** The streamed τMTL pass: how τMTL is made and, when λ is fixed, the masks written with it. */
export interface TauPassOptions {
  tau: "sum" | "ties";
  density: number;
  /** The global TIES trim (scope global), else each key's own is computed. */
  global?: TiesTrim;
  tauDtype(key: string): FloatDType;
  /** Fixed λ per task: the masks are written in the same pass. */
  lambdas?: number[];
  tauW: SafetensorsWriter;
  maskW?: PositionalWriter;
  /** Per-tensor trims are reported here (details.tensors). */
  details: Record<string, unknown>;
}

/** Pass 1: τMTL of every float key (and the masks when λ is fixed), writes trailing the compute by one chunk. */
export async function tauPass(ctx: StreamContext, o: TauPassOptions): Promise<void> {
  const { tauW, tauDtype, global } = o;
  const experts = ctx.experts;
  const fixed = o.lambdas;
  const masksNow = o.maskW; // the fixed-λ mask writer, as a const for the chunk callbacks
  await withWriteBehind(async (writes) => {
    for (const key of ctx.floatKeys) {
      throwIfAborted(ctx.signal);
      const scan = new KeyScan(ctx, key);
      const trim: OpArgs = o.tau === "sum" ? { trim: "none" } : trimArgs(global ?? (await tensorTrim(ctx, o.details, scan, o.density)));
      const tauSize = DTYPE_SIZE[tauDtype(key)];
      await scan.final(async (c) => {
        const tauBuf = chunkPool.acquire(c.n * tauSize);
        const masks = masksNow ? experts.map(() => chunkPool.acquire(maskBytes(c.n))) : [];
        const outs = [tauBuf, ...masks];
        await computeChunk(c, outs, () =>
          runOp("tall_compress", { ...chunkArgs(ctx, c), ...trim, kind: o.tau, tau: tauBuf, tauDtype: tauDtype(key), lambdas: fixed, masks: masksNow ? masks : undefined }),
        );
        await writes.push(
          () => [tauW.write(key, tauBuf), ...masks.map((m, t) => masksNow!.write(maskKey(experts[t].name, key), c.offset / 8, m))],
          outs,
        );
      });
      ctx.progress.tensorDone(key);
    }
  });
}

/** The λ search: scores every task's candidates; returns each task's scores and the winning λ. */
export async function searchLambdas(ctx: StreamContext, tau: SafetensorsFile, search: LambdaSearch, dir: string) {
  const scores: { lambda: number; score: number }[][] = [];
  const lambdas: number[] = [];
  for (const e of ctx.experts) {
    const s = await scoreGrid(ctx, tau, e, search, dir);
    scores.push(s);
    lambdas.push(s.reduce((best, x) => (x.score > best.score ? x : best)).lambda);
  }
  return { scores, lambdas };
}

function trimArgs(t: TiesTrim): OpArgs {
  return { ...magnitudeArgs(t.thresholdBits), majority: t.majority };
}

async function tensorTrim(ctx: StreamContext, details: Record<string, unknown>, scan: KeyScan, density: number): Promise<TiesTrim> {
  const t = await tensorTiesTrim(ctx, scan, density);
  ((details.tensors ??= Object.create(null)) as Record<string, unknown>)[scan.key] = describeTrim(ctx, t); // keyed by tensor keys
  return t;
}

export function phaseBytes(ctx: StreamContext, keys: string[]): number {
  return keys.reduce((s, k) => s + ctx.base.get(k).nbytes + ctx.experts.reduce((a, e) => a + e.checkpoint.get(k).nbytes, 0), 0);
}

export function createMaskWriter(dir: string, plan: OutTensor[]): Promise<PositionalWriter> {
  const p = path.join(dir, MASKS_FILE);
  return PositionalWriter.create(p, `${p}.part`, plan, { format: "taskmerge-tall-masks", bitorder: "big" });
}

/** Extracts and scores one candidate per λ of the grid for expert `e`. */
async function scoreGrid(ctx: StreamContext, tau: SafetensorsFile, e: Expert, search: LambdaSearch, dir: string) {
  const out: { lambda: number; score: number }[] = [];
  for (const lambda of search.grid ?? DEFAULT_GRID) {
    throwIfAborted(ctx.signal);
    const cand = path.join(dir, `candidate-${out.length}.safetensors`);
    const plan = ctx.base.keys().map((k) => ({ key: k, dtype: ctx.base.get(k).dtype, shape: ctx.base.get(k).shape }));
    const w = await SafetensorsWriter.create(cand, `${cand}.part`, plan, { format: "pt" });
    try {
      ctx.progress.phase(`candidate ${e.name} λ=${lambda}`, plan.length, ctx.base.totalBytes * 2 + tau.size);
      await reconstruct({
        base: ctx.base, tau, source: { expert: e.checkpoint, lambda }, outDtype: (k) => ctx.base.get(k).dtype as FloatDType,
        chunkElems: ctx.chunkElems, write: (k, d) => w.write(k, d), progress: ctx.progress, signal: ctx.signal, device: ctx.device,
      });
      await w.finish();
      const score = Number(await search.score(e.name, cand));
      if (!Number.isFinite(score)) throw new TaskmergeError(`the score callback returned ${score} for task '${e.name}' at λ=${lambda}; it must return a finite number`);
      out.push({ lambda, score });
    } catch (err) {
      await w.close();
      throw err;
    } finally {
      await fsp.rm(cand, { force: true });
    }
  }
  return out;
}

/** Writes every task's mask from the stored τMTL and the chosen λt. */
export async function masksFromTau(ctx: StreamContext, tau: SafetensorsFile, lambdas: number[], w: PositionalWriter): Promise<void> {
  ctx.progress.phase("masks", ctx.floatKeys.length, phaseBytes(ctx, ctx.floatKeys) + tau.size);
  await withWriteBehind(async (writes) => {
    for (const key of ctx.floatKeys) {
      throwIfAborted(ctx.signal);
      const tauDtype = tau.tensor(key)!.dtype as FloatDType;
      await forEachChunk(ctx, key, async (c) => {
        const masks = ctx.experts.map(() => chunkPool.acquire(maskBytes(c.n)));
        const tauBuf = chunkPool.acquire(c.n * DTYPE_SIZE[tauDtype]);
        await computeChunk(c, [tauBuf, ...masks], async () => {
          await tau.read(key, c.offset, c.n, tauBuf);
          await runOp("tall_mask", { ...chunkArgs(ctx, c), tau: tauBuf, tauDtype, lambdas, masks });
        });
        chunkPool.release(tauBuf);
        await writes.push(() => masks.map((m, t) => w.write(maskKey(ctx.experts[t].name, key), c.offset / 8, m)), masks);
      });
      ctx.progress.tensorDone(key);
    }
  });
}

/**
 * Runs a chunk's op and recycles the chunk's input buffers; on failure the
 * output buffers go back to the pool too (nothing will write them).
 */
async function computeChunk(c: Chunk, outs: Buffer[], op: () => Promise<unknown>): Promise<void> {
  try {
    await op();
  } catch (e) {
    chunkPool.release(...outs);
    throw e;
  } finally {
    releaseChunk(c);
  }
}
