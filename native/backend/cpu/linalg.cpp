// The CPU backend's dense linear algebra: native/linalg (OpenBLAS/LAPACKE
// when built with TM_HAVE_BLAS, else the built-in implementation), on host
// pointers. LAPACKE allocates its own workspace, so these take no tm_work.
#include "../../linalg/linalg.h"
#include "../../linalg/solve.h"
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

tm_status axpy(tm_backend*, size_t n, double alpha, const double* x, double* y, tm_error* err) {
  return guarded(err, [&] { linalg::axpy(n, alpha, x, y); });
}

// linalg::solvePsdRows per system, in order, on the calling thread (so an op's
// forced built-in linear algebra applies). float64 only: the CPU has no faster
// lower-precision path worth a second implementation.
tm_status solvePsdRowsBatched(tm_backend*, size_t count, size_t n, double* const* A, size_t nrhs, double* const* B,
                              const tm_solve_opts* o, tm_solve_info* info, size_t* done, tm_error* err) {
  *done = 0;
  if (o->precision != TM_PRECISION_F64) {
    backend::fill(err, TM_ROLE_NONE, -1, -1, "",
                  std::string("the CPU backend solves in float64 only (solve precision ") +
                      (o->precision == TM_PRECISION_F32 ? "float32" : "tf32") + " needs the CUDA backend)");
    return TM_UNSUPPORTED;
  }
  if (o->solver < 0 || o->solver > 2) {
    backend::fill(err, TM_ROLE_NONE, -1, -1, "", "unknown solver " + std::to_string(o->solver) + " (0 auto, 1 cholesky, 2 eigh)");
    return TM_INPUT;
  }
  const linalg::Solver s = o->solver == 1 ? linalg::Solver::Cholesky : o->solver == 2 ? linalg::Solver::Eigh : linalg::Solver::Auto;
  linalg::HostDense la;
  for (size_t i = 0; i < count; i++) {
    tm_status st = guarded(err, [&] {
      const linalg::SolveInfo r = linalg::solvePsdRows(n, A[i], nrhs, B[i], s, o->ridge, o->rcond, la);
      info[i] = tm_solve_info{r.usedEigh ? 1 : 0, r.rank};
    });
    if (st != TM_OK) return st;
    *done = i + 1;
  }
  return TM_OK;
}

}  // namespace cpu
}  // namespace taskmerge
