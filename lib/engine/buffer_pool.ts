/**
 * Reusable chunk buffers. A streamed merge reads and writes the whole model
 * chunk by chunk; allocating fresh 8 MB buffers for every chunk costs a page
 * fault per 4 KB and kernel zeroing — more system time than the reads
 * themselves. Buffers are recycled only by callers that know they are done
 * with them; one never released is simply garbage-collected.
 */
export class BufferPool {
  private free: Buffer[] = [];
  /** Allocations made here: release() ignores anything else. */
  private readonly owned = new WeakSet<ArrayBufferLike>();

  constructor(private readonly maxFree = 32) {}

  /** A buffer of exactly `bytes` bytes (contents undefined). */
  acquire(bytes: number): Buffer {
    // Smallest free buffer that fits, wasting at most half of it.
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const cap = this.free[i].length;
      if (cap >= bytes && cap <= 2 * bytes + 4096 && (best < 0 || cap < this.free[best].length)) best = i;
    }
    if (best < 0) {
      const b = Buffer.allocUnsafeSlow(bytes);
      this.owned.add(b.buffer);
      return b;
    }
    const b = this.free[best];
    this.free.splice(best, 1);
    return b.subarray(0, bytes);
  }

  /** Returns buffers from acquire() for reuse; the caller must not touch them afterwards. */
  release(...bufs: Buffer[]): void {
    for (const b of bufs) {
      if (b.length === 0 || !this.owned.has(b.buffer)) continue;
      // Recover the whole allocation, not just the view handed out.
      const whole = Buffer.from(b.buffer, 0, b.buffer.byteLength);
      if (this.free.some((f) => f.buffer === b.buffer)) continue; // released twice
      if (this.free.length >= this.maxFree) this.free.shift();
      this.free.push(whole);
    }
  }
}

/** The pool shared by the streaming engine. */
export const chunkPool = new BufferPool();
