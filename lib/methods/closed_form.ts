/**
 * The closed-form linear-layer merge shared by LOT and RegMean: for weight
 * W [out,in], A = Σt G̃t and Bᵀ = Σt Tt G̃tᵀ (float64, in native code), then
 * T* = Bᵀ A⁺ and the result θ0 + λ T*.
 *
 * Solves are batched: the layer being merged and the next layers of the same
 * shape and solve settings (within SOLVE_BATCH.lookahead keys, in output
 * order) are accumulated and solved in one gram_solve call, so that a device
 * backend uploads one layer's A and Bᵀ while it factors the previous one
 * (backend.h solve_psd_rows_batched). The other layers' results wait in
 * memory for their turn. Memory: a batch holds at most SOLVE_BATCH.layers
 * layers and SOLVE_BATCH.bytes of A, Bᵀ, base and result together (the first
 * layer always, however large), plus one expert's weight and Gram at a time.
 * The bytes written are those of solving each layer on its own.
 */
import { constants as bufferConstants } from "buffer";
import { runOp, SolvePrecision } from "../native";
import { TaskmergeError, throwIfAborted, UsageError } from "../errors";
import type { MergeContext, ParamSpec, TensorSink } from "../engine/context";
import { DTYPE_SIZE } from "../safetensors/dtypes";
import type { StatTensor } from "../stats/keys";
import { readGram } from "../stats/read";
import { attribute, baseRef, expertRef } from "../engine/provenance";
import { dtypeEps } from "../stats/keys";
import { readAhead } from "../engine/read_ahead";

/** The bound on one batch of solves (see the top of this file). */
export const SOLVE_BATCH = { layers: 4, bytes: 2 ** 30, lookahead: 64 };

/** The closed-form methods' solve precision (docs/methods.md gives the error bounds). */
export const SOLVE_PRECISION_PARAM = {
  name: "solve_precision", type: "string", default: "float64", choices: ["float64", "float32", "tf32"], omitAtDefault: true,
  description: "precision of the linear solves: float64, or float32 / tf32 (TF32 tensor-core GEMMs) on the CUDA backend",
} as const satisfies ParamSpec;

/** Refuses a solve precision the job's backend cannot do, before any weight is read. */
export function checkSolvePrecision(method: string, ctx: MergeContext): void {
  const p = ctx.params.solve_precision;
  if (p !== "float64" && (ctx.device ?? "cpu") !== "cuda")
    throw new UsageError(`${method}: solve_precision ${String(p)} needs the CUDA backend (device cuda); the CPU backend solves in float64 only`);
}

export interface LinearSolveOptions {
  out: number;
  in: number;
  grams: StatTensor[];
  /** Per-expert transform G̃ = scale·(α G + (1−α) diag G), read when the layer is accumulated. */
  transforms: () => Promise<{ scale: number; alpha: number }[]>;
  solver: string;
  ridge: number;
  /** Eigen pseudo-inverse cut-off relative to the largest eigenvalue; 0: in·ε of the least precise Gram dtype. */
  rcond: number;
  lambda: number;
  precision: SolvePrecision;
}

export interface LinearSolveResult {
  eigh: boolean;
  rank: number;
}

/** A layer of the model as the method sees it: its solve, or undefined when it is not solved in closed form. */
export type LayerOf = (key: string) => LinearSolveOptions | undefined;

interface Solved extends LinearSolveResult {
  result: Buffer;
}

/** Results solved ahead of their turn, per merge context (a progressive group has its own). */
const solvedAhead = new WeakMap<MergeContext, Map<string, Solved>>();

/** One layer accumulated for the solve. */
interface Layer {
  key: string;
  o: LinearSolveOptions;
  A: Buffer;
  BT: Buffer;
  base: Buffer;
  result: Buffer;
}

/** Writes layer `key`'s merged weight to `sink`, solving it together with the next layers of its shape. */
export async function solveLinear(ctx: MergeContext, key: string, sink: TensorSink, layerOf: LayerOf): Promise<LinearSolveResult> {
  let ahead = solvedAhead.get(ctx);
  if (!ahead) solvedAhead.set(ctx, (ahead = new Map()));
  const done = ahead.get(key);
  if (done) {
    ahead.delete(key);
    await sink(done.result);
    return { eigh: done.eigh, rank: done.rank };
  }
  const o = layerOf(key)!;
  const first = await accumulate(ctx, key, o);
  const batch = [first];
  let bytes = layerBytes(ctx, key, o);
  for (const next of batchCandidates(ctx, key, o, layerOf, ahead)) {
    if (batch.length >= SOLVE_BATCH.layers) break;
    const size = layerBytes(ctx, next.key, next.o);
    if (bytes + size > SOLVE_BATCH.bytes) break;
    // A layer ahead that fails to accumulate is left to its own turn, where it fails as it would unbatched.
    const layer = await accumulate(ctx, next.key, next.o).catch(() => undefined);
    if (!layer) break;
    batch.push(layer);
    bytes += size;
  }
  throwIfAborted(ctx.signal);
  const r = await runOp("gram_solve", {
    linalg: process.env.TASKMERGE_LINALG, device: ctx.device,
    out: o.out, in: o.in, A: batch.map((l) => l.A), BT: batch.map((l) => l.BT), solver: o.solver, ridge: o.ridge, rcond: first.o.rcond,
    precision: o.precision, base: batch.map((l) => l.base), baseDtypes: batch.map((l) => ctx.base.get(l.key).dtype), lambda: o.lambda,
    result: batch.map((l) => l.result), resultDtypes: batch.map((l) => ctx.outDtype(l.key)),
  }).catch((err) => {
    // The solve concerns every expert's statistics of this layer: name them all.
    const from = o.grams.map((g) => `${g.file.path} '${g.info.key}'`).join(", ");
    throw new TaskmergeError(`solving from the statistics ${from} failed: ${String((err as { message?: unknown })?.message ?? err)}`, undefined, key);
  });
  // Layers after the first that the batch did not solve are solved again on their turn.
  for (let i = 1; i < r.solved; i++) ahead.set(batch[i].key, { result: batch[i].result, eigh: r.eigh[i] === 1, rank: r.rank[i] });
  await sink(first.result);
  return { eigh: r.eigh[0] === 1, rank: r.rank[0] };
}

