/**
 * The batched closed-form solves (backend.h solve_psd_rows_batched, the
 * gram_solve op, lib/methods/closed_form.ts) and the axpy entry: on the CPU backend a batch is
 * linalg::solvePsdRows per system, byte for byte (linalg_solve runs that code
 * alone); a failing system stops the batch with the earlier ones done; the
 * LOT/RegMean merge gives the same bytes batched as one layer at a time, and
 * the float64 reference's values; solve_precision is checked and refused on
 * the CPU.
 */
import * as fs from "fs";
import * as path from "path";
import { merge } from "../lib";
import { runOp } from "../lib/native";
import * as ops from "../lib/native/ops";
import { SOLVE_BATCH } from "../lib/methods/closed_form";
import { KeySpec, makeZoo, readSafetensors, runCli, tmpDir, values } from "./helpers/fixtures";
import { encode, quantize } from "./helpers/floatref";
import { rng } from "./helpers/fixtures";
import { lotReference, makeStats, relErr, writeAllStats } from "./reference/lot";

/** A symmetric positive semi-definite n×n Gram of `rows` random rows (rank min(rows, n)). */
function gramOf(n: number, rows: number, seed: number): Float64Array {
  const r = rng(seed);
  const X = Float64Array.from({ length: rows * n }, () => r.u() - 0.5);
  const G = new Float64Array(n * n);
  for (let k = 0; k < rows; k++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) G[i * n + j] += X[k * n + i] * X[k * n + j];
  return G;
}

function randoms(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: n }, () => (r.u() - 0.5) * scale);
}

const bytes = (a: Float64Array) => Buffer.from(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));

test("axpy (the table entry, through linalg_axpy): y + α·x in float64, as JavaScript computes it", async () => {
  const n = 100003, alpha = -0.37;
  const x = randoms(n, 31, 1e3), y = randoms(n, 32);
  const r = await runOp("linalg_axpy", { n, alpha, x, y });
  expect(r.Y.equals(bytes(y.map((v, i) => v + alpha * x[i])))).toBe(true);
  expect(y[0]).toBe(randoms(1, 32)[0]); // the op's y is a copy: the input is left as it was
});

describe("gram_solve on the CPU backend", () => {
  const out = 7, n = 9;
  // Full rank; singular (feature 8 never seen: a zero row and column, so Cholesky without
  // a ridge fails and auto falls back to eigh); full rank with another scale.
  const singular = gramOf(n, 30, 2).map((v, i) => (i % n === n - 1 || i >= n * (n - 1) ? 0 : v));
  const grams = [gramOf(n, 30, 1), singular, gramOf(n, 20, 3).map((v) => v * 1e3)];
  const bts = grams.map((_, i) => randoms(out * n, 10 + i));
  const base = quantize(randoms(out * n, 20, 0.2), "F32");

  for (const o of [{ solver: "auto", ridge: 1e-9, rcond: 0 }, { solver: "eigh", ridge: 0, rcond: 1e-10 }, { solver: "auto", ridge: 0, rcond: 0 }]) {
    test(`a batch is solvePsdRows per system, byte for byte (solver ${o.solver}, ridge ${o.ridge})`, async () => {
      const A = grams.map(bytes), BT = bts.map(bytes);
      const result = grams.map(() => Buffer.alloc(out * n * 2));
      const r = await runOp("gram_solve", {
        out, in: n, A, BT, ...o, base: grams.map(() => encode(base, "F32")), baseDtypes: grams.map(() => "F32"), lambda: 0.7,
        result, resultDtypes: grams.map(() => "BF16"),
      });
      expect(r.solved).toBe(3);
      for (let i = 0; i < grams.length; i++) {
        // linalg_solve: solvePsdRows on its own, through the op's backend (native/kernels/linalg.cpp).
        const one = await runOp("linalg_solve", { n, nrhs: out, A: grams[i], B: bts[i], ...o });
        expect(BT[i].equals(one.X)).toBe(true);
        expect([r.eigh[i], r.rank[i]]).toEqual([one.eigh, one.rank]);
        // result = bf16(θ0 + λ X) from the float64 X
        const X = new Float64Array(one.X.buffer, one.X.byteOffset, out * n);
        expect(result[i].equals(encode(quantize(base.map((v, j) => v + 0.7 * X[j]), "BF16"), "BF16"))).toBe(true);
      }
      expect(r.eigh).toEqual(o.solver === "eigh" ? [1, 1, 1] : o.ridge === 0 ? [0, 1, 0] : [0, 0, 0]);
    });
  }

  test("a failing system stops the batch: the earlier ones are done, a failing first one is an error", async () => {
    const notPd = grams[0].map((v, i) => (i % (n + 1) === 0 ? -1 : 0));
    const args = (As: Float64Array[]) => ({
      out, in: n, A: As.map(bytes), BT: As.map((_, i) => bytes(bts[i])), solver: "cholesky", ridge: 0,
      base: As.map(() => encode(base, "F32")), baseDtypes: As.map(() => "F32"), result: As.map(() => Buffer.alloc(out * n * 4)),
      resultDtypes: As.map(() => "F32"),
    });
    const a = args([grams[0], notPd, grams[2]]);
    const r = await runOp("gram_solve", a);
    expect(r.solved).toBe(1);
    const one = await runOp("linalg_solve", { n, nrhs: out, A: grams[0], B: bts[0], solver: "cholesky", ridge: 0 });
    expect(a.BT[0].equals(one.X)).toBe(true);
    await expect(runOp("gram_solve", args([notPd, grams[0]]))).rejects.toThrow(/not positive definite \(Cholesky failed with ridge 0\)/);
  });

  test("precision: float32 and tf32 are refused by the CPU backend, other names are argument errors", async () => {
    const call = (precision: string) => runOp("gram_solve", {
      out, in: n, A: [bytes(grams[0])], BT: [bytes(bts[0])], precision: precision as ops.SolvePrecision,
      base: [encode(base, "F32")], baseDtypes: ["F32"], result: [Buffer.alloc(out * n * 4)], resultDtypes: ["F32"],
    });
    for (const p of ["float32", "tf32"])
      await expect(call(p)).rejects.toThrow(new RegExp(`the CPU backend solves in float64 only \\(solve precision ${p} needs the CUDA backend\\)`));
    await expect(call("float16")).rejects.toMatchObject({ kind: "argument", arg: "precision" });
    expect((await call("float64")).solved).toBe(1);
  });
});

