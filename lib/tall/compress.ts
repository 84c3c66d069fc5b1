/**
 * Compression into a TALL bundle: τMTL (Σt τt or the TIES disjoint sum) and
 * one mask per task, mt = 1{|τt| > λt·|τMTL − τt|}. With fixed λt it is one
 * streamed pass (after the TIES threshold passes for a TIES τMTL); with a λ
 * grid, τMTL is written first, each candidate θ̂t is extracted to a temporary
 * file and scored by the caller, then the masks are written with the winners.
 * Everything is written in a temporary directory renamed into place at the end.
 */
import { promises as fsp } from "fs";
import * as path from "path";
import { runOp } from "../native";
import { SafetensorsFile } from "../safetensors/file";
import { SafetensorsWriter, OutTensor } from "../safetensors/writer";
import { DTYPE_SIZE, FloatDType, isFloatDType } from "../safetensors/dtypes";
import { Chunk, chunkArgs, forEachChunk, releaseChunk } from "../engine/stream";
import { chunkPool } from "../engine/buffer_pool";
import { namedPaths, openInputs } from "../engine/inputs";
import { defaultChunkElems } from "../engine/stream";
import type { ResolvedExpert } from "../engine/inputs";
import { Progress, ProgressTracker } from "../engine/progress";
import { TaskmergeError, throwIfAborted } from "../errors";
import { VERSION } from "../version";
import type { Expert, StreamContext } from "../engine/context";
import { KeyScan } from "../select/scan";
import { magnitudeArgs, OpArgs } from "../select/sign";
import { describeTrim, globalTiesTrim, tensorTiesTrim, TiesTrim } from "../select/trim";
import { PositionalWriter } from "../safetensors/positional_writer";
import { withWriteBehind } from "../engine/write_behind";
import { reconstruct, roundUp8 } from "./reconstruct";
import { OutputSlot } from "../out_path/slot";
import { checkInputClash } from "../out_path/clash";
import type { OutputKind } from "../out_path/owned";
import { BUNDLE_FORMAT, BUNDLE_JSON, BUNDLE_VERSION, BundleManifest, MASKS_FILE, maskBytes, maskKey, TAU_FILE } from "./bundle";
import { fingerprint } from "../fingerprint";

export const DEFAULT_GRID = [0.2, 0.3, 0.4, 0.5, 0.6];
export const DEFAULT_TALL_LAMBDA = 0.4;

export interface LambdaSearch {
  grid?: number[];
  /** Scores a candidate checkpoint of `task` (a temporary .safetensors file); the highest score wins. */
  score: (task: string, candidatePath: string) => Promise<number> | number;
}

export interface CompressEngineOptions {
  base: string;
  experts: ResolvedExpert[];
  out: string;
  /** One λ for all tasks, one per task, or a search. */
  tallLambda: number[] | LambdaSearch;
  tau: "sum" | "ties";
  density: number;
  scope: "global" | "tensor";
  dtype?: FloatDType;
  chunkElems?: number;
  onProgress?: (p: Progress) => void;
  signal?: AbortSignal;
}

export interface CompressReport {
  out: string;
  tasks: { name: string; lambda: number; scores?: { lambda: number; score: number }[] }[];
  tau: BundleManifest["tau"];
  tensors: number;
  /** Bytes of the expert checkpoints, of the bundle, and their ratio. */
  bytesExperts: number;
  bytesBundle: number;
  ratio: number;
  bytesRead: number;
  seconds: number;
  details: Record<string, unknown>;
  /** Leftovers of killed runs on the same output that were removed or restored, one line each. */
  reclaimed: string[];
}

/** A bundle directory: bundle.json marks it, and it holds nothing else than its three files. */
const BUNDLE_DIR: OutputKind = { kind: "dir", what: "bundle", marker: BUNDLE_JSON, files: [BUNDLE_JSON, TAU_FILE, MASKS_FILE] };

