// What the block kernels share: a tm_chunk as the device sees it, the per-task
// trims, the task vector of one entry, and the report of the first non-finite
// input.
//
// One thread per entry (grid-stride). τt of an entry is recomputed from the
// raw inputs each time a kernel needs it instead of being held in registers
// for every task: the reloads hit the cache and T is unbounded.
//
// Non-finite inputs: a kernel records the smallest key (block of 4096
// entries, input, entry) with atomicMin into the call's result slot 0, so the
// error names what the CPU backend names for the same data: the first block
// holding a bad value, in it the base before expert 0 before expert 1..., and
// in that input the first bad entry.
#pragma once
#include <cstdint>
#include <vector>

#include "context.h"
#include "element.h"

namespace tmcuda {

constexpr uint64_t kNoBad = ~uint64_t(0);
constexpr uint64_t kReportBlock = 4096;  // native/core/elementwise.h, kBlockElems

struct ChunkDev {
  const void* base;
  int baseType;
  int T;
  const void* const* experts;  // device array of T
  const int* types;            // device array of T
  uint64_t n, offset;
  void* out;
  int outType;
  int trimMode;
  double density;
  const TaskTrim* trims;  // device array of T
  unsigned long long* bad;  // result slot 0
  unsigned long long* sum;  // result slot 1 (reductions)
};

// input: 0 the base, 1 + t expert t (kernels may use larger numbers for their own inputs).
__device__ __forceinline__ void reportBad(unsigned long long* bad, uint64_t i, uint32_t input) {
  const uint64_t key = ((i / kReportBlock) << 32) | (uint64_t(input) << 12) | (i % kReportBlock);
  atomicMin(bad, (unsigned long long)key);
}

// Loads θ0 and checks θ0 and every θt of entry i; false (reported) when one is not finite.
__device__ __forceinline__ bool loadEntry(const ChunkDev& c, uint64_t i, float& base) {
  base = loadF32(c.base, c.baseType, i);
  if (nonFinite(base)) {
    reportBad(c.bad, i, 0);
    return false;
  }
  for (int t = 0; t < c.T; t++)
    if (nonFinite(loadF32(c.experts[t], c.types[t], i))) {
      reportBad(c.bad, i, 1 + t);
      return false;
    }
  return true;
}

// τt = float(θt) − float(θ0) of entry i, untrimmed.
struct RawTau {
  const ChunkDev& c;
  uint64_t i;
  float base;
  __device__ float operator()(int t) const { return loadF32(c.experts[t], c.types[t], i) - base; }
};

// τ̂t of entry i.
struct TrimmedTau {
  const ChunkDev& c;
  uint64_t i;
  float base;
  __device__ float operator()(int t) const {
    const float tau = loadF32(c.experts[t], c.types[t], i) - base;
    return trimEntry(c.trimMode, c.trims[t], c.density, tau, c.offset + i);
  }
};

#define TM_GRID_STRIDE(i, n) \
  for (uint64_t i = uint64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += uint64_t(gridDim.x) * blockDim.x)

constexpr int kThreads = 256;
inline unsigned gridFor(uint64_t n) {
  const uint64_t blocks = (n + kThreads - 1) / kThreads;
  return unsigned(blocks < 65536 ? (blocks ? blocks : 1) : 65536);
}

// Builds the device view of a chunk and its trims in `args` (uploaded by the caller).
struct ChunkArgs {
  size_t experts = 0, types = 0, trims = 0;
};
tm_status prepareChunk(const tm_chunk* c, const tm_trim* trim, CallArgs& args, ChunkArgs& at, tm_error* err);
ChunkDev chunkDev(const tm_chunk* c, const tm_trim* trim, const CallArgs& args, const ChunkArgs& at);

// Reads the result slots and turns a bad-input key into the error the CPU
// backend gives; `name(input, role, index, arg)` maps a kernel's input
// number to its role, index and name. Returns TM_OK when every input was finite.
struct InputName {
  tm_role role;
  int64_t index;
  const char* arg;
};
tm_status finishCall(CallArgs& args, uint64_t offset, InputName (*name)(uint32_t input, const void* ctx), const void* nameCtx,
                     uint64_t* sum, tm_error* err);
// The chunk inputs: 0 the base, 1 + t expert t.
InputName chunkInputName(uint32_t input, const void*);


// Device memory for one call beyond CallArgs (per-block partial sums, lists),
// stream-ordered: freed on the compute stream when the call ends.
class CallScratch {
 public:
  explicit CallScratch(Context& c) : c_(c) {}
  ~CallScratch() {
    if (p_) cudaFreeAsync(p_, c_.compute);
  }
  CallScratch(const CallScratch&) = delete;
  CallScratch& operator=(const CallScratch&) = delete;
  // `bytes` of device memory set to zero (none when bytes is 0).
  tm_status alloc(size_t bytes, tm_error* err) {
    if (!bytes) return TM_OK;
    TM_CUDA_TRY(cudaMallocAsync(&p_, bytes, c_.compute));
    TM_CUDA_TRY(cudaMemsetAsync(p_, 0, bytes, c_.compute));
    return TM_OK;
  }
  template <class V>
  V* as() const {
    return static_cast<V*>(p_);
  }

 private:
  Context& c_;
  void* p_ = nullptr;
};

// Copies `bytes` of device memory to the host once the compute stream has reached this point.
inline tm_status readBack(Context& c, void* dst, const void* src, size_t bytes, tm_error* err) {
  if (!bytes) return TM_OK;
  TM_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c.compute));
  TM_CUDA_TRY(cudaStreamSynchronize(c.compute));
  return TM_OK;
}

// One chunk call: prepares the device view, runs `launch(view)`, reports.
template <class Launch>
tm_status runChunk(tm_backend* be, const tm_chunk* ch, const tm_trim* trim, const void* extra, size_t extraBytes,
                          bool needOut, uint64_t* sum, tm_error* err, Launch launch) {
  TM_CHECK(requireDevice(be, err));
  if (needOut && !ch->out) return fail(err, TM_INPUT, "missing out buffer");
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  CallArgs args(c);
  ChunkArgs at;
  TM_CHECK(prepareChunk(ch, trim, args, at, err));
  const size_t extraAt = args.putBytes(extra, extraBytes);
  TM_CHECK(args.upload(err));
  if (ch->n) launch(chunkDev(ch, trim, args, at), args.at<const double>(extraAt), c.compute);
  return finishCall(args, ch->offset, chunkInputName, nullptr, sum, err);
}

}  // namespace tmcuda
