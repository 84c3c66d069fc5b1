/** GramAccumulator: float64 statistics from Float32/Float64 rows, the file it writes, and bad input. */
import * as fs from "fs";
import * as path from "path";
import { GramAccumulator, merge } from "../lib";
import { readHeader, readSafetensors, rng, tmpDir, values, makeZoo } from "./helpers/fixtures";
import { gram } from "./reference/linalg";
import { expectClose, lotModel, lotReference, TaskStats } from "./reference/lot";

function rows(k: number, n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: k * n }, (_, i) => (1 + (i % n)) * r.normal());
}

function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0, s = 0;
  for (let i = 0; i < b.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return m / (s || 1);
}

describe.each([{ builtin: false }, { builtin: true }])("GramAccumulator (built-in linear algebra: $builtin)", ({ builtin }) => {
  beforeEach(() => {
    if (builtin) process.env.TASKMERGE_LINALG = "builtin";
  });
  afterEach(() => {
    delete process.env.TASKMERGE_LINALG;
  });

  test("Σxxᵀ, Σx and the count over several chunks (float32 and float64 rows) match a float64 reference", async () => {
    const n = 20;
    const chunks = [rows(7, n, 1), rows(1500, n, 2), rows(1, n, 3)];
    const acc = new GramAccumulator();
    for (const c of chunks) await acc.add("blocks.0.mlp.fc1", c, n);
    const f64 = Float64Array.from(rows(33, n, 4), (x) => x / 3);
    await acc.add("blocks.0.mlp.fc1", f64, n);
    const all = [...chunks.flatMap((c) => Array.from(c)), ...Array.from(f64)];
    const k = all.length / n;
    const dir = tmpDir("tm-gram-");
    const file = path.join(dir, "task.stats.safetensors");
    await acc.save(file);
    const t = readSafetensors(file);
    expect(t["blocks.0.mlp.fc1.input_gram"]).toMatchObject({ dtype: "F64", shape: [n, n] });
    expect(maxRel(values(t["blocks.0.mlp.fc1.input_gram"]), gram(all, k, n))).toBeLessThan(1e-13);
    const sum = new Float64Array(n);
    all.forEach((x, i) => (sum[i % n] += x));
    expect(maxRel(values(t["blocks.0.mlp.fc1.input_sum"]), sum)).toBeLessThan(1e-13);
    expect(Array.from(values(t["blocks.0.mlp.fc1.input_count"]))).toEqual([k]);
    expect(t["blocks.0.mlp.fc1.input_count"].dtype).toBe("F64");
    expect(readHeader(file).__metadata__.format).toBe("taskmerge-stats");
    expect(fs.readdirSync(dir)).toEqual(["task.stats.safetensors"]); // no temporary left behind
  });

  test("normalisation statistics and float32 storage", async () => {
    const n = 6;
    const x = rows(50, n, 8);
    const acc = new GramAccumulator();
    await acc.addNorm("blocks.0.norm1", x, n);
    await acc.add("blocks.0.attn.qkv", x, n);
    expect(acc.modules()).toEqual(["blocks.0.norm1", "blocks.0.attn.qkv"]);
    expect(acc.count("blocks.0.norm1")).toBe(50);
    const file = path.join(tmpDir("tm-gram-"), "s.safetensors");
    await acc.save(file, { dtype: "f32" });
    const t = readSafetensors(file);
    const sq = new Float64Array(n), s = new Float64Array(n);
    x.forEach((v, i) => {
      sq[i % n] += v * v;
      s[i % n] += v;
    });
    expect(t["blocks.0.norm1.norm_sq_sum"].dtype).toBe("F32");
    expect(maxRel(values(t["blocks.0.norm1.norm_sq_sum"]), sq)).toBeLessThan(1e-7);
    expect(maxRel(values(t["blocks.0.norm1.norm_sum"]), s)).toBeLessThan(1e-6);
    expect(Array.from(values(t["blocks.0.norm1.input_count"]))).toEqual([50]);
    expect(t["blocks.0.attn.qkv.input_gram"]).toMatchObject({ dtype: "F32", shape: [n, n] });
  });
});

test("calls issued without awaiting are queued: same result as sequential", async () => {
  const n = 8;
  const a = new GramAccumulator(), b = new GramAccumulator();
  const cs = [0, 1, 2, 3, 4].map((i) => rows(40, n, 20 + i));
  await Promise.all(cs.map((c) => a.add("m", c, n)));
  for (const c of cs) await b.add("m", c, n);
  const dir = tmpDir("tm-gram-");
  await a.save(path.join(dir, "a.safetensors"));
  await b.save(path.join(dir, "b.safetensors"));
  expect(fs.readFileSync(path.join(dir, "a.safetensors")).equals(fs.readFileSync(path.join(dir, "b.safetensors")))).toBe(true);
});

