/**
 * README.md for a merged model directory: Hugging Face model card front
 * matter, then the method, its parameters, the inputs, the taskmerge version,
 * and a merge.yaml that reproduces the merge.
 */
import * as path from "path";
import YAML from "yaml";

export interface MergeManifest {
  taskmerge: string;
  method: string;
  params: Record<string, number | string | boolean>;
  base: string;
  experts: { name: string; path: string; weight: number; stats?: string }[];
  dtype?: string;
}

/** Details larger than this go to taskmerge.json only. */
const DETAILS_IN_CARD = 4000;

export function modelCard(m: MergeManifest, details: Record<string, unknown>, methodDescription?: string, outName?: string): string {
  // base_model must be a Hub id on the Hub; taskmerge only knows local paths, so it is left for the publisher.
  const front = YAML.stringify({ tags: ["merge", "taskmerge", m.method] }).trimEnd();
  const lines: string[] = ["---", "# base_model: <the base's Hugging Face Hub id>", front, "---", "", `# ${outName ?? "Merged model"}`, ""];
  lines.push(
    `This model was merged with taskmerge ${m.taskmerge} using the **${m.method}** method` +
      (methodDescription ? ` (${methodDescription}).` : "."),
    "",
    "## Inputs",
    "",
    `- Base: \`${m.base}\``,
    "",
    "| expert | path | weight | statistics |",
    "|---|---|---|---|",
    ...m.experts.map((e) => `| ${cell(e.name)} | \`${cell(e.path)}\` | ${e.weight} | ${e.stats ? `\`${cell(e.stats)}\`` : "—"} |`),
    "",
    "## Parameters",
    "",
  );
  const params = Object.entries(m.params);
  if (params.length) lines.push("| parameter | value |", "|---|---|", ...params.map(([k, v]) => `| ${k} | ${v} |`));
  else lines.push(`${m.method} takes no parameters.`);
  lines.push("", `Output dtype of float tensors: ${m.dtype ?? "the base's"}.`, "");
  if (Object.keys(details).length) {
    const json = JSON.stringify(details, null, 2);
    lines.push("## Merge report", "");
    if (json.length <= DETAILS_IN_CARD) lines.push("```json", json, "```", "");
    else lines.push(`The method's report (${Object.keys(details).join(", ")}) is in \`taskmerge.json\`.`, "");
  }
  lines.push(
    "## Configuration",
    "",
    "This merge.yaml reproduces the merge (`taskmerge merge --config merge.yaml --out DIR`):",
    "",
    "```yaml",
    reproducingConfig(m).trimEnd(),
    "```",
    "",
  );
  return lines.join("\n");
}

/** The merge as taskmerge's own config form (see lib/cli/config.ts). */
export function reproducingConfig(m: MergeManifest): string {
  const experts = m.experts.map((e) => {
    const plain = e.weight === 1 && !e.stats && e.name === path.basename(e.path).replace(/\.safetensors$/, "");
    return plain ? e.path : { path: e.path, name: e.name, ...(e.weight !== 1 ? { weight: e.weight } : {}), ...(e.stats ? { stats: e.stats } : {}) };
  });
  return YAML.stringify({ base: m.base, experts, method: m.method, ...m.params, ...(m.dtype ? { dtype: m.dtype.toLowerCase() } : {}) });
}

/** Keeps a table cell on one row. */
function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}
