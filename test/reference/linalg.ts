/**
 * Float64 reference linear algebra for the tests, written with plain loops and
 * algorithms different from the native ones: Gauss–Jordan elimination with
 * partial pivoting for solves, and a modified Gram–Schmidt range basis for
 * pseudo-inverse solutions (no eigen-decomposition).
 */
import * as path from "path";

export type Mat = Float64Array; // row-major

export function matmul(A: Mat, B: Mat, m: number, k: number, n: number): Mat {
  const C = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let p = 0; p < k; p++) {
      const a = A[i * k + p];
      if (a === 0) continue;
      for (let j = 0; j < n; j++) C[i * n + j] += a * B[p * n + j];
    }
  return C;
}

export function transpose(A: Mat, m: number, n: number): Mat {
  const T = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) T[j * m + i] = A[i * n + j];
  return T;
}

/** Σ xxᵀ over the k rows (width n) of X. */
export function gram(X: ArrayLike<number>, k: number, n: number): Mat {
  const G = new Float64Array(n * n);
  for (let r = 0; r < k; r++)
    for (let i = 0; i < n; i++) {
      const xi = X[r * n + i];
      for (let j = 0; j < n; j++) G[i * n + j] += xi * X[r * n + j];
    }
  return G;
}

/** Solves A X = B (A [n,n] invertible, B [n,m]) by Gauss–Jordan with partial pivoting. */
export function gaussJordanSolve(A: Mat, B: Mat, n: number, m: number): Mat {
  const w = n + m;
  const M = new Float64Array(n * w);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) M[i * w + j] = A[i * n + j];
    for (let j = 0; j < m; j++) M[i * w + n + j] = B[i * m + j];
  }
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r * w + c]) > Math.abs(M[piv * w + c])) piv = r;
    if (M[piv * w + c] === 0) throw new Error("gaussJordanSolve: singular matrix");
    if (piv !== c) for (let j = 0; j < w; j++) [M[c * w + j], M[piv * w + j]] = [M[piv * w + j], M[c * w + j]];
    const d = M[c * w + c];
    for (let j = 0; j < w; j++) M[c * w + j] /= d;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = M[r * w + c];
      if (f === 0) continue;
      for (let j = 0; j < w; j++) M[r * w + j] -= f * M[c * w + j];
    }
  }
  const X = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) X[i * m + j] = M[i * w + n + j];
  return X;
}

/** Orthonormal basis (columns of Q [n,r]) of the column space of A [n,n], by modified Gram–Schmidt. */
export function rangeBasis(A: Mat, n: number, relTol = 1e-9): { Q: Mat; r: number } {
  const cols: Float64Array[] = [];
  let maxNorm = 0;
  for (let j = 0; j < n; j++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += A[i * n + j] ** 2;
    maxNorm = Math.max(maxNorm, Math.sqrt(s));
  }
  for (let j = 0; j < n; j++) {
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = A[i * n + j];
    // Two passes of orthogonalisation keep the basis orthonormal to rounding.
    for (let pass = 0; pass < 2; pass++)
      for (const q of cols) {
        let d = 0;
        for (let i = 0; i < n; i++) d += q[i] * v[i];
        for (let i = 0; i < n; i++) v[i] -= d * q[i];
      }
    let nv = 0;
    for (let i = 0; i < n; i++) nv += v[i] * v[i];
    nv = Math.sqrt(nv);
    if (nv > relTol * maxNorm) cols.push(v.map((x) => x / nv));
  }
  const r = cols.length;
  const Q = new Float64Array(n * r);
  cols.forEach((q, j) => q.forEach((x, i) => (Q[i * r + j] = x)));
  return { Q, r };
}

/** A⁺ B for symmetric PSD A [n,n], B [n,m]: Q (QᵀAQ)⁻¹ QᵀB with Q a basis of range(A). */
export function pinvSolve(A: Mat, B: Mat, n: number, m: number): Mat {
  const { Q, r } = rangeBasis(A, n);
  if (r === 0) return new Float64Array(n * m);
  const Qt = transpose(Q, n, r);
  const QtAQ = matmul(matmul(Qt, A, r, n, n), Q, r, n, r);
  const QtB = matmul(Qt, B, r, n, m);
  return matmul(Q, gaussJordanSolve(QtAQ, QtB, r, m), n, r, m);
}

export type RunFn = (op: string, args: Record<string, unknown>) => Promise<Record<string, any>>;

export interface Backend {
  name: string;
  run: RunFn;
}

/**
 * The linear algebra implementations to test against: the default addon; its
 * built-in path ({linalg: "builtin"}) when it is a BLAS build; and the
 * node-gyp addon named by TASKMERGE_GYP_ADDON (CI), require()d directly.
 */
export function linalgBackends(): Backend[] {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const { runOp, nativeInfo } = require(path.join(__dirname, "..", "..", "lib", "native"));
  const out: Backend[] = [{ name: `default (${nativeInfo().blas})`, run: runOp }];
  if (nativeInfo().blas === "openblas")
    out.push({
      name: "default addon, built-in path",
      run: (op, args) => runOp(op, { ...args, linalg: "builtin" }),
    });
  const gyp = process.env.TASKMERGE_GYP_ADDON;
  if (gyp) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const addon = require(path.resolve(gyp));
    out.push({ name: `gyp addon (${addon.info().blas})`, run: (op, args) => addon.run(op, args) });
  }
  return out;
}

export const f64 = (b: Buffer | Uint8Array): Float64Array => {
  const copy = Buffer.from(b);
  return new Float64Array(copy.buffer, copy.byteOffset, copy.length / 8);
};
