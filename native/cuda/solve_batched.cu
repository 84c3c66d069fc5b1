// Batched LOT/RegMean solves (extras.h): linalg::solvePsdRows for several
// equal-size systems, double-buffered so the next system's matrices are
// copied into pinned memory and uploaded (copy stream) while the current one
// is factored and solved (compute stream). Plus the GEMM rate probe.
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "entries.h"
#include "extras.h"
#include "kernels_common.cuh"

namespace tmcuda {

__global__ void addDiagKernel(double* A, size_t n, double shift) {
  TM_GRID_STRIDE(i, n) A[i * n + i] += shift;
}
// tmp (column-major n × nrhs) row j scaled by inv[j].
__global__ void scaleRowsKernel(double* tmp, size_t n, size_t nrhs, const double* inv) {
  TM_GRID_STRIDE(i, uint64_t(n) * nrhs) tmp[i] *= inv[i % n];
}

namespace {

// One of the two in-flight systems: pinned host copies, device copies, events.
struct Slot {
  double* hA = nullptr;  // pinned: A as given (kept for the eigh fallback), then B
  double* hB = nullptr;
  double *dA = nullptr, *dB = nullptr, *dTmp = nullptr, *dW = nullptr, *dWork = nullptr;
  int* dInfo = nullptr;
  cudaEvent_t uploaded = nullptr, solved = nullptr;
  size_t pending = size_t(-1);  // system whose result waits in hB
};

struct Batch {
  Context& c;
  size_t n, nrhs;
  Slot slot[2];
  int lwork = 0;
  explicit Batch(Context& c, size_t n, size_t nrhs) : c(c), n(n), nrhs(nrhs) {}
  ~Batch() {
    cudaStreamSynchronize(c.compute);
    cudaStreamSynchronize(c.copy);
    for (Slot& s : slot) {
      cudaFreeHost(s.hA);
      cudaFreeHost(s.hB);
      cudaFree(s.dA);
      cudaFree(s.dB);
      cudaFree(s.dTmp);
      cudaFree(s.dW);
      cudaFree(s.dWork);
      cudaFree(s.dInfo);
      if (s.uploaded) cudaEventDestroy(s.uploaded);
      if (s.solved) cudaEventDestroy(s.solved);
    }
  }
  tm_status init(tm_error* err) {
    int lp = 0, le = 0;
    for (Slot& s : slot) {
      TM_CUDA_TRY(cudaHostAlloc(&s.hA, n * n * sizeof(double), cudaHostAllocDefault));
      TM_CUDA_TRY(cudaHostAlloc(&s.hB, nrhs * n * sizeof(double), cudaHostAllocDefault));
      TM_CUDA_TRY(cudaMalloc(&s.dA, n * n * sizeof(double)));
      TM_CUDA_TRY(cudaMalloc(&s.dB, nrhs * n * sizeof(double)));
      TM_CUDA_TRY(cudaMalloc(&s.dTmp, nrhs * n * sizeof(double)));
      TM_CUDA_TRY(cudaMalloc(&s.dW, 2 * n * sizeof(double)));
      TM_CUDA_TRY(cudaMalloc(&s.dInfo, sizeof(int)));
      TM_CUDA_TRY(cudaEventCreateWithFlags(&s.uploaded, cudaEventDisableTiming));
      TM_CUDA_TRY(cudaEventCreateWithFlags(&s.solved, cudaEventDisableTiming));
    }
    TM_SOLVER_TRY(cusolverDnDpotrf_bufferSize(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), slot[0].dA, int(n), &lp));
    TM_SOLVER_TRY(cusolverDnDsyevd_bufferSize(c.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, int(n), slot[0].dA,
                                              int(n), slot[0].dW, &le));
    lwork = lp > le ? lp : le;
    for (Slot& s : slot) TM_CUDA_TRY(cudaMalloc(&s.dWork, size_t(lwork) * sizeof(double)));
    return TM_OK;
  }
};

// The CPU's checks and messages (native/linalg/solve.cpp), on the host copy.
tm_status checkFiniteSystem(const double* A, const double* B, size_t n, size_t nrhs, tm_error* err) {
  for (size_t i = 0; i < n * n; i++)
    if (!std::isfinite(A[i])) return fail(err, TM_INPUT, "the summed Gram matrix holds a non-finite value (float64 overflow)");
  for (size_t i = 0; i < nrhs * n; i++)
    if (!std::isfinite(B[i]))
      return fail(err, TM_INPUT, "the task vectors times the Grams hold a non-finite value (float64 overflow)");
  return TM_OK;
}

tm_status readInt(Context& c, const int* d, int* h, tm_error* err) {
  TM_CUDA_TRY(cudaMemcpyAsync(h, d, sizeof(int), cudaMemcpyDeviceToHost, c.compute));
  TM_CUDA_TRY(cudaStreamSynchronize(c.compute));
  return TM_OK;
}

// X = B A⁺ on the device with A's eigenvectors (rows of the row-major A).
tm_status eighSolve(Batch& b, Slot& s, double rcond, tm_solve_info& info, tm_error* err) {
  Context& c = b.c;
  const size_t n = b.n, nrhs = b.nrhs;
  TM_CUDA_TRY(cudaMemcpyAsync(s.dA, s.hA, n * n * sizeof(double), cudaMemcpyHostToDevice, c.compute));
  TM_SOLVER_TRY(cusolverDnDsyevd(c.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, int(n), s.dA, int(n), s.dW, s.dWork,
                                 b.lwork, s.dInfo));
  int devInfo = 0;
  TM_CHECK(readInt(c, s.dInfo, &devInfo, err));
  if (devInfo != 0) return fail(err, TM_DEVICE_ERROR, "eigh: cuSOLVER symmetric eigensolver failed (info %d)", devInfo);
  std::vector<double> w(n), inv(n, 0.0);
  TM_CUDA_TRY(cudaMemcpy(w.data(), s.dW, n * sizeof(double), cudaMemcpyDeviceToHost));
  double wmax = 0;
  for (double x : w) wmax = std::fmax(wmax, std::fabs(x));
  if (!(rcond > 0)) rcond = double(n) * std::numeric_limits<double>::epsilon();
  const double tol = rcond * wmax;
  info.rank = 0;
  for (size_t j = 0; j < n; j++)
    if (w[j] > tol) {
      inv[j] = 1.0 / w[j];
      info.rank++;
    }
  TM_CUDA_TRY(cudaMemcpyAsync(s.dW + n, inv.data(), n * sizeof(double), cudaMemcpyHostToDevice, c.compute));
  const double one = 1, zero = 0;
  TM_BLAS_TRY(cublasDgemm(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(nrhs), int(n), &one, s.dA, int(n), s.dB, int(n), &zero, s.dTmp, int(n)));
  scaleRowsKernel<<<gridFor(n * nrhs), kThreads, 0, c.compute>>>(s.dTmp, n, nrhs, s.dW + n);
  TM_BLAS_TRY(cublasDgemm(c.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(nrhs), int(n), &one, s.dA, int(n), s.dTmp, int(n), &zero, s.dB, int(n)));
  TM_CUDA_TRY(cudaStreamSynchronize(c.compute));  // inv is a host vector
  info.used_eigh = 1;
  return TM_OK;
}

tm_status solveOne(Batch& b, Slot& s, int solver, double ridge, double rcond, tm_solve_info& info, tm_error* err) {
  Context& c = b.c;
  const size_t n = b.n, nrhs = b.nrhs;
  info = tm_solve_info{0, 0};
  TM_CUDA_TRY(cudaStreamWaitEvent(c.compute, s.uploaded, 0));
  if (solver != 2) {
    double mean = 0;
    for (size_t i = 0; i < n; i++) mean += s.hA[i * n + i];
    mean /= double(n);
    const double shift = mean > 0 ? ridge * mean : 0.0;
    addDiagKernel<<<gridFor(n), kThreads, 0, c.compute>>>(s.dA, n, shift);
    TM_SOLVER_TRY(cusolverDnDpotrf(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), s.dA, int(n), s.dWork, b.lwork, s.dInfo));
    int devInfo = 0;
    TM_CHECK(readInt(c, s.dInfo, &devInfo, err));
    if (devInfo < 0) return fail(err, TM_DEVICE_ERROR, "cholesky: cuSOLVER potrf argument %d invalid", -devInfo);
    if (devInfo == 0) {
      TM_SOLVER_TRY(cusolverDnDpotrs(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), int(nrhs), s.dA, int(n), s.dB, int(n), s.dInfo));
      info.rank = n;
      return TM_OK;
    }
    if (solver == 1)
      return fail(err, TM_NOT_PD,
                  "the summed Gram matrix is not positive definite (Cholesky failed with ridge %g); use solver auto or eigh, or a larger ridge",
                  ridge);
  }
  return eighSolve(b, s, rcond, info, err);  // A re-uploaded from the pinned copy
}

}  // namespace

