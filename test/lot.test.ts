/**
 * lot against the float64 reference (test/reference/lot.ts): full-rank and
 * rank-deficient Grams, the ridge limit, normalisation scales, the mean
 * fallback for missing statistics, and bad statistics. Runs the linear algebra
 * through each implementation: in process (OpenBLAS and built-in paths) and,
 * with TASKMERGE_GYP_ADDON, the node-gyp addon through the CLI.
 */
import * as fs from "fs";
import * as path from "path";
import { merge } from "../lib";
import { KeySpec, makeZoo, readSafetensors, runCli, tmpDir, values } from "./helpers/fixtures";
import { expectClose, experts, FLOAT_KEYS, lotReference, makeStats, relErr, setup, storedStats, writeAllStats, writeStats } from "./reference/lot";

/** Runs the merge with the built-in linear algebra forced, or the default. */
async function withLinalg<T>(builtin: boolean, fn: () => Promise<T>): Promise<T> {
  if (!builtin) return fn();
  process.env.TASKMERGE_LINALG = "builtin";
  try {
    return await fn();
  } finally {
    delete process.env.TASKMERGE_LINALG;
  }
}

describe.each([{ name: "default linear algebra", builtin: false }, { name: "built-in linear algebra", builtin: true }])("lot ($name)", ({ builtin }) => {
  test("full-rank Grams: linear layers, norm scales and the mean elsewhere match the reference (λ = 1.3, default ridge)", async () => {
    const s = setup(3, 20);
    const out = path.join(s.dir, "out.safetensors");
    const report = await withLinalg(builtin, () => merge({ base: s.zoo.base.path, experts: experts(s), method: { name: "lot", lambda: 1.3 }, out }));
    const ref = lotReference(s.keys, s.zoo.base, s.zoo.experts, s.stats, { lambda: 1.3, solve: { kind: "ridge", eps: 1e-6 } });
    expectClose(out, s.zoo, s.keys, ref, 1e-10);
    expect(report.details.lot).toEqual({ linear: 3, norm: 1, mean: 3, eighFallback: [] });
    expect(report.details.statsFallback).toEqual(["embed.weight"]);
    // The ridge is a real, small perturbation: the exact solution is close but not identical.
    const exact = lotReference(s.keys, s.zoo.base, s.zoo.experts, s.stats, { lambda: 1.3 });
    expectClose(out, s.zoo, s.keys, exact, 1e-4);
  });

  test("rank-deficient Grams (fewer rows than width): solver eigh gives the pseudo-inverse solution", async () => {
    const s = setup(2, 4); // 8 rows in all: width-6 layers full rank, fc2 (width 12) rank 8
    const out = path.join(s.dir, "eigh.safetensors");
    const report = await withLinalg(builtin, () => merge({ base: s.zoo.base.path, experts: experts(s), method: { name: "lot", solver: "eigh" }, out }));
    const ref = lotReference(s.keys, s.zoo.base, s.zoo.experts, s.stats, { solve: { kind: "pinv" } });
    expectClose(out, s.zoo, s.keys, ref, 1e-8);
    expect(report.details.lot).toMatchObject({ linear: 3, eighFallback: [] });
  });

  test("ridge limit: as ε → 0 the Cholesky solution approaches the pseudo-inverse one", async () => {
    const s = setup(2, 4);
    const pinv = lotReference(s.keys, s.zoo.base, s.zoo.experts, s.stats, { solve: { kind: "pinv" } });
    const errs: number[] = [];
    for (const ridge of [1e-2, 1e-4, 1e-6, 1e-9]) {
      const out = path.join(s.dir, `ridge${ridge}.safetensors`);
      await withLinalg(builtin, () => merge({ base: s.zoo.base.path, experts: experts(s), method: { name: "lot", solver: "cholesky", ridge }, out }));
      const got = readSafetensors(out);
      const k = "blocks.0.mlp.fc2.weight";
      errs.push(relErr(values(got[k]), pinv[k], s.zoo.base.floats[k]));
      // Each ε is exactly the ridged system of the reference.
      const ridged = lotReference(s.keys, s.zoo.base, s.zoo.experts, s.stats, { solve: { kind: "ridge", eps: ridge } });
      expectClose(out, s.zoo, s.keys, ridged, ridge < 1e-6 ? 1e-5 : 1e-8);
    }
    for (let i = 1; i < errs.length; i++) expect(errs[i]).toBeLessThan(errs[i - 1]);
    expect(errs[errs.length - 1]).toBeLessThan(1e-6);
    expect(errs[0]).toBeGreaterThan(1e-3);
  });
});

