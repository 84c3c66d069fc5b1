// Shared machinery for methods that combine tensors element by element.
// A chunk of one tensor arrives as raw bytes (base + T experts, any float
// dtype); each worker converts a block to float32, hands θ0 and the task
// vectors τt = θt − θ0 to the method's block function, and converts the
// merged block to the output dtype.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "dtype.h"
#include "op.h"

namespace taskmerge {

struct ElementwiseChunk {
  const uint8_t* base = nullptr;
  DType baseType = DType::F32;
  std::vector<const uint8_t*> experts;
  std::vector<DType> expertTypes;
  size_t n = 0;       // elements in this chunk
  size_t offset = 0;  // index of the chunk's first element within its tensor
  uint8_t* out = nullptr;
  DType outType = DType::F32;
};

// Reads base/baseDtype, experts/expertDtypes, out/outDtype and offset from the
// op arguments, checking every buffer holds exactly n elements. `out` is
// optional for ops that only gather statistics.
ElementwiseChunk parseChunk(const OpArgs& a);

// The block a method sees: n elements starting at tensor index `index`.
struct Block {
  const float* base;
  const float* const* tau;  // T pointers to n task-vector entries each
  size_t T;
  size_t n;
  size_t index;
  float* out;  // merged θ for the block (written by the method)
};

constexpr size_t kBlockElems = 4096;

// Whether x[0..n) holds no NaN or ±Inf (vectorised; checkFinite names the culprit).
bool allFinite(const float* x, size_t n);
// x −= base in place after checking x is finite: returns false (x then
// clobbered) when it was not, so the caller re-reads it to report where.
bool subtractFinite(float* x, const float* base, size_t n);

// Runs fn(Block&) over the chunk in parallel blocks and stores the results.
template <class F>
void forEachBlock(const ElementwiseChunk& c, F&& fn);

}  // namespace taskmerge

#include "elementwise_impl.h"
