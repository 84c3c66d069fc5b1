/** `taskmerge methods [NAME]`: every merge method with its parameters and defaults, from their declarations. */
import type { Command } from "commander";
import { getMethod, listMethods } from "../methods";
import { formatMethodsText } from "../methods/describe";

export function registerMethods(program: Command): void {
  program
    .command("methods")
    .description("list the merge methods with their parameters, types and defaults")
    .argument("[name]", "one method only")
    .allowExcessArguments(false)
    .option("--json", "print the declarations as JSON")
    .addHelpText("after", "\nExamples:\n  taskmerge methods\n  taskmerge methods ties\n  taskmerge methods --json | jq '.[].params[].name'")
    .action((name: string | undefined, opts: { json?: boolean }) => {
      const methods = name ? [getMethod(name)] : listMethods();
      if (opts.json) {
        const decl = methods.map((m) => ({ name: m.name, description: m.description, needsStats: !!m.needsStats, params: m.params }));
        process.stdout.write(JSON.stringify(decl, null, 2) + "\n");
        return;
      }
      process.stdout.write(
        formatMethodsText({ methods }) + "Parameters are set as YAML keys, library options or flags (--name, with - for _): taskmerge merge --help.\n",
      );
    });
}
