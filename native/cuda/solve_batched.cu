// The table's solve_psd_rows_batched and axpy (backend.h), plus the GEMM rate
// probe of the check program (extras.h). A batched solve is
// linalg::solvePsdRows for several equal-size systems, double-buffered: the
// next system's matrices are copied into pinned memory and uploaded on the
// copy stream while the current one is factored and solved on the compute
// stream. Precision per call (tm_solve_opts.precision):
//  float64  Dpotrf/Dpotrs, the eigh fallback Dsyevd + two DGEMMs;
//  float32  the (shifted) A and B converted to float32 on the device,
//           Spotrf/Spotrs; the fallback's eigenvectors from Dsyevd (float64),
//           its two GEMMs in float32;
//  tf32     as float32, those two GEMMs on TF32 tensor cores (cuSOLVER's
//           potrf/potrs do not use them).
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
template <class V>
__global__ void scaleRowsKernel(V* tmp, size_t n, size_t nrhs, const double* inv) {
  TM_GRID_STRIDE(i, uint64_t(n) * nrhs) tmp[i] = V(double(tmp[i]) * inv[i % n]);
}
__global__ void narrowKernel(const double* src, size_t n, float* dst) {
  TM_GRID_STRIDE(i, n) dst[i] = float(src[i]);
}
__global__ void widenKernel(const float* src, size_t n, double* dst) {
  TM_GRID_STRIDE(i, n) dst[i] = double(src[i]);
}

namespace {

// One of the two in-flight systems: pinned host copies, device copies, events.
struct Slot {
  double* hA = nullptr;  // pinned: A as given (kept for the eigh fallback)
  double* hB = nullptr;  // pinned: B, then X
  double *dA = nullptr, *dB = nullptr, *dTmp = nullptr, *dW = nullptr, *dWork = nullptr;
  float *sA = nullptr, *sB = nullptr, *sTmp = nullptr, *sWork = nullptr;  // float32 / tf32 only
  int* dInfo = nullptr;
  cudaEvent_t uploaded = nullptr, solved = nullptr;
  size_t pending = size_t(-1);  // system whose result waits in hB
};

struct Batch {
  Context& c;
  size_t n, nrhs;
  tm_precision precision;
  Slot slot[2];
  int lwork = 0, slwork = 0;
  cublasMath_t prevMath = CUBLAS_DEFAULT_MATH;
  bool mathSet = false;
  Batch(Context& c, size_t n, size_t nrhs, tm_precision p) : c(c), n(n), nrhs(nrhs), precision(p) {}
  ~Batch() {
    cudaStreamSynchronize(c.compute);
    cudaStreamSynchronize(c.copy);
    if (mathSet) cublasSetMathMode(c.blas, prevMath);  // the context's default (TASKMERGE_CUDA_PRECISION)
    for (Slot& s : slot) {
      cudaFreeHost(s.hA);
      cudaFreeHost(s.hB);
      for (void* p : {(void*)s.dA, (void*)s.dB, (void*)s.dTmp, (void*)s.dW, (void*)s.dWork, (void*)s.sA, (void*)s.sB,
                      (void*)s.sTmp, (void*)s.sWork, (void*)s.dInfo})
        cudaFree(p);
      if (s.uploaded) cudaEventDestroy(s.uploaded);
      if (s.solved) cudaEventDestroy(s.solved);
    }
  }
  bool f32() const { return precision != TM_PRECISION_F64; }
  tm_status init(tm_error* err) {
    // The handle's math mode for this call: TF32 tensor cores only when asked.
    TM_BLAS_TRY(cublasGetMathMode(c.blas, &prevMath));
    TM_BLAS_TRY(cublasSetMathMode(c.blas, precision == TM_PRECISION_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    mathSet = true;
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
      if (f32()) {
        TM_CUDA_TRY(cudaMalloc(&s.sA, n * n * sizeof(float)));
        TM_CUDA_TRY(cudaMalloc(&s.sB, nrhs * n * sizeof(float)));
        TM_CUDA_TRY(cudaMalloc(&s.sTmp, nrhs * n * sizeof(float)));
      }
    }
    TM_SOLVER_TRY(cusolverDnDpotrf_bufferSize(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), slot[0].dA, int(n), &lp));
    TM_SOLVER_TRY(cusolverDnDsyevd_bufferSize(c.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_UPPER, int(n), slot[0].dA,
                                              int(n), slot[0].dW, &le));
    lwork = lp > le ? lp : le;
    if (f32()) TM_SOLVER_TRY(cusolverDnSpotrf_bufferSize(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), slot[0].sA, int(n), &slwork));
    for (Slot& s : slot) {
      TM_CUDA_TRY(cudaMalloc(&s.dWork, size_t(lwork) * sizeof(double)));
      if (f32()) TM_CUDA_TRY(cudaMalloc(&s.sWork, size_t(slwork > 0 ? slwork : 1) * sizeof(float)));
    }
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

// X = B A⁺ on the device with A's eigenvectors (rows of the row-major A):
// X = ((B Eᵀ) diag(1/w)) E, the two GEMMs in the batch's precision.
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
  if (!b.f32()) {
    const double one = 1, zero = 0;
    TM_BLAS_TRY(cublasDgemm(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(nrhs), int(n), &one, s.dA, int(n), s.dB, int(n), &zero, s.dTmp, int(n)));
    scaleRowsKernel<<<gridFor(n * nrhs), kThreads, 0, c.compute>>>(s.dTmp, n, nrhs, s.dW + n);
    TM_BLAS_TRY(cublasDgemm(c.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(nrhs), int(n), &one, s.dA, int(n), s.dTmp, int(n), &zero, s.dB, int(n)));
  } else {
    const float one = 1, zero = 0;
    narrowKernel<<<gridFor(n * n), kThreads, 0, c.compute>>>(s.dA, n * n, s.sA);
    narrowKernel<<<gridFor(n * nrhs), kThreads, 0, c.compute>>>(s.dB, n * nrhs, s.sB);
    TM_BLAS_TRY(cublasSgemm(c.blas, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(nrhs), int(n), &one, s.sA, int(n), s.sB, int(n), &zero, s.sTmp, int(n)));
    scaleRowsKernel<<<gridFor(n * nrhs), kThreads, 0, c.compute>>>(s.sTmp, n, nrhs, s.dW + n);
    TM_BLAS_TRY(cublasSgemm(c.blas, CUBLAS_OP_N, CUBLAS_OP_N, int(n), int(nrhs), int(n), &one, s.sA, int(n), s.sTmp, int(n), &zero, s.sB, int(n)));
    widenKernel<<<gridFor(n * nrhs), kThreads, 0, c.compute>>>(s.sB, n * nrhs, s.dB);
  }
  TM_CUDA_TRY(cudaGetLastError());
  TM_CUDA_TRY(cudaStreamSynchronize(c.compute));  // inv is a host vector
  info.used_eigh = 1;
  return TM_OK;
}

// Queues system i's work up to the factorisation (Cholesky of A + ridge·mean(diag A)·I
// in the batch's precision), so that the host stages the next system meanwhile.
tm_status solveStart(Batch& b, Slot& s, const tm_solve_opts& o, tm_error* err) {
  Context& c = b.c;
  const size_t n = b.n;
  TM_CUDA_TRY(cudaStreamWaitEvent(c.compute, s.uploaded, 0));
  if (o.solver == 2) return TM_OK;
  double mean = 0;
  for (size_t i = 0; i < n; i++) mean += s.hA[i * n + i];
  mean /= double(n);
  const double shift = mean > 0 ? o.ridge * mean : 0.0;
  addDiagKernel<<<gridFor(n), kThreads, 0, c.compute>>>(s.dA, n, shift);
  if (!b.f32()) {
    TM_SOLVER_TRY(cusolverDnDpotrf(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), s.dA, int(n), s.dWork, b.lwork, s.dInfo));
  } else {
    narrowKernel<<<gridFor(n * n), kThreads, 0, c.compute>>>(s.dA, n * n, s.sA);
    TM_SOLVER_TRY(cusolverDnSpotrf(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), s.sA, int(n), s.sWork, b.slwork, s.dInfo));
  }
  TM_CUDA_TRY(cudaGetLastError());
  return TM_OK;
}

