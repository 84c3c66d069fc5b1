// Dense linear algebra used by the data-aware methods (LOT, RegMean, drift,
// Gram statistics). Two implementations share this interface: OpenBLAS/LAPACKE
// when the build defines TM_HAVE_BLAS, and a portable built-in one otherwise
// (blocked dgemm/dsyrk/Cholesky, Householder tridiagonalisation + implicit QL).
// The interface is backend-neutral: plain float64 buffers with explicit sizes
// and leading dimensions, row-major throughout, no BLAS types.
#pragma once
#include <cstddef>

namespace taskmerge {
namespace linalg {

// "openblas" or "builtin": the implementation in use on this thread.
const char* backendName();

// While alive, makes the calling thread use the built-in implementation even in
// a BLAS build (ops take {linalg: "builtin"}; tests compare both paths). The
// environment variable TASKMERGE_LINALG=builtin does the same process-wide.
class ScopedBuiltin {
 public:
  explicit ScopedBuiltin(bool on);
  ~ScopedBuiltin();
  ScopedBuiltin(const ScopedBuiltin&) = delete;
  ScopedBuiltin& operator=(const ScopedBuiltin&) = delete;

 private:
  bool prev_;
};

// C[m,n] = alpha * op(A) op(B) + beta * C, op(X) = Xᵀ when the flag is set.
// op(A) is [m,k], op(B) is [k,n]. beta == 0 ignores C's prior contents.
void gemm(bool transA, bool transB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
          const double* B, size_t ldb, double beta, double* C, size_t ldc);

// C[n,n] = alpha * Xᵀ X + beta * C for X = k rows of width n: the Gram of the
// rows. Writes both triangles (C stays exactly symmetric).
void syrkRows(size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc);

// In-place Cholesky A = L Lᵀ of the symmetric n×n A: reads and overwrites only
// the lower triangle (diagonal included); the strict upper triangle is left
// untouched, so a caller can rebuild A after a failure. Returns false when A
// is not (numerically) positive definite.
bool cholesky(size_t n, double* A, size_t lda);

// Given L from cholesky(), solves X A = B for the nrhs rows of B ([nrhs,n]) in
// place: each row b becomes b A⁻¹ (A symmetric, so also A⁻¹ bᵀ).
void choleskySolveRows(size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb);

// Symmetric eigendecomposition from the lower triangle of A (n×n). Eigenvalues
// ascend into w[n]; A is overwritten with the eigenvectors in its ROWS:
// A_original = Σj w[j] vj vjᵀ, vj = row j. Throws taskmerge::Error on failure.
void eigh(size_t n, double* A, size_t lda, double* w);

// The same five operations as an object, so that code built on them (solve.h,
// the drift and Gram ops) runs on whichever backend its op picked: the ops
// pass native/boundary/dense.h's implementation (the op's backend);
// HostDense calls the functions above directly.
class DenseOps {
 public:
  virtual ~DenseOps() = default;
  virtual void gemm(bool transA, bool transB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
                    const double* B, size_t ldb, double beta, double* C, size_t ldc) = 0;
  virtual void syrkRows(size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc) = 0;
  virtual bool cholesky(size_t n, double* A, size_t lda) = 0;
  virtual void choleskySolveRows(size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb) = 0;
  virtual void eigh(size_t n, double* A, size_t lda, double* w) = 0;
  // y[0..n) += alpha·x (the accumulation A += G̃).
  virtual void axpy(size_t n, double alpha, const double* x, double* y) = 0;
};

// DenseOps on host memory: the functions above (the CPU backend's entries use it).
class HostDense : public DenseOps {
 public:
  void gemm(bool transA, bool transB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
            const double* B, size_t ldb, double beta, double* C, size_t ldc) override;
  void syrkRows(size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc) override;
  bool cholesky(size_t n, double* A, size_t lda) override;
  void choleskySolveRows(size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb) override;
  void eigh(size_t n, double* A, size_t lda, double* w) override;
  void axpy(size_t n, double alpha, const double* x, double* y) override;
};

// y[0..n) += alpha·x on the host thread pool, in float64 (alpha·x rounded, then the sum).
void axpy(size_t n, double alpha, const double* x, double* y);

}  // namespace linalg
}  // namespace taskmerge
