/**
 * The generated parts of docs/: each method's parameter table (from its
 * ParamSpec declaration) and each command's options (from the command-line
 * definition), between `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`
 * markers. scripts/gen-docs.js writes them; test/docs.test.ts checks that the
 * files hold exactly what this renders.
 */
import type { Command } from "commander";
import { listMethods } from "../methods";
import { methodParamsMarkdown } from "../methods/describe";
import { buildProgram } from "../cli/main";

/** Generated blocks by marker name: `params:<method>` and `cli:<command>`. */
export function generatedBlocks(): Map<string, string> {
  const blocks = new Map<string, string>();
  for (const m of listMethods()) blocks.set(`params:${m.name}`, methodParamsMarkdown(m));
  for (const cmd of buildProgram().commands) blocks.set(`cli:${cmd.name()}`, commandMarkdown(cmd));
  return blocks;
}

function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/** Usage, arguments and options of one command, from its commander definition. */
function commandMarkdown(cmd: Command): string {
  const help = cmd.createHelp();
  const lines = ["```", `taskmerge ${cmd.name()} ${help.commandUsage(cmd).split(" ").slice(2).join(" ")}`.trimEnd(), "```", ""];
  const args = help.visibleArguments(cmd);
  if (args.length)
    lines.push("| argument | meaning |", "|---|---|", ...args.map((a) => `| \`${help.argumentTerm(a)}\` | ${cell(help.argumentDescription(a))} |`), "");
  lines.push(
    "| option | meaning |",
    "|---|---|",
    ...help.visibleOptions(cmd).map((o) => `| \`${help.optionTerm(o)}\` | ${cell(help.optionDescription(o))} |`),
  );
  return lines.join("\n");
}

const BLOCK = /<!-- generated:([\w:.-]+) -->\n[\s\S]*?<!-- \/generated:\1 -->/g;

export const open = (name: string) => `<!-- generated:${name} -->`;
export const close = (name: string) => `<!-- /generated:${name} -->`;

/** The names of the generated blocks a document holds. */
export function blockNames(text: string): string[] {
  return [...text.matchAll(BLOCK)].map((m) => m[1]);
}

/** `text` with every generated block it holds re-rendered; a block with no renderer is an error. */
export function renderBlocks(text: string, blocks: Map<string, string> = generatedBlocks()): string {
  return text.replace(BLOCK, (_, name: string) => {
    const body = blocks.get(name);
    if (body === undefined) throw new Error(`generated block '${name}' has nothing to render it (a method or command that no longer exists?)`);
    return `${open(name)}\n${body}\n${close(name)}`;
  });
}

/** Where blocks of a kind live, and the section a missing one gets (a new method or command). */
const HOMES: { prefix: string; file: string; section: (name: string) => string }[] = [
  {
    prefix: "params:",
    file: "methods.md",
    section: (name) => `## \`${name}\`\n\n${listMethods().find((m) => m.name === name)!.description}.\n\nParameters:`,
  },
  {
    prefix: "cli:",
    file: "cli.md",
    section: (name) => `## taskmerge ${name}\n\n${buildProgram().commands.find((c) => c.name() === name)!.description()}.`,
  },
];

/**
 * docs/ (file name → text) brought up to date: every block re-rendered, and a
 * section appended for a method or command that has none yet.
 */
export function updateDocs(docs: Record<string, string>): Record<string, string> {
  const blocks = generatedBlocks();
  const out: Record<string, string> = {};
  for (const [file, text] of Object.entries(docs)) out[file] = renderBlocks(text, blocks);
  const present = new Set(Object.values(out).flatMap(blockNames));
  for (const name of blocks.keys()) {
    if (present.has(name)) continue;
    const home = HOMES.find((h) => name.startsWith(h.prefix));
    if (!home) continue;
    const bare = name.slice(home.prefix.length);
    out[home.file] = `${(out[home.file] ?? "").trimEnd()}\n\n${home.section(bare)}\n\n${open(name)}\n${blocks.get(name)}\n${close(name)}\n`;
  }
  return out;
}
