// Portable dense linear algebra (see linalg.h): a packed, cache-blocked dgemm
// with a register-tile micro-kernel; syrk, a blocked Cholesky and its solves
// built on it; and a symmetric eigensolver (Householder tridiagonalisation +
// implicit QL with shifts, after EISPACK tred2/tql2 as in JAMA). Threads come
// from parallelFor. Row-major storage.
#include "builtin.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../core/op.h"
#include "../core/parallel.h"

namespace taskmerge {
namespace linalg {
namespace builtin {

namespace {

constexpr size_t MR = 4, NR = 8;           // register tile of C
constexpr size_t KC = 256, MC = 96, NC = 2048;  // cache blocks: A block ~192 KB, B panel ~4 MB

// Packs op(A)[i0:i0+mc, p0:p0+kc] into MR-row slivers, zero-padded:
// dst[s*kc*MR + p*MR + r] = op(A)[i0 + s*MR + r, p0 + p].
void packA(bool t, const double* A, size_t lda, size_t i0, size_t mc, size_t p0, size_t kc, double* dst) {
  for (size_t s = 0; s * MR < mc; s++) {
    double* d = dst + s * kc * MR;
    size_t rows = std::min(MR, mc - s * MR);
    for (size_t r = 0; r < MR; r++) {
      if (r >= rows) {
        for (size_t p = 0; p < kc; p++) d[p * MR + r] = 0;
        continue;
      }
      size_t i = i0 + s * MR + r;
      if (!t)
        for (size_t p = 0; p < kc; p++) d[p * MR + r] = A[i * lda + p0 + p];
      else
        for (size_t p = 0; p < kc; p++) d[p * MR + r] = A[(p0 + p) * lda + i];
    }
  }
}

// Packs op(B)[p0:p0+kc, j0:j0+nc] into NR-column slivers, zero-padded:
// dst[s*kc*NR + p*NR + c] = op(B)[p0 + p, j0 + s*NR + c].
void packB(bool t, const double* B, size_t ldb, size_t p0, size_t kc, size_t j0, size_t nc, double* dst) {
  for (size_t s = 0; s * NR < nc; s++) {
    double* d = dst + s * kc * NR;
    size_t cols = std::min(NR, nc - s * NR);
    for (size_t p = 0; p < kc; p++) {
      for (size_t c = 0; c < NR; c++) {
        size_t j = j0 + s * NR + c;
        d[p * NR + c] = c >= cols ? 0.0 : (!t ? B[(p0 + p) * ldb + j] : B[j * ldb + p0 + p]);
      }
    }
  }
}

// C[mr,nr] += alpha * (packed A sliver) x (packed B sliver) over kc.
#if defined(__GNUC__)
#define TM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define TM_ALWAYS_INLINE inline
#endif
TM_ALWAYS_INLINE void microBody(size_t kc, const double* a, const double* b, double alpha, double* C, size_t ldc,
                                size_t mr, size_t nr) {
  double c[MR][NR] = {};
  for (size_t p = 0; p < kc; p++) {
    const double* ap = a + p * MR;
    const double* bp = b + p * NR;
    for (size_t i = 0; i < MR; i++)
      for (size_t j = 0; j < NR; j++) c[i][j] += ap[i] * bp[j];
  }
  for (size_t i = 0; i < mr; i++)
    for (size_t j = 0; j < nr; j++) C[i * ldc + j] += alpha * c[i][j];
}

void microGeneric(size_t kc, const double* a, const double* b, double alpha, double* C, size_t ldc, size_t mr,
                  size_t nr) {
  microBody(kc, a, b, alpha, C, ldc, mr, nr);
}

using MicroFn = void (*)(size_t, const double*, const double*, double, double*, size_t, size_t, size_t);

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
// The same kernel compiled for AVX2+FMA, chosen at run time on CPUs that have it.
__attribute__((target("avx2,fma"))) void microAvx2(size_t kc, const double* a, const double* b, double alpha,
                                                   double* C, size_t ldc, size_t mr, size_t nr) {
  microBody(kc, a, b, alpha, C, ldc, mr, nr);
}
MicroFn pickMicro() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? microAvx2 : microGeneric; }
#else
MicroFn pickMicro() { return microGeneric; }
#endif

const MicroFn micro = pickMicro();

// One MC x NC block row of the product, B already packed.
void blockRow(bool tA, const double* A, size_t lda, size_t i0, size_t mc, size_t p0, size_t kc, const double* Bp,
              size_t nc, double alpha, double* C, size_t ldc, double* Ap) {
  packA(tA, A, lda, i0, mc, p0, kc, Ap);
  for (size_t js = 0; js * NR < nc; js++) {
    size_t nr = std::min(NR, nc - js * NR);
    for (size_t is = 0; is * MR < mc; is++) {
      size_t mr = std::min(MR, mc - is * MR);
      micro(kc, Ap + is * kc * MR, Bp + js * kc * NR, alpha, C + (i0 + is * MR) * ldc + js * NR, ldc, mr, nr);
    }
  }
}

void scaleC(size_t m, size_t n, double beta, double* C, size_t ldc) {
  if (beta == 1.0) return;
  for (size_t i = 0; i < m; i++) {
    double* c = C + i * ldc;
    if (beta == 0.0)
      std::fill(c, c + n, 0.0);
    else
      for (size_t j = 0; j < n; j++) c[j] *= beta;
  }
}

// gemm on the calling thread only (used inside parallel loops).
void gemmSerial(bool tA, bool tB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
                const double* B, size_t ldb, double beta, double* C, size_t ldc) {
  scaleC(m, n, beta, C, ldc);
  if (k == 0 || alpha == 0.0) return;
  std::vector<double> Bp(std::min(NC, n + NR) * KC), Ap(MC * KC);
  for (size_t j0 = 0; j0 < n; j0 += NC) {
    size_t nc = std::min(NC, n - j0);
    for (size_t p0 = 0; p0 < k; p0 += KC) {
      size_t kc = std::min(KC, k - p0);
      packB(tB, B, ldb, p0, kc, j0, nc, Bp.data());
      for (size_t i0 = 0; i0 < m; i0 += MC)
        blockRow(tA, A, lda, i0, std::min(MC, m - i0), p0, kc, Bp.data(), nc, alpha, C + j0, ldc, Ap.data());
    }
  }
}

}  // namespace

void gemm(bool tA, bool tB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda, const double* B,
          size_t ldb, double beta, double* C, size_t ldc) {
  if (m == 0 || n == 0) return;
  // Small products, or ones whose rows do not split, run on this thread.
  if (m * n * k < (1u << 18) || threadCount() == 1) {
    gemmSerial(tA, tB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  scaleC(m, n, beta, C, ldc);
  if (k == 0 || alpha == 0.0) return;
  std::vector<double> Bp(std::min(NC, n + NR) * KC);
  size_t mblocks = (m + MC - 1) / MC;
  for (size_t j0 = 0; j0 < n; j0 += NC) {
    size_t nc = std::min(NC, n - j0);
    for (size_t p0 = 0; p0 < k; p0 += KC) {
      size_t kc = std::min(KC, k - p0);
      // B panels pack in parallel by slivers, then rows of C split across threads.
      size_t slivers = (nc + NR - 1) / NR;
      parallelFor(slivers, 16, [&](size_t s0, size_t s1) {
        size_t c0 = s0 * NR, c1 = std::min(nc, s1 * NR);
        packB(tB, B, ldb, p0, kc, j0 + c0, c1 - c0, Bp.data() + s0 * kc * NR);
      });
      if (mblocks == 1) {
        // One block row: split its columns instead.
        parallelFor(slivers, 4, [&](size_t s0, size_t s1) {
          std::vector<double> Ap(MC * KC);
          size_t c0 = s0 * NR, c1 = std::min(nc, s1 * NR);
          blockRow(tA, A, lda, 0, m, p0, kc, Bp.data() + s0 * kc * NR, c1 - c0, alpha, C + j0 + c0, ldc, Ap.data());
        });
      } else {
        parallelFor(mblocks, 1, [&](size_t b0, size_t b1) {
          std::vector<double> Ap(MC * KC);
          for (size_t b = b0; b < b1; b++) {
            size_t i0 = b * MC;
            blockRow(tA, A, lda, i0, std::min(MC, m - i0), p0, kc, Bp.data(), nc, alpha, C + j0, ldc, Ap.data());
          }
        });
      }
    }
  }
}

void syrkRows(size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc) {
  if (n == 0) return;
  // Row block I of C up to its diagonal: C[I, 0:end(I)] = alpha X[:,I]ᵀ X[:,0:end(I)] + beta C.
  constexpr size_t RB = 64;
  size_t blocks = (n + RB - 1) / RB;
  parallelFor(blocks, 1, [&](size_t b0, size_t b1) {
    for (size_t bb = b0; bb < b1; bb++) {
      size_t b = blocks - 1 - bb;  // the largest rows first
      size_t i0 = b * RB, ib = std::min(RB, n - i0), end = i0 + ib;
      gemmSerial(true, false, ib, end, k, alpha, X + i0, ldx, X, ldx, beta, C + i0 * ldc, ldc);
    }
  });
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++) C[i * ldc + j] = C[j * ldc + i];
}

bool cholesky(size_t n, double* A, size_t lda) {
  constexpr size_t NB = 96;
  auto a = [&](size_t i, size_t j) -> double& { return A[i * lda + j]; };
  for (size_t k0 = 0; k0 < n; k0 += NB) {
    size_t kb = std::min(NB, n - k0), k1 = k0 + kb;
    // Diagonal block, unblocked (earlier blocks already subtracted).
    for (size_t j = k0; j < k1; j++) {
      double d = a(j, j);
      for (size_t p = k0; p < j; p++) d -= a(j, p) * a(j, p);
      if (!(d > 0) || !std::isfinite(d)) return false;
      double ljj = std::sqrt(d);
      a(j, j) = ljj;
      for (size_t i = j + 1; i < k1; i++) {
        double s = a(i, j);
        for (size_t p = k0; p < j; p++) s -= a(i, p) * a(j, p);
        a(i, j) = s / ljj;
      }
    }
    if (k1 == n) break;
    // Panel below: each row x solves x L11ᵀ = a (forward substitution).
    parallelFor(n - k1, 32, [&](size_t r0, size_t r1) {
      for (size_t i = k1 + r0; i < k1 + r1; i++) {
        double* x = &a(i, k0);
        for (size_t j = 0; j < kb; j++) {
          double s = x[j];
          const double* l = &a(k0 + j, k0);
          for (size_t p = 0; p < j; p++) s -= x[p] * l[p];
          x[j] = s / l[j];
        }
      }
    });
    // Trailing lower triangle: A22 -= L21 L21ᵀ, in row blocks.
    constexpr size_t RB = 64;
    size_t rows = n - k1, blocks = (rows + RB - 1) / RB;
    parallelFor(blocks, 1, [&](size_t b0, size_t b1) {
      for (size_t bb = b0; bb < b1; bb++) {
        size_t b = blocks - 1 - bb;
        size_t i0 = k1 + b * RB, ib = std::min(RB, n - i0);
        if (i0 > k1) gemmSerial(false, true, ib, i0 - k1, kb, -1.0, &a(i0, k0), lda, &a(k1, k0), lda, 1.0, &a(i0, k1), lda);
        for (size_t i = i0; i < i0 + ib; i++) {
          const double* li = &a(i, k0);
          for (size_t j = i0; j <= i; j++) {
            const double* lj = &a(j, k0);
            double s = 0;
            for (size_t p = 0; p < kb; p++) s += li[p] * lj[p];
            a(i, j) -= s;
          }
        }
      }
    });
  }
  return true;
}

void choleskySolveRows(size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb) {
  constexpr size_t NB = 64;  // the in-block substitutions are scalar: keep them a small share
  auto l = [&](size_t i, size_t j) { return L[i * lda + j]; };
  // Forward: Y Lᵀ = B, block column by block column.
  for (size_t j0 = 0; j0 < n; j0 += NB) {
    size_t jb = std::min(NB, n - j0);
    if (j0) gemm(false, true, nrhs, jb, j0, -1.0, B, ldb, L + j0 * lda, lda, 1.0, B + j0, ldb);
    parallelFor(nrhs, 16, [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; r++) {
        double* y = B + r * ldb;
        for (size_t j = j0; j < j0 + jb; j++) {
          double s = y[j];
          for (size_t p = j0; p < j; p++) s -= y[p] * l(j, p);
          y[j] = s / l(j, j);
        }
      }
    });
  }
  // Backward: X L = Y, from the last block column.
  size_t nblocks = (n + NB - 1) / NB;
  for (size_t bi = nblocks; bi-- > 0;) {
    size_t j0 = bi * NB, jb = std::min(NB, n - j0), j1 = j0 + jb;
    if (j1 < n) gemm(false, false, nrhs, jb, n - j1, -1.0, B + j1, ldb, L + j1 * lda + j0, lda, 1.0, B + j0, ldb);
    // The diagonal block transposed, so the substitution reads contiguous rows.
    std::vector<double> Lt(jb * jb);
    for (size_t i = 0; i < jb; i++)
      for (size_t j = 0; j <= i; j++) Lt[j * jb + i] = l(j0 + i, j0 + j);
    parallelFor(nrhs, 16, [&](size_t r0, size_t r1) {
      for (size_t r = r0; r < r1; r++) {
        double* x = B + r * ldb + j0;
        for (size_t j = jb; j-- > 0;) {
          const double* lt = &Lt[j * jb];
          double s = x[j];
          for (size_t i = j + 1; i < jb; i++) s -= x[i] * lt[i];
          x[j] = s / lt[j];
        }
      }
    });
  }
}

// Symmetric eigensolver. W stores the transpose of EISPACK's V, so every
// inner loop (and every QL rotation) runs along contiguous rows.
void eigh(size_t n, double* A, size_t lda, double* w) {
  if (n == 0) return;
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++) A[i * lda + j] = A[j * lda + i];
  for (size_t i = 0; i < n * n; i += 1)
    if (!std::isfinite(A[(i / n) * lda + i % n])) throw Error("eigh: matrix has non-finite entries");
  auto V = [&](size_t r, size_t c) -> double& { return A[c * lda + r]; };  // V(r,c) of EISPACK
  std::vector<double> d(n), e(n), scatter;
  // --- tred2: Householder reduction to tridiagonal form.
  for (size_t j = 0; j < n; j++) d[j] = V(n - 1, j);
  for (size_t i = n - 1; i > 0; i--) {
    double scale = 0.0, h = 0.0;
    for (size_t k = 0; k < i; k++) scale += std::fabs(d[k]);
    if (scale == 0.0) {
      e[i] = d[i - 1];
      for (size_t j = 0; j < i; j++) {
        d[j] = V(i - 1, j);
        V(i, j) = 0.0;
        V(j, i) = 0.0;
      }
    } else {
      for (size_t k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      double f = d[i - 1];
      double g = std::sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      // e = A d over the lower triangle (EISPACK's gather + scatter loop). Rows go
      // in fixed chunks, each scattering into its own buffer; the buffers are
      // summed in chunk order, so the result does not depend on the threads.
      for (size_t j = 0; j < i; j++) V(j, i) = d[j];
      constexpr size_t CH = 64;
      size_t chunks = (i + CH - 1) / CH;
      scatter.assign(chunks * i, 0.0);
      parallelFor(chunks, 1, [&](size_t c0, size_t c1) {
        for (size_t c = c0; c < c1; c++) {
          double* sc = &scatter[c * i];
          for (size_t j = c * CH; j < std::min(i, (c + 1) * CH); j++) {
            const double* col = &V(0, j);  // V(k, j) = col[k]
            double fj = d[j], gj = col[j] * fj;
            for (size_t k = j + 1; k < i; k++) {
              gj += col[k] * d[k];
              sc[k] += col[k] * fj;
            }
            e[j] = gj;
          }
        }
      });
      for (size_t c = 0; c < chunks; c++)
        for (size_t k = c * CH; k < i; k++) e[k] += scatter[c * i + k];
      f = 0.0;
      for (size_t j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      double hh = f / (h + h);
      for (size_t j = 0; j < i; j++) e[j] -= hh * d[j];
      // Rank-2 update A -= d eᵀ + e dᵀ (lower triangle), rows independent.
      parallelFor(i, 32, [&](size_t j0, size_t j1) {
        for (size_t j = j0; j < j1; j++) {
          double fj = d[j], gj = e[j];
          double* col = &V(0, j);
          for (size_t k = j; k < i; k++) col[k] -= (fj * e[k] + gj * d[k]);
        }
      });
      for (size_t j = 0; j < i; j++) {
        d[j] = V(i - 1, j);
        V(i, j) = 0.0;
      }
    }
    d[i] = h;
  }
  // Accumulate the transformations.
  for (size_t i = 0; i + 1 < n; i++) {
    V(n - 1, i) = V(i, i);
    V(i, i) = 1.0;
    double h = d[i + 1];
    if (h != 0.0) {
      const double* vi1 = &V(0, i + 1);
      for (size_t k = 0; k <= i; k++) d[k] = vi1[k] / h;
      parallelFor(i + 1, 64, [&](size_t j0, size_t j1) {
        for (size_t j = j0; j < j1; j++) {
          double* vj = &V(0, j);
          double g = 0.0;
          for (size_t k = 0; k <= i; k++) g += vi1[k] * vj[k];
          for (size_t k = 0; k <= i; k++) vj[k] -= g * d[k];
        }
      });
    }
    for (size_t k = 0; k <= i; k++) V(k, i + 1) = 0.0;
  }
  for (size_t j = 0; j < n; j++) {
    d[j] = V(n - 1, j);
    V(n - 1, j) = 0.0;
  }
  V(n - 1, n - 1) = 1.0;
  e[0] = 0.0;

  // --- tql2: implicit QL with Wilkinson-like shifts on the tridiagonal (d, e).
  for (size_t i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0.0;
  double f = 0.0, tst1 = 0.0;
  const double eps = std::ldexp(1.0, -52);
  std::vector<double> rc(n), rs(n);  // the rotations of one QL sweep
  for (size_t l = 0; l < n; l++) {
    tst1 = std::max(tst1, std::fabs(d[l]) + std::fabs(e[l]));
    size_t m = l;
    while (m < n) {
      if (std::fabs(e[m]) <= eps * tst1) break;
      m++;
    }
    if (m == n) m = n - 1;  // e[n-1] == 0 always stops the scan; kept for safety
    if (m > l) {
      int iter = 0;
      do {
        if (++iter > 100) throw Error("eigh: QL iteration did not converge");
        double g = d[l];
        double p = (d[l + 1] - g) / (2.0 * e[l]);
        double r = std::hypot(p, 1.0);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        double dl1 = d[l + 1];
        double h = g - d[l];
        for (size_t i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        double c = 1.0, c2 = c, c3 = c;
        double el1 = e[l + 1];
        double s = 0.0, s2 = 0.0;
        for (size_t i = m; i-- > l;) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = std::hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          rc[i] = c;
          rs[i] = s;
        }
        // Apply the sweep's rotations to rows (i, i+1) of W, split by columns.
        parallelFor(n, 256, [&](size_t k0, size_t k1) {
          for (size_t i = m; i-- > l;) {
            double cc = rc[i], ss = rs[i];
            double* wi = &V(0, i);
            double* wi1 = &V(0, i + 1);
            for (size_t k = k0; k < k1; k++) {
              double hv = wi1[k];
              wi1[k] = ss * wi[k] + cc * hv;
              wi[k] = cc * wi[k] - ss * hv;
            }
          }
        });
        p = -s * s2 * c3 * el1 * e[l] / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (std::fabs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0.0;
  }
  // Ascending order; eigenvector j is row j of A.
  std::vector<double> tmp(n);
  for (size_t i = 0; i + 1 < n; i++) {
    size_t k = i;
    double p = d[i];
    for (size_t j = i + 1; j < n; j++)
      if (d[j] < p) {
        k = j;
        p = d[j];
      }
    if (k != i) {
      d[k] = d[i];
      d[i] = p;
      std::swap_ranges(&V(0, i), &V(0, i) + n, &V(0, k));
    }
  }
  std::copy(d.begin(), d.end(), w);
}

}  // namespace builtin
}  // namespace linalg
}  // namespace taskmerge
