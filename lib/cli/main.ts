#!/usr/bin/env node
/**
 * The taskmerge command line: a thin shell over the library API. Errors are
 * one line on stderr; exit 1 for failures, 2 for usage errors.
 */
// Reads of base and experts run in parallel on libuv's pool: give it room.
process.env.UV_THREADPOOL_SIZE ??= "16";

import { Command, CommanderError, Option } from "commander";
import { VERSION } from "../version";
import { AbortError, TaskmergeError, UsageError } from "../errors";
import { registerInspect } from "./inspect_command";
import { registerMerge } from "./merge_command";
import { registerDrift } from "./drift_command";
import { registerCompress } from "./compress_command";
import { registerExtract } from "./extract_command";
import { registerMethods } from "./methods_command";
import { InterruptedError } from "./signals";
import { StatsCommandError } from "../progressive/stats_command";
import { addonLines, registerInfo } from "./info_command";
import { checkEnvironment } from "../env";

export function buildProgram(): Command {
  const program = new Command("taskmerge")
    .description("Merge fine-tuned checkpoints of one base model into one multi-task model")
    // --version also names the native addon in use (see `taskmerge info`).
    .option("-V, --version", "print the version and the native addon in use")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .addHelpText(
      "after",
      `
Examples:
  taskmerge inspect base/
  taskmerge merge --base base/ --expert a/ --expert b/ --method ties --out merged/
  taskmerge merge --config merge.yaml --dry-run
  taskmerge compress --base base/ --expert a/ --expert b/ --out bundle/
  taskmerge extract --bundle bundle/ --task a --base base/ --out a-rebuilt/
  taskmerge methods                 # every method with its parameters and defaults
  taskmerge info                    # the native addon in use and how it was built
  taskmerge help merge

Run 'taskmerge <command> --help' for a command's options and examples.
Exit status: 0 success, 1 failure, 2 usage or config error, 130/143 interrupted by SIGINT/SIGTERM.`,
    );
  program.on("option:version", () => {
    process.stdout.write([VERSION, ...addonLines()].join("\n") + "\n");
    throw new CommanderError(0, "commander.version", VERSION);
  });
  registerInspect(program);
  registerMerge(program);
  registerDrift(program);
  registerCompress(program);
  registerExtract(program);
  registerMethods(program);
  registerInfo(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    checkEnvironment();
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    return reportError(e);
  }
}

function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    // Help and version print and "fail" with code 0; real parse errors are usage errors.
    return e.exitCode === 0 ? 0 : 2;
  }
  const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
  if (e instanceof UsageError) {
    process.stderr.write(`taskmerge: ${msg}\n`);
    return 2;
  }
  if (e instanceof InterruptedError) {
    process.stderr.write(`taskmerge: ${msg}\n`);
    return e.exitCode;
  }
  if (e instanceof AbortError) {
    process.stderr.write(`taskmerge: interrupted; no output was written\n`);
    return 1;
  }
  process.stderr.write(`taskmerge: error: ${msg}\n`);
  if (!(e instanceof TaskmergeError) && process.env.TASKMERGE_DEBUG) console.error(e);
  // A failing --stats-command passes its exit code on.
  if (e instanceof StatsCommandError && e.exitCode > 0 && e.exitCode < 256) return e.exitCode;
  return 1;
}

export { Option };

if (require.main === module) {
  // `taskmerge inspect big | head` closes stdout early: that is not an error.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(0);
    throw e;
  });
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
