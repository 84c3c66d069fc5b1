/**
 * The closed-form linear-layer merge shared by LOT and RegMean: for weight
 * W [out,in], A = Σt G̃t and Bᵀ = Σt Tt G̃tᵀ (float64, in native code), then
 * T* = Bᵀ A⁺ and the result θ0 + λ T*. Memory: A (in²), Bᵀ (out·in) in
 * float64, plus one expert's weight and Gram at a time.
 */
import { constants as bufferConstants } from "buffer";
import { runOp } from "../native";
import { TaskmergeError, throwIfAborted } from "../errors";
import type { MergeContext, TensorSink } from "../engine/context";
import { DTYPE_SIZE } from "../safetensors/dtypes";
import type { StatTensor } from "../stats/keys";
import { readGram } from "../stats/read";
import { attribute, baseRef, expertRef } from "../engine/provenance";
import { dtypeEps } from "../stats/keys";
import { readAhead } from "../engine/read_ahead";

export interface LinearSolveOptions {
  out: number;
  in: number;
  grams: StatTensor[];
  /** Per-expert transform G̃ = scale·(α G + (1−α) diag G). */
  transforms: { scale: number; alpha: number }[];
  solver: string;
  ridge: number;
  /** Eigen pseudo-inverse cut-off relative to the largest eigenvalue; 0: in·ε of the least precise Gram dtype. */
  rcond: number;
  lambda: number;
}

export interface LinearSolveResult {
  eigh: boolean;
  rank: number;
}

export async function solveLinear(ctx: MergeContext, key: string, sink: TensorSink, o: LinearSolveOptions): Promise<LinearSolveResult> {
  const { out, in: n } = o;
  // A and Bᵀ are Node buffers (float64): each must fit one buffer.
  const biggest = Math.max(n * n, out * n) * 8;
  if (biggest > bufferConstants.MAX_LENGTH)
    throw new TaskmergeError(`layer [${out}, ${n}] needs a ${(biggest / 2 ** 30).toFixed(1)} GiB float64 buffer, above this Node's ${(bufferConstants.MAX_LENGTH / 2 ** 30).toFixed(0)} GiB limit`, undefined, key);
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
      linalg: process.env.TASKMERGE_LINALG,
      out, in: n, base, baseDtype: baseInfo.dtype, expert: w, expertDtype: e.checkpoint.get(key).dtype,
      gram, gramDtype: g.info.dtype, A, BT, scale: o.transforms[t].scale, alpha: o.transforms[t].alpha,
    }).catch((err) => {
      // The op sees one expert: its InputError names "the expert" or "the base".
      throw attribute(err, (role) => (role === "base" ? baseRef(ctx.base, key) : role === "expert" ? expertRef(ctx.experts, t, key) : undefined));
    });
  }, { signal: ctx.signal });
  throwIfAborted(ctx.signal);
  const outDtype = ctx.outDtype(key);
  const result = Buffer.allocUnsafe(out * n * DTYPE_SIZE[outDtype]);
  // Default pseudo-inverse cut-off from the least precise Gram: n·ε of its dtype.
  const rcond = o.rcond > 0 ? o.rcond : n * Math.max(...o.grams.map((g) => dtypeEps(g.info.dtype)));
  const r = await runOp("gram_solve", {
    linalg: process.env.TASKMERGE_LINALG,
    out, in: n, A, BT, solver: o.solver, ridge: o.ridge, rcond, base, baseDtype: baseInfo.dtype, lambda: o.lambda,
    result, resultDtype: outDtype,
  }).catch((err) => {
    // The solve concerns every expert's statistics of this layer: name them all.
    const from = o.grams.map((g) => `${g.file.path} '${g.info.key}'`).join(", ");
    throw new TaskmergeError(`solving from the statistics ${from} failed: ${String((err as { message?: unknown })?.message ?? err)}`, undefined, key);
  });
  await sink(result);
  return { eigh: r.eigh === 1, rank: r.rank };
}
