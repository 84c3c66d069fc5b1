#include "context.h"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "entries.h"

namespace tmcuda {

Context& ctx(tm_backend* be) { return *static_cast<Context*>(be->context); }

tm_status fail(tm_error* err, tm_status s, const char* fmt, ...) {
  if (err) {
    err->role = TM_ROLE_NONE;
    err->index = -1;
    err->element = -1;
    err->arg[0] = 0;
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
  }
  return s;
}

tm_status requireDevice(tm_backend* be, tm_error* err) {
  const Context& c = ctx(be);
  // The current device is per host thread, and the addon calls from several worker threads.
  if (c.info.available) {
    TM_CUDA_TRY(cudaSetDevice(c.device));
    return TM_OK;
  }
  return fail(err, TM_NO_DEVICE, "the CUDA backend has no device (%s)", c.info.description);
}

tm_status cudaFail(tm_error* err, cudaError_t e, const char* what) {
  cudaGetLastError();  // clear a sticky launch error so the next entry starts clean
  return fail(err, e == cudaErrorMemoryAllocation ? TM_OUT_OF_MEMORY : TM_DEVICE_ERROR, "CUDA: %s failed: %s", what,
              cudaGetErrorString(e));
}

tm_status blasFail(tm_error* err, cublasStatus_t s, const char* what) {
  return fail(err, s == CUBLAS_STATUS_ALLOC_FAILED ? TM_OUT_OF_MEMORY : TM_DEVICE_ERROR, "cuBLAS: %s failed: %s", what,
              cublasGetStatusString(s));
}

tm_status solverFail(tm_error* err, cusolverStatus_t s, const char* what) {
  return fail(err, s == CUSOLVER_STATUS_ALLOC_FAILED ? TM_OUT_OF_MEMORY : TM_DEVICE_ERROR,
              "cuSOLVER: %s failed (status %d)", what, int(s));
}

tm_status nonFiniteInput(tm_error* err, tm_role role, int64_t index, int64_t element, const char* arg) {
  err->role = role;
  err->index = index;
  err->element = element;
  std::snprintf(err->arg, sizeof err->arg, "%s", arg);
  std::snprintf(err->message, sizeof err->message, "holds a non-finite value (NaN or Inf) at element %lld",
                (long long)element);
  return TM_INPUT;
}

CallArgs::CallArgs(Context& c) : c_(c), host_(16, 0) {}

CallArgs::~CallArgs() {
  if (dev_) cudaFreeAsync(dev_, c_.compute);
}

size_t CallArgs::putBytes(const void* v, size_t bytes) {
  const size_t at = (host_.size() + 15) & ~size_t(15);
  host_.resize(at + bytes);
  if (bytes) std::memcpy(host_.data() + at, v, bytes);
  return at;
}

tm_status CallArgs::upload(tm_error* err) {
  // The result slots start at their identity: "no bad element" and 0.
  const uint64_t init[2] = {~uint64_t(0), 0};
  std::memcpy(host_.data(), init, sizeof init);
  TM_CUDA_TRY(cudaMallocAsync(&dev_, host_.size(), c_.compute));
  TM_CUDA_TRY(cudaMemcpyAsync(dev_, host_.data(), host_.size(), cudaMemcpyHostToDevice, c_.compute));
  return TM_OK;
}

tm_status CallArgs::results(uint64_t out[2], tm_error* err) {
  TM_CUDA_TRY(cudaGetLastError());  // a failed launch
  TM_CUDA_TRY(cudaMemcpyAsync(out, dev_, 16, cudaMemcpyDeviceToHost, c_.compute));
  TM_CUDA_TRY(cudaStreamSynchronize(c_.compute));
  return TM_OK;
}

static void noDevice(Context& c, const char* fmt, const char* detail) {
  c.info.available = 0;
  c.info.memory_bytes = 0;
  std::snprintf(c.info.description, sizeof c.info.description, fmt, detail);
}

static Precision precisionFromEnv() {
  const char* v = std::getenv("TASKMERGE_CUDA_PRECISION");
  if (v && std::strcmp(v, "f32") == 0) return Precision::F32;
  if (v && std::strcmp(v, "tf32") == 0) return Precision::TF32;
  return Precision::F64;
}

Context* createContext() {
  Context* c = new Context();
  c->precision = precisionFromEnv();
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    noDevice(*c, "no CUDA device: %s", cudaGetErrorString(e));
    return c;
  }
  if (count == 0) {
    noDevice(*c, "no CUDA device: %s", "the driver reports none");
    return c;
  }
  const char* want = std::getenv("TASKMERGE_CUDA_DEVICE");
  c->device = want ? std::atoi(want) : 0;
  cudaDeviceProp p;
  if (c->device < 0 || c->device >= count || cudaSetDevice(c->device) != cudaSuccess ||
      cudaGetDeviceProperties(&p, c->device) != cudaSuccess) {
    noDevice(*c, "no CUDA device: TASKMERGE_CUDA_DEVICE=%s is not a usable device", want ? want : "0");
    return c;
  }
  bool ok = cudaStreamCreateWithFlags(&c->compute, cudaStreamNonBlocking) == cudaSuccess &&
            cudaStreamCreateWithFlags(&c->copy, cudaStreamNonBlocking) == cudaSuccess &&
            cudaStreamCreateWithFlags(&c->download, cudaStreamNonBlocking) == cudaSuccess &&
            cudaEventCreateWithFlags(&c->uploaded, cudaEventDisableTiming) == cudaSuccess &&
            cudaEventCreateWithFlags(&c->computed, cudaEventDisableTiming) == cudaSuccess;
  // Keep freed device memory in the stream-ordered pool: chunks of one job reuse it.
  cudaMemPool_t pool;
  if (ok && cudaDeviceGetDefaultMemPool(&pool, c->device) == cudaSuccess) {
    uint64_t keep = ~uint64_t(0);
    cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
  }
  for (int s = 0; ok && s < Context::kSlots; s++)
    ok = cudaHostAlloc(&c->pinned[s], Context::kSlotBytes, cudaHostAllocDefault) == cudaSuccess &&
         cudaEventCreateWithFlags(&c->slotDone[s], cudaEventDisableTiming) == cudaSuccess;
  ok = ok && cublasCreate(&c->blas) == CUBLAS_STATUS_SUCCESS && cublasSetStream(c->blas, c->compute) == CUBLAS_STATUS_SUCCESS;
  ok = ok && cusolverDnCreate(&c->solver) == CUSOLVER_STATUS_SUCCESS &&
       cusolverDnSetStream(c->solver, c->compute) == CUSOLVER_STATUS_SUCCESS;
  if (ok && c->precision == Precision::TF32) ok = cublasSetMathMode(c->blas, CUBLAS_TF32_TENSOR_OP_MATH) == CUBLAS_STATUS_SUCCESS;
  if (!ok) {
    cudaGetLastError();
    noDevice(*c, "no CUDA device: %s", "streams, pinned memory or cuBLAS/cuSOLVER handles could not be created");
    return c;
  }
  c->info.available = 1;
  c->info.memory_bytes = p.totalGlobalMem;
  std::snprintf(c->info.description, sizeof c->info.description, "%.100s, sm_%d%d, %.0f GiB", p.name, p.major, p.minor,
                double(p.totalGlobalMem) / double(1ull << 30));
  return c;
}

void destroyContext(Context* c) {
  if (c->info.available) {
    cudaSetDevice(c->device);
    cudaDeviceSynchronize();
    if (c->solver) cusolverDnDestroy(c->solver);
    if (c->blas) cublasDestroy(c->blas);
    for (int s = 0; s < Context::kSlots; s++) {
      if (c->pinned[s]) cudaFreeHost(c->pinned[s]);
      if (c->slotDone[s]) cudaEventDestroy(c->slotDone[s]);
    }
    if (c->uploaded) cudaEventDestroy(c->uploaded);
    if (c->computed) cudaEventDestroy(c->computed);
    if (c->download) cudaStreamDestroy(c->download);
    if (c->copy) cudaStreamDestroy(c->copy);
    if (c->compute) cudaStreamDestroy(c->compute);
  }
  delete c;
}

}  // namespace tmcuda
