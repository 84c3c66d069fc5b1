/** `taskmerge merge`: flags or --config merge.yaml (flags override) into merge() or planMerge(). */
import { Command } from "commander";
import { merge, ExpertSpec, MergeOptions } from "../api/merge";
import { planMerge } from "../api/plan";
import { checkConfigMethod, configError, loadMergeConfig, MergeConfig } from "./config";
import { createProgressView } from "./progress";
import { formatPlan } from "./plan_view";
import { UsageError } from "../errors";
import { listMethods } from "../methods";
import { formatMethodsText, formatParams, paramFlags } from "../methods/describe";
import { deviceOption, paramOption } from "./param_flags";
import { dtypeOption, toOutputDType } from "./dtype_option";
import { formatBytes } from "../units";
import { VERSION } from "../version";
import type { Device } from "../device";
import { withSignals } from "./signals";
import { statsCommand } from "../progressive/stats_command";
import type { ProgressiveDetails } from "../progressive/engine";
import { printReclaimed } from "./reclaimed";

interface MergeFlags {
  base?: string;
  expert?: string[];
  stats?: string[];
  method?: string;
  /** Method parameters, by the flags' attribute names (tallLambda for --tall-lambda). */
  [param: string]: unknown;
  statsCommand?: string;
  dtype?: string;
  baseModel?: string;
  device?: string;
  maxShardSize?: string;
  out?: string;
  config?: string;
  dryRun?: boolean;
  quiet?: boolean;
  json?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/**
 * One flag per method parameter, generated from the methods' declarations
 * (ParamSpec) after the command's own options; a flag the command already
 * declares by hand keeps that declaration. Returns [attribute, parameter] pairs.
 */
function addParamFlags(cmd: Command): [string, string][] {
  const pairs: [string, string][] = [];
  for (const f of paramFlags()) {
    const existing = cmd.options.find((o) => o.long === f.flag);
    if (existing) {
      pairs.push([existing.attributeName(), f.name]);
      continue;
    }
    const opt = paramOption(f.spec, `${f.description ?? "method parameter, see below"} (${f.methods.join(", ")})`, f.choices);
    cmd.addOption(opt);
    pairs.push([opt.attributeName(), f.name]);
  }
  return pairs;
}

const EXAMPLES = `
Examples:
  taskmerge merge --base base/ --expert math/ --expert code/ --method task_arithmetic --lambda 0.4 --out merged/
  taskmerge merge --base base.safetensors --expert a.safetensors --expert b.safetensors \\
                  --method ties --density 0.2 --dtype bf16 --out merged.safetensors
  taskmerge merge --base base/ --expert a/ --stats a.stats.safetensors --expert b/ --stats b.stats.safetensors \\
                  --method lot --out merged/
  taskmerge merge --base base/ --expert a/ --expert b/ --method lot --progressive \\
                  --stats-command 'python3 collect.py --weights {model} --task {expert} --keys {keys} --out {out}' --out merged/
  taskmerge merge --config merge.yaml                  # every option from the file
  taskmerge merge merge.yaml merged/                   # the same, mergekit-yaml style
  taskmerge merge --config merge.yaml --lambda 0.5 --out other/   # flags override the file
  taskmerge merge --config merge.yaml --dry-run        # check inputs, print the plan, write nothing
  taskmerge merge --config merge.yaml --json -q | jq .details

merge.yaml (taskmerge form; paths are relative to the file):
  base: base/
  experts: [math/, {path: code/, weight: 0.5, stats: code.stats.safetensors}]
  method: ties          # or {name: ties, density: 0.2}
  density: 0.2
  out: merged/

merge.yaml (mergekit form):
  merge_method: ties
  base_model: base/
  models:
    - model: math/
      parameters: {weight: 1.0, density: 0.2}
  parameters: {lambda: 1.0}
  dtype: bfloat16

Exit status: 0 success, 1 failure, 2 usage or config error, 130/143 interrupted (SIGINT/SIGTERM; no output is left, unless it came during the final rename, which completes).`;

export function registerMerge(program: Command): void {
  const cmd = program
    .command("merge")
    .description("merge experts (fine-tuned checkpoints) into the base with a method")
    .argument("[config]", "merge.yaml, as with --config (mergekit-yaml style: taskmerge merge merge.yaml out/)")
    .argument("[out]", "output path, as with --out")
    .allowExcessArguments(false)
    .option("--base <path>", "base (pre-trained) checkpoint")
    .option("--expert <path>", "fine-tuned checkpoint (repeat for each expert)", collect)
    .option("--stats <path>", "statistics file per expert, in --expert order (regmean, lot)", collect)
    .option("--method <name>", `merge method: ${listMethods().map((m) => m.name).join(", ")}`)
    .option("--stats-command <cmd>", "progressive: command run per group and expert to write statistics; placeholders {model} {expert} {keys} {out}")
    .addOption(dtypeOption("output dtype of float tensors (default: the base's); mergekit's names too"))
    .addOption(deviceOption())
    .option("--base-model <id>", "the base's Hugging Face Hub id for the model card's base_model (default: the base's config.json _name_or_path)")
    .option("--max-shard-size <size>", "shard limit for directory output (default: 5GB)")
    .option("--out <path>", "output: X.safetensors (one file) or a directory (Hugging Face layout)")
    .option("--config <file>", "merge.yaml with the same options, taskmerge or mergekit form (flags override)")
    .option("--dry-run", "check every input and print the plan (keys, sizes, memory, I/O); write nothing")
    .option("-q, --quiet", "no progress and no summary (errors still go to stderr)")
    .option("--json", "print the final report (or the --dry-run plan) as JSON on stdout")
    .addHelpText("after", () => `\nMethods and their parameters (the flags above; in YAML and the library, the names with _):\n\n${formatMethodsText({ flags: true })}${EXAMPLES}`);
  const paramAttrs = addParamFlags(cmd);
  cmd.action(async (configArg: string | undefined, outArg: string | undefined, flags: MergeFlags) => {
      if (configArg && flags.config) throw new UsageError(`two configs given (${configArg} and --config ${flags.config}); give one`);
      if (outArg && flags.out) throw new UsageError(`two outputs given (${outArg} and --out ${flags.out}); give one`);
      flags = { ...flags, config: flags.config ?? configArg, out: flags.out ?? outArg };
      const cfg = flags.config ? await loadMergeConfig(flags.config) : undefined;
      const opts = combine(cfg, flags, paramAttrs);
      if (flags.dryRun) {
        const plan = await withSignals((signal) => planMerge({ ...opts, signal }));
        process.stdout.write(flags.json ? JSON.stringify({ dryRun: true, taskmerge: VERSION, ...plan }, null, 2) + "\n" : formatPlan(plan));
        return;
      }
      const view = createProgressView({ quiet: flags.quiet });
      const report = await withSignals((signal) => merge({ ...opts, onProgress: (p) => view.update(p), onWarning: (w) => process.stderr.write(`warning: ${w}\n`), signal })).finally(() =>
        view.stop(),
      );
      printReclaimed(report.reclaimed);
      // Asked for the GPU by name: say which ops it could not run.
      if (opts.device === "cuda" && report.deviceFallbacks?.length)
        process.stderr.write(`note: ran on the CPU (the cuda backend lacks them): ${report.deviceFallbacks.join(", ")}\n`);
      // maxRSS is in kilobytes.
      const peakMemoryBytes = process.resourceUsage().maxRSS * 1024;
      if (flags.json) {
        const { details, ...rest } = report;
        const inputs = { base: opts.base, experts: opts.experts, dtype: opts.dtype ?? null };
        process.stdout.write(JSON.stringify({ taskmerge: VERSION, ...rest, ...inputs, peakMemoryBytes, details }, null, 2) + "\n");
      } else if (!flags.quiet) {
        const params = formatParams(report.params);
        process.stderr.write(
          `merged ${report.tensors} tensors with ${report.method}${params ? ` (${params})` : ""} into ${report.out} in ${report.seconds.toFixed(1)} s ` +
            `(read ${formatBytes(report.bytesRead)}, wrote ${formatBytes(report.bytesWritten)}, peak memory ${formatBytes(peakMemoryBytes)})\n`,
        );
        for (const [k, v] of Object.entries(report.details))
          process.stderr.write(`  ${k}: ${k === "progressive" ? progressiveLine(v as ProgressiveDetails) : brief(v)}\n`);
      }
    });
}

/** Groups, collector runs and where the time went, in one line. */
function progressiveLine(d: ProgressiveDetails): string {
  const names = d.groups.map((g) => g.name);
  const shown = names.length > 8 ? [...names.slice(0, 4), "…", ...names.slice(-2)] : names;
  return (
    `${d.granularity} granularity, ${names.length} groups (${shown.join(", ")}), ${d.collectorRuns} collector runs; ` +
    `collection ${d.collectSeconds.toFixed(1)} s, merging ${d.mergeSeconds.toFixed(1)} s, writing ${d.writeSeconds.toFixed(1)} s`
  );
}

/** One line of a report detail; --json has the whole of it. */
function brief(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 160 ? `${s.slice(0, 157)}... (full report: --json)` : s;
}

/** Flags over the config file; errors about values from the file name the file and key. */
export function combine(cfg: MergeConfig | undefined, f: MergeFlags, paramAttrs: [string, string][]): MergeOptions {
  const missing = (key: keyof MergeConfig["keys"] | "out", flag: string) =>
    cfg
      ? configError(cfg, "", `missing '${key === "out" ? "out" : cfg.keys[key].split(".")[0]}' (give it in the file or with ${flag})`)
      : new UsageError(`${flag} is required`);
  const base = f.base ?? cfg?.base;
  if (!base) throw missing("base", "--base");
  const method = f.method ?? cfg?.method;
  if (!method) throw missing("method", "--method");
  let experts: (string | ExpertSpec)[] = f.expert ?? cfg?.experts ?? [];
  if (!experts.length) throw missing("experts", "--expert");
  const out = f.out ?? cfg?.out;
  if (!out) throw missing("out", "--out");
  if (f.stats) {
    if (f.stats.length !== experts.length)
      throw new UsageError(`--stats given ${f.stats.length} times for ${experts.length} experts; give one per expert, in order`);
    experts = experts.map((e, i) => ({ ...(typeof e === "string" ? { path: e } : e), stats: f.stats![i] }));
  }
  const overridden = new Set(paramAttrs.filter(([attr]) => f[attr] !== undefined).map(([, name]) => name));
  const name = cfg ? checkConfigMethod(cfg, method, overridden) : method;
  const params: Record<string, unknown> = { ...cfg?.params };
  for (const [attr, name] of paramAttrs) if (f[attr] !== undefined) params[name] = f[attr];
  const cmd = f.statsCommand ?? cfg?.statsCommand;
  return {
    base,
    out,
    experts,
    // Flags and YAML are strings and numbers of any method: merge() checks them against the declaration at run time.
    method: { name, ...params } as MergeOptions["method"],
    dtype: toOutputDType(f.dtype ?? cfg?.dtype),
    baseModel: f.baseModel,
    device: (f.device ?? cfg?.device) as Device | undefined,
    maxShardSize: f.maxShardSize ?? cfg?.maxShardSize,
    ...(cmd !== undefined ? { collectStats: statsCommand(cmd) } : {}),
  };
}
