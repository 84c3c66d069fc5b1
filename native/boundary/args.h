// Typed accessors of op arguments, in one place: every op reads its buffers,
// dtypes, integers and trims through these, each checked once (size, dtype,
// alignment, range), and a bad one is an ArgumentError naming the argument
// (and its position in a list). The results are the plain structs of
// native/backend/backend.h, ready for a backend call.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../backend/backend.h"
#include "../core/dtype.h"
#include "../core/op.h"
#include "state_buffer.h"

namespace taskmerge {
namespace boundary {

// A float dtype argument ("F32", ...): anything else is an ArgumentError.
tm_dtype floatDtype(const OpArgs& a, const std::string& key);
tm_dtype floatDtype(const std::string& name, const std::string& key, long long index = -1);

// An integer argument in [0, max] (max ≤ 2⁵³).
size_t count(const OpArgs& a, const std::string& key, double max = 9007199254740992.0);
size_t count(const OpArgs& a, const std::string& key, size_t fallback, double max);

// A buffer of exactly `bytes` bytes.
Bytes sized(const OpArgs& a, const std::string& key, size_t bytes);
// n elements of float dtype t.
Bytes floats(const OpArgs& a, const std::string& key, size_t n, tm_dtype t);

// A buffer of exactly n values of V, aligned for V (typed arrays from JS), used in place.
template <class V>
V* typed(const OpArgs& a, const std::string& key, size_t n);

// A state buffer argument (a handle from state_alloc), held for the op's call.
// state(a, key, bytes) wants exactly `bytes` bytes; a missing, freed or
// other-sized handle is an ArgumentError naming the argument. Kernels take
// its backend address through DeviceCall::state (which checks the device);
// host-side ops read it with buffer().view / read.
class State {
 public:
  State(std::shared_ptr<StateBuffer> b, std::string arg) : buf_(std::move(b)), arg_(std::move(arg)) {}
  StateBuffer& buffer() const { return *buf_; }
  const std::string& arg() const { return arg_; }

 private:
  std::shared_ptr<StateBuffer> buf_;
  std::string arg_;
};
State state(const OpArgs& a, const std::string& key);
State state(const OpArgs& a, const std::string& key, size_t bytes);
// The handle itself (state_free).
std::shared_ptr<StateHandle> stateHandle(const OpArgs& a, const std::string& key);

// One entry per expert of a list argument.
const std::vector<double>& perExpert(const OpArgs& a, const std::string& key, size_t T);
// float32 bit patterns of |τ| (integers in [0, 0x7f800000]), one per expert.
std::vector<uint32_t> bitsPerExpert(const OpArgs& a, const std::string& key, size_t T);

// The chunk arguments of the block kernels: base/baseDtype, experts/expertDtypes,
// n, offset and (when `out` is Optional or Required) out/outDtype.
enum class Out { None, Optional, Required };
class Chunk {
 public:
  Chunk(const OpArgs& a, Out out);
  Chunk(const Chunk&) = delete;
  Chunk& operator=(const Chunk&) = delete;
  const tm_chunk& get() const { return c_; }
  size_t T() const { return c_.T; }
  size_t n() const { return c_.n; }
  uint64_t offset() const { return c_.offset; }
  bool hasOut() const { return c_.out != nullptr; }

 private:
  std::vector<const void*> experts_;
  std::vector<tm_dtype> types_;
  tm_chunk c_{};
};

// The trim arguments (trim, thresholds, cuts, density, densities, seed, key;
// native/core/trim.h lists the modes) as a tm_trim.
class Trim {
 public:
  Trim(const OpArgs& a, size_t T);
  Trim(const Trim&) = delete;
  Trim& operator=(const Trim&) = delete;
  const tm_trim* get() const { return &t_; }

 private:
  std::vector<uint32_t> thr_;
  std::vector<double> cuts_, densities_;
  tm_trim t_{};
};

// The majority sign argument of the TIES-family ops: ±1 (absent or 0: +1).
int majority(const OpArgs& a);

template <class V>
V* typed(const OpArgs& a, const std::string& key, size_t n) {
  Bytes b = sized(a, key, n * sizeof(V));
  if (reinterpret_cast<uintptr_t>(b.data) % alignof(V))
    throw ArgumentError(key, -1, "buffer is not " + std::to_string(alignof(V)) + "-byte aligned");
  return reinterpret_cast<V*>(b.data);
}

}  // namespace boundary
}  // namespace taskmerge
