// linalg::DenseOps on an op's backend: each call gets backend addresses for
// its matrices from the op's DeviceCall (views on the CPU, copies elsewhere)
// and runs the backend's gemm / syrk_rows / cholesky / cholesky_solve_rows /
// eigh / axpy entry. Matrices are row-major float64 with explicit leading dimensions.
#pragma once
#include "../linalg/linalg.h"
#include "device_call.h"

namespace taskmerge {
namespace boundary {

class Dense : public linalg::DenseOps {
 public:
  explicit Dense(DeviceCall& d) : d_(d) {}
  void gemm(bool transA, bool transB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
            const double* B, size_t ldb, double beta, double* C, size_t ldc) override;
  void syrkRows(size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C, size_t ldc) override;
  bool cholesky(size_t n, double* A, size_t lda) override;
  void choleskySolveRows(size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb) override;
  void eigh(size_t n, double* A, size_t lda, double* w) override;
  void axpy(size_t n, double alpha, const double* x, double* y) override;

 private:
  DeviceCall& d_;
};

}  // namespace boundary
}  // namespace taskmerge