// The rest of system i: the triangular solves, or the eigh pseudo-inverse when the
// factorisation failed (solver auto) or was not asked for (eigh).
tm_status solveFinish(Batch& b, Slot& s, const tm_solve_opts& o, tm_solve_info& info, tm_error* err) {
  Context& c = b.c;
  const size_t n = b.n, nrhs = b.nrhs;
  info = tm_solve_info{0, 0};
  if (o.solver != 2) {
    int devInfo = 0;
    TM_CHECK(readInt(c, s.dInfo, &devInfo, err));
    if (devInfo < 0) return fail(err, TM_DEVICE_ERROR, "cholesky: cuSOLVER potrf argument %d invalid", -devInfo);
    if (devInfo == 0) {
      if (!b.f32()) {
        TM_SOLVER_TRY(cusolverDnDpotrs(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), int(nrhs), s.dA, int(n), s.dB, int(n), s.dInfo));
      } else {
        narrowKernel<<<gridFor(n * nrhs), kThreads, 0, c.compute>>>(s.dB, n * nrhs, s.sB);
        TM_SOLVER_TRY(cusolverDnSpotrs(c.solver, CUBLAS_FILL_MODE_UPPER, int(n), int(nrhs), s.sA, int(n), s.sB, int(n), s.dInfo));
        widenKernel<<<gridFor(n * nrhs), kThreads, 0, c.compute>>>(s.sB, n * nrhs, s.dB);
      }
      TM_CUDA_TRY(cudaGetLastError());
      info.rank = n;
      return TM_OK;
    }
    if (o.solver == 1)
      return fail(err, TM_NOT_PD,
                  "the summed Gram matrix is not positive definite (Cholesky failed with ridge %g); use solver auto or eigh, or a larger ridge",
                  o.ridge);
  }
  return eighSolve(b, s, o.rcond, info, err);  // A re-uploaded from the pinned copy
}

