#include "solve.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "../core/op.h"
#include "../core/parallel.h"
#include "linalg.h"

namespace taskmerge {
namespace linalg {

static std::string nonFinite(size_t element) {
  return "holds a non-finite value (NaN or Inf) at element " + std::to_string(element);
}

Solver parseSolver(const std::string& name) {
  if (name == "auto") return Solver::Auto;
  if (name == "cholesky") return Solver::Cholesky;
  if (name == "eigh") return Solver::Eigh;
  throw Error("unknown solver '" + name + "' (expected auto, cholesky or eigh)");
}

void accumulateGramProducts(size_t out, size_t in, const uint8_t* base, DType baseType, const uint8_t* expert,
                            DType expertType, const uint8_t* gram, DType gramType, GramTransform tf, double* A,
                            double* BT, DenseOps& la) {
  // T = expert − base in float64, row by row.
  std::vector<double> T(out * in);
  size_t bs = dtypeSize(baseType), es = dtypeSize(expertType), gs = dtypeSize(gramType);
  parallelFor(out, 16, [&](size_t r0, size_t r1) {
    std::vector<double> b(in);
    for (size_t r = r0; r < r1; r++) {
      toF64(expert + r * in * es, expertType, in, &T[r * in]);
      toF64(base + r * in * bs, baseType, in, b.data());
      for (size_t j = 0; j < in; j++) {
        // Each input is blamed for its own NaN/Inf (an Inf in the expert is not the base's).
        if (!std::isfinite(b[j])) throw InputError("base", -1, nonFinite(r * in + j), (long long)(r * in + j));
        if (!std::isfinite(T[r * in + j])) throw InputError("expert", -1, nonFinite(r * in + j), (long long)(r * in + j));
        T[r * in + j] -= b[j];
      }
    }
  });
  // Gram rows converted per step: the whole Gram up to 32 Mi values (256 MB), so
  // the product is one large gemm; bigger Grams go in blocks of that size.
  const size_t RB = std::max<size_t>(256, std::min(in, (size_t(1) << 25) / std::max<size_t>(in, 1)));
  std::vector<double> G(std::min(RB, in) * in);
  const double off = tf.scale * tf.alpha;
  for (size_t i0 = 0; i0 < in; i0 += RB) {
    size_t rb = std::min(RB, in - i0);
    parallelFor(rb, 8, [&](size_t a, size_t b) {
      for (size_t i = a; i < b; i++) {
        double* g = &G[i * in];
        toF64(gram + (i0 + i) * in * gs, gramType, in, g);
        double diag = g[i0 + i];
        for (size_t j = 0; j < in; j++) g[j] *= off;
        g[i0 + i] = tf.scale * diag;  // α·G_ii + (1−α)·G_ii
        // A += G̃ here, on the host, while the row is in cache (a separate axpy pass
        // would add a third of the conversion's memory traffic).
        double* arow = A + (i0 + i) * in;
        for (size_t j = 0; j < in; j++) arow[j] += g[j];
      }
    });
    // BT[:, i0:i0+rb] += T · G[i0:i0+rb, :]ᵀ  (= (G Tᵀ)ᵀ for those columns)
    la.gemm(false, true, out, rb, in, 1.0, T.data(), in, G.data(), in, 1.0, BT + i0, in);
  }
}

SolveInfo solvePsdRows(size_t n, double* A, size_t nrhs, double* B, Solver s, double ridge, double rcond, DenseOps& la) {
  SolveInfo info;
  if (n == 0) return info;
  // Inputs were checked finite: a non-finite sum here is an overflow of float64.
  for (size_t i = 0; i < n * n; i++)
    if (!std::isfinite(A[i])) throw Error("the summed Gram matrix holds a non-finite value (float64 overflow)");
  for (size_t i = 0; i < nrhs * n; i++)
    if (!std::isfinite(B[i])) throw Error("the task vectors times the Grams hold a non-finite value (float64 overflow)");
  if (s != Solver::Eigh) {
    std::vector<double> diag(n);
    double mean = 0;
    for (size_t i = 0; i < n; i++) mean += (diag[i] = A[i * n + i]);
    mean /= double(n);
    double shift = mean > 0 ? ridge * mean : 0.0;
    for (size_t i = 0; i < n; i++) A[i * n + i] += shift;
    if (la.cholesky(n, A, n)) {
      la.choleskySolveRows(n, A, n, nrhs, B, n);
      info.rank = n;
      return info;
    }
    if (s == Solver::Cholesky) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%g", ridge);
      throw Error(std::string("the summed Gram matrix is not positive definite (Cholesky failed with ridge ") + buf +
                  "); use solver auto or eigh, or a larger ridge");
    }
    // The factorisation only wrote the lower triangle: rebuild A from the upper one.
    for (size_t i = 0; i < n; i++) {
      A[i * n + i] = diag[i];
      for (size_t j = 0; j < i; j++) A[i * n + j] = A[j * n + i];
    }
  }
  std::vector<double> w(n);
  la.eigh(n, A, n, w.data());  // rows of A: eigenvectors
  double wmax = 0;
  for (double x : w) wmax = std::max(wmax, std::fabs(x));
  if (!(rcond > 0)) rcond = double(n) * std::numeric_limits<double>::epsilon();
  double tol = rcond * wmax;
  std::vector<double> inv(n, 0.0);
  for (size_t j = 0; j < n; j++)
    if (w[j] > tol) {
      inv[j] = 1.0 / w[j];
      info.rank++;
    }
  // X = B A⁺ = ((B Eᵀ) diag(1/w)) E, E's rows the eigenvectors.
  std::vector<double> tmp(nrhs * n);
  la.gemm(false, true, nrhs, n, n, 1.0, B, n, A, n, 0.0, tmp.data(), n);
  parallelFor(nrhs, 64, [&](size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; r++)
      for (size_t j = 0; j < n; j++) tmp[r * n + j] *= inv[j];
  });
  la.gemm(false, false, nrhs, n, n, 1.0, tmp.data(), n, A, n, 0.0, B, n);
  info.usedEigh = true;
  return info;
}

}  // namespace linalg
}  // namespace taskmerge
