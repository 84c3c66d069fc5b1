/** `taskmerge extract`: one task's checkpoint from a TALL bundle and the base. */
import { Command, Option } from "commander";
import { extract } from "../api/extract";
import { createProgressView } from "./progress";
import { UsageError } from "../errors";
import { formatBytes } from "../units";
import { VERSION } from "../version";
import { withSignals } from "./signals";
import { printReclaimed } from "./reclaimed";

interface ExtractFlags {
  bundle?: string;
  task?: string;
  base?: string;
  out?: string;
  dtype?: string;
  maxShardSize?: string;
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
    .addOption(new Option("--dtype <dtype>", "output dtype of float tensors (default: the base's)").choices(["f32", "f16", "bf16"]))
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
          bundle: flags.bundle!, task: flags.task!, base: flags.base!, out: flags.out!, dtype: flags.dtype, maxShardSize: flags.maxShardSize,
          onProgress: (p) => view.update(p), signal,
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