// Results of system `s.pending` back into the caller's B; *done counts the systems returned (in order).
tm_status drain(Slot& s, double* const* B, size_t nrhs, size_t n, size_t* done, tm_error* err) {
  if (s.pending == size_t(-1)) return TM_OK;
  TM_CUDA_TRY(cudaEventSynchronize(s.solved));
  std::memcpy(B[s.pending], s.hB, nrhs * n * sizeof(double));
  *done = s.pending + 1;
  s.pending = size_t(-1);
  return TM_OK;
}

// Stages system i in its slot (after draining the slot's previous system) and uploads it on the copy stream.
tm_status upload(Batch& b, size_t i, double* const* A, double* const* B, size_t* done, tm_error* err) {
  Context& c = b.c;
  const size_t n = b.n, nrhs = b.nrhs;
  Slot& s = b.slot[i % 2];
  TM_CHECK(drain(s, B, nrhs, n, done, err));
  TM_CHECK(checkFiniteSystem(A[i], B[i], n, nrhs, err));
  std::memcpy(s.hA, A[i], n * n * sizeof(double));
  std::memcpy(s.hB, B[i], nrhs * n * sizeof(double));
  TM_CUDA_TRY(cudaMemcpyAsync(s.dA, s.hA, n * n * sizeof(double), cudaMemcpyHostToDevice, c.copy));
  TM_CUDA_TRY(cudaMemcpyAsync(s.dB, s.hB, nrhs * n * sizeof(double), cudaMemcpyHostToDevice, c.copy));
  TM_CUDA_TRY(cudaEventRecord(s.uploaded, c.copy));
  return TM_OK;
}

// Finishes system i and queues its result's copy back into the pinned hB.
tm_status finishAndQueue(Batch& b, size_t i, const tm_solve_opts& o, tm_solve_info* info, tm_error* err) {
  Context& c = b.c;
  Slot& s = b.slot[i % 2];
  TM_CHECK(solveFinish(b, s, o, info[i], err));
  // hB is free once system i's upload is done (the solve waited on it).
  TM_CUDA_TRY(cudaMemcpyAsync(s.hB, s.dB, b.nrhs * b.n * sizeof(double), cudaMemcpyDeviceToHost, c.compute));
  TM_CUDA_TRY(cudaEventRecord(s.solved, c.compute));
  s.pending = i;
  return TM_OK;
}

}  // namespace

tm_status solvePsdRowsBatched(tm_backend* be, size_t count, size_t n, double* const* A, size_t nrhs, double* const* B,
                              const tm_solve_opts* o, tm_solve_info* info, size_t* done, tm_error* err) {
  *done = 0;
  TM_CHECK(requireDevice(be, err));
  if (o->solver < 0 || o->solver > 2) return fail(err, TM_INPUT, "unknown solver %d (0 auto, 1 cholesky, 2 eigh)", o->solver);
  if (o->precision < TM_PRECISION_F64 || o->precision > TM_PRECISION_TF32) return fail(err, TM_INPUT, "unknown precision %d", int(o->precision));
  for (size_t i = 0; i < count; i++) info[i] = tm_solve_info{0, 0};
  if (count == 0) return TM_OK;
  if (n == 0) {
    *done = count;
    return TM_OK;
  }
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  Batch b(c, n, nrhs, o->precision);
  TM_CHECK(b.init(err));
  // Systems finish in order: a failure returns the results before it (*done of them).
  auto drainAll = [&](tm_error* e) -> tm_status {
    const size_t first = b.slot[0].pending < b.slot[1].pending ? 0 : 1;  // the older one first
    TM_CHECK(drain(b.slot[first], B, nrhs, n, done, e));
    return drain(b.slot[1 - first], B, nrhs, n, done, e);
  };
  TM_CHECK(upload(b, 0, A, B, done, err));
  for (size_t i = 0; i < count; i++) {
    // i's factorisation is queued first, then i+1 is staged and uploaded (host, copy stream)
    // while it runs; a failure of i+1 is reported after i's result.
    tm_status st = solveStart(b, b.slot[i % 2], *o, err);
    tm_error nextErr{};
    const tm_status next = st == TM_OK && i + 1 < count ? upload(b, i + 1, A, B, done, &nextErr) : TM_OK;
    if (st == TM_OK) st = finishAndQueue(b, i, *o, info, err);
    if (st != TM_OK) {
      tm_error ignored{};
      drainAll(&ignored);
      return st;
    }
    if (next != TM_OK) {
      TM_CHECK(drainAll(err));
      *err = nextErr;
      return next;
    }
  }
  return drainAll(err);
}

__global__ void axpyKernel(size_t n, double alpha, const double* x, double* y) {
  TM_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

tm_status axpy(tm_backend* be, size_t n, double alpha, const double* x, double* y, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  if (n) axpyKernel<<<gridFor(n), kThreads, 0, c.compute>>>(n, alpha, x, y);
  TM_CUDA_TRY(cudaGetLastError());
  return TM_OK;
}

}  // namespace tmcuda

using namespace tmcuda;

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
