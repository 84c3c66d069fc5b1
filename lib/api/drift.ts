/** The public drift() call: normalises and checks the options of the drift job (lib/job/drift.ts). */
import { UsageError } from "../errors";
import { ExpertSpec, normalizeExperts } from "./merge";
import type { Progress } from "../engine/progress";
import { runDrift, DriftReport, DriftLayer, DriftTaskTotal } from "../job/drift";

export type { DriftReport, DriftLayer, DriftTaskTotal };

export interface DriftOptions {
  base: string;
  /** The merged checkpoint to measure. */
  merged: string;
  /** Experts with their statistics files (`stats` is required for each). */
  experts: (string | ExpertSpec)[];
  /** Statistics files in expert order, as an alternative to ExpertSpec.stats. */
  stats?: string[];
  onProgress?: (p: Progress) => void;
  /** Warnings about the inputs (statistics that record no source checkpoint; also in the report). */
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
}

export async function drift(opts: DriftOptions): Promise<DriftReport> {
  if (!opts || !opts.base || !opts.merged) throw new UsageError("drift: base and merged are required");
  let specs = normalizeExperts(opts.experts);
  if (opts.stats) {
    if (opts.stats.length !== specs.length)
      throw new UsageError(`drift: ${opts.stats.length} statistics files for ${specs.length} experts; give one per expert, in order`);
    specs = specs.map((e, i) => ({ ...e, stats: opts.stats![i] }));
  }
  return runDrift({ base: opts.base, merged: opts.merged, experts: specs, onProgress: opts.onProgress, onWarning: opts.onWarning, signal: opts.signal });
}
