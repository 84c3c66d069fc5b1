/**
 * taskmerge drift: values against a float64 reference of the definition, and
 * LOT's optimality: on the statistics it was solved with, no other method has
 * a lower summed-over-tasks drift on any linear layer (or norm scale).
 */
import * as path from "path";
import { drift, merge, DriftReport, MethodSpec, Progress } from "../lib";
import { readSafetensors, runCli, values } from "./helpers/fixtures";
import { experts, setup, Setup } from "./reference/lot";
import { matmul, transpose } from "./reference/linalg";

/** tr(D G Dᵀ), D = W − Wt, plain loops. */
function refLinearDrift(W: Float64Array, Wt: Float64Array, G: Float64Array, out: number, inn: number): number {
  const D = W.map((v, i) => v - Wt[i]);
  const DG = matmul(D, G, out, inn, inn);
  const DGDt = matmul(DG, transpose(D, out, inn), out, inn, out);
  let tr = 0;
  for (let i = 0; i < out; i++) tr += DGDt[i * out + i];
  return tr;
}

async function mergeAndMeasure(s: Setup, method: Record<string, unknown> & { name: string }, tag: string): Promise<DriftReport> {
  const out = path.join(s.dir, `${tag}.safetensors`);
  // Only the statistics methods take the statistics files.
  const withStats = method.name === "lot" || method.name === "regmean";
  await merge({ base: s.zoo.base.path, experts: withStats ? experts(s) : experts(s).map((e) => e.path), method: method as MethodSpec, out });
  return drift({ base: s.zoo.base.path, merged: out, experts: experts(s) });
}

test.each([
  ["full-rank statistics", 20, { name: "lot", ridge: 0 }],
  ["rank-deficient statistics", 4, { name: "lot", solver: "eigh" }],
])("%s: LOT has the lowest drift of all methods on every linear layer and norm scale", async (_label, rows, lotMethod) => {
  const s = setup(3, rows as number, { seed: 11 });
  const lot = await mergeAndMeasure(s, lotMethod as { name: string }, "lot");
  const others = {
    average: await mergeAndMeasure(s, { name: "average" }, "average"),
    task_arithmetic: await mergeAndMeasure(s, { name: "task_arithmetic" }, "ta"),
    task_arithmetic_1: await mergeAndMeasure(s, { name: "task_arithmetic", lambda: 1 }, "ta1"),
    regmean: await mergeAndMeasure(s, { name: "regmean" }, "regmean"),
    lot_lambda: await mergeAndMeasure(s, { name: "lot", lambda: 0.8 }, "lot08"),
  };
  expect(lot.layers.map((l) => l.key)).toEqual(["blocks.0.norm1.weight", "blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight"]);
  for (const [name, r] of Object.entries(others)) {
    for (const [i, l] of lot.layers.entries()) {
      const o = r.layers[i];
      expect(o.key).toBe(l.key);
      if (!(l.total <= o.total * (1 + 1e-9))) throw new Error(`${l.key}: lot ${l.total} > ${name} ${o.total}`);
      // Base drift does not depend on the merge.
      expect(o.baseTotal).toBeCloseTo(l.baseTotal, 10);
    }
    expect(lot.total).toBeLessThan(r.total);
  }
});