test("solver eigh on full-rank Grams is the exact solve; auto with ridge 0 too", async () => {
  const s = setup(2, 15);
  const exact = lotReference(s.keys, s.zoo.base, s.zoo.experts, s.stats, {});
  for (const method of [{ name: "lot", solver: "eigh" }, { name: "lot", solver: "auto", ridge: 0 }] as const) {
    const out = path.join(s.dir, `${method.solver}.safetensors`);
    await merge({ base: s.zoo.base.path, experts: experts(s), method, out });
    expectClose(out, s.zoo, s.keys, exact, 1e-9);
  }
});

test("float32 statistics files and float32/bfloat16 checkpoints", async () => {
  const s = setup(2, 12, { statsDtype: "F32" });
  const ref = lotReference(s.keys, s.zoo.base, s.zoo.experts, s.stats.map((x) => storedStats(x, "F32")), { solve: { kind: "ridge", eps: 1e-6 } });
  const out = path.join(s.dir, "f32.safetensors");
  await merge({ base: s.zoo.base.path, experts: experts(s), method: "lot", out, dtype: "f32" });
  expectClose(out, s.zoo, s.keys, ref, 1e-5);
  const h = readSafetensors(out);
  expect(h["blocks.0.mlp.fc1.weight"].dtype).toBe("F32");
  const bf = path.join(s.dir, "bf16.safetensors");
  await merge({ base: s.zoo.base.path, experts: experts(s), method: "lot", out: bf, dtype: "bf16" });
  const got = readSafetensors(bf);
  for (const k of FLOAT_KEYS(s.keys)) {
    expect(got[k].dtype).toBe("BF16");
    const v = values(got[k]);
    // Rounded to nearest: within half a bfloat16 ulp (2^-8 relative) of the reference.
    v.forEach((x, i) => expect(Math.abs(x - ref[k][i])).toBeLessThanOrEqual(2 ** -8 * Math.abs(ref[k][i]) + 1e-6));
  }
});

test("missing statistics: the parameter falls back to the mean and is reported (API and CLI)", async () => {
  const s = setup(3, 20);
  // task1 has no statistics for fc1 nor for the norm.
  writeStats(s.files[1], s.stats[1], { omit: ["blocks.0.mlp.fc1", "blocks.0.norm1"] });
  const out = path.join(s.dir, "fb.safetensors");
  const report = await merge({ base: s.zoo.base.path, experts: experts(s), method: { name: "lot", lambda: 0.9 }, out });
  const partial = s.stats.map((x, t) => (t === 1 ? { ...x, grams: { ...x.grams } } : x));
  delete partial[1].grams["blocks.0.mlp.fc1"];
  const ref = lotReference(s.keys, s.zoo.base, s.zoo.experts, [s.stats[0], { ...s.stats[1], grams: partial[1].grams, norms: {} }, s.stats[2]], {
    lambda: 0.9, solve: { kind: "ridge", eps: 1e-6 },
  });
  expectClose(out, s.zoo, s.keys, ref, 1e-10, ["blocks.0.mlp.fc1.weight"]);
  expect(report.details.statsFallback).toEqual(["embed.weight", "blocks.0.norm1.weight", "blocks.0.mlp.fc1.weight"]);

  const cli = await runCli(["merge", "--base", s.zoo.base.path, ...experts(s).flatMap((e) => ["--expert", e.path, "--stats", e.stats]),
    "--method", "lot", "--lambda", "0.9", "--out", path.join(s.dir, "cli.safetensors")]);
  expect(cli.stderr).toContain("blocks.0.mlp.fc1.weight");
  expect(cli.code).toBe(0);
  expectClose(path.join(s.dir, "cli.safetensors"), s.zoo, s.keys, ref, 1e-10, ["blocks.0.mlp.fc1.weight"]);
});

