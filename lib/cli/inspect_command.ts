/** `taskmerge inspect PATH`: keys, dtypes, shapes, bytes and totals. */
import type { Command } from "commander";
import { inspect } from "../api/inspect";
import { formatBytes } from "../units";

export function registerInspect(program: Command): void {
  program
    .command("inspect")
    .description("list the tensors of a checkpoint (file, directory or sharded) with dtypes, shapes and sizes")
    .argument("<path>", "a .safetensors file or a checkpoint directory")
    .allowExcessArguments(false)
    .option("--json", "print the report as JSON")
    .addHelpText("after", "\nExamples:\n  taskmerge inspect model.safetensors\n  taskmerge inspect ./llama-7b --json")
    .action(async (p: string, opts: { json?: boolean }) => {
      const r = await inspect(p);
      if (opts.json) {
        process.stdout.write(JSON.stringify(r, null, 2) + "\n");
        return;
      }
      const rows = r.tensors.map((t) => [t.key, t.dtype, `[${t.shape.join(", ")}]`, formatBytes(t.bytes)]);
      const w = [0, 1, 2].map((i) => Math.max(...rows.map((row) => row[i].length), 3));
      const lines = rows.map((row) => `${row[0].padEnd(w[0])}  ${row[1].padEnd(w[1])}  ${row[2].padEnd(w[2])}  ${row[3]}`);
      lines.push("");
      lines.push(`${r.path} (${r.layout}, ${r.files.length} file${r.files.length === 1 ? "" : "s"})`);
      for (const [d, s] of Object.entries(r.totals.byDtype))
        lines.push(`  ${d}: ${s.tensors} tensors, ${s.params.toLocaleString("en-US")} params, ${formatBytes(s.bytes)}`);
      lines.push(`  total: ${r.totals.tensors} tensors, ${r.totals.params.toLocaleString("en-US")} params, ${formatBytes(r.totals.bytes)}`);
      process.stdout.write(lines.join("\n") + "\n");
    });
}
