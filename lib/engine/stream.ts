/**
 * Streams one tensor of the base and every expert in aligned chunks, reading
 * the next chunk while the current one is processed and writing the previous
 * result while the next is computed.
 */
import { runOp, ChunkArgs, MergeOpArgs, MergeOpName, OpArgsOf } from "../native";
import { throwIfAborted } from "../errors";
import { envNumber } from "../env";
import type { MergeContext, StreamContext, TensorSink } from "./context";
import type { FloatDType } from "../safetensors/dtypes";
import type { Checkpoint } from "../checkpoint";
import { chunkPool } from "./buffer_pool";
import { withWriteBehind } from "./write_behind";
import { blaming, chunkInputs } from "./provenance";
import { readChunks } from "./read_ahead";

export const DEFAULT_CHUNK_ELEMS = 4 << 20;

/** Elements per streamed chunk: TASKMERGE_CHUNK_ELEMS when set (validated), else DEFAULT_CHUNK_ELEMS. */
export function defaultChunkElems(): number {
  return envNumber("TASKMERGE_CHUNK_ELEMS") ?? DEFAULT_CHUNK_ELEMS;
}

export interface Chunk {
  key: string;
  /** Index of the chunk's first element in the tensor. */
  offset: number;
  n: number;
  base: Buffer;
  experts: Buffer[];
}

/** Reads n elements of key of one checkpoint. */
export type ReadFn = (ck: Checkpoint, key: string, offset: number, n: number) => Promise<Buffer>;

/** Reads n elements of key into a pooled buffer (pinned for `device`; returned to the pool if the read fails). */
async function readPooled(ck: Checkpoint, key: string, offset: number, n: number, device?: string): Promise<Buffer> {
  const t = ck.get(key);
  const into = chunkPool.acquire(t.numel ? (t.nbytes / t.numel) * n : 0, device);
  try {
    return await ck.read(key, offset, n, into);
  } catch (e) {
    chunkPool.release(into);
    throw e;
  }
}

/** The same n elements of key from the base and every expert; into pooled buffers unless `read` says otherwise. */
export async function readChunk(
  ctx: StreamContext, key: string, offset: number, n: number,
  read: ReadFn = (ck, k, o, count) => readPooled(ck, k, o, count, ctx.device),
): Promise<Chunk> {
  const reads = [ctx.base, ...ctx.experts.map((e) => e.checkpoint)].map((ck) => read(ck, key, offset, n));
  const [base, ...experts] = await Promise.all(reads);
  return { key, offset, n, base, experts };
}

/** Hands a chunk's input buffers back for reuse: only for callers that keep no reference to it. */
export function releaseChunk(c: Chunk): void {
  chunkPool.release(c.base, ...c.experts);
}

/**
 * The first chunk of the next float key, read while the current key's last
 * chunk is processed, so the disk never waits at a tensor boundary. Used only
 * when the next forEachChunk call asks for exactly that chunk.
 */
interface Prefetch {
  key: string;
  n: number;
  chunk: Promise<Chunk>;
}
const prefetched = new WeakMap<StreamContext, Prefetch>();
const keyIndex = new WeakMap<StreamContext, Map<string, number>>();

function firstChunk(ctx: StreamContext, key: string, n: number): Promise<Chunk> {
  const p = prefetched.get(ctx);
  prefetched.delete(ctx);
  if (p && p.key === key && p.n === n) return p.chunk;
  return readChunk(ctx, key, 0, n);
}

function prefetchAfter(ctx: StreamContext, key: string, step: number): void {
  let index = keyIndex.get(ctx);
  if (!index) keyIndex.set(ctx, (index = new Map(ctx.floatKeys.map((k, i) => [k, i]))));
  const i = index.get(key);
  const nextKey = i === undefined ? undefined : ctx.floatKeys[i + 1];
  const numel = nextKey === undefined ? 0 : ctx.base.get(nextKey).numel;
  if (!nextKey || !numel) return;
  const n = Math.min(step, numel);
  const chunk = readChunk(ctx, nextKey, 0, n);
  chunk.catch(() => undefined); // an unused or failed prefetch is re-read (and reported) when needed
  prefetched.set(ctx, { key: nextKey, n, chunk });
}

/** Calls fn on each chunk of `key` in order, with one chunk of read-ahead (across keys too). */
export async function forEachChunk(ctx: StreamContext, key: string, fn: (c: Chunk) => Promise<void>): Promise<void> {
  const step = Math.max(1, ctx.chunkElems);
  await readChunks(
    ctx.base.get(key).numel,
    step,
    (offset, n) => (offset === 0 ? firstChunk(ctx, key, n) : readChunk(ctx, key, offset, n)),
    async (chunk) => {
      await blaming(chunkInputs(ctx, key), () => fn(chunk));
      ctx.progress.bytes(chunk.base.length + chunk.experts.reduce((s, b) => s + b.length, 0), key);
    },
    { signal: ctx.signal, afterLastRead: () => prefetchAfter(ctx, key, step) },
  );
}

/** The elementwise op arguments every chunk carries: inputs, dtypes, output buffer. */
export function chunkArgs(ctx: StreamContext, c: Chunk, out?: Buffer, outDtype?: FloatDType): ChunkArgs {
  return {
    n: c.n,
    offset: c.offset,
    base: c.base,
    baseDtype: ctx.base.get(c.key).dtype,
    experts: c.experts,
    expertDtypes: ctx.experts.map((e) => e.checkpoint.get(c.key).dtype),
    out,
    outDtype: out ? outDtype : undefined,
    device: ctx.device,
  };
}

export function outBytes(ctx: MergeContext, key: string, n: number): number {
  const size = { F64: 8, F32: 4, F16: 2, BF16: 2 }[ctx.outDtype(key)];
  return n * size;
}

/**
 * Runs a native elementwise op over every chunk of `key` and streams its
 * output to `sink`; `args` are the method's own op arguments. `chunks` yields
 * the chunks (default: streamed from disk); they are recycled after the op.
 */
export async function mergeElementwise<K extends MergeOpName>(
  ctx: MergeContext,
  key: string,
  sink: TensorSink,
  op: K,
  args: MergeOpArgs<K>,
  chunks: (fn: (c: Chunk) => Promise<void>) => Promise<void> = (fn) => forEachChunk(ctx, key, fn),
): Promise<void> {
  await withWriteBehind((writes) =>
    chunks(async (c) => {
      const out = chunkPool.acquire(outBytes(ctx, key, c.n), ctx.device);
      try {
        await runOp(op, { ...args, ...chunkArgs(ctx, c, out, ctx.outDtype(c.key)) } as OpArgsOf<K>);
      } catch (e) {
        chunkPool.release(out);
        throw e;
      } finally {
        releaseChunk(c);
      }
      // The writer is done with `out` once the write settles.
      await writes.push(() => [sink(out)], [out]);
    }),
  );
}
