// Dense linear algebra through cuBLAS and cuSOLVER, on row-major float64
// buffers in device memory, with the CPU backend's conventions
// (native/linalg/linalg.h). cuBLAS is column-major: a row-major matrix is the
// column-major transpose, so C = op(A)·op(B) is computed as Cᵀ = op(B)ᵀ·op(A)ᵀ,
// and a row-major lower triangle is a column-major upper one (what the CPU
// backend hands LAPACK as 'U' as well). Nothing is transposed or copied.
//
// TASKMERGE_CUDA_PRECISION=f32 or tf32 runs GEMM, SYRK, Cholesky and its
// solve in float32 (tf32: GEMMs on TF32 tensor cores), converting on the
// device; eigh stays float64. See docs/cuda.md for the error bounds.
#include "entries.h"
#include "kernels_common.cuh"

namespace tmcuda {

// Device scratch freed (stream-ordered) with the call.
struct Scratch {
  cudaStream_t s;
  void* p = nullptr;
  explicit Scratch(cudaStream_t s) : s(s) {}
  ~Scratch() {
    if (p) cudaFreeAsync(p, s);
  }
  tm_status alloc(size_t bytes, tm_error* err) {
    TM_CUDA_TRY(cudaMallocAsync(&p, bytes ? bytes : 1, s));
    return TM_OK;
  }
  template <class V>
  V* as() const { return static_cast<V*>(p); }
};

// rows × cols of a row-major matrix with leading dimension ld ↔ packed float32.
__global__ void toF32Kernel(const double* src, size_t ld, size_t rows, size_t cols, float* dst) {
  TM_GRID_STRIDE(i, uint64_t(rows) * cols) dst[i] = float(src[(i / cols) * ld + i % cols]);
}
// lowerOnly: only entries with col ≤ row (a row-major lower triangle) are written back.
__global__ void fromF32Kernel(const float* src, size_t rows, size_t cols, double* dst, size_t ld, int lowerOnly) {
  TM_GRID_STRIDE(i, uint64_t(rows) * cols) {
    const size_t r = i / cols, c = i % cols;
    if (!lowerOnly || c <= r) dst[r * ld + c] = double(src[i]);
  }
}
// C[i][j] = C[j][i] for j > i: the row-major upper triangle from the lower one.
__global__ void mirrorLowerKernel(double* C, size_t n, size_t ldc) {
  TM_GRID_STRIDE(i, uint64_t(n) * n) {
    const size_t r = i / n, c = i % n;
    if (c > r) C[r * ldc + c] = C[c * ldc + r];
  }
}
__global__ void lowerNonFiniteKernel(const double* A, size_t n, size_t lda, unsigned long long* bad) {
  TM_GRID_STRIDE(i, uint64_t(n) * n) {
    const size_t r = i / n, c = i % n;
    if (c <= r && (bitsOf(A[r * lda + c]) & 0x7ff0000000000000ull) == 0x7ff0000000000000ull) atomicMin(bad, 1ull);
  }
}

static bool f32(const Context& c) { return c.precision != Precision::F64; }

tm_status gemm(tm_backend* be, int tA, int tB, size_t m, size_t n, size_t k, double alpha, const double* A, size_t lda,
               const double* B, size_t ldb, double beta, double* C, size_t ldc, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (m == 0 || n == 0) return TM_OK;
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  const cublasOperation_t opA = tA ? CUBLAS_OP_T : CUBLAS_OP_N, opB = tB ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (!f32(c)) {
    TM_BLAS_TRY(cublasDgemm(c.blas, opB, opA, int(n), int(m), int(k), &alpha, B, int(ldb), A, int(lda), &beta, C, int(ldc)));
    return TM_OK;
  }
  // op(A) is m×k: A is stored m×k (k×m when transposed), likewise B.
  const size_t ar = tA ? k : m, ac = tA ? m : k, br = tB ? n : k, bc = tB ? k : n;
  Scratch s(c.compute);
  TM_CHECK(s.alloc((ar * ac + br * bc + m * n) * sizeof(float), err));
  float *a = s.as<float>(), *b = a + ar * ac, *cc = b + br * bc;
  toF32Kernel<<<gridFor(ar * ac), kThreads, 0, c.compute>>>(A, lda, ar, ac, a);
  toF32Kernel<<<gridFor(br * bc), kThreads, 0, c.compute>>>(B, ldb, br, bc, b);
  if (beta != 0) toF32Kernel<<<gridFor(m * n), kThreads, 0, c.compute>>>(C, ldc, m, n, cc);
  const float fa = float(alpha), fb = float(beta);
  TM_BLAS_TRY(cublasSgemm(c.blas, opB, opA, int(n), int(m), int(k), &fa, b, int(bc), a, int(ac), &fb, cc, int(n)));
  fromF32Kernel<<<gridFor(m * n), kThreads, 0, c.compute>>>(cc, m, n, C, ldc, 0);
  TM_CUDA_TRY(cudaGetLastError());
  return TM_OK;
}

tm_status syrkRows(tm_backend* be, size_t n, size_t k, double alpha, const double* X, size_t ldx, double beta, double* C,
                   size_t ldc, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (n == 0) return TM_OK;
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  // Row-major X (k rows of width n) is the column-major n×k X_cm, and Xᵀ X = X_cm X_cmᵀ.
  if (!f32(c)) {
    TM_BLAS_TRY(cublasDsyrk(c.blas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, int(n), int(k), &alpha, X, int(ldx), &beta, C, int(ldc)));
  } else {
    Scratch s(c.compute);
    TM_CHECK(s.alloc((k * n + n * n) * sizeof(float), err));
    float *x = s.as<float>(), *cc = x + k * n;
    toF32Kernel<<<gridFor(k * n), kThreads, 0, c.compute>>>(X, ldx, k, n, x);
    if (beta != 0) toF32Kernel<<<gridFor(n * n), kThreads, 0, c.compute>>>(C, ldc, n, n, cc);
    const float fa = float(alpha), fb = float(beta);
    if (c.precision == Precision::TF32)  // SYRK has no tensor-core path: a GEMM does the work
      TM_BLAS_TRY(cublasSgemm(c.blas, CUBLAS_OP_N, CUBLAS_OP_T, int(n), int(n), int(k), &fa, x, int(n), x, int(n), &fb, cc, int(n)));
    else
      TM_BLAS_TRY(cublasSsyrk(c.blas, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, int(n), int(k), &fa, x, int(n), &fb, cc, int(n)));
    fromF32Kernel<<<gridFor(n * n), kThreads, 0, c.compute>>>(cc, n, n, C, ldc, 1);
  }
  mirrorLowerKernel<<<gridFor(n * n), kThreads, 0, c.compute>>>(C, n, ldc);
  TM_CUDA_TRY(cudaGetLastError());
  return TM_OK;
}

// Reads cuSOLVER's devInfo (synchronises the stream).
static tm_status readInfo(Context& c, const int* devInfo, int* info, tm_error* err) {
  TM_CUDA_TRY(cudaMemcpyAsync(info, devInfo, sizeof(int), cudaMemcpyDeviceToHost, c.compute));
  TM_CUDA_TRY(cudaStreamSynchronize(c.compute));
  return TM_OK;
}

tm_status cholesky(tm_backend* be, size_t n, double* A, size_t lda, tm_work, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (n == 0) return TM_OK;
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  int lwork = 0, info = 0;
  Scratch s(c.compute);
  if (!f32(c)) {
    TM_SOLVER_TRY(cusolverDnDpotrf_bufferSize(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), A, int(lda), &lwork));
    TM_CHECK(s.alloc(16 + size_t(lwork) * sizeof(double), err));
    TM_SOLVER_TRY(cusolverDnDpotrf(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), A, int(lda),
                                   reinterpret_cast<double*>(s.as<uint8_t>() + 16), lwork, s.as<int>()));
  } else {
    // float32 copy of the whole matrix; only the factor's triangle comes back,
    // so the other one keeps its float64 values (the caller may rebuild A from it).
    float* a = nullptr;
    TM_SOLVER_TRY(cusolverDnSpotrf_bufferSize(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), a, int(n), &lwork));
    TM_CHECK(s.alloc(16 + (size_t(lwork) + n * n) * sizeof(float), err));
    a = reinterpret_cast<float*>(s.as<uint8_t>() + 16);
    toF32Kernel<<<gridFor(n * n), kThreads, 0, c.compute>>>(A, lda, n, n, a);
    TM_SOLVER_TRY(cusolverDnSpotrf(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), a, int(n), a + n * n, lwork, s.as<int>()));
    fromF32Kernel<<<gridFor(n * n), kThreads, 0, c.compute>>>(a, n, n, A, lda, 1);
  }
  TM_CHECK(readInfo(c, s.as<int>(), &info, err));
  if (info < 0) return fail(err, TM_DEVICE_ERROR, "cholesky: cuSOLVER potrf argument %d invalid", -info);
  if (info > 0) return fail(err, TM_NOT_PD, "the matrix is not positive definite (Cholesky failed at column %d)", info);
  return TM_OK;
}

