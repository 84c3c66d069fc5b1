/** `taskmerge extract`: one task's checkpoint from a TALL bundle and the base. */
import type { Command } from "commander";
import { extract } from "../api/extract";
import { createProgressView } from "./progress";
import { UsageError } from "../errors";
import { formatBytes } from "../units";
import { VERSION } from "../version";
import { withSignals } from "./signals";
import { printReclaimed } from "./reclaimed";
import { dtypeOption, toOutputDType } from "./dtype_option";
import { deviceOption } from "./param_flags";
import type { Device } from "../device";

interface ExtractFlags {
  bundle?: string;
  task?: string;
  base?: string;
  out?: string;
  dtype?: string;
  baseModel?: string;
  maxShardSize?: string;
  /** DEVICE_PARAM's flag (extract() resolves it). */
  device?: Device;
  quiet?: boolean;
  json?: boolean;
}

export function registerExtract(program: Command): void {
  program
    .command("extract")
    .description("rebuild one task's checkpoint θ0 + mask ⊙ τMTL from a TALL bundle")
    .option("--bundle <dir>", "bundle directory written by 'taskmerge compress'")
    .option("--task <name>", "task (expert name) to rebuild")
    .option("--base <path>", "the base checkpoint the bundle was made from")
    .addOption(dtypeOption("output dtype of float tensors (default: the base's)"))
    .addOption(deviceOption())
    .option("--base-model <id>", "the base's Hugging Face Hub id for the model card's base_model (default: the base's config.json _name_or_path)")
    .option("--max-shard-size <size>", "shard limit for directory output (default: 5GB)")
    .option("--out <path>", "output: X.safetensors (one file) or a directory (Hugging Face layout)")
    .option("-q, --quiet", "no progress and no summary (errors still go to stderr)")
    .option("--json", "print the final report as JSON on stdout")
    .addHelpText("after", `
Examples:
  taskmerge extract --bundle bundle/ --task a --base base/ --out a-rebuilt/
  taskmerge extract --bundle bundle/ --task b --base base.safetensors --dtype bf16 --out b.safetensors`)
    .action(async (flags: ExtractFlags) => {
      for (const k of ["bundle", "task", "base", "out"] as const) if (!flags[k]) throw new UsageError(`--${k} is required`);
      const view = createProgressView({ quiet: flags.quiet || flags.json });
      const report = await withSignals((signal) =>
        extract({
          bundle: flags.bundle!, task: flags.task!, base: flags.base!, out: flags.out!, dtype: toOutputDType(flags.dtype), baseModel: flags.baseModel, maxShardSize: flags.maxShardSize,
          device: flags.device, onProgress: (p) => view.update(p), signal,
        }),
      ).finally(() => view.stop());
      printReclaimed(report.reclaimed);
      if (flags.json) process.stdout.write(JSON.stringify({ taskmerge: VERSION, ...report }, null, 2) + "\n");
      else if (!flags.quiet)
        process.stdout.write(
          `extracted task ${report.task} (λ=${report.lambda}) into ${report.out} in ${report.seconds.toFixed(1)} s ` +
            `(read ${formatBytes(report.bytesRead)}, wrote ${formatBytes(report.bytesWritten)})\n`,
        );
    });
}