/** Bytes a layer holds while it waits in a batch: A, Bᵀ, its base weight and its result. */
function layerBytes(ctx: MergeContext, key: string, o: LinearSolveOptions): number {
  return (o.in * o.in + o.out * o.in) * 8 + o.out * o.in * (DTYPE_SIZE[ctx.base.get(key).dtype] + DTYPE_SIZE[ctx.outDtype(key)]);
}

/** The keys after `key` (within the lookahead) whose solve can share its batch, in output order. */
function* batchCandidates(ctx: MergeContext, key: string, o: LinearSolveOptions, layerOf: LayerOf, ahead: Map<string, Solved>) {
  const at = ctx.floatKeys.indexOf(key);
  for (const k of ctx.floatKeys.slice(at + 1, at + 1 + SOLVE_BATCH.lookahead)) {
    if (ahead.has(k)) continue;
    let next: LinearSolveOptions | undefined;
    try {
      next = layerOf(k);
    } catch {
      continue; // its error is reported on its own turn
    }
    if (next && next.out === o.out && next.in === o.in && next.solver === o.solver && next.ridge === o.ridge &&
      next.lambda === o.lambda && next.precision === o.precision && effectiveRcond(next) === effectiveRcond(o))
      yield { key: k, o: next };
  }
}

/** The pseudo-inverse cut-off: the given one, else in·ε of the least precise Gram. */
function effectiveRcond(o: LinearSolveOptions): number {
  return o.rcond > 0 ? o.rcond : o.in * Math.max(...o.grams.map((g) => dtypeEps(g.info.dtype)));
}

/** Reads layer `key`'s base and accumulates A and Bᵀ over the experts. */
async function accumulate(ctx: MergeContext, key: string, o: LinearSolveOptions): Promise<Layer> {
  const { out, in: n } = o;
  // A and Bᵀ are Node buffers (float64): each must fit one buffer.
  const biggest = Math.max(n * n, out * n) * 8;
  if (biggest > bufferConstants.MAX_LENGTH)
    throw new TaskmergeError(`layer [${out}, ${n}] needs a ${(biggest / 2 ** 30).toFixed(1)} GiB float64 buffer, above this Node's ${(bufferConstants.MAX_LENGTH / 2 ** 30).toFixed(0)} GiB limit`, undefined, key);
  const transforms = await o.transforms();
  const A = Buffer.alloc(n * n * 8);
  const BT = Buffer.alloc(out * n * 8);
  const baseInfo = ctx.base.get(key);
  const base = await ctx.base.read(key);
  ctx.progress.bytes(base.length, key);
  // Expert t+1's weight and Gram are read while expert t's products are computed.
  const load = (t: number) => Promise.all([ctx.experts[t].checkpoint.read(key), readGram(o.grams[t])]);
  await readAhead(ctx.experts.length, load, async ([w, gram], t) => {
    const e = ctx.experts[t];
    const g = o.grams[t];
    ctx.progress.bytes(w.length, key);
    await runOp("gram_products_accumulate", {
      linalg: process.env.TASKMERGE_LINALG, device: ctx.device,
      out, in: n, base, baseDtype: baseInfo.dtype, expert: w, expertDtype: e.checkpoint.get(key).dtype,
      gram, gramDtype: g.info.dtype, A, BT, scale: transforms[t].scale, alpha: transforms[t].alpha,
    }).catch((err) => {
      // The op sees one expert: its InputError names "the expert" or "the base".
      throw attribute(err, (role) => (role === "base" ? baseRef(ctx.base, key) : role === "expert" ? expertRef(ctx.experts, t, key) : undefined));
    });
  }, { signal: ctx.signal });
  throwIfAborted(ctx.signal);
  const result = Buffer.allocUnsafe(out * n * DTYPE_SIZE[ctx.outDtype(key)]);
  return { key, o: { ...o, rcond: effectiveRcond(o) }, A, BT, base, result };
}
