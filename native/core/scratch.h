// Explicit block scratch: a worker's slab of caller-provided work memory
// (tm_work, see native/backend/backend.h), handed out by bumping a cursor and
// rewound per block. Replaces thread_local buffers: the memory is the job's,
// sized up front (native/backend/cpu/work_size.h), and nothing outlives a call.
#pragma once
#include <cstddef>
#include <cstdint>

#include "op.h"

namespace taskmerge {

class Scratch {
 public:
  Scratch(uint8_t* data, size_t bytes) : data_(data), cap_(bytes) {}

  // n uninitialised values of V, 64-byte aligned.
  template <class V>
  V* take(size_t n) {
    const size_t at = (used_ + 63) & ~size_t(63);
    if (at + n * sizeof(V) > cap_) throw Error("internal error: block scratch too small");
    used_ = at + n * sizeof(V);
    return reinterpret_cast<V*>(data_ + at);
  }
  size_t mark() const { return used_; }
  void rewind(size_t mark) { used_ = mark; }

 private:
  uint8_t* data_;
  size_t cap_;
  size_t used_ = 0;
};

// Bytes one take<V>(n) can use, alignment included.
template <class V>
constexpr size_t scratchBytes(size_t n) {
  return n * sizeof(V) + 64;
}

}  // namespace taskmerge
