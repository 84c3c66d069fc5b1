/**
 * Opening a merge's inputs: the base, every expert and, when the method reads
 * them, the experts' statistics files; then the key/shape check. Shared by the
 * merge, the dry-run plan, compress and drift, so they accept and refuse the
 * same inputs.
 */
import { Checkpoint } from "../checkpoint";
import { SafetensorsFile } from "../safetensors/file";
import type { Expert, Setting } from "./context";
import { checkCompatible } from "./validate";
import { checkpointFiles } from "../out_path/clash";
import { checkStatsSources } from "../stats/source";
import { requireStatsFiles } from "../stats/keys";
import { UsageError } from "../errors";

export interface ResolvedExpert {
  path: string;
  name: string;
  weight: number;
  stats?: string;
  parameters?: Record<string, Setting>;
}

export interface OpenOptions {
  /** Further checkpoints checked against the base like the experts (drift's merged model), opened first. */
  also?: string[];
  /** The command that needs a statistics file per expert (drift): checked before the key/shape check. */
  requireStats?: string;
  /** The job's signal: an abort stops the reading of the headers (a large one's worker is terminated at once). */
  signal?: AbortSignal;
}

export interface Inputs {
  base: Checkpoint;
  experts: Expert[];
  /** The checkpoints of OpenOptions.also, in order. */
  also: Checkpoint[];
  /** Every file the checkpoints read from (safetensors files, shard indexes), for the output clash check. */
  files: string[];
  /** Warnings about the inputs (statistics that record no source checkpoint). */
  warnings: string[];
  /** Closes every file opened here; safe to call more than once. */
  close(): Promise<void>;
}

export async function openInputs(base: string, experts: ResolvedExpert[], withStats: boolean, o: OpenOptions = {}): Promise<Inputs> {
  const given = experts.find((e) => e.stats);
  if (!withStats && given)
    throw new UsageError(`statistics given (${given.stats}) but the method uses none; drop --stats (or stats:) or use lot or regmean`);
  const opened: { close(): Promise<void> }[] = [];
  const track = <T extends { close(): Promise<void> }>(x: T): T => (opened.push(x), x);
  const close = async () => {
    await Promise.all(opened.splice(0).map((x) => x.close().catch(() => undefined)));
  };
  try {
    const opening = { signal: o.signal };
    const b = track(await Checkpoint.open(base, opening));
    const also: Checkpoint[] = [];
    for (const p of o.also ?? []) also.push(track(await Checkpoint.open(p, opening)));
    const list: Expert[] = [];
    for (const e of experts) {
      const checkpoint = track(await Checkpoint.open(e.path, opening));
      const stats = e.stats && withStats ? track(await SafetensorsFile.open(e.stats, opening)) : undefined;
      list.push({ name: e.name, checkpoint, weight: e.weight, stats, ...(e.parameters ? { parameters: e.parameters } : {}) });
    }
    if (o.requireStats) requireStatsFiles(o.requireStats, list);
    checkCompatible(b, [...also, ...list.map((e) => e.checkpoint)]);
    const files = [b, ...also, ...list.map((e) => e.checkpoint)].flatMap(checkpointFiles);
    // Statistics measured against the wrong expert would give wrong numbers.
    const warnings = withStats ? await checkStatsSources(list) : [];
    return { base: b, experts: list, also, files, warnings, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** The paths a run's options name (checkpoints, statistics), checked against the output before anything is read. */
export function namedPaths(base: string, experts: { path: string; stats?: string }[]): string[] {
  return [base, ...experts.flatMap((e) => (e.stats ? [e.path, e.stats] : [e.path]))];
}
