/** regmean against the float64 reference of the SPEC formula (full weights, Gauss–Jordan). */
import * as fs from "fs";
import * as path from "path";
import { merge } from "../lib";
import { expectClose, experts, setup, writeStats } from "./reference/lot";
import { regmeanReference } from "./reference/regmean";

describe.each([{ builtin: false }, { builtin: true }])("regmean (built-in linear algebra: $builtin)", ({ builtin }) => {
  test.each([0.95, 0.5, 1, 0])("alpha %p matches the reference; other parameters are the mean", async (alpha) => {
    const s = setup(3, 9, { seed: 5 });
    const out = path.join(s.dir, `rm${alpha}.safetensors`);
    if (builtin) process.env.TASKMERGE_LINALG = "builtin";
    let report;
    try {
      report = await merge({ base: s.zoo.base.path, experts: experts(s), method: { name: "regmean", alpha }, out });
    } finally {
      delete process.env.TASKMERGE_LINALG;
    }
    const ref = regmeanReference(s.keys, s.zoo.base, s.zoo.experts, s.stats, alpha);
    expectClose(out, s.zoo, s.keys, ref, 1e-9);
    expect(report.details.regmean).toEqual({ linear: 3, mean: 4, eighFallback: [] });
  });
});

test("the mean Gram matters: different row counts weigh the tasks differently", async () => {
  // Same raw Grams, but task 0 reports 10× the rows: its mean Gram, and its pull, shrink.
  const s = setup(2, 8, { seed: 9 });
  const scaled = { ...s.stats[0], counts: Object.fromEntries(Object.entries(s.stats[0].counts).map(([k, v]) => [k, 10 * v])) };
  writeStats(s.files[0], scaled);
  const out = path.join(s.dir, "counts.safetensors");
  await merge({ base: s.zoo.base.path, experts: experts(s), method: "regmean", out });
  expectClose(out, s.zoo, s.keys, regmeanReference(s.keys, s.zoo.base, s.zoo.experts, [scaled, s.stats[1]], 0.95), 1e-9);
});

test("missing input_count is an error naming the statistics file and key; missing Grams fall back to the mean", async () => {
  const s = setup(2, 8);
  const noCount = path.join(s.dir, "nocount.stats.safetensors");
  writeStats(noCount, s.stats[0]);
  // Rewrite without the count of fc1 by overriding it away: write the file by hand.
  const { readSafetensors, writeSafetensors } = await import("./helpers/fixtures");
  const t = readSafetensors(noCount);
  delete t["blocks.0.mlp.fc1.input_count"];
  writeSafetensors(noCount, t);
  const out = path.join(s.dir, "nc.safetensors");
  const err = await merge({ base: s.zoo.base.path, experts: [{ ...experts(s)[0], stats: noCount }, experts(s)[1]], method: "regmean", out }).catch((e) => e);
  expect(err.message).toContain(noCount);
  expect(err.message).toContain("blocks.0.mlp.fc1.input_count");
  expect(fs.existsSync(out)).toBe(false);

  writeStats(s.files[1], s.stats[1], { omit: ["blocks.0.attn.qkv"] });
  const report = await merge({ base: s.zoo.base.path, experts: experts(s), method: "regmean", out });
  expect(report.details.statsFallback).toContain("blocks.0.attn.qkv.weight");
  const partial = [s.stats[0], { ...s.stats[1], grams: { ...s.stats[1].grams } }];
  delete partial[1].grams["blocks.0.attn.qkv"];
  expectClose(out, s.zoo, s.keys, regmeanReference(s.keys, s.zoo.base, s.zoo.experts, partial, 0.95), 1e-9, ["blocks.0.attn.qkv.weight"]);
});

test("alpha outside [0, 1] is a usage error", async () => {
  const s = setup(2, 8);
  await expect(merge({ base: s.zoo.base.path, experts: experts(s), method: { name: "regmean", alpha: 1.5 }, out: path.join(s.dir, "a.safetensors") })).rejects.toThrow(/alpha/);
});
