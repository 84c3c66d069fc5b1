/**
 * README.md for a merged (or extracted) model directory: Hugging Face model
 * card front matter (base_model, license, tags), then the method, its
 * parameters, the inputs, the taskmerge version, and a merge.yaml that
 * reproduces the merge. Paths are written relative to the output directory,
 * never as absolute paths of this machine.
 */
import * as path from "path";
import YAML from "yaml";
import { mergekitConfig } from "./methods/mergekit/reproduce";
import type { BaseInfo } from "./base_info";

export interface MergeManifest {
  taskmerge: string;
  method: string;
  params: Record<string, number | string>;
  base: string;
  experts: { name: string; path: string; weight: number; stats?: string }[];
  dtype?: string;
}

export interface CardContext {
  /** The output directory: paths in the card are relative to it. */
  outDir: string;
  base: BaseInfo;
}

/** Details larger than this go to taskmerge.json only. */
const DETAILS_IN_CARD = 4000;

/** `p` relative to the output directory, with forward slashes. */
export function relativeToOut(outDir: string, p: string): string {
  return path.relative(path.resolve(outDir), path.resolve(p)).split(path.sep).join("/") || ".";
}

function frontMatter(card: CardContext, tags: string[]): string[] {
  const front = YAML.stringify({
    ...(card.base.baseModel ? { base_model: card.base.baseModel } : {}),
    ...(card.base.license ? { license: card.base.license } : {}),
    tags,
  }).trimEnd();
  // base_model must be a Hub id: without one (--base-model, or the base's config.json), it is left for the publisher.
  const hint = card.base.baseModel ? [] : ["# base_model: <the base's Hugging Face Hub id> (taskmerge merge --base-model ID)"];
  return ["---", ...hint, front, "---", ""];
}

export function modelCard(m: MergeManifest, details: Record<string, unknown>, methodDescription: string | undefined, card: CardContext): string {
  const rel = (p: string) => relativeToOut(card.outDir, p);
  const relManifest = { ...m, base: rel(m.base), experts: m.experts.map((e) => ({ ...e, path: rel(e.path), stats: e.stats && rel(e.stats) })) };
  const lines: string[] = [...frontMatter(card, ["merge", "taskmerge", m.method]), `# ${path.basename(path.resolve(card.outDir))}`, ""];
  lines.push(
    `This model was merged with taskmerge ${m.taskmerge} using the **${m.method}** method` +
      (methodDescription ? ` (${methodDescription}).` : "."),
    "",
    "## Inputs",
    "",
    "Paths are relative to this directory.",
    "",
    `- Base: \`${rel(m.base)}\`${card.base.baseModel ? ` (${card.base.baseModel})` : ""}`,
    "",
    "| expert | path | weight | statistics |",
    "|---|---|---|---|",
    ...m.experts.map((e) => `| ${cell(e.name)} | \`${cell(rel(e.path))}\` | ${e.weight} | ${e.stats ? `\`${cell(rel(e.stats))}\`` : "—"} |`),
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
    "Saved in this directory as merge.yaml, this reproduces the merge (`taskmerge merge --config merge.yaml --out DIR`):",
    "",
    "```yaml",
    (details.definition === "mergekit"
      ? YAML.stringify(mergekitConfig(relManifest))
      : reproducingConfig(relManifest)
    ).trimEnd(),
    "```",
    "",
  );
  return lines.join("\n");
}

export interface ExtractManifest {
  taskmerge: string;
  task: string;
  lambda: number;
  bundle: string;
  base: string;
  dtype?: string;
}

/** The card of one task rebuilt from a TALL bundle by `taskmerge extract`. */
export function extractCard(e: ExtractManifest, card: CardContext): string {
  const rel = (p: string) => relativeToOut(card.outDir, p);
  return [
    ...frontMatter(card, ["taskmerge", "tall-masks"]),
    `# ${path.basename(path.resolve(card.outDir))}`,
    "",
    `Task **${e.task}** rebuilt with taskmerge ${e.taskmerge} from a TALL-mask bundle: θ0 + m ⊙ τMTL, ` +
      `with the task's mask m = 1{|τt| > λ·|τMTL − τt|} (λ = ${e.lambda}) stored in the bundle.`,
    "",
    "Paths are relative to this directory.",
    "",
    `- Bundle: \`${rel(e.bundle)}\``,
    `- Base: \`${rel(e.base)}\`${card.base.baseModel ? ` (${card.base.baseModel})` : ""}`,
    `- Output dtype of float tensors: ${e.dtype ?? "the base's"}`,
    "",
    `Rebuild it with \`taskmerge extract --bundle ${rel(e.bundle)} --task ${e.task} --base ${rel(e.base)}${e.dtype ? ` --dtype ${e.dtype.toLowerCase()}` : ""} --out DIR\`.`,
    "",
  ].join("\n");
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
