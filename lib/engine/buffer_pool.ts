/**
 * Reusable chunk buffers. A streamed merge reads and writes the whole model
 * chunk by chunk; allocating fresh 8 MB buffers for every chunk costs a page
 * fault per 4 KB and kernel zeroing — more system time than the reads
 * themselves. Buffers are recycled only by callers that know they are done
 * with them; one never released is simply garbage-collected.
 *
 * For a device other than the CPU the buffers are pinned (page-locked for its
 * copies, so that they are DMA and overlap its kernels): the addon allocates
 * them (native/napi/pinned.cpp) and unregisters and frees them only when they
 * are garbage-collected, so a registered range never moves or goes away while
 * the device may copy it. CPU buffers are Buffer.allocUnsafeSlow's (their own
 * backing store, which V8 does not move either).
 */
import { pinnedBuffer } from "../native";

export class BufferPool {
  private free: Buffer[] = [];
  /** Allocations made here: release() ignores anything else. */
  private readonly owned = new WeakSet<ArrayBufferLike>();
  /** Pinned allocations: the device they are registered with. */
  private readonly pinned = new WeakMap<ArrayBufferLike, string>();
  /** Devices whose backend could not pin a buffer: their requests take ordinary ones from then on. */
  private readonly unpinnable = new Set<string>();

  constructor(private readonly maxFree = 32) {}

  /** A buffer of exactly `bytes` bytes (contents undefined), pinned for `device` when that is not the CPU and its backend can. */
  acquire(bytes: number, device?: string): Buffer {
    const pin = device !== undefined && device !== "cpu" && !this.unpinnable.has(device) ? device : undefined;
    // Smallest free buffer that fits, wasting at most half of it (pinned for the device when asked).
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const cap = this.free[i].length;
      if (pin !== undefined && this.pinned.get(this.free[i].buffer) !== pin) continue;
      if (cap >= bytes && cap <= 2 * bytes + 4096 && (best < 0 || cap < this.free[best].length)) best = i;
    }
    if (best < 0) {
      const p = pin !== undefined && bytes > 0 ? pinnedBuffer(bytes, pin) : undefined;
      if (pin !== undefined && bytes > 0 && !p) this.unpinnable.add(pin);
      const b = p ?? Buffer.allocUnsafeSlow(bytes);
      this.owned.add(b.buffer);
      if (p) this.pinned.set(b.buffer, pin!);
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
