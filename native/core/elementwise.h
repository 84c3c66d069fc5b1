// Shared machinery of the CPU backend's block kernels, which combine tensors
// element by element. A chunk of one tensor arrives as a tm_chunk (base + T
// experts, any float dtype; native/backend/backend.h); each worker converts a
// block to float32, hands θ0 and the task vectors τt = θt − θ0 to the
// method's block function, and converts the merged block to the output dtype.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../backend/backend.h"
#include "dtype.h"
#include "op.h"
#include "scratch.h"

namespace taskmerge {

inline DType dtypeOf(tm_dtype t) { return static_cast<DType>(int(t)); }

// The block a method sees: n elements starting at tensor index `index`.
struct Block {
  const float* base;
  const float* const* tau;  // T pointers to n task-vector entries each
  size_t T;
  size_t n;
  size_t index;
  float* out;        // merged θ for the block (written by the method)
  Scratch* scratch;  // the worker's scratch, rewound after each block
};

constexpr size_t kBlockElems = 4096;

// Bytes of scratch forEachBlock itself takes per worker for T experts.
constexpr size_t blockScratchBytes(size_t T) {
  return scratchBytes<float>((T + 2) * kBlockElems) + 2 * scratchBytes<const float*>(T);
}

// Workers a chunk of n elements can use (each needs one slab of work memory).
size_t blockWorkers(size_t n);

// Whether x[0..n) holds no NaN or ±Inf (vectorised; checkFinite names the culprit).
bool allFinite(const float* x, size_t n);
// x −= base in place after checking x is finite: returns false (x then
// clobbered) when it was not, so the caller re-reads it to report where.
bool subtractFinite(float* x, const float* base, size_t n);

// Runs fn(Block&) over the chunk in parallel blocks and stores the results.
// work holds blockWorkers(c.n) slabs of slabBytes each (blockScratchBytes(T)
// of them for this loop, the rest for fn).
template <class F>
void forEachBlock(const tm_chunk& c, const tm_work& work, size_t slabBytes, F&& fn);

}  // namespace taskmerge

#include "elementwise_impl.h"
