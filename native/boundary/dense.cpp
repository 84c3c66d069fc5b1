#include "dense.h"

namespace taskmerge {
namespace boundary {

// Doubles a rows × cols matrix with leading dimension ld spans.
static size_t span(size_t rows, size_t cols, size_t ld) { return rows && cols ? (rows - 1) * ld + cols : 0; }

void Dense::gemm(bool tA, bool tB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda, const double* B,
                 size_t ldb, double beta, double* C, size_t ldc) {
  if (m == 0 || n == 0) return;
  auto fn = d_.entry(d_.iface().gemm, "gemm");
  const double* a = static_cast<const double*>(d_.in(A, span(tA ? k : m, tA ? m : k, lda) * 8));
  const double* b = static_cast<const double*>(d_.in(B, span(tB ? n : k, tB ? k : n, ldb) * 8));
  double* c = static_cast<double*>(beta == 0 ? d_.out(C, span(m, n, ldc) * 8) : d_.inout(C, span(m, n, ldc) * 8));
  d_.check(fn(&d_.backend(), tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, d_.err()), "gemm");
}

void Dense::syrkRows(size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc) {
  if (n == 0) return;
  auto fn = d_.entry(d_.iface().syrk_rows, "syrk_rows");
  const double* x = static_cast<const double*>(d_.in(X, span(k, n, ldx) * 8));
  double* c = static_cast<double*>(d_.inout(C, span(n, n, ldc) * 8));
  d_.check(fn(&d_.backend(), n, k, alpha, x, ldx, beta, c, ldc, d_.err()), "syrk_rows");
}

bool Dense::cholesky(size_t n, double* A, size_t lda) {
  if (n == 0) return true;
  auto fn = d_.entry(d_.iface().cholesky, "cholesky");
  double* a = static_cast<double*>(d_.inout(A, span(n, n, lda) * 8));
  const tm_status s = fn(&d_.backend(), n, a, lda, d_.work(TM_K_CHOLESKY, 1, n), d_.err());
  if (s == TM_NOT_PD) {
    d_.finish();  // the caller rebuilds A from what the factorisation left
    return false;
  }
  d_.check(s, "cholesky");
  return true;
}

void Dense::choleskySolveRows(size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb) {
  if (n == 0 || nrhs == 0) return;
  auto fn = d_.entry(d_.iface().cholesky_solve_rows, "cholesky_solve_rows");
  const double* l = static_cast<const double*>(d_.in(L, span(n, n, lda) * 8));
  double* b = static_cast<double*>(d_.inout(B, span(nrhs, n, ldb) * 8));
  d_.check(fn(&d_.backend(), n, l, lda, nrhs, b, ldb, d_.err()), "cholesky_solve_rows");
}

void Dense::eigh(size_t n, double* A, size_t lda, double* w) {
  if (n == 0) return;
  auto fn = d_.entry(d_.iface().eigh, "eigh");
  double* a = static_cast<double*>(d_.inout(A, span(n, n, lda) * 8));
  double* wd = static_cast<double*>(d_.out(w, n * 8));
  d_.check(fn(&d_.backend(), n, a, lda, wd, d_.work(TM_K_EIGH, 1, n), d_.err()), "eigh");
}

void Dense::axpy(size_t n, double alpha, const double* x, double* y) {
  if (n == 0) return;
  auto fn = d_.entry(d_.iface().axpy, "axpy");
  const double* xd = static_cast<const double*>(d_.in(x, n * 8));
  double* yd = static_cast<double*>(d_.inout(y, n * 8));
  d_.check(fn(&d_.backend(), n, alpha, xd, yd, d_.err()), "axpy");
}

}  // namespace boundary
}  // namespace taskmerge