// Results of system `s.pending` back into the caller's B.
static tm_status drain(Context& c, Slot& s, double* const* B, size_t nrhs, size_t n, tm_error* err) {
  if (s.pending == size_t(-1)) return TM_OK;
  TM_CUDA_TRY(cudaEventSynchronize(s.solved));
  std::memcpy(B[s.pending], s.hB, nrhs * n * sizeof(double));
  s.pending = size_t(-1);
  return TM_OK;
}

}  // namespace tmcuda

using namespace tmcuda;

extern "C" __attribute__((visibility("default"))) tm_status tm_cuda_solve_psd_rows_batched(
    tm_backend* be, size_t count, size_t n, double* const* A, size_t nrhs, double* const* B, int solver, double ridge,
    double rcond, tm_solve_info* info, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (solver < 0 || solver > 2) return fail(err, TM_INPUT, "unknown solver %d (0 auto, 1 cholesky, 2 eigh)", solver);
  for (size_t i = 0; i < count; i++) info[i] = tm_solve_info{0, 0};
  if (count == 0 || n == 0) return TM_OK;
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  Batch b(c, n, nrhs);
  TM_CHECK(b.init(err));
  // Upload of system i (copy stream) after slot i%2's previous system has been solved and drained.
  auto upload = [&](size_t i) -> tm_status {
    Slot& s = b.slot[i % 2];
    TM_CHECK(drain(c, s, B, nrhs, n, err));
    TM_CHECK(checkFiniteSystem(A[i], B[i], n, nrhs, err));
    std::memcpy(s.hA, A[i], n * n * sizeof(double));
    std::memcpy(s.hB, B[i], nrhs * n * sizeof(double));
    TM_CUDA_TRY(cudaMemcpyAsync(s.dA, s.hA, n * n * sizeof(double), cudaMemcpyHostToDevice, c.copy));
    TM_CUDA_TRY(cudaMemcpyAsync(s.dB, s.hB, nrhs * n * sizeof(double), cudaMemcpyHostToDevice, c.copy));
    TM_CUDA_TRY(cudaEventRecord(s.uploaded, c.copy));
    return TM_OK;
  };
  TM_CHECK(upload(0));
  for (size_t i = 0; i < count; i++) {
    if (i + 1 < count) TM_CHECK(upload(i + 1));  // overlaps the solve of system i below
    Slot& s = b.slot[i % 2];
    TM_CHECK(solveOne(b, s, solver, ridge, rcond, info[i], err));
    // hB is free once system i's upload is done (the solve waited on it).
    TM_CUDA_TRY(cudaMemcpyAsync(s.hB, s.dB, nrhs * n * sizeof(double), cudaMemcpyDeviceToHost, c.compute));
    TM_CUDA_TRY(cudaEventRecord(s.solved, c.compute));
    s.pending = i;
  }
  for (Slot& s : b.slot) TM_CHECK(drain(c, s, B, nrhs, n, err));
  return TM_OK;
}

