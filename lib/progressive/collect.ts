/**
 * The statistics collector of a progressive merge: a user callback (library)
 * that writes statistics of one group's weights, computed on the partially
 * merged checkpoint, and returns the file's path. Awaited against the run's
 * AbortSignal, so an abort never waits on it.
 */
import { AbortError, TaskmergeError } from "../errors";

export interface CollectStatsRequest {
  /**
   * The partially merged checkpoint, a .safetensors file holding every key of
   * the base: the groups before this one merged, this group's float weights
   * from `expert`, later groups the base's. It changes between calls: read it
   * during the call only.
   */
  model: string;
  /** The expert's name. */
  expert: string;
  /** The group's floating-point keys (weights, biases, ...); statistics are read for its linear and norm weights. */
  keys: string[];
  /** The group's name ("blocks.3", "first", "last", or a module name) and position. */
  group: string;
  groupIndex: number;
  groups: number;
  /** A path beside the output, in taskmerge's temporary folder, where the statistics may be written (taskmerge removes it). */
  out: string;
  /** Aborted when the merge is: stop work and reject. */
  signal: AbortSignal;
}

/** Writes the statistics file for a request and returns its path (usually `req.out`). */
export type CollectStats = (req: CollectStatsRequest) => Promise<string> | string;

/** Runs the callback; rejects with an AbortError as soon as `signal` aborts. */
export async function callCollector(collect: CollectStats, req: CollectStatsRequest): Promise<string> {
  const { signal } = req;
  if (signal.aborted) throw new AbortError();
  let onAbort!: () => void;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new AbortError());
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    const result = await Promise.race([Promise.resolve().then(() => collect(req)), aborted]);
    if (typeof result !== "string" || !result)
      throw new TaskmergeError(`the statistics collector returned ${JSON.stringify(result)} for expert '${req.expert}', group '${req.group}'; it must return the statistics file's path`);
    return result;
  } finally {
    signal.removeEventListener("abort", onAbort);
    aborted.catch(() => undefined);
  }
}
