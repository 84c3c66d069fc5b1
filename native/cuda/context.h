// The CUDA backend's state and the helpers every entry uses: the device, one
// compute stream and one copy stream, cuBLAS/cuSOLVER handles, the pinned
// staging ring for host↔device copies, and error reporting into tm_error.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "backend/backend.h"

namespace tmcuda {

// Dense linear algebra precision (TASKMERGE_CUDA_PRECISION, read at init):
// float64 as the CPU; float32 storage and solves; float32 with TF32 tensor-core GEMMs.
enum class Precision { F64, F32, TF32 };

struct Context {
  std::mutex mu;  // entries run one at a time: they share the streams and the staging ring
  tm_device_info info{};
  int device = -1;
  Precision precision = Precision::F64;
  // Kernels, cuBLAS, cuSOLVER and the buffer copies run in order on one
  // stream, asynchronously to the host: an entry returns once its work is
  // queued (or, when the host reads a result, done), so the host reads the
  // next chunk from disk while the device computes. The second stream lets
  // the batched solves upload the next matrix while one is factored.
  cudaStream_t compute = nullptr;
  cudaStream_t copy = nullptr;
  // The overlapped copies of DeviceCall::blocks (buffers.cu): uploads on
  // `copy`, downloads on `download`, each ordered against compute by an event.
  cudaStream_t download = nullptr;
  cudaEvent_t uploaded = nullptr;  // copy_wait: compute waits for the uploads queued so far
  cudaEvent_t computed = nullptr;  // copy_to_host_async: the download waits for the kernels queued so far
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
  // Copies go host → pinned slot → device (and back); a slot is reused once
  // the event recorded after its copy has completed, so the host fills one
  // slot while the other one's transfer is in flight.
  static constexpr int kSlots = 2;
  static constexpr size_t kSlotBytes = size_t(32) << 20;
  void* pinned[kSlots] = {};
  cudaEvent_t slotDone[kSlots] = {};
  int nextSlot = 0;
};

Context& ctx(tm_backend* be);

// Fills err (message only, role NONE) and returns s.
tm_status fail(tm_error* err, tm_status s, const char* fmt, ...);
// TM_NO_DEVICE with the reason, when the backend has no usable device.
tm_status requireDevice(tm_backend* be, tm_error* err);
// TM_DEVICE_ERROR (or TM_OUT_OF_MEMORY) naming the call that failed.
tm_status cudaFail(tm_error* err, cudaError_t e, const char* what);
tm_status blasFail(tm_error* err, cublasStatus_t s, const char* what);
tm_status solverFail(tm_error* err, cusolverStatus_t s, const char* what);
// An input error: "<arg> [index] holds a non-finite value (NaN or Inf) at element N".
tm_status nonFiniteInput(tm_error* err, tm_role role, int64_t index, int64_t element, const char* arg);

// Small per-call device memory: host values appended to a blob, uploaded in
// one copy, freed (stream-ordered) when the call ends. Offsets are 16-byte
// aligned. The first 16 bytes are the call's result slots (see kernels_common.cuh).
class CallArgs {
 public:
  explicit CallArgs(Context& c);
  ~CallArgs();
  template <class V>
  size_t put(const V* v, size_t count) {
    return putBytes(v, count * sizeof(V));
  }
  size_t putBytes(const void* v, size_t bytes);
  // Uploads the blob; returns TM_OK or an error.
  tm_status upload(tm_error* err);
  template <class V>
  V* at(size_t offset) const {
    return reinterpret_cast<V*>(static_cast<uint8_t*>(dev_) + offset);
  }
  // Waits for the compute stream and reads the result slots back.
  tm_status results(uint64_t out[2], tm_error* err);

 private:
  Context& c_;
  std::vector<uint8_t> host_;
  void* dev_ = nullptr;
};

}  // namespace tmcuda

#define TM_CUDA_TRY(call)                                    \
  do {                                                       \
    cudaError_t tm_e_ = (call);                              \
    if (tm_e_ != cudaSuccess) return ::tmcuda::cudaFail(err, tm_e_, #call); \
  } while (0)
#define TM_BLAS_TRY(call)                                    \
  do {                                                       \
    cublasStatus_t tm_s_ = (call);                           \
    if (tm_s_ != CUBLAS_STATUS_SUCCESS) return ::tmcuda::blasFail(err, tm_s_, #call); \
  } while (0)
#define TM_SOLVER_TRY(call)                                  \
  do {                                                       \
    cusolverStatus_t tm_s_ = (call);                         \
    if (tm_s_ != CUSOLVER_STATUS_SUCCESS) return ::tmcuda::solverFail(err, tm_s_, #call); \
  } while (0)
#define TM_CHECK(expr)                   \
  do {                                   \
    tm_status tm_st_ = (expr);           \
    if (tm_st_ != TM_OK) return tm_st_;  \
  } while (0)
