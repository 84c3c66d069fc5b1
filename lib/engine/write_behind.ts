/**
 * Write-behind for streamed passes (merges and compression): a chunk's writes
 * run while the next chunk is computed, with at most one chunk's writes in
 * flight, so writes keep their order per file and buffers return to the pool
 * one chunk later.
 */
import { chunkPool } from "./buffer_pool";

export class WriteBehind {
  private pending: Promise<void> = Promise.resolve();

  /**
   * Waits for the previous chunk's writes (rethrowing their error), then starts
   * `writes` without waiting for them; `bufs` (pooled) are released once every
   * write has settled, never while one may still read them.
   */
  async push(writes: () => Promise<void>[], bufs: Buffer[]): Promise<void> {
    await this.pending;
    this.pending = settleAll(writes).finally(() => chunkPool.release(...bufs));
    this.pending.catch(() => undefined); // surfaced by the next push or drain
  }

  /** Waits for the last writes and rethrows their error. */
  drain(): Promise<void> {
    return this.pending;
  }
}

/** Like Promise.all, but rejects only after every write has settled. */
async function settleAll(start: () => Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(start());
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/**
 * Runs a streamed pass whose chunk writes trail its compute by one chunk;
 * every write has settled when it returns or throws. An error of the pass
 * itself (an abort, a bad input) wins over a write error it caused.
 */
export async function withWriteBehind(pass: (writes: WriteBehind) => Promise<void>): Promise<void> {
  const writes = new WriteBehind();
  try {
    await pass(writes);
  } catch (e) {
    await writes.drain().catch(() => undefined);
    throw e;
  }
  await writes.drain();
}
