/**
 * planMerge() / merge --dry-run on the cases the happy path does not show:
 * statistics (shape errors, missing files, partial coverage, stray keys),
 * sharded output planned exactly as written, and that nothing is ever written.
 */
import * as fs from "fs";
import * as path from "path";
import { planMerge, TaskmergeError, UsageError } from "../lib";
import { makeZoo, runCli, tmpDir, listTree, writeSafetensors, Zoo } from "./helpers/fixtures";

/** Statistics of the small model's linear layers and norm; values do not matter for planning. */
function writeStats(file: string, o: { omit?: string[]; badGram?: string; extra?: string } = {}): string {
  const t: Record<string, { dtype: string; shape: number[]; data: Buffer }> = {};
  const f32 = (shape: number[]) => ({ dtype: "F32", shape, data: Buffer.alloc(4 * shape.reduce((a, b) => a * b, 1)) });
  for (const [mod, inDim] of [["blocks.0.attn.qkv", 8], ["blocks.0.mlp.fc1", 8], ["blocks.0.mlp.fc2", 32]] as const) {
    if (o.omit?.includes(mod)) continue;
    t[`${mod}.input_gram`] = f32(mod === o.badGram ? [inDim, inDim + 1] : [inDim, inDim]);
    t[`${mod}.input_count`] = { dtype: "F64", shape: [1], data: Buffer.from(new Float64Array([10]).buffer) };
  }
  if (!o.omit?.includes("blocks.0.norm")) t["blocks.0.norm.norm_sq_sum"] = f32([8]);
  if (o.extra) t[o.extra] = f32([8, 8]);
  writeSafetensors(file, t);
  return file;
}

let zoo: Zoo;
let dir: string;
beforeAll(() => {
  dir = tmpDir("tm-plan-");
  zoo = makeZoo(dir, { T: 2 });
});
const p = (name: string) => path.join(dir, name);

describe("statistics in the plan", () => {
  test("coverage, fallbacks and stray statistics keys", async () => {
    const a = writeStats(p("a.stats.safetensors"), { extra: "model.blocks.0.attn.qkv.input_gram" });
    const b = writeStats(p("b.stats.safetensors"), { omit: ["blocks.0.mlp.fc1"] });
    const plan = await planMerge({
      base: zoo.base.path, experts: [{ path: zoo.experts[0].path, stats: a }, { path: zoo.experts[1].path, stats: b }],
      method: "lot", out: p("never.safetensors"),
    });
    expect(plan.statistics!.withStats.sort()).toEqual(["blocks.0.attn.qkv.weight", "blocks.0.mlp.fc2.weight", "blocks.0.norm.weight"]);
    expect(plan.statistics!.fallback).toEqual([
      { key: "embed.weight", missingFrom: ["task0", "task1"] },
      { key: "blocks.0.mlp.fc1.weight", missingFrom: ["task1"] },
    ]);
    // The Grams (8·8 and 32·32 F32) and counts of the covered linear layers, and the norm sums, from both experts.
    expect(plan.statistics!.bytes).toBe(2 * (4 * 64 + 8 + 4 * 1024 + 8 + 4 * 8));
    expect(plan.io.statisticsBytes).toBe(plan.statistics!.bytes);
    expect(plan.memory.statistics).toBeGreaterThan(0);
    expect(plan.warnings).toEqual([
      ...[a, b].map((f, t) => `${f}: the statistics do not record which checkpoint they were collected from; cannot check that they belong to expert 'task${t}'`),
      `${a}: 1 statistics tensor matches no weight of the base (first: 'model.blocks.0.attn.qkv.input_gram')`,
    ]);
    expect(fs.existsSync(p("never.safetensors"))).toBe(false);
  });

  test("a statistics tensor of the wrong shape fails the dry run like the merge, naming file and key (CLI: exit 1)", async () => {
    const good = writeStats(p("good.stats.safetensors"));
    const bad = writeStats(p("bad.stats.safetensors"), { badGram: "blocks.0.mlp.fc2" });
    const before = listTree(dir);
    const args = ["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--stats", good, "--expert", zoo.experts[1].path,
      "--stats", bad, "--method", "regmean", "--out", p("out")];
    const [dry, real] = await Promise.all([runCli([...args, "--dry-run"]), runCli(args)]);
    // The merge warns first that these test statistics record no source checkpoint; the error line is the same.
    const errors = (r: { stderr: string }) => r.stderr.split("\n").filter((l) => !l.startsWith("warning: ")).join("\n").trim();
    for (const r of [dry, real]) {
      expect(r.code).toBe(1);
      expect(errors(r)).toMatch(/^taskmerge: error: statistics tensor is F32 \[32, 33\] .*"blocks\.0\.mlp\.fc2\.weight" \[8, 32\].*bad\.stats\.safetensors.*blocks\.0\.mlp\.fc2\.input_gram/);
    }
    expect(errors(dry)).toBe(errors(real));
    expect(listTree(dir)).toEqual(before);
  });

  test("a method that needs statistics without them fails the dry run", async () => {
    await expect(planMerge({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), method: "lot", out: p("x") })).rejects.toThrow(
      /lot needs a statistics file per expert.*'task0', 'task1'/,
    );
    await expect(planMerge({ base: zoo.base.path, experts: zoo.experts.map((e) => e.path), method: "lot", out: p("x") })).rejects.toBeInstanceOf(
      TaskmergeError,
    );
  });

  test("statistics given to a method that does not use them: a usage error, in the dry run as in the merge", async () => {
    const s = writeStats(p("unused.stats.safetensors"));
    const err = await planMerge({ base: zoo.base.path, experts: zoo.experts.map((e) => ({ path: e.path, stats: s })), method: "average", out: p("y") }).catch((e) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/statistics given .* but the method uses none/);
  });
});

describe("output in the plan", () => {
  test("sharded directory output: the planned files are the files written, byte for byte in size", async () => {
    const args = ["merge", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--expert", zoo.experts[1].path,
      "--method", "average", "--max-shard-size", "1200", "--out", p("sharded")];
    const dry = await runCli([...args, "--dry-run", "--json"]);
    expect(dry.code).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan.out.files.length).toBeGreaterThan(1);
    expect(fs.existsSync(p("sharded"))).toBe(false);
    const real = await runCli([...args, "-q"]);
    expect(real.code).toBe(0);
    const written = plan.out.files.map((f: { name: string }) => ({ name: f.name, bytes: fs.statSync(path.join(p("sharded"), f.name)).size }));
    expect(plan.out.files).toEqual(written);
    expect(fs.existsSync(path.join(p("sharded"), "model.safetensors.index.json"))).toBe(true);
  });

  test("an output path that cannot be written fails the dry run (exit 1), writing nothing", async () => {
    fs.writeFileSync(p("a-file"), "x");
    const r = await runCli(["merge", "--dry-run", "--base", zoo.base.path, "--expert", zoo.experts[0].path, "--method", "average", "--out", p("a-file")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/output path exists and is not a directory.*a-file/);
    expect(fs.readFileSync(p("a-file"), "utf8")).toBe("x");
  });
});
