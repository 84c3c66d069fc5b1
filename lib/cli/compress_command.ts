/** `taskmerge compress`: experts → a TALL bundle directory; prints the compression ratio. */
import { Command } from "commander";
import { compress } from "../api/compress";
import { createProgressView } from "./progress";
import { UsageError } from "../errors";
import { formatBytes } from "../units";
import { VERSION } from "../version";
import { withSignals } from "./signals";
import { printReclaimed } from "./reclaimed";
import { dtypeOption, toOutputDType } from "./dtype_option";
import { deviceOption, paramOption } from "./param_flags";
import type { Device } from "../device";
import { COMPRESS_PARAMS, resolveCompressParams } from "../tall/params";
import { formatDefault } from "../methods/describe";

interface CompressFlags {
  base?: string;
  expert?: string[];
  tallLambda?: string;
  /** The COMPRESS_PARAMS flags, as given (resolveCompressParams checks and converts them). */
  tau?: "sum" | "ties";
  density?: string;
  scope?: "global" | "tensor";
  dtype?: string;
  /** DEVICE_PARAM's flag (compress() resolves it). */
  device?: Device;
  out?: string;
  quiet?: boolean;
  json?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

const EXAMPLES = `
Examples:
  taskmerge compress --base base/ --expert a/ --expert b/ --expert c/ --out bundle/
  taskmerge compress --base base/ --expert a/ --expert b/ --tall-lambda 0.3,0.5 --tau ties --dtype bf16 --out bundle/
  taskmerge extract --bundle bundle/ --task a --base base/ --out a-rebuilt/`;

/** "0.4" (every task) or "0.3,0.5,…" (one per expert). */
function parseLambdas(v: string | undefined): number | number[] | undefined {
  if (v === undefined) return undefined;
  const parts = v.split(",").map((s) => s.trim());
  const nums = parts.map((s) => (s === "" ? NaN : Number(s)));
  if (nums.some((x) => !Number.isFinite(x) || x < 0)) throw new UsageError(`--tall-lambda must be a number or a comma-separated list of numbers (got '${v}')`);
  return nums.length === 1 ? nums[0] : nums;
}

export function registerCompress(program: Command): void {
  const cmd = program
    .command("compress")
    .description("compress experts into a TALL bundle: τMTL plus one mask bit per parameter per task")
    .option("--base <path>", "base (pre-trained) checkpoint")
    .option("--expert <path>", "fine-tuned checkpoint (repeat for each expert)", collect)
    .option("--tall-lambda <x>", "mask λ: one number, or one per expert separated by commas (default 0.4)");
  // --tau, --density, --scope: from their declarations (tall/params.ts), checked against them.
  for (const p of COMPRESS_PARAMS) cmd.addOption(paramOption(p, `${p.description} (default ${formatDefault(p.default)})`));
  cmd
    .addOption(dtypeOption("dtype of tau.safetensors (default: the base's)"))
    .addOption(deviceOption())
    .option("--out <dir>", "bundle directory (bundle.json, tau.safetensors, masks.safetensors)")
    .option("-q, --quiet", "no progress and no summary (errors still go to stderr)")
    .option("--json", "print the final report as JSON on stdout")
    .addHelpText("after", EXAMPLES)
    .action(async (flags: CompressFlags) => {
      if (!flags.base) throw new UsageError("--base is required");
      if (!flags.out) throw new UsageError("--out is required");
      if (!flags.expert?.length) throw new UsageError("at least one --expert is required");
      const view = createProgressView({ quiet: flags.quiet || flags.json });
      const report = await withSignals((signal) =>
        compress({
          base: flags.base!, experts: flags.expert!, out: flags.out!, tallLambda: parseLambdas(flags.tallLambda),
          ...resolveCompressParams(flags), dtype: toOutputDType(flags.dtype), device: flags.device, onProgress: (p) => view.update(p), signal,
        }),
      ).finally(() => view.stop());
      printReclaimed(report.reclaimed);
      const peakMemoryBytes = process.resourceUsage().maxRSS * 1024;
      if (flags.json) {
        process.stdout.write(JSON.stringify({ taskmerge: VERSION, ...report, peakMemoryBytes }, null, 2) + "\n");
      } else if (!flags.quiet) {
        process.stdout.write(
          `compressed ${report.tasks.length} experts into ${report.out} in ${report.seconds.toFixed(1)} s: ` +
            `${formatBytes(report.bytesExperts)} of experts → ${formatBytes(report.bytesBundle)} bundle, ` +
            `compression ratio ${report.ratio.toFixed(2)}x\n` +
            `  tasks: ${report.tasks.map((t) => `${t.name} (λ=${t.lambda})`).join(", ")}\n`,
        );
      }
    });
}
