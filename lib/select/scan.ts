/**
 * Scopes the selection passes read: one key (scanned several times, a small
 * key read once and replayed) or all float keys in order. Pre-passes count
 * their bytes as read but report no progress of their own.
 */
import { forEachChunk, Chunk, releaseChunk } from "../engine/stream";
import { ProgressTracker } from "../engine/progress";
import { throwIfAborted } from "../errors";
import type { StreamContext } from "../engine/context";
import { blaming, chunkInputs } from "../engine/provenance";

export type ChunkFn = (c: Chunk) => Promise<void>;
/** Runs fn over every chunk of a scope (one key, or all float keys). */
export type Scan = (fn: ChunkFn) => Promise<void>;

/** Progress of a pre-pass: counts the bytes read towards the run's total, not towards the phase. */
class ReadCounter extends ProgressTracker {
  constructor(private readonly parent: ProgressTracker) {
    super();
  }
  override bytes(n: number): void {
    this.parent.bytesRead += n;
  }
}

function silent(ctx: StreamContext): StreamContext {
  return { ...ctx, progress: new ReadCounter(ctx.progress) };
}

/**
 * One key scanned several times: a key that fits in one chunk is read once and
 * its buffers replayed by later passes; a larger one is streamed again each pass.
 * Only the final pass reports progress.
 */
export class KeyScan {
  private cached?: Chunk;
  constructor(private readonly ctx: StreamContext, readonly key: string) {}

  get numel(): number {
    return this.ctx.base.get(this.key).numel;
  }

  private get single(): boolean {
    return this.numel <= Math.max(1, this.ctx.chunkElems);
  }

  private async readSingle(ctx: StreamContext): Promise<Chunk | undefined> {
    if (!this.cached) await forEachChunk(ctx, this.key, async (c) => void (this.cached = c));
    return this.cached;
  }

  /** A pre-pass (thresholds, signs): no progress. */
  readonly scan: Scan = async (fn) => {
    if (!this.single) return forEachChunk(silent(this.ctx), this.key, fn);
    const c = await this.readSingle(silent(this.ctx));
    if (c) await blaming(chunkInputs(this.ctx, this.key), () => fn(c));
  };

  /** The final pass: reports progress and releases the cached chunk. */
  async final(fn: ChunkFn): Promise<void> {
    if (!this.single) return forEachChunk(this.ctx, this.key, fn);
    const fresh = !this.cached;
    const c = await this.readSingle(fresh ? this.ctx : silent(this.ctx));
    this.cached = undefined;
    if (!c) return;
    if (!fresh) {
      // Progress of this pass; the bytes were counted as read by the pre-pass that read them.
      const n = c.base.length + c.experts.reduce((s, b) => s + b.length, 0);
      this.ctx.progress.bytes(n, this.key);
      this.ctx.progress.bytesRead -= n;
    }
    await blaming(chunkInputs(this.ctx, this.key), () => fn(c));
  }
}

/** All float keys in order, as one scope; progress under `phase`. */
export function globalScan(ctx: StreamContext, phase: string): Scan {
  return async (fn) => {
    const keys = ctx.floatKeys;
    const bytes = keys.reduce((s, k) => s + ctx.base.get(k).nbytes + ctx.experts.reduce((a, e) => a + e.checkpoint.get(k).nbytes, 0), 0);
    ctx.progress.phase(phase, keys.length, bytes);
    for (const key of keys) {
      throwIfAborted(ctx.signal);
      // Pre-pass callbacks keep no reference to a chunk: its buffers are recycled.
      await forEachChunk(ctx, key, async (c) => {
        await fn(c);
        releaseChunk(c);
      });
      ctx.progress.tensorDone(key);
    }
  };
}