tm_status choleskySolveRows(tm_backend* be, size_t n, const double* L, size_t lda, size_t nrhs, double* B, size_t ldb, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (n == 0 || nrhs == 0) return TM_OK;
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  Scratch s(c.compute);
  int info = 0;
  // Row-major B [nrhs, n] is the column-major n × nrhs right-hand side.
  if (!f32(c)) {
    TM_CHECK(s.alloc(16, err));
    TM_SOLVER_TRY(cusolverDnDpotrs(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), int(nrhs), L, int(lda), B, int(ldb), s.as<int>()));
  } else {
    TM_CHECK(s.alloc(16 + (n * n + nrhs * n) * sizeof(float), err));
    float* l = reinterpret_cast<float*>(s.as<uint8_t>() + 16);
    float* b = l + n * n;
    toF32Kernel<<<gridFor(n * n), kThreads, 0, c.compute>>>(L, lda, n, n, l);
    toF32Kernel<<<gridFor(nrhs * n), kThreads, 0, c.compute>>>(B, ldb, nrhs, n, b);
    TM_SOLVER_TRY(cusolverDnSpotrs(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), int(nrhs), l, int(n), b, int(n), s.as<int>()));
    fromF32Kernel<<<gridFor(nrhs * n), kThreads, 0, c.compute>>>(b, nrhs, n, B, ldb, 0);
  }
  TM_CHECK(readInfo(c, s.as<int>(), &info, err));
  if (info != 0) return fail(err, TM_DEVICE_ERROR, "choleskySolveRows: cuSOLVER potrs failed (%d)", info);
  return TM_OK;
}