describe("bad statistics", () => {
  const s = setup(2, 10);
  const k = "blocks.0.attn.qkv.input_gram";
  const run = (out: string) => merge({ base: s.zoo.base.path, experts: experts(s), method: "lot", out });

  test("a Gram whose shape does not match the weight: error names the statistics file and key, no output", async () => {
    const bad = path.join(s.dir, "bad-shape.stats.safetensors");
    writeStats(bad, s.stats[1], { override: { [k]: { dtype: "F64", shape: [5, 5], data: Buffer.alloc(200) } } });
    const out = path.join(s.dir, "x.safetensors");
    const err = await merge({ base: s.zoo.base.path, experts: [experts(s)[0], { ...experts(s)[1], stats: bad }], method: "lot", out }).catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toContain(bad);
    expect(err.message).toContain(k);
    expect(fs.existsSync(out)).toBe(false);
  });

  test("a norm statistic of the wrong length is an error too", async () => {
    const bad = path.join(s.dir, "bad-norm.stats.safetensors");
    writeStats(bad, s.stats[0], { override: { "blocks.0.norm1.norm_sq_sum": { dtype: "F64", shape: [7], data: Buffer.alloc(56) } } });
    const err = await merge({ base: s.zoo.base.path, experts: [{ ...experts(s)[0], stats: bad }, experts(s)[1]], method: "lot", out: path.join(s.dir, "y.safetensors") }).catch((e) => e);
    expect(err.message).toContain("blocks.0.norm1.norm_sq_sum");
    expect(err.message).toContain(bad);
  });

  test("NaN in a Gram: error names the statistics file, no output", async () => {
    const G = Float64Array.from(s.stats[0].grams["blocks.0.attn.qkv"]);
    G[7] = NaN;
    const bad = path.join(s.dir, "nan.stats.safetensors");
    writeStats(bad, { ...s.stats[0], grams: { ...s.stats[0].grams, "blocks.0.attn.qkv": G } });
    const out = path.join(s.dir, "z.safetensors");
    const err = await merge({ base: s.zoo.base.path, experts: [{ ...experts(s)[0], stats: bad }, experts(s)[1]], method: "lot", out }).catch((e) => e);
    expect(err.message).toMatch(/non-finite/);
    expect(err.message).toContain(bad);
    expect(err.message).toContain(k);
    expect(fs.existsSync(out)).toBe(false);
  });

  test("a negative Σx̂² of a norm scale: error names the statistics file and key", async () => {
    const bad = path.join(s.dir, "neg.stats.safetensors");
    const v = Float64Array.from(s.stats[1].norms["blocks.0.norm1"]);
    v[2] = -1;
    writeStats(bad, { ...s.stats[1], norms: { "blocks.0.norm1": v } });
    const err = await merge({ base: s.zoo.base.path, experts: [experts(s)[0], { ...experts(s)[1], stats: bad }], method: "lot", out: path.join(s.dir, "v.safetensors") }).catch((e) => e);
    expect(err.message).toMatch(/negative or non-finite/);
    expect(err.message).toContain(bad);
    expect(err.message).toContain("blocks.0.norm1.norm_sq_sum");
  });

  test("no statistics files at all is an error", async () => {
    const err = await merge({ base: s.zoo.base.path, experts: experts(s).map((e) => e.path), method: "lot", out: path.join(s.dir, "w.safetensors") }).catch((e) => e);
    expect(err.message).toMatch(/lot needs a statistics file per expert/);
  });

  test("cholesky forced on a singular Gram sum with ridge 0 is a clear error; auto falls back", async () => {
    const t = setup(2, 2); // 4 rows < width 6
    const ex = experts(t);
    const err = await merge({ base: t.zoo.base.path, experts: ex, method: { name: "lot", solver: "cholesky", ridge: 0 }, out: path.join(t.dir, "c.safetensors") }).catch((e) => e);
    expect(err.message).toMatch(/not positive definite/);
    const out = path.join(t.dir, "a.safetensors");
    const report = await merge({ base: t.zoo.base.path, experts: ex, method: { name: "lot", ridge: 0 }, out });
    expect((report.details.lot as { eighFallback: string[] }).eighFallback.length).toBe(3);
    const ref = lotReference(t.keys, t.zoo.base, t.zoo.experts, t.stats, { solve: { kind: "pinv" } });
    expectClose(out, t.zoo, t.keys, ref, 1e-6);
  });

  test.each([["solver", "qr"], ["ridge", "-1"]])("bad option --%s %s is a usage error", async (flag, v) => {
    const r = await runCli(["merge", "--base", s.zoo.base.path, ...experts(s).flatMap((e) => ["--expert", e.path, "--stats", e.stats]), "--method", "lot", `--${flag}`, v, "--out", path.join(s.dir, "u.safetensors")]);
    expect(r.code).toBe(2);
  });
});

