/** `taskmerge drift`: per-layer feature drift of a merged model against each expert, from their statistics. */
import type { Command } from "commander";
import { drift, DriftReport } from "../api/drift";
import { UsageError } from "../errors";
import { withSignals } from "./signals";
import { createProgressView } from "./progress";

interface DriftFlags {
  base?: string;
  expert?: string[];
  stats?: string[];
  merged?: string;
  json?: boolean;
  quiet?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerDrift(program: Command): void {
  program
    .command("drift")
    .description("feature drift of a merged model per layer and task: tr((W−Wt) Gt (W−Wt)ᵀ) for linear layers, Σ st (w−wt)² for norms")
    .option("--base <path>", "base (pre-trained) checkpoint")
    .option("--expert <path>", "fine-tuned checkpoint (repeat for each expert)", collect)
    .option("--stats <path>", "statistics file per expert, in --expert order", collect)
    .option("--merged <path>", "the merged checkpoint to measure")
    .option("--json", "print the report as JSON")
    .option("-q, --quiet", "no progress output")
    .addHelpText(
      "after",
      `
The "base" row gives the same drift for the unmerged base: how far each task moved
the layer. ratio = merged drift / base drift (lower is better).

Example:
  taskmerge drift --base base/ --expert a/ --stats a.stats.safetensors \\
                  --expert b/ --stats b.stats.safetensors --merged merged/`,
    )
    .action(async (f: DriftFlags) => {
      if (!f.base) throw new UsageError("--base is required");
      if (!f.merged) throw new UsageError("--merged is required");
      if (!f.expert?.length) throw new UsageError("at least one --expert is required");
      if (!f.stats?.length) throw new UsageError("--stats is required, one per expert");
      if (f.stats.length !== f.expert.length)
        throw new UsageError(`--stats given ${f.stats.length} times for ${f.expert.length} experts; give one per expert, in order`);
      const view = createProgressView({ quiet: f.quiet });
      const report = await withSignals((signal) =>
        drift({ base: f.base!, merged: f.merged!, experts: f.expert!, stats: f.stats, signal, onProgress: (p) => view.update(p),
          onWarning: (w) => process.stderr.write(`warning: ${w}\n`) }),
      ).finally(() => view.stop());
      if (f.json) process.stdout.write(JSON.stringify(report, jsonNumbers, 2) + "\n");
      else process.stdout.write(formatDrift(report));
    });
}

/** JSON has no NaN: ratios without a base drift become null. */
function jsonNumbers(_k: string, v: unknown): unknown {
  return typeof v === "number" && !Number.isFinite(v) ? null : v;
}

const num = (x: number) => (Number.isFinite(x) ? (x === 0 ? "0" : Math.abs(x) >= 1e-3 && Math.abs(x) < 1e5 ? x.toPrecision(4) : x.toExponential(3)) : "-");

export function formatDrift(r: DriftReport): string {
  const head = ["layer", "kind", ...r.tasks, "total"];
  const rows = r.layers.map((l) => [l.key, l.kind, ...l.drift.map(num), num(l.total)]);
  rows.push(["total", "", ...r.totals.map((t) => num(t.drift)), num(r.total)]);
  rows.push(["base", "", ...r.totals.map((t) => num(t.baseDrift)), num(r.baseTotal)]);
  rows.push(["ratio", "", ...r.totals.map((t) => num(t.ratio)), num(r.baseTotal > 0 ? r.total / r.baseTotal : NaN)]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (row: string[]) => row.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  ").trimEnd();
  const out = [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.slice(0, -3).map(line), "", ...rows.slice(-3).map(line)];
  if (r.skipped.length) out.push("", `not measured (statistics missing for some expert): ${r.skipped.join(", ")}`);
  return out.join("\n") + "\n";
}
