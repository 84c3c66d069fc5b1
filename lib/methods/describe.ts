/**
 * The methods' parameter declarations (ParamSpec) as text: the command-line
 * flags, `taskmerge methods`, `merge --help`, the merge summary line and the
 * tables in docs/methods.md (scripts/gen-docs.js) all come from here, so they
 * cannot drift from the declarations.
 */
import type { MergeMethod, Params, ParamSpec } from "../engine/context";
import { listMethods } from "./index";

/** The command-line flag of a parameter: `tall_lambda` → `--tall-lambda`. */
export function flagOf(name: string): string {
  return `--${name.replace(/_/g, "-")}`;
}

/** The value's kind and allowed range: "number in [0, 1]", "global | tensor", "integer ≥ 0". */
export function describeType(p: ParamSpec): string {
  if (p.choices) return p.choices.join(" | ");
  const max = p.max === Number.MAX_SAFE_INTEGER ? undefined : p.max;
  if (p.min !== undefined && max !== undefined) return `${p.type} in [${p.min}, ${max}]`;
  if (p.min !== undefined) return `${p.type} ≥ ${p.min}`;
  if (max !== undefined) return `${p.type} ≤ ${max}`;
  return p.type;
}

export function formatDefault(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
}

/** One command-line flag per parameter name, with the methods that declare it. */
export interface ParamFlag {
  name: string;
  flag: string;
  spec: ParamSpec;
  methods: string[];
  /** The choices, when every method declaring the parameter has the same ones. */
  choices?: readonly string[];
  /** The description, when every method declaring the parameter has the same one. */
  description?: string;
}

export function paramFlags(methods: readonly MergeMethod[] = listMethods()): ParamFlag[] {
  const byName = new Map<string, ParamFlag>();
  for (const m of methods)
    for (const p of m.params) {
      const f = byName.get(p.name);
      if (!f) byName.set(p.name, { name: p.name, flag: flagOf(p.name), spec: p, methods: [m.name], choices: p.choices, description: p.description });
      else {
        f.methods.push(m.name);
        if (f.choices && (!p.choices || p.choices.join("\0") !== f.choices.join("\0"))) f.choices = undefined;
        if (f.description !== p.description) f.description = undefined;
      }
    }
  return [...byName.values()];
}

/** The placeholder of a flag's value: `<x>` a number, `<n>` an integer, `<s>` a string. */
export function valuePlaceholder(p: ParamSpec): string {
  // A boolean parameter is a switch: its flag takes no value.
  return p.type === "boolean" ? "" : p.type === "number" ? "<x>" : p.type === "integer" ? "<n>" : "<s>";
}

function table(rows: string[][], indent: string): string[] {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => (indent + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]))).join("  ")).trimEnd());
}

/**
 * Every method with its parameters, types, defaults and descriptions, for a
 * terminal. `flags` names the parameters by their command-line flags.
 */
export function formatMethodsText(opts: { flags?: boolean; methods?: readonly MergeMethod[] } = {}): string {
  const lines: string[] = [];
  for (const m of opts.methods ?? listMethods()) {
    lines.push(`${m.name}${m.needsStats ? " (needs statistics: --stats per expert)" : ""}`, `  ${m.description}`);
    if (!m.params.length) lines.push("  no parameters");
    else
      lines.push(
        ...table(
          m.params.map((p) => [opts.flags ? flagOf(p.name) : p.name, describeType(p), `default ${formatDefault(p.default)}`, p.description]),
          "    ",
        ),
      );
    lines.push("");
  }
  return lines.join("\n");
}

/** Keeps a markdown table cell on one row. */
function cell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/** A method's parameter table in markdown (docs/methods.md). */
export function methodParamsMarkdown(m: MergeMethod): string {
  if (!m.params.length) return `\`${m.name}\` takes no parameters.`;
  return [
    "| parameter | flag | type | default | description |",
    "|---|---|---|---|---|",
    ...m.params.map(
      (p) => `| \`${p.name}\` | \`${flagOf(p.name)}\` | ${cell(describeType(p))} | \`${cell(formatDefault(p.default))}\` | ${cell(p.description)} |`,
    ),
  ].join("\n");
}

/** The parameters a merge ran with, for the summary line: "density=0.2, scope=global". */
export function formatParams(params: Params): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${formatDefault(v)}`)
    .join(", ");
}