test("drift values match the definition; base drift is tr(Tt Gt Ttᵀ); totals add up; progress is reported", async () => {
  const s = setup(2, 10, { seed: 12 });
  const r = await mergeAndMeasure(s, { name: "task_arithmetic", lambda: 0.5 }, "ta");
  const seen: Progress[] = [];
  await drift({ base: s.zoo.base.path, merged: path.join(s.dir, "ta.safetensors"), experts: experts(s), onProgress: (p) => seen.push({ ...p }) });
  const last = seen[seen.length - 1];
  expect(last).toMatchObject({ phase: "drift", tensorsDone: 4, tensorsTotal: 4 });
  expect(last.bytesDone).toBe(last.bytesTotal);
  const merged = readSafetensors(path.join(s.dir, "ta.safetensors"));
  for (const l of r.layers) {
    const W = values(merged[l.key]);
    const prefix = l.key.slice(0, -".weight".length);
    s.zoo.experts.forEach((e, t) => {
      const Wt = e.floats[l.key];
      const W0 = s.zoo.base.floats[l.key];
      let d: number, d0: number;
      if (l.kind === "linear") {
        const [out, inn] = s.zoo.base.raw[l.key].shape;
        d = refLinearDrift(W, Wt, s.stats[t].grams[prefix], out, inn);
        d0 = refLinearDrift(W0, Wt, s.stats[t].grams[prefix], out, inn);
      } else {
        const st = s.stats[t].norms[prefix];
        d = W.reduce((acc, w, i) => acc + st[i] * (w - Wt[i]) ** 2, 0);
        d0 = W0.reduce((acc, w, i) => acc + st[i] * (w - Wt[i]) ** 2, 0);
      }
      expect(l.drift[t]).toBeCloseTo(d, 10);
      expect(Math.abs(l.drift[t] - d) / d).toBeLessThan(1e-10);
      expect(Math.abs(l.baseDrift[t] - d0) / d0).toBeLessThan(1e-10);
    });
  }
  r.totals.forEach((tt, t) => {
    expect(tt.drift).toBeCloseTo(r.layers.reduce((a, l) => a + l.drift[t], 0), 10);
    expect(tt.ratio).toBeCloseTo(tt.drift / tt.baseDrift, 12);
  });
  expect(r.tasks).toEqual(["task0", "task1"]);
  expect(r.skipped).toEqual(["embed.weight"]);
});

describe("CLI", () => {
  const s = setup(2, 10, { seed: 13 });
  const mergedPath = path.join(s.dir, "avg.safetensors");
  const args = () => ["drift", "--base", s.zoo.base.path, ...experts(s).flatMap((e) => ["--expert", e.path, "--stats", e.stats]), "--merged", mergedPath];
  beforeAll(async () => {
    await merge({ base: s.zoo.base.path, experts: experts(s).map((e) => e.path), method: "average", out: mergedPath });
  });

  test("prints a table with per-task columns and total/base/ratio rows; --json is the API report", async () => {
    const r = await runCli([...args(), "-q"]);
    // Only the warnings that these test statistics record no source checkpoint.
    expect(r.stderr.split("\n").filter((l) => l && !l.startsWith("warning: "))).toEqual([]);
    expect(r.code).toBe(0);
    const loud = await runCli(args());
    expect(loud.stdout).toBe(r.stdout);
    expect(loud.stderr).toMatch(/drift/); // progress lines on a non-terminal stderr
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^layer\s+kind\s+task0\s+task1\s+total$/);
    expect(lines.some((l) => /^blocks\.0\.mlp\.fc2\.weight\s+linear\s/.test(l))).toBe(true);
    expect(lines.some((l) => /^blocks\.0\.norm1\.weight\s+norm\s/.test(l))).toBe(true);
    for (const row of ["total", "base", "ratio"]) expect(lines.some((l) => l.startsWith(row + " "))).toBe(true);
    expect(r.stdout).toContain("not measured (statistics missing for some expert): embed.weight");
    const j = await runCli([...args(), "--json"]);
    const report = JSON.parse(j.stdout) as DriftReport;
    const api = await drift({ base: s.zoo.base.path, merged: mergedPath, experts: experts(s) });
    expect(report.total).toBeCloseTo(api.total, 12);
    expect(report.layers.length).toBe(4);
  });

  test("usage errors exit 2: no stats, or a stats count that differs from the experts", async () => {
    const noStats = await runCli(["drift", "--base", s.zoo.base.path, "--expert", experts(s)[0].path, "--merged", mergedPath]);
    expect(noStats.code).toBe(2);
    expect(noStats.stderr).toMatch(/--stats/);
    const wrong = await runCli([...args(), "--stats", experts(s)[0].stats]);
    expect(wrong.code).toBe(2);
  });

  test("a merged checkpoint with different keys is an error naming it", async () => {
    const r = await runCli(["drift", "--base", s.zoo.base.path, ...experts(s).flatMap((e) => ["--expert", e.path, "--stats", e.stats]), "--merged", s.files[0]]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(s.files[0]);
  });
});
