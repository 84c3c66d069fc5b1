/** Text form of a dry run's plan (merge --dry-run). */
import type { MergePlan } from "../job/plan";
import { formatBytes } from "../units";

const SHOW_TENSORS = 6;

/** A model's resolved parameters: weight 0.5, density [1, 0.7, 0.1] (a gradient), weight [mlp: 0.5, *: 0] (filters). */
function formatModelParams(p: Record<string, unknown>): string {
  const show = (v: unknown): string =>
    Array.isArray(v)
      ? `[${v.map((x) => (typeof x === "object" && x !== null ? `${(x as { filter?: string }).filter ?? "*"}: ${show((x as { value: unknown }).value)}` : String(x))).join(", ")}]`
      : String(v);
  return Object.entries(p).map(([k, v]) => `${k} ${show(v)}`).join(", ");
}

export function formatPlan(p: MergePlan): string {
  const L: string[] = [];
  const row = (label: string, text: string) => L.push(`${label.padEnd(11)}${text}`);
  const more = (text: string) => L.push(`${"".padEnd(11)}${text}`);
  const params = Object.entries(p.params).map(([k, v]) => `${k}=${v}`).join(", ");
  L.push("dry run: all inputs checked; nothing was written");
  row("method", `${p.method}${params ? ` (${params})` : ""}`);
  row("base", `${p.base.path} (${p.base.layout}, ${p.base.tensors} tensors, ${formatBytes(p.base.bytes)})`);
  p.experts.forEach((e, i) =>
    (i ? more : (t: string) => row("experts", t))(
      `${e.name}: ${e.path} (${e.layout}, ${formatBytes(e.bytes)}${e.parameters ? "" : e.weight !== 1 ? `, weight ${e.weight}` : ""}` +
        `${e.stats ? `, stats ${e.stats}` : ""}${e.parameters ? `, ${formatModelParams(e.parameters)}` : ""})`,
    ),
  );
  row("checks", "headers read; keys, shapes and dtypes match the base; the output path is writable");
  const merged = p.tensors.filter((t) => t.action === "merge").length;
  const total = p.tensors.reduce((n, t) => n + t.bytes, 0);
  row(
    "output",
    `${p.out.path} (${p.out.kind}, float dtype: ${p.out.dtype === "base" ? "the base's" : p.out.dtype}): ` +
      `${p.tensors.length} tensors, ${merged} merged and ${p.tensors.length - merged} copied from the base, ${formatBytes(total)}`,
  );
  for (const f of p.out.files) more(`${f.name}  ${formatBytes(f.bytes)}`);
  if (p.out.kind === "directory") {
    more(`taskmerge.json, README.md (model card)${p.out.files.length > 1 ? ", model.safetensors.index.json" : ""}`);
    if (p.out.copied.length) more(`copied from the base: ${p.out.copied.join(", ")}`);
  }
  const w = [0, 1, 2].map((i) =>
    Math.max(...p.tensors.slice(0, SHOW_TENSORS).map((t) => [t.key, t.dtype, `[${t.shape.join(", ")}]`][i].length)),
  );
  p.tensors.slice(0, SHOW_TENSORS).forEach((t, i) => {
    const line = `${t.key.padEnd(w[0])}  ${t.dtype.padEnd(w[1])}  ${`[${t.shape.join(", ")}]`.padEnd(w[2])}  ${t.action.padEnd(5)}  ${formatBytes(t.bytes)}`;
    (i ? more : (x: string) => row("keys", x))(line);
  });
  if (p.tensors.length > SHOW_TENSORS) more(`… and ${p.tensors.length - SHOW_TENSORS} more`);
  if (p.progressive) {
    const g = p.progressive.groups;
    row("progressive", `${g.length} groups in merge order: ${g.map((x) => `${x.name} (${x.keys})`).join(", ")}`);
  }
  if (p.statistics) {
    const s = p.statistics;
    row("statistics", `${s.withStats.length} weights have statistics from every expert (${formatBytes(s.bytes)} to read)`);
    if (s.fallback.length) {
      const first = s.fallback.slice(0, 3).map((f) => `${f.key} (missing from ${f.missingFrom.join(", ")})`);
      more(`${s.fallback.length} fall back to the mean of the experts: ${first.join("; ")}${s.fallback.length > 3 ? "; …" : ""}`);
    }
  }
  row(
    "I/O",
    `reads ${formatBytes(p.io.bytesPerPass)} per pass over the inputs` +
      `${p.io.statisticsBytes ? ` and ${formatBytes(p.io.statisticsBytes)} of statistics` : ""}, writes ${formatBytes(p.io.bytesWritten)}`,
  );
  const m = p.memory;
  row(
    "memory",
    `~${formatBytes(m.peakBytes)} peak (estimate: streaming buffers ${formatBytes(m.buffers)}` +
      `${m.statistics ? `, statistics ${formatBytes(m.statistics)}` : ""}, runtime ${formatBytes(m.runtime)})`,
  );
  for (const w of p.warnings) L.push(`warning: ${w}`);
  return L.join("\n") + "\n";
}
