// The portable built-in implementation of linalg.h. Always compiled, so a
// BLAS build can still run (and test) it with TASKMERGE_LINALG=builtin.
#pragma once
#include <cstddef>

namespace taskmerge {
namespace linalg {
namespace builtin {

void gemm(bool transA, bool transB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
          const double* B, size_t ldb, double beta, double* C, size_t ldc);
void syrkRows(size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc);
bool cholesky(size_t n, double* A, size_t lda);
void choleskySolveRows(size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb);
void eigh(size_t n, double* A, size_t lda, double* w);

}  // namespace builtin
}  // namespace linalg
}  // namespace taskmerge