tm_status eigh(tm_backend* be, size_t n, double* A, size_t lda, double* w, tm_work, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (n == 0) return TM_OK;
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  Scratch s(c.compute);
  int lwork = 0, info = 0;
  TM_SOLVER_TRY(cusolverDnDsyevd_bufferSize(c.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, int(n), A, int(lda), w, &lwork));
  TM_CHECK(s.alloc(16 + size_t(lwork) * sizeof(double), err));
  int* devInfo = s.as<int>();
  unsigned long long* bad = reinterpret_cast<unsigned long long*>(s.as<uint8_t>() + 8);
  TM_CUDA_TRY(cudaMemsetAsync(bad, 0, 8, c.compute));
  lowerNonFiniteKernel<<<gridFor(n * n), kThreads, 0, c.compute>>>(A, n, lda, bad);
  unsigned long long anyBad = 0;
  TM_CUDA_TRY(cudaMemcpyAsync(&anyBad, bad, 8, cudaMemcpyDeviceToHost, c.compute));
  TM_CUDA_TRY(cudaStreamSynchronize(c.compute));
  if (anyBad) return fail(err, TM_INPUT, "eigh: matrix has non-finite entries");
  // Column-major eigenvector columns are the rows of the row-major A.
  TM_SOLVER_TRY(cusolverDnDsyevd(c.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, int(n), A, int(lda), w,
                                 reinterpret_cast<double*>(s.as<uint8_t>() + 16), lwork, devInfo));
  TM_CHECK(readInfo(c, devInfo, &info, err));
  if (info != 0) return fail(err, TM_DEVICE_ERROR, "eigh: cuSOLVER symmetric eigensolver failed (info %d)", info);
  return TM_OK;
}

}  // namespace tmcuda