/** A model of 5 blocks with three linear shapes each (a batch of 4, then 1, per shape). */
function blocksModel(): KeySpec[] {
  const keys: KeySpec[] = [{ name: "embed.weight", shape: [10, 6], dtype: "F32" }];
  for (let b = 0; b < 5; b++)
    keys.push(
      { name: `blocks.${b}.norm1.weight`, shape: [6], dtype: "F32" },
      { name: `blocks.${b}.attn.qkv.weight`, shape: [18, 6], dtype: "F32" },
      { name: `blocks.${b}.attn.qkv.bias`, shape: [18], dtype: "F32" },
      { name: `blocks.${b}.mlp.fc1.weight`, shape: [12, 6], dtype: "BF16" },
      { name: `blocks.${b}.mlp.fc2.weight`, shape: [6, 12], dtype: "F32" },
    );
  return keys;
}

describe("LOT and RegMean solve equal-shape layers in batches", () => {
  const T = 3;
  const dir = tmpDir("tm-solve-batched-");
  const keys = blocksModel();
  const zoo = makeZoo(dir, { T, keys, seed: 5, scale: 0.05 });
  const stats = makeStats(keys, T, 20, 5);
  const files = writeAllStats(dir, stats);
  const experts = files.map((s, t) => ({ path: path.join(dir, `task${t}.safetensors`), stats: s }));

  /** Merges with the given batch size, recording the layers per gram_solve call. */
  async function mergeWith(layers: number, method: Parameters<typeof merge>[0]["method"], out: string): Promise<number[]> {
    const batches: number[] = [];
    const real = ops.runOp;
    const spy = jest.spyOn(ops, "runOp").mockImplementation(((name: string, args: { A: unknown[] }) => {
      if (name === "gram_solve") batches.push(args.A.length);
      return (real as (n: string, a: unknown) => Promise<unknown>)(name, args);
    }) as typeof ops.runOp);
    const saved = SOLVE_BATCH.layers;
    SOLVE_BATCH.layers = layers;
    try {
      await merge({ base: zoo.base.path, experts, method, out });
    } finally {
      SOLVE_BATCH.layers = saved;
      spy.mockRestore();
    }
    return batches;
  }

  for (const method of [{ name: "lot", lambda: 0.9 }, { name: "lot", solver: "cholesky", ridge: 1e-5 }, { name: "regmean", alpha: 0.8 }] as const) {
    test(`${JSON.stringify(method)}: the same bytes batched as one layer at a time, and the reference's values`, async () => {
      const batched = path.join(dir, `b-${method.name}-${Object.values(method).join("-")}.safetensors`);
      const single = path.join(dir, `s-${method.name}-${Object.values(method).join("-")}.safetensors`);
      expect(await mergeWith(4, method, batched)).toEqual([4, 4, 4, 1, 1, 1]);
      expect(await mergeWith(1, method, single)).toEqual(Array(15).fill(1));
      expect(fs.readFileSync(batched).equals(fs.readFileSync(single))).toBe(true);
      if (method.name === "lot" && !("solver" in method)) {
        const ref = lotReference(keys, zoo.base, zoo.experts, stats, { lambda: 0.9, solve: { kind: "ridge", eps: 1e-6 } });
        const got = readSafetensors(batched);
        // The float32 layers (BF16 rounding would dominate the others' difference).
        for (const k of keys.filter((k) => /(qkv|fc2)\.weight$/.test(k.name)))
          expect(relErr(values(got[k.name]), ref[k.name], zoo.base.floats[k.name])).toBeLessThan(1e-5);
      }
    });
  }

  test("the batch bound: the byte budget caps a batch (the first layer is always taken)", async () => {
    const saved = SOLVE_BATCH.bytes;
    // An fc1 layer holds A 6²·8 + Bᵀ 12·6·8 + base and result 12·6·2 each = 1152 bytes: two fit in 3000,
    // three do not (and a qkv or fc2 layer, over 2000 bytes, goes alone).
    SOLVE_BATCH.bytes = 3000;
    try {
      const got = await mergeWith(4, { name: "lot" }, path.join(dir, "bound.safetensors"));
      expect(Math.max(...got)).toBe(2);
      SOLVE_BATCH.bytes = 1;
      expect(await mergeWith(4, { name: "lot" }, path.join(dir, "bound1.safetensors"))).toEqual(Array(15).fill(1));
    } finally {
      SOLVE_BATCH.bytes = saved;
    }
  });

  test("a layer ahead that cannot be read fails on its own turn, with the error it has unbatched", async () => {
    const bad = path.join(dir, "bad");
    fs.mkdirSync(bad, { recursive: true });
    // Expert 1's blocks.2.attn.qkv.weight holds a NaN: that layer is in the batch of blocks.0's.
    const z = makeZoo(bad, { T, keys, seed: 5, scale: 0.05 });
    const f = path.join(bad, "task1.safetensors");
    const raw = readSafetensors(f);
    const k = "blocks.2.attn.qkv.weight";
    const headerLen = Number(fs.readFileSync(f).readBigUInt64LE(0));
    const header = JSON.parse(fs.readFileSync(f).subarray(8, 8 + headerLen).toString());
    const buf = fs.readFileSync(f);
    buf.writeFloatLE(NaN, 8 + headerLen + header[k].data_offsets[0] + 4 * 5);
    fs.writeFileSync(f, buf);
    expect(raw[k]).toBeDefined();
    const ex = files.map((s, t) => ({ path: path.join(bad, `task${t}.safetensors`), stats: s }));
    const run = async (layers: number) => {
      SOLVE_BATCH.layers = layers;
      try {
        return await merge({ base: z.base.path, experts: ex, method: { name: "lot" }, out: path.join(bad, `out${layers}.safetensors`) }).then(
          () => "no error",
          (e: Error) => e.message,
        );
      } finally {
        SOLVE_BATCH.layers = 4;
      }
    };
    const batched = await run(4);
    expect(batched).toMatch(/^expert 'task1' holds a non-finite value \(NaN or Inf\) at element 5 \(file .*task1\.safetensors, key "blocks\.2\.attn\.qkv\.weight"\)$/);
    expect(batched).toBe(await run(1));
  });
});

