// Dispatch of linalg.h: OpenBLAS/LAPACKE when compiled with TM_HAVE_BLAS
// (unless TASKMERGE_LINALG=builtin asks for the portable path), else built-in.
//
// LAPACK is called in column-major mode on our row-major buffers: a row-major
// symmetric matrix's lower triangle is the column-major upper one, and a
// row-major [nrhs,n] block of right-hand-side rows is a column-major [n,nrhs]
// matrix. So nothing is transposed or copied.
#include "linalg.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../core/op.h"
#include "../core/parallel.h"
#include "builtin.h"

#ifdef TM_HAVE_BLAS
#include <cblas.h>
#include <lapacke.h>
#endif

namespace taskmerge {
namespace linalg {

static thread_local bool tForceBuiltin = false;

ScopedBuiltin::ScopedBuiltin(bool on) : prev_(tForceBuiltin) { tForceBuiltin = prev_ || on; }
ScopedBuiltin::~ScopedBuiltin() { tForceBuiltin = prev_; }

#ifdef TM_HAVE_BLAS
static bool useBuiltin() {
  if (tForceBuiltin) return true;
  static const bool env = [] {
    const char* v = std::getenv("TASKMERGE_LINALG");
    return v && std::strcmp(v, "builtin") == 0;
  }();
  return env;
}
#else
static bool useBuiltin() { return true; }
#endif

const char* backendName() { return useBuiltin() ? "builtin" : "openblas"; }

void gemm(bool tA, bool tB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda, const double* B,
          size_t ldb, double beta, double* C, size_t ldc) {
  if (m == 0 || n == 0) return;
#ifdef TM_HAVE_BLAS
  if (!useBuiltin()) {
    cblas_dgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
                alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
    return;
  }
#endif
  builtin::gemm(tA, tB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

void syrkRows(size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc) {
  if (n == 0) return;
#ifdef TM_HAVE_BLAS
  if (!useBuiltin()) {
    cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, int(n), int(k), alpha, X, int(ldx), beta, C, int(ldc));
    for (size_t i = 0; i < n; i++)
      for (size_t j = i + 1; j < n; j++) C[i * ldc + j] = C[j * ldc + i];
    return;
  }
#endif
  builtin::syrkRows(n, k, alpha, X, ldx, beta, C, ldc);
}

bool cholesky(size_t n, double* A, size_t lda) {
  if (n == 0) return true;
#ifdef TM_HAVE_BLAS
  if (!useBuiltin()) {
    lapack_int info = LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'U', lapack_int(n), A, lapack_int(lda));
    if (info < 0) throw Error("cholesky: LAPACK dpotrf argument " + std::to_string(-info) + " invalid");
    return info == 0;
  }
#endif
  return builtin::cholesky(n, A, lda);
}

void choleskySolveRows(size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb) {
  if (n == 0 || nrhs == 0) return;
#ifdef TM_HAVE_BLAS
  if (!useBuiltin()) {
    lapack_int info = LAPACKE_dpotrs(LAPACK_COL_MAJOR, 'U', lapack_int(n), lapack_int(nrhs), L, lapack_int(lda), B,
                                     lapack_int(ldb));
    if (info != 0) throw Error("choleskySolveRows: LAPACK dpotrs failed (" + std::to_string(info) + ")");
    return;
  }
#endif
  builtin::choleskySolveRows(n, L, lda, nrhs, B, ldb);
}

void eigh(size_t n, double* A, size_t lda, double* w) {
  if (n == 0) return;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j <= i; j++)
      if (!std::isfinite(A[i * lda + j])) throw Error("eigh: matrix has non-finite entries");
#ifdef TM_HAVE_BLAS
  if (!useBuiltin()) {
    // Divide and conquer is much faster but needs ~2n² doubles of workspace;
    // above 8192 the QR variant keeps memory at a few n.
    lapack_int info = n <= 8192 ? LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', lapack_int(n), A, lapack_int(lda), w)
                                : LAPACKE_dsyev(LAPACK_COL_MAJOR, 'V', 'U', lapack_int(n), A, lapack_int(lda), w);
    if (info != 0) throw Error("eigh: LAPACK symmetric eigensolver failed (info " + std::to_string(info) + ")");
    return;  // column-major eigenvector columns are our rows
  }
#endif
  builtin::eigh(n, A, lda, w);
}

void axpy(size_t n, double alpha, const double* x, double* y) {
  parallelFor(n, size_t(1) << 16, [&](size_t a, size_t b) {
    for (size_t i = a; i < b; i++) y[i] += alpha * x[i];
  });
}

void HostDense::gemm(bool tA, bool tB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
                     const double* B, size_t ldb, double beta, double* C, size_t ldc) {
  linalg::gemm(tA, tB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
void HostDense::syrkRows(size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc) {
  linalg::syrkRows(n, k, alpha, X, ldx, beta, C, ldc);
}
bool HostDense::cholesky(size_t n, double* A, size_t lda) { return linalg::cholesky(n, A, lda); }
void HostDense::choleskySolveRows(size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb) {
  linalg::choleskySolveRows(n, L, lda, nrhs, B, ldb);
}
void HostDense::eigh(size_t n, double* A, size_t lda, double* w) { linalg::eigh(n, A, lda, w); }
void HostDense::axpy(size_t n, double alpha, const double* x, double* y) { linalg::axpy(n, alpha, x, y); }

}  // namespace linalg
}  // namespace taskmerge
