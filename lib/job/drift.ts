/**
 * The drift job: how far a merged model's layer outputs move from each expert's on
 * that expert's own inputs, from the experts' statistics files:
 *   linear W: tr((W − Wt) Gt (W − Wt)ᵀ) = Σ over the task's input rows of ‖(W − Wt) x‖²
 *   norm scale w: Σd st[d] (w[d] − wt[d])²
 * The same quantity for the base (W0 in place of W) is reported beside it:
 * how far fine-tuning moved the layer, the scale a merge's drift compares to.
 * Read-only: the job skeleton (./run.ts) opens the inputs and closes them.
 * Drift needs whole layers (W − Wt against Gt); one expert's is read ahead.
 */
import { isFloatDType } from "../safetensors/dtypes";
import { runOp } from "../native";
import { TaskmergeError, throwIfAborted } from "../errors";
import { paramStats } from "../stats/keys";
import { readGram, readScale } from "../stats/read";
import { namedPaths, openInputs, ResolvedExpert } from "../engine/inputs";
import { readAhead } from "../engine/read_ahead";
import { Progress, ProgressTracker } from "../engine/progress";
import { runJob } from "./run";

export interface DriftJobOptions {
  base: string;
  /** The merged checkpoint to measure. */
  merged: string;
  /** Experts with their statistics files (checked: one each). */
  experts: ResolvedExpert[];
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

export function runDrift(opts: DriftJobOptions): Promise<DriftReport> {
  return runJob({
    named: namedPaths(opts.base, opts.experts),
    signal: opts.signal,
  }, async (job) => {
    // Statistics measured against the wrong expert would give wrong numbers: the same checks as a merge's.
    const inputs = job.track(await openInputs(opts.base, opts.experts, true, { also: [opts.merged], requireStats: "drift", signal: opts.signal }));
    const { base, experts } = inputs;
    const [merged] = inputs.also;
    const warnings = inputs.warnings;
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
      const statOf = (t: number) => {
        const st = ps.kind === "linear" ? ps.grams[t] : ps.kind === "norm" ? ps.scales[t] : undefined;
        if (!st) throw new Error("unreachable");
        return st;
      };
      // Expert t+1's weight and statistics are read while expert t's drift is computed.
      const load = (t: number) => {
        const st = statOf(t);
        return Promise.all([experts[t].checkpoint.read(key), ps.kind === "linear" ? readGram(st) : readScale(st)]);
      };
      await readAhead(experts.length, load, async ([wt, stat], t) => {
        const e = experts[t];
        const st = statOf(t);
        const common = {
          merged: w, mergedDtype: merged.get(key).dtype, expert: wt, expertDtype: e.checkpoint.get(key).dtype,
          base: w0, baseDtype: info.dtype, linalg: process.env.TASKMERGE_LINALG,
        };
        let r;
        progress.bytes(wt.length + stat.length, key);
        try {
          r = ps.kind === "linear"
            ? await runOp("drift_linear", { ...common, out: info.shape[0], in: info.shape[1], gram: stat, gramDtype: st.info.dtype })
            : await runOp("drift_norm", { ...common, n: info.numel, scale: stat, scaleDtype: st.info.dtype });
        } catch (err) {
          // The statistics were checked when read: what fails here concerns the weights of this key.
          throw new TaskmergeError(String((err as { message?: unknown })?.message ?? err), undefined, key);
        }
        drift.push(r.drift as number);
        baseDrift.push(r.baseDrift as number);
      });
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
  });
}