test("deterministic: the same bytes run to run, and with one thread (built-in path) as with several", async () => {
  const dir = tmpDir("tm-lot-det-");
  // Wide enough for the blocked, threaded paths (gemm, Cholesky panels, eigh rotations).
  const keys: KeySpec[] = [{ name: "l.weight", shape: [96, 160], dtype: "F32" }, { name: "l.bias", shape: [96], dtype: "F32" }];
  const zoo = makeZoo(dir, { T: 2, keys, seed: 5, scale: 0.05 });
  const files = writeAllStats(dir, makeStats(keys, 2, 120, 5)); // 240 rows ≥ 160: full rank
  const ex = files.map((stats, t) => ({ path: path.join(dir, `task${t}.safetensors`), stats }));
  for (const solver of ["auto", "eigh"] as const) {
    const outs = ["a", "b"].map((x) => path.join(dir, `${solver}-${x}.safetensors`));
    for (const out of outs) await merge({ base: zoo.base.path, experts: ex, method: { name: "lot", solver }, out });
    expect(fs.readFileSync(outs[0]).equals(fs.readFileSync(outs[1]))).toBe(true);
    const many = path.join(dir, `${solver}-many.safetensors`), one = path.join(dir, `${solver}-one.safetensors`);
    for (const [out, threads] of [[many, "2"], [one, "1"]]) {
      const r = await runCli(["merge", "--base", zoo.base.path, ...ex.flatMap((e) => ["--expert", e.path, "--stats", e.stats]), "--method", "lot",
        "--solver", solver, "-q", "--out", out], { env: { TASKMERGE_LINALG: "builtin", TASKMERGE_THREADS: threads } });
      expect(r.code).toBe(0);
    }
    expect(fs.readFileSync(many).equals(fs.readFileSync(one))).toBe(true);
  }
});

test("MultiheadAttention-style keys: in_proj_weight uses the statistics of 'in_proj'", async () => {
  const dir = tmpDir("tm-lot-mha-");
  const keys: KeySpec[] = [
    { name: "attn.in_proj_weight", shape: [12, 4], dtype: "F64" },
    { name: "attn.in_proj_bias", shape: [12], dtype: "F64" },
    { name: "attn.out_proj.weight", shape: [4, 4], dtype: "F64" },
  ];
  const zoo = makeZoo(dir, { T: 2, keys, seed: 8, scale: 0.05 });
  const stats = makeStats([{ name: "attn.in_proj.weight", shape: [12, 4], dtype: "F64" }, { name: "attn.out_proj.weight", shape: [4, 4], dtype: "F64" }], 2, 9, 8);
  const files = writeAllStats(dir, stats);
  const out = path.join(dir, "out.safetensors");
  const report = await merge({ base: zoo.base.path, experts: files.map((st, t) => ({ path: path.join(dir, `task${t}.safetensors`), stats: st })), method: "lot", out });
  expect(report.details.lot).toMatchObject({ linear: 2, mean: 1 });
  expectClose(out, zoo, keys, lotReference(keys, zoo.base, zoo.experts, stats, { solve: { kind: "ridge", eps: 1e-6 } }), 1e-10);
});

test("an abort during a LOT merge leaves no output", async () => {
  const s = setup(3, 20);
  const out = path.join(s.dir, "aborted.safetensors");
  const ac = new AbortController();
  let events = 0;
  const err = await merge({
    base: s.zoo.base.path, experts: experts(s), method: "lot", out, signal: ac.signal,
    onProgress: () => {
      if (++events === 3) ac.abort();
    },
  }).catch((e) => e);
  expect(err?.name).toBe("AbortError");
  expect(fs.readdirSync(s.dir).filter((f) => f.includes("aborted"))).toEqual([]);
});

const gyp = process.env.TASKMERGE_GYP_ADDON;
(gyp ? test : test.skip)("the node-gyp addon (built-in linear algebra) gives the same LOT merge through the CLI", async () => {
  const s = setup(2, 4);
  const out = path.join(s.dir, "gyp.safetensors");
  const r = await runCli(["merge", "--base", s.zoo.base.path, ...experts(s).flatMap((e) => ["--expert", e.path, "--stats", e.stats]),
    "--method", "lot", "--solver", "eigh", "--out", out], { env: { TASKMERGE_ADDON: path.resolve(gyp!) } });
  expect(r.stderr).toBe(r.code === 0 ? r.stderr : "");
  expect(r.code).toBe(0);
  const ref = lotReference(s.keys, s.zoo.base, s.zoo.experts, s.stats, { solve: { kind: "pinv" } });
  expectClose(out, s.zoo, s.keys, ref, 1e-8);
});