describe("solve_precision", () => {
  const T = 2;
  const dir = tmpDir("tm-solve-precision-");
  const keys = blocksModel().slice(0, 6);
  const zoo = makeZoo(dir, { T, keys, seed: 6, scale: 0.05 });
  const files = writeAllStats(dir, makeStats(keys, T, 20, 6));
  const experts = files.map((s, t) => ({ path: path.join(dir, `task${t}.safetensors`), stats: s }));

  test("float64 is the default and is left out of the manifest; float32 / tf32 are refused on the CPU before anything is written", async () => {
    for (const name of ["lot", "regmean"] as const) {
      const out = path.join(dir, name);
      await merge({ base: zoo.base.path, experts, method: { name, solve_precision: "float64" }, out, device: "cpu" });
      const manifest = JSON.parse(fs.readFileSync(path.join(out, "taskmerge.json"), "utf8"));
      expect(manifest.params).toBeDefined();
      expect(manifest.params).not.toHaveProperty("solve_precision");
      for (const p of ["float32", "tf32"] as const) {
        const o2 = path.join(dir, `${name}-${p}.safetensors`);
        await expect(merge({ base: zoo.base.path, experts, method: { name, solve_precision: p }, out: o2, device: "cpu" })).rejects.toThrow(
          `${name}: solve_precision ${p} needs the CUDA backend (device cuda); the CPU backend solves in float64 only`,
        );
        expect(fs.existsSync(o2)).toBe(false);
      }
    }
  });

  test("the CLI: an unknown precision and float32 on the CPU are usage errors (exit 2), one line each", async () => {
    const args = ["merge", "--base", zoo.base.path, ...experts.flatMap((e) => ["--expert", e.path, "--stats", e.stats]), "--method", "lot", "--device", "cpu"];
    const bad = await runCli([...args, "--solve-precision", "float16", "--out", path.join(dir, "cli1.safetensors")]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split("\n")[0]).toMatch(/--solve-precision <s>' argument 'float16' is invalid\. Allowed choices are float64, float32, tf32/);
    const cpu = await runCli([...args, "--solve-precision", "float32", "--out", path.join(dir, "cli2.safetensors")]);
    expect(cpu.code).toBe(2);
    // Statistics written by the test record no source checkpoint: those warnings aside, one line.
    const lines = cpu.stderr.trim().split("\n").filter((l) => !l.startsWith("warning:"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^[^\n]*lot: solve_precision float32 needs the CUDA backend \(device cuda\); the CPU backend solves in float64 only$/);
    expect(fs.existsSync(path.join(dir, "cli2.safetensors"))).toBe(false);
  });
});
