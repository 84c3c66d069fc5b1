/**
 * drift(): how far a merged model's layer outputs move from each expert's on
 * that expert's own inputs, from the experts' statistics files:
 *   linear W: tr((W − Wt) Gt (W − Wt)ᵀ) = Σ over the task's input rows of ‖(W − Wt) x‖²
 *   norm scale w: Σd st[d] (w[d] − wt[d])²
 * The same quantity for the base (W0 in place of W) is reported beside it:
 * how far fine-tuning moved the layer, the scale a merge's drift compares to.
 */
import { Checkpoint } from "../checkpoint";
import { SafetensorsFile } from "../safetensors/file";
import { isFloatDType } from "../safetensors/dtypes";
import { runOp } from "../native";
import { TaskmergeError, UsageError, throwIfAborted } from "../errors";
import { checkCompatible } from "../engine/validate";
import { paramStats, requireStatsFiles } from "../stats/keys";
import { readGram, readScale } from "../stats/read";
import { checkStatsSources } from "../stats/source";
import { ExpertSpec, normalizeExperts } from "./merge";
import { Progress, ProgressTracker } from "../engine/progress";

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

export interface DriftLayer {
  key: string;
  kind: "linear" | "norm";
  /** Per task, in expert order. */
  drift: number[];
  baseDrift: number[];
  total: number;
  baseTotal: number;
}

export interface DriftTaskTotal {
  task: string;
  drift: number;
  baseDrift: number;
  /** drift / baseDrift (NaN when the base drift is 0). */
  ratio: number;
}

export interface DriftReport {
  merged: string;
  tasks: string[];
  layers: DriftLayer[];
  totals: DriftTaskTotal[];
  total: number;
  baseTotal: number;
  /** Weights lacking statistics from some expert: not measured. */
  skipped: string[];
  warnings: string[];
}

export async function drift(opts: DriftOptions): Promise<DriftReport> {
  if (!opts || !opts.base || !opts.merged) throw new UsageError("drift: base and merged are required");
  let specs = normalizeExperts(opts.experts);
  if (opts.stats) {
    if (opts.stats.length !== specs.length)
      throw new UsageError(`drift: ${opts.stats.length} statistics files for ${specs.length} experts; give one per expert, in order`);
    specs = specs.map((e, i) => ({ ...e, stats: opts.stats![i] }));
  }
  const opened: { close(): Promise<void> }[] = [];
  const track = <T extends { close(): Promise<void> }>(x: T): T => (opened.push(x), x);
  try {
    const base = track(await Checkpoint.open(opts.base));
    const merged = track(await Checkpoint.open(opts.merged));
    const experts: { name: string; checkpoint: Checkpoint; stats?: SafetensorsFile }[] = [];
    for (const e of specs) {
      const checkpoint = track(await Checkpoint.open(e.path));
      const stats = e.stats ? track(await SafetensorsFile.open(e.stats)) : undefined;
      experts.push({ name: e.name, checkpoint, stats });
    }
    requireStatsFiles("drift", experts);
    checkCompatible(base, [merged, ...experts.map((e) => e.checkpoint)]);
    // Statistics measured against the wrong expert would give wrong numbers: the same check as a merge's.
    const warnings = await checkStatsSources(experts);
    for (const w of warnings) opts.onWarning?.(w);

    const keys = base.keys().filter((k) => isFloatDType(base.get(k).dtype));
    const classified = keys.map((k) => ({ key: k, ps: paramStats(k, base.get(k).shape, experts) }));
    const measured = classified.filter((c) => c.ps.kind === "linear" || c.ps.kind === "norm");
    const layers: DriftLayer[] = [];
    const progress = new ProgressTracker(opts.onProgress);
    const statBytes = (ps: (typeof measured)[number]["ps"]) =>
      ps.kind === "linear" ? ps.grams.reduce((a, g) => a + g.info.nbytes, 0) : ps.kind === "norm" ? ps.scales.reduce((a, g) => a + g.info.nbytes, 0) : 0;
    progress.phase("drift", measured.length, measured.reduce((a, { key, ps }) =>
      a + base.get(key).nbytes + merged.get(key).nbytes + experts.reduce((b, e) => b + e.checkpoint.get(key).nbytes, 0) + statBytes(ps), 0));
    for (const { key, ps } of measured) {
      throwIfAborted(opts.signal);
      const info = base.get(key);
      const [w0, w] = await Promise.all([base.read(key), merged.read(key)]);
      progress.bytes(w0.length + w.length, key);
      const drift: number[] = [];
      const baseDrift: number[] = [];
      for (const [t, e] of experts.entries()) {
        const wt = await e.checkpoint.read(key);
        const common = {
          merged: w, mergedDtype: merged.get(key).dtype, expert: wt, expertDtype: e.checkpoint.get(key).dtype,
          base: w0, baseDtype: info.dtype, linalg: process.env.TASKMERGE_LINALG,
        };
        let r;
        const st = ps.kind === "linear" ? ps.grams[t] : ps.kind === "norm" ? ps.scales[t] : undefined;
        if (!st) throw new Error("unreachable");
        const stat = await (ps.kind === "linear" ? readGram(st) : readScale(st));
        progress.bytes(wt.length + stat.length, key);
        try {
          r = ps.kind === "linear"
            ? await runOp("drift_linear", { ...common, out: info.shape[0], in: info.shape[1], gram: stat, gramDtype: st.info.dtype })
            : await runOp("drift_norm", { ...common, n: info.numel, scale: stat, scaleDtype: st.info.dtype });
        } catch (err) {
          // The statistics were checked when read: what fails here concerns the weights of this key.
          throw new TaskmergeError(String((err as { message?: unknown })?.message ?? err), undefined, key);
        }
        drift.push(r.drift);
        baseDrift.push(r.baseDrift);
      }
      const sum = (a: number[]) => a.reduce((s, x) => s + x, 0);
      layers.push({ key, kind: ps.kind as "linear" | "norm", drift, baseDrift, total: sum(drift), baseTotal: sum(baseDrift) });
      progress.tensorDone(key);
    }
    const totals = experts.map((e, t) => {
      const d = layers.reduce((s, l) => s + l.drift[t], 0);
      const b = layers.reduce((s, l) => s + l.baseDrift[t], 0);
      return { task: e.name, drift: d, baseDrift: b, ratio: b > 0 ? d / b : NaN };
    });
    return {
      merged: merged.path, tasks: experts.map((e) => e.name), layers, totals,
      total: totals.reduce((s, x) => s + x.drift, 0), baseTotal: totals.reduce((s, x) => s + x.baseDrift, 0),
      skipped: classified.filter((c) => c.ps.kind === "fallback").map((c) => c.key),
      warnings,
    };
  } finally {
    await Promise.all(opened.map((x) => x.close().catch(() => undefined)));
  }
}
