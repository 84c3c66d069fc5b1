/** `taskmerge merge`: flags or --config merge.yaml (flags override) into merge(). */
import { Command, Option } from "commander";
import { merge, ExpertSpec } from "../api/merge";
import { loadMergeConfig, MergeConfig } from "./config";
import { createProgressView } from "./progress";
import { UsageError } from "../errors";
import { listMethods } from "../methods";
import { formatBytes } from "../units";
import type { Device } from "../device";
import { withSignals } from "./signals";

interface MergeFlags {
  base?: string;
  expert?: string[];
  stats?: string[];
  method?: string;
  lambda?: string;
  density?: string;
  k?: string;
  alpha?: string;
  seed?: string;
  scope?: string;
  tallLambda?: string;
  ridge?: string;
  solver?: string;
  dtype?: string;
  device?: string;
  maxShardSize?: string;
  out?: string;
  config?: string;
  quiet?: boolean;
  json?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Method parameter flags and the parameter names they set. */
const PARAM_FLAGS: [keyof MergeFlags, string][] = [
  ["lambda", "lambda"], ["density", "density"], ["k", "k"], ["alpha", "alpha"], ["seed", "seed"],
  ["scope", "scope"], ["tallLambda", "tall_lambda"], ["ridge", "ridge"], ["solver", "solver"],
];

export function registerMerge(program: Command): void {
  program
    .command("merge")
    .description("merge experts into the base with a method")
    .option("--base <path>", "base (pre-trained) checkpoint")
    .option("--expert <path>", "fine-tuned checkpoint (repeat for each expert)", collect)
    .option("--stats <path>", "statistics file per expert, in --expert order (regmean, lot)", collect)
    .option("--method <name>", `merge method: ${listMethods().map((m) => m.name).join(", ")}`)
    .option("--lambda <x>", "scaling coefficient λ")
    .option("--density <x>", "fraction kept (ties, dare)")
    .option("--k <n>", "consensus threshold (consensus_*)")
    .option("--alpha <x>", "RegMean shrinkage α")
    .option("--seed <n>", "random seed (dare)")
    .addOption(new Option("--scope <scope>", "TIES top-k scope").choices(["global", "tensor"]))
    .option("--tall-lambda <x>", "TALL mask λ (consensus_*)")
    .option("--ridge <x>", "LOT ridge ε")
    .addOption(new Option("--solver <s>", "LOT solver").choices(["auto", "cholesky", "eigh"]))
    .addOption(new Option("--dtype <dtype>", "output dtype of float tensors (default: the base's)").choices(["f32", "f16", "bf16"]))
    .addOption(new Option("--device <device>", "compute device").choices(["auto", "cpu", "cuda"]))
    .option("--max-shard-size <size>", "shard limit for directory output", "5GB")
    .option("--out <path>", "output: X.safetensors (one file) or a directory (Hugging Face layout)")
    .option("--config <file>", "merge.yaml with the same options (flags override)")
    .option("-q, --quiet", "no progress output")
    .option("--json", "print the final report as JSON on stdout")
    .addHelpText(
      "after",
      `
Examples:
  taskmerge merge --base base/ --expert a/ --expert b/ --method task_arithmetic --lambda 0.4 --out merged/
  taskmerge merge --base base.safetensors --expert a.safetensors --expert b.safetensors \\
                  --method average --dtype bf16 --out merged.safetensors
  taskmerge merge --config merge.yaml --out other/`,
    )
    .action(async (flags: MergeFlags) => {
      const cfg: MergeConfig = flags.config ? await loadMergeConfig(flags.config) : { params: {} };
      const opts = combine(cfg, flags);
      const view = createProgressView({ quiet: flags.quiet || flags.json });
      const report = await withSignals((signal) => merge({ ...opts, onProgress: (p) => view.update(p), signal })).finally(() =>
        view.stop(),
      );
      if (flags.json) process.stdout.write(JSON.stringify(report, null, 2) + "\n");
      else if (!flags.quiet)
        process.stderr.write(
          `merged ${report.tensors} tensors with ${report.method} into ${report.out} ` +
            `(${formatBytes(report.bytesWritten)} written, ${report.seconds.toFixed(1)} s)\n`,
        );
    });
}

function combine(cfg: MergeConfig, f: MergeFlags) {
  const base = f.base ?? cfg.base;
  const out = f.out ?? cfg.out;
  const method = f.method ?? cfg.method;
  if (!base) throw new UsageError("--base is required");
  if (!out) throw new UsageError("--out is required");
  if (!method) throw new UsageError("--method is required");
  let experts: (string | ExpertSpec)[] = f.expert ?? cfg.experts ?? [];
  if (!experts.length) throw new UsageError("at least one --expert is required");
  if (f.stats) {
    if (f.stats.length !== experts.length)
      throw new UsageError(`--stats given ${f.stats.length} times for ${experts.length} experts; give one per expert, in order`);
    experts = experts.map((e, i) => ({ ...(typeof e === "string" ? { path: e } : e), stats: f.stats![i] }));
  }
  const params: Record<string, unknown> = { ...cfg.params };
  for (const [flag, name] of PARAM_FLAGS) if (f[flag] !== undefined) params[name] = f[flag];
  return {
    base,
    out,
    experts,
    method: { name: method, ...params },
    dtype: f.dtype ?? cfg.dtype,
    device: (f.device ?? cfg.device) as Device | undefined,
    maxShardSize: f.maxShardSize !== "5GB" ? f.maxShardSize : cfg.maxShardSize ?? f.maxShardSize,
  };
}
