/**
 * The linear algebra layer against float64 references (Gauss–Jordan, Gram–
 * Schmidt range basis), on every available implementation: the default addon,
 * its built-in path, and the node-gyp addon when TASKMERGE_GYP_ADDON is set.
 */
import { rng } from "./helpers/fixtures";
import { f64, gaussJordanSolve, gram, linalgBackends, matmul, pinvSolve, transpose } from "./reference/linalg";
import { lotLinearTask } from "./reference/lot";
import { encode, quantize } from "./helpers/floatref";

function randn(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: n }, () => scale * r.normal());
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const maxAbs = (a: ArrayLike<number>) => Array.from(a).reduce((m, x) => Math.max(m, Math.abs(x)), 0);

/** A symmetric PSD matrix of rank ≤ k: the Gram of k random rows with uneven feature scales. */
function psd(n: number, k: number, seed: number): Float64Array {
  const X = randn(n * k, seed);
  for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) X[i * n + j] *= 0.2 + (j % 7) * 0.3;
  return gram(X, k, n);
}

describe.each(linalgBackends())("linalg on $name", ({ run }) => {
  test.each([
    [3, 5, 7],
    [97, 130, 300], // several k blocks, ragged register tiles
    [300, 9, 64],
  ])("gemm %i×%i×%i, every transpose, alpha and beta", async (m, n, k) => {
    for (const transA of [0, 1])
      for (const transB of [0, 1]) {
        const A = randn(m * k, m + k), B = randn(k * n, n + 1), C = randn(m * n, 5);
        const r = await run("linalg_gemm", { m, n, k, transA, transB, A, B, C, alpha: 1.5, beta: -0.5 });
        const opA = transA ? transpose(A, k, m) : A;
        const opB = transB ? transpose(B, n, k) : B;
        const ref = matmul(opA, opB, m, k, n).map((x, i) => 1.5 * x - 0.5 * C[i]);
        expect(maxAbsDiff(f64(r.C), ref)).toBeLessThan(1e-11 * k);
      }
  });

  test("gemm with beta 0 ignores NaN in C", async () => {
    const C = new Float64Array(4).fill(NaN);
    const r = await run("linalg_gemm", { m: 2, n: 2, k: 1, A: Float64Array.of(1, 2), B: Float64Array.of(3, 4), C, beta: 0 });
    expect(Array.from(f64(r.C))).toEqual([3, 4, 6, 8]);
  });

  test.each([[5, 3], [150, 333]])("syrk: Gram of %i-wide rows (k=%i), exactly symmetric", async (n, k) => {
    const X = randn(n * k, 11);
    const C0 = psd(n, 2, 3);
    const r = await run("linalg_syrk", { n, k, X, C: C0, alpha: 2, beta: 1 });
    const C = f64(r.C);
    const ref = gram(X, k, n).map((x, i) => 2 * x + C0[i]);
    expect(maxAbsDiff(C, ref)).toBeLessThan(1e-11 * maxAbs(ref));
    let asym = 0;
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) if (C[i * n + j] !== C[j * n + i]) asym++;
    expect(asym).toBe(0);
  });

  test.each([4, 130, 260])("cholesky solve of a full-rank n=%i system vs Gauss–Jordan", async (n) => {
    const A = psd(n, n + 20, n);
    const nrhs = 7;
    const B = randn(nrhs * n, 9);
    const r = await run("linalg_solve", { n, nrhs, A, B, solver: "cholesky", ridge: 0 });
    expect(r.eigh).toBe(0);
    // rows: X A = B  ⇔  A Xᵀ = Bᵀ
    const ref = transpose(gaussJordanSolve(A, transpose(B, nrhs, n), n, nrhs), n, nrhs);
    expect(maxAbsDiff(f64(r.X), ref) / maxAbs(ref)).toBeLessThan(1e-8);
  });

  test("cholesky leaves the strict upper triangle untouched", async () => {
    const n = 200;
    const A = psd(n, n + 5, 1);
    const r = await run("linalg_cholesky", { n, A });
    expect(r.ok).toBe(1);
    const L = f64(r.L);
    let changed = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) if (L[i * n + j] !== A[i * n + j]) changed++;
    expect(changed).toBe(0);
    // L Lᵀ reproduces A
    const Lo = L.map((v, idx) => (idx % n <= Math.floor(idx / n) ? v : 0));
    const LLt = matmul(Lo, transpose(Lo, n, n), n, n, n);
    expect(maxAbsDiff(LLt, A) / maxAbs(A)).toBeLessThan(1e-12);
  });

  test.each([[6, 3], [40, 15], [150, 60]])("eigh pseudo-inverse of a rank-deficient n=%i (rank %i) Gram vs range-basis reference", async (n, k) => {
    const A = psd(n, k, 2 * n);
    const nrhs = 5;
    // Right-hand sides in the range of A, as Σ G Tᵀ is.
    const B = transpose(matmul(A, randn(n * nrhs, 4), n, n, nrhs), n, nrhs);
    const r = await run("linalg_solve", { n, nrhs, A, B, solver: "eigh" });
    expect(r.eigh).toBe(1);
    expect(r.rank).toBe(k);
    const ref = transpose(pinvSolve(A, transpose(B, nrhs, n), n, nrhs), n, nrhs);
    expect(maxAbsDiff(f64(r.X), ref) / maxAbs(ref)).toBeLessThan(1e-7);
  });

  test("auto falls back to eigh when the ridged matrix is not positive definite; cholesky refuses", async () => {
    const n = 5;
    // Indefinite symmetric matrix: diag(3, 2, 1, -1, 0) in a rotated basis.
    const Q = new Float64Array(n * n);
    const v = randn(n, 3);
    const nv = Math.hypot(...v);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) Q[i * n + j] = (i === j ? 1 : 0) - (2 * v[i] * v[j]) / nv ** 2;
    const D = [3, 2, 1, -1, 0];
    const A = matmul(matmul(Q, Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? D[i / (n + 1)] : 0)), n, n, n), Q, n, n, n);
    const B = randn(2 * n, 8);
    const auto = await run("linalg_solve", { n, nrhs: 2, A, B, solver: "auto", ridge: 1e-6 });
    expect(auto.eigh).toBe(1);
    expect(auto.rank).toBe(3); // negative and zero eigenvalues dropped
    // X = B Q diag(1/3, 1/2, 1, 0, 0) Qᵀ
    const inv = Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 && D[i / (n + 1)] > 0 ? 1 / D[i / (n + 1)] : 0));
    const ref = matmul(matmul(matmul(B, Q, 2, n, n), inv, 2, n, n), Q, 2, n, n);
    expect(maxAbsDiff(f64(auto.X), ref)).toBeLessThan(1e-12);
    await expect(run("linalg_solve", { n, nrhs: 2, A, B, solver: "cholesky", ridge: 1e-6 })).rejects.toThrow(/not positive definite/);
  });

  test("eigh: ascending eigenvalues, orthonormal eigenvector rows, A = Σ w v vᵀ", async () => {
    const n = 120;
    const A = psd(n, 80, 5).map((x, i) => x - (i % (n + 1) === 0 ? 10 : 0)); // some negative eigenvalues
    const r = await run("linalg_eigh", { n, A });
    const w = f64(r.w), V = f64(r.V);
    for (let j = 1; j < n; j++) expect(w[j]).toBeGreaterThanOrEqual(w[j - 1]);
    expect(w[0]).toBeCloseTo(-10, 8);
    const VVt = matmul(V, transpose(V, n, n), n, n, n);
    expect(maxAbsDiff(VVt, Float64Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0)))).toBeLessThan(1e-12);
    const rebuilt = matmul(transpose(V, n, n), V.map((x, idx) => x * w[Math.floor(idx / n)]), n, n, n);
    expect(maxAbsDiff(rebuilt, A) / maxAbs(A)).toBeLessThan(1e-12);
  });

  test("non-finite input is an error, not a silent result", async () => {
    const A = Float64Array.of(1, 0, 0, NaN);
    await expect(run("linalg_solve", { n: 2, nrhs: 1, A, B: Float64Array.of(1, 1) })).rejects.toThrow(/non-finite/);
    await expect(run("linalg_eigh", { n: 2, A })).rejects.toThrow(/non-finite/);
  });

  test("kernels on this backend: Gram accumulation, LOT accumulate + solve (F32 weights, BF16 output), drift", async () => {
    const out = 9, n = 7, T = 3, k = 12;
    const X = Array.from({ length: T }, (_, t) => quantize(randn(k * n, 40 + t), "F32"));
    const grams = X.map((x) => gram(x, k, n));
    // gram_accumulate from float32 rows, in two chunks
    const G = new Float64Array(n * n), sum = new Float64Array(n);
    for (const part of [X[0].subarray(0, 5 * n), X[0].subarray(5 * n)])
      await run("gram_accumulate", { rows: encode(part, "F32"), rowsDtype: "F32", width: n, gram: G, sum });
    expect(maxAbsDiff(G, grams[0]) / maxAbs(grams[0])).toBeLessThan(1e-14);
    // LOT accumulate + solve
    const w0 = quantize(randn(out * n, 50), "F32");
    const ws = Array.from({ length: T }, (_, t) => quantize(w0.map((v, i) => v + 0.1 * randn(out * n, 60 + t)[i]), "F32"));
    const A = Buffer.alloc(n * n * 8), BT = Buffer.alloc(out * n * 8);
    for (let t = 0; t < T; t++)
      await run("gram_products_accumulate", {
        out, in: n, base: encode(w0, "F32"), baseDtype: "F32", expert: encode(ws[t], "F32"), expertDtype: "F32",
        gram: encode(grams[t], "F64"), gramDtype: "F64", A, BT,
      });
    const result = Buffer.alloc(out * n * 2);
    const r = await run("gram_solve", { out, in: n, A: [A], BT: [BT], solver: "auto", ridge: 1e-6, base: [encode(w0, "F32")], baseDtypes: ["F32"], lambda: 1, result: [result], resultDtypes: ["BF16"] });
    expect(r.solved).toBe(1);
    expect(r.eigh).toEqual([0]);
    const tstar = lotLinearTask(grams, ws.map((w) => w.map((v, i) => v - w0[i])), out, n, { kind: "ridge", eps: 1e-6 });
    const ref = quantize(w0.map((v, i) => v + tstar[i]), "BF16");
    expect(result.equals(encode(ref, "BF16"))).toBe(true); // rounded to nearest even, like the reference
    // drift of the base against expert 0
    const d = await run("drift_linear", {
      out, in: n, merged: encode(w0, "F32"), mergedDtype: "F32", expert: encode(ws[0], "F32"), expertDtype: "F32",
      base: encode(w0, "F32"), baseDtype: "F32", gram: encode(grams[0], "F64"), gramDtype: "F64",
    });
    const D = w0.map((v, i) => v - ws[0][i]);
    const DGDt = matmul(matmul(D, grams[0], out, n, n), transpose(D, out, n), out, n, out);
    let tr = 0;
    for (let i = 0; i < out; i++) tr += DGDt[i * out + i];
    expect(Math.abs(d.drift - tr) / tr).toBeLessThan(1e-12);
    expect(d.baseDrift).toBe(d.drift);
  });
});