export async function runCompress(o: CompressEngineOptions): Promise<CompressReport> {
  const t0 = Date.now();
  throwIfAborted(o.signal);
  // Before reading anything: no input at the output path, and the path ours to write.
  const named = namedPaths(o.base, o.experts);
  await checkInputClash(o.out, named);
  const slot = await OutputSlot.claim(o.out, BUNDLE_DIR, o.signal);
  const outAbs = slot.out;
  const opened: { close(): Promise<void> }[] = [];
  const track = <T extends { close(): Promise<void> }>(x: T): T => (opened.push(x), x);
  let tmp: string | undefined;
  try {
    // Per-expert weights do not apply to TALL masks.
    const inputs = track(await openInputs(o.base, o.experts.map((e) => ({ ...e, weight: 1, stats: undefined })), false));
    const { base, experts } = inputs;
    await checkInputClash(o.out, [...named, ...inputs.files]);
    const floatKeys = base.keys().filter((k) => isFloatDType(base.get(k).dtype));
    const tauDtype = (k: string): FloatDType => o.dtype ?? (base.get(k).dtype as FloatDType);
    const progress = new ProgressTracker(o.onProgress);
    const ctx: StreamContext = { base, experts, floatKeys, signal: o.signal, progress, chunkElems: roundUp8(o.chunkElems ?? defaultChunkElems()) };
    const details: Record<string, unknown> = {};

    tmp = slot.tempPath();
    await fsp.mkdir(tmp);
    const tmpDir = tmp;
    const maskPlan: OutTensor[] = experts.flatMap((e) => floatKeys.map((k) => ({ key: maskKey(e.name, k), dtype: "U8" as const, shape: [maskBytes(base.get(k).numel)] })));
    const fixed = Array.isArray(o.tallLambda) ? o.tallLambda : undefined;

    // Pass(es) 1: τMTL (and the masks when λ is fixed).
    const global = o.tau === "ties" && o.scope === "global" ? await globalTiesTrim(ctx, o.density) : undefined;
    if (global) details.global = describeTrim(ctx, global);
    const tauPath = path.join(tmpDir, TAU_FILE);
    const tauW = await SafetensorsWriter.create(tauPath, `${tauPath}.part`, floatKeys.map((k) => ({ key: k, dtype: tauDtype(k), shape: base.get(k).shape })), { format: "pt" });
    track({ close: () => tauW.close() });
    let maskW = fixed ? await createMaskWriter(tmpDir, maskPlan) : undefined;
    if (maskW) track(maskW);
    progress.phase(fixed ? "compress" : "tau", floatKeys.length, phaseBytes(ctx, floatKeys));
    const masksNow = maskW; // the fixed-λ mask writer, as a const for the chunk callbacks
    await withWriteBehind(async (writes) => {
      for (const key of floatKeys) {
        throwIfAborted(o.signal);
        const scan = new KeyScan(ctx, key);
        const trim: OpArgs = o.tau === "sum" ? { trim: "none" } : trimArgs(global ?? (await tensorTrim(ctx, details, scan, o.density)));
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
        progress.tensorDone(key);
      }
    });
    await tauW.finish();

    // λ search: score candidates, then write the masks with the winners.
    let lambdas = fixed;
    const scores: { lambda: number; score: number }[][] = [];
    if (!lambdas) {
      const search = o.tallLambda as LambdaSearch;
      const tauFile = track(await SafetensorsFile.open(tauPath));
      lambdas = [];
      for (const e of experts) {
        const s = await scoreGrid(ctx, tauFile, e, search, tmpDir);
        scores.push(s);
        lambdas.push(s.reduce((best, x) => (x.score > best.score ? x : best)).lambda);
      }
      maskW = track(await createMaskWriter(tmpDir, maskPlan));
      await masksFromTau(ctx, tauFile, lambdas, maskW);
    }
    await maskW!.finish();

    const manifest: BundleManifest = {
      format: BUNDLE_FORMAT, version: BUNDLE_VERSION, taskmerge: VERSION,
      tau: { kind: o.tau, file: TAU_FILE, dtype: o.dtype ?? (floatKeys.length ? tauDtype(floatKeys[0]) : "F32"), ...(o.tau === "ties" ? { density: o.density, scope: o.scope } : {}) },
      masks: { file: MASKS_FILE, bitorder: "big", name: "<task>::<key>" },
      tasks: experts.map((e, t) => ({ name: e.name, lambda: lambdas![t], expert: e.checkpoint.path, bytes: e.checkpoint.fileBytes })),
      base: { path: base.path, ...(await fingerprint(base)) },
      keys: floatKeys.map((k) => ({ key: k, shape: base.get(k).shape, dtype: base.get(k).dtype })),
    };
    await fsp.writeFile(path.join(tmpDir, BUNDLE_JSON), JSON.stringify(manifest, null, 2) + "\n");
    let bytesBundle = 0;
    for (const f of [TAU_FILE, MASKS_FILE, BUNDLE_JSON]) bytesBundle += (await fsp.stat(path.join(tmpDir, f))).size;
    const bytesExperts = experts.reduce((s, e) => s + e.checkpoint.fileBytes, 0);
    await slot.place(tmpDir);
    tmp = undefined;
    return {
      out: outAbs,
      tasks: experts.map((e, t) => ({ name: e.name, lambda: lambdas![t], ...(scores[t] ? { scores: scores[t] } : {}) })),
      tau: manifest.tau, tensors: floatKeys.length, bytesExperts, bytesBundle, ratio: bytesExperts / bytesBundle,
      bytesRead: progress.bytesRead, seconds: (Date.now() - t0) / 1000, details, reclaimed: slot.reclaimed,
    };
  } finally {
    // Writers and files first, then whatever is left of the temporary bundle.
    for (const x of opened.reverse()) await x.close().catch(() => undefined);
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
    await slot.release();
  }
}

function trimArgs(t: TiesTrim): OpArgs {
  return { ...magnitudeArgs(t.thresholdBits), majority: t.majority };
}

async function tensorTrim(ctx: StreamContext, details: Record<string, unknown>, scan: KeyScan, density: number): Promise<TiesTrim> {
  const t = await tensorTiesTrim(ctx, scan, density);
  ((details.tensors ??= Object.create(null)) as Record<string, unknown>)[scan.key] = describeTrim(ctx, t); // keyed by tensor keys
  return t;
}

function phaseBytes(ctx: StreamContext, keys: string[]): number {
  return keys.reduce((s, k) => s + ctx.base.get(k).nbytes + ctx.experts.reduce((a, e) => a + e.checkpoint.get(k).nbytes, 0), 0);
}

function createMaskWriter(dir: string, plan: OutTensor[]): Promise<PositionalWriter> {
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
        chunkElems: ctx.chunkElems, write: (k, d) => w.write(k, d), progress: ctx.progress, signal: ctx.signal,
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
async function masksFromTau(ctx: StreamContext, tau: SafetensorsFile, lambdas: number[], w: PositionalWriter): Promise<void> {
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
