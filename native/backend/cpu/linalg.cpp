// The CPU backend's dense linear algebra: native/linalg (OpenBLAS/LAPACKE
// when built with TM_HAVE_BLAS, else the built-in implementation), on host
// pointers. LAPACKE allocates its own workspace, so these take no tm_work.
#include "../../linalg/linalg.h"
#include "../status.h"
#include "cpu_kernels.h"

namespace taskmerge {
namespace cpu {

using backend::guarded;

const char* linalgName(tm_backend*) { return linalg::backendName(); }

tm_status gemm(tm_backend*, int tA, int tB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
               const double* B, size_t ldb, double beta, double* C, size_t ldc, tm_error* err) {
  return guarded(err, [&] { linalg::gemm(tA != 0, tB != 0, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); });
}

tm_status syrkRows(tm_backend*, size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc, tm_error* err) {
  return guarded(err, [&] { linalg::syrkRows(n, k, alpha, X, ldx, beta, C, ldc); });
}

tm_status cholesky(tm_backend*, size_t n, double* A, size_t lda, tm_work, tm_error* err) {
  bool ok = true;
  tm_status s = guarded(err, [&] { ok = linalg::cholesky(n, A, lda); });
  return s != TM_OK ? s : ok ? TM_OK : TM_NOT_PD;
}

tm_status choleskySolveRows(tm_backend*, size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb, tm_error* err) {
  return guarded(err, [&] { linalg::choleskySolveRows(n, L, lda, nrhs, B, ldb); });
}

tm_status eigh(tm_backend*, size_t n, double* A, size_t lda, double* w, tm_work, tm_error* err) {
  return guarded(err, [&] { linalg::eigh(n, A, lda, w); });
}

}  // namespace cpu
}  // namespace taskmerge
