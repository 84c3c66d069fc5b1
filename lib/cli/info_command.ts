/**
 * `taskmerge info` and the addon lines of `taskmerge --version`: which native
 * addon is loaded (its file, and whether it was built from source at install
 * or is the shipped prebuilt one), its linear algebra and thread count.
 */
import { Command } from "commander";
import { VERSION } from "../version";
import { addonLocation, installRecord, nativeInfo } from "../native";
import { TaskmergeError } from "../errors";

export interface InfoReport {
  version: string;
  node: string;
  platform: string;
  addon: { path: string; origin: string; builtWith: string };
  linearAlgebra: string;
  threads: number;
  /** The backends native ops can run on (`--device`), and what became of the optional ones. */
  backends: { name: string; available: boolean; description: string; linalg: string; origin: string }[];
  backendLoads: { name: string; path: string; status: string }[];
  /** Why the install did not build a better addon (from build/install.json). */
  installNotes: string[];
}

export function infoReport(): InfoReport {
  const location = addonLocation();
  const info = nativeInfo();
  return {
    version: VERSION,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    addon: { path: location.path, origin: location.origin, builtWith: info.build ?? "unknown" },
    linearAlgebra: info.blas,
    threads: info.threads,
    backends: info.backends.map(({ name, available, description, linalg, origin }) => ({ name, available, description, linalg, origin })),
    backendLoads: info.backendLoads,
    installNotes: location.origin === "TASKMERGE_ADDON" ? [] : installRecord()?.failures ?? [],
  };
}

function originText(r: InfoReport): string {
  const tool = r.addon.builtWith;
  if (r.addon.origin === "prebuilt") return `prebuilt (shipped in the package, made with ${tool})`;
  if (r.addon.origin === "local build") return `built from source with ${tool}`;
  return `from TASKMERGE_ADDON, made with ${tool}`;
}

/** The lines `--version` prints after the version: the addon, or why none loads. */
export function addonLines(): string[] {
  try {
    const r = infoReport();
    return [`addon: ${r.addon.path}`, `  ${originText(r)}; linear algebra: ${r.linearAlgebra}; threads: ${r.threads}`];
  } catch (e) {
    return [`addon: none loads (${(e as Error).message.split("\n")[0].replace(/^taskmerge: /, "")})`];
  }
}

export function registerInfo(program: Command): void {
  program
    .command("info")
    .description("show the native addon in use (file, how it was built), its linear algebra, threads and backends")
    .option("--json", "print the report as JSON")
    .addHelpText("after", "\nExamples:\n  taskmerge info\n  taskmerge info --json\n")
    .action((opts: { json?: boolean }) => {
      let r: InfoReport;
      try {
        r = infoReport();
      } catch (e) {
        throw new TaskmergeError((e as Error).message.replace(/^taskmerge: /, ""));
      }
      if (opts.json) {
        process.stdout.write(JSON.stringify(r, null, 2) + "\n");
        return;
      }
      const lines = [
        `taskmerge ${r.version} (node ${r.node}, ${r.platform})`,
        `addon:          ${r.addon.path}`,
        `                ${originText(r)}`,
        `linear algebra: ${r.linearAlgebra}`,
        `threads:        ${r.threads}`,
        ...r.backends.map((b, i) => `${i ? "                " : "backends:       "}${b.name}: ${b.available ? "" : "no device: "}${b.description} (linear algebra: ${b.linalg || "none"})`),
        ...r.backendLoads.filter((l) => l.status !== "loaded").map((l) => `                ${l.name}: ${l.path} ${l.status}`),
        ...r.installNotes.map((n, i) => `${i ? "                " : "install notes:  "}${n.split("\n")[0]}`),
      ];
      process.stdout.write(lines.join("\n") + "\n");
    });
}