__global__ void axpyKernel(size_t n, double alpha, const double* x, double* y) {
  TM_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

extern "C" __attribute__((visibility("default"))) tm_status tm_cuda_axpy(tm_backend* be, size_t n, double alpha, const double* x,
                                                                          double* y, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  if (n) axpyKernel<<<gridFor(n), kThreads, 0, c.compute>>>(n, alpha, x, y);
  TM_CUDA_TRY(cudaGetLastError());
  return TM_OK;
}

extern "C" __attribute__((visibility("default"))) tm_status tm_cuda_gemm_rate(tm_backend* be, size_t n, int precision, double seconds,
                                                                               double* tflops, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  const size_t es = precision == 0 ? 8 : 4;
  void* buf = nullptr;
  TM_CUDA_TRY(cudaMalloc(&buf, 3 * n * n * es));
  TM_CUDA_TRY(cudaMemset(buf, 0, 3 * n * n * es));
  cublasMath_t prev;
  cublasGetMathMode(c.blas, &prev);
  cublasSetMathMode(c.blas, precision == 2 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
  auto run = [&]() -> cublasStatus_t {
    if (precision == 0) {
      const double one = 1, zero = 0;
      double* p = static_cast<double*>(buf);
      return cublasDgemm(c.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(n), int(n), &one, p, int(n), p + n * n, int(n), &zero, p + 2 * n * n, int(n));
    }
    const float one = 1, zero = 0;
    float* p = static_cast<float*>(buf);
    return cublasSgemm(c.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(n), int(n), &one, p, int(n), p + n * n, int(n), &zero, p + 2 * n * n, int(n));
  };
  tm_status st = TM_OK;
  if (run() != CUBLAS_STATUS_SUCCESS || cudaStreamSynchronize(c.compute) != cudaSuccess) {
    st = fail(err, TM_DEVICE_ERROR, "gemm_rate: the warm-up GEMM failed");
  } else {
    size_t reps = 0;
    const auto t0 = std::chrono::steady_clock::now();
    double el = 0;
    while (el < seconds) {
      for (int r = 0; r < 4; r++) run();
      reps += 4;
      cudaStreamSynchronize(c.compute);
      el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    *tflops = 2.0 * double(n) * double(n) * double(n) * double(reps) / el / 1e12;
  }
  cublasSetMathMode(c.blas, prev);
  cudaFree(buf);
  return st;
}