test("bad input: clear errors, and a rejected chunk leaves the statistics unchanged", async () => {
  const acc = new GramAccumulator();
  await acc.add("m", rows(4, 3, 1), 3);
  await expect(acc.add("m", rows(4, 4, 1), 4)).rejects.toThrow(/width 4 differs from the earlier 3/);
  await expect(acc.add("m", new Float32Array(7), 3)).rejects.toThrow(/not a whole number of rows/);
  await expect(acc.addNorm("m", new Float32Array(3), 3)).rejects.toThrow(/already accumulated as a linear module/);
  await expect(acc.add("m", [1, 2, 3] as unknown as Float32Array, 3)).rejects.toThrow(/Float32Array/);
  await expect(acc.add("", new Float32Array(3), 3)).rejects.toThrow(/module name/);
  const bad = rows(5, 3, 2);
  bad[7] = NaN;
  await expect(acc.add("m", bad, 3)).rejects.toThrow(/input row 2 holds a non-finite value/);
  expect(acc.count("m")).toBe(4);
  const bad2 = new Float64Array(3).fill(Infinity);
  await expect(acc.add("n", bad2, 3)).rejects.toThrow(/non-finite/);
  expect(acc.modules()).toEqual(["m"]);
  const dir = tmpDir("tm-gram-");
  await acc.save(path.join(dir, "s.safetensors"));
  const G = values(readSafetensors(path.join(dir, "s.safetensors"))["m.input_gram"]);
  expect(maxRel(G, gram(rows(4, 3, 1), 4, 3))).toBeLessThan(1e-14);
  await expect(new GramAccumulator().save(path.join(dir, "empty.safetensors"))).rejects.toThrow(/no statistics/);
  await expect(acc.save(path.join(dir, "missing", "s.safetensors"))).rejects.toThrow(/missing/);
  expect(fs.readdirSync(dir)).toEqual(["s.safetensors"]);
});

test("statistics saved by GramAccumulator drive a LOT merge that matches the reference", async () => {
  const dir = tmpDir("tm-gram-");
  const keys = lotModel("F64");
  const zoo = makeZoo(dir, { T: 2, keys, seed: 4, scale: 0.05 });
  const stats: TaskStats[] = [];
  const files: string[] = [];
  for (let t = 0; t < 2; t++) {
    const acc = new GramAccumulator();
    const s: TaskStats = { grams: {}, counts: {}, norms: {} };
    for (const [m, n] of [["blocks.0.attn.qkv", 6], ["blocks.0.mlp.fc1", 6], ["blocks.0.mlp.fc2", 12]] as const) {
      const x = rows(30, n, 100 * t + n);
      await acc.add(m, x, n);
      s.grams[m] = gram(x, 30, n);
    }
    const xhat = rows(30, 6, 7 + t);
    await acc.addNorm("blocks.0.norm1", xhat, 6);
    s.norms["blocks.0.norm1"] = new Float64Array(6);
    xhat.forEach((v, i) => (s.norms["blocks.0.norm1"][i % 6] += v * v));
    files.push(path.join(dir, `t${t}.stats.safetensors`));
    await acc.save(files[t]);
    stats.push(s);
  }
  const out = path.join(dir, "out.safetensors");
  await merge({ base: zoo.base.path, experts: files.map((stats, t) => ({ path: path.join(dir, `task${t}.safetensors`), stats })), method: "lot", out });
  expectClose(out, zoo, keys, lotReference(keys, zoo.base, zoo.experts, stats, { solve: { kind: "ridge", eps: 1e-6 } }), 1e-9);
});

test("load() resumes from a saved file: same bytes as accumulating in one run", async () => {
  const n = 9;
  const dir = tmpDir("tm-gram-");
  const parts = [rows(30, n, 70), rows(45, n, 71)];
  const once = new GramAccumulator();
  for (const p of parts) await once.add("m", p, n);
  await once.addNorm("ln", parts[0], n);
  await once.save(path.join(dir, "once.safetensors"));
  const first = new GramAccumulator();
  await first.add("m", parts[0], n);
  await first.addNorm("ln", parts[0], n);
  await first.save(path.join(dir, "first.safetensors"));
  const resumed = await GramAccumulator.load(path.join(dir, "first.safetensors"));
  expect(resumed.count("m")).toBe(30);
  await resumed.add("m", parts[1], n);
  await resumed.save(path.join(dir, "resumed.safetensors"));
  expect(fs.readFileSync(path.join(dir, "resumed.safetensors")).equals(fs.readFileSync(path.join(dir, "once.safetensors")))).toBe(true);
  await expect(GramAccumulator.load(path.join(dir, "nope.safetensors"))).rejects.toThrow(/nope/);
});
