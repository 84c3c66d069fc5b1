/**
 * Streams one tensor of the base and every expert in aligned chunks, reading
 * the next chunk while the current one is processed and writing the previous
 * result while the next is computed.
 */
import { runOp, OpArg } from "../native";
import { throwIfAborted } from "../errors";
import type { MergeContext, TensorSink } from "../methods/types";

export interface Chunk {
  key: string;
  /** Index of the chunk's first element in the tensor. */
  offset: number;
  n: number;
  base: Buffer;
  experts: Buffer[];
}

async function readChunk(ctx: MergeContext, key: string, offset: number, n: number): Promise<Chunk> {
  const [base, ...experts] = await Promise.all([
    ctx.base.read(key, offset, n),
    ...ctx.experts.map((e) => e.checkpoint.read(key, offset, n)),
  ]);
  return { key, offset, n, base, experts };
}

/** Calls fn on each chunk of `key` in order, with one chunk of read-ahead. */
export async function forEachChunk(ctx: MergeContext, key: string, fn: (c: Chunk) => Promise<void>): Promise<void> {
  const numel = ctx.base.get(key).numel;
  const step = Math.max(1, ctx.chunkElems);
  let next: Promise<Chunk> | undefined = numel > 0 ? readChunk(ctx, key, 0, Math.min(step, numel)) : undefined;
  for (let offset = 0; next; offset += step) {
    const chunk: Chunk = await next;
    const following = offset + step;
    next = following < numel ? readChunk(ctx, key, following, Math.min(step, numel - following)) : undefined;
    // Keep the read-ahead's rejection from going unhandled if fn throws first.
    next?.catch(() => undefined);
    throwIfAborted(ctx.signal);
    await fn(chunk);
    ctx.progress.bytes(chunk.base.length + chunk.experts.reduce((s, b) => s + b.length, 0), key);
  }
}

/** The elementwise op arguments every chunk carries: inputs, dtypes, output buffer. */
export function chunkArgs(ctx: MergeContext, c: Chunk, out?: Buffer): Record<string, OpArg | undefined> {
  return {
    n: c.n,
    offset: c.offset,
    base: c.base,
    baseDtype: ctx.base.get(c.key).dtype,
    experts: c.experts,
    expertDtypes: ctx.experts.map((e) => e.checkpoint.get(c.key).dtype),
    out,
    outDtype: out ? ctx.outDtype(c.key) : undefined,
  };
}

export function outBytes(ctx: MergeContext, key: string, n: number): number {
  const size = { F64: 8, F32: 4, F16: 2, BF16: 2 }[ctx.outDtype(key)];
  return n * size;
}

/**
 * Runs a native elementwise op over every chunk of `key` and streams its
 * output to `sink`; `args` are the method's own op arguments.
 */
export async function mergeElementwise(
  ctx: MergeContext,
  key: string,
  sink: TensorSink,
  op: string,
  args: Record<string, OpArg | undefined>,
): Promise<void> {
  let pendingWrite: Promise<void> = Promise.resolve();
  try {
    await forEachChunk(ctx, key, async (c) => {
      const out = Buffer.allocUnsafe(outBytes(ctx, key, c.n));
      await runOp(op, { ...args, ...chunkArgs(ctx, c, out) });
      await pendingWrite;
      pendingWrite = sink(out);
      pendingWrite.catch(() => undefined); // surfaced by the next await
    });
  } finally {
    await pendingWrite;
  }
}
