// The CPU backend's finite check of a buffer in its own dtype (the engine
// runs it on every output chunk, so an overflow of any method or of the
// final narrowing is caught).
#include <algorithm>
#include <atomic>
#include <cstring>

#include "../../core/dtype.h"
#include "../../core/elementwise.h"
#include "../../core/parallel.h"
#include "../status.h"
#include "cpu_kernels.h"

namespace taskmerge {
namespace cpu {

// Index of the first element of x[0..n) whose exponent bits are all ones (NaN or ±Inf), or n.
// U is the element's bit type; the scan ORs a flag per block so that clean data costs one pass.
template <class U>
static size_t firstNonFinite(const uint8_t* x, size_t n, U mask) {
  constexpr size_t B = 4096;
  for (size_t i0 = 0; i0 < n; i0 += B) {
    const size_t i1 = std::min(n, i0 + B);
    U bad = 0;
    for (size_t i = i0; i < i1; i++) {
      U u;
      std::memcpy(&u, x + i * sizeof(U), sizeof(U));
      bad |= U((u & mask) == mask);
    }
    if (!bad) continue;
    for (size_t i = i0; i < i1; i++) {
      U u;
      std::memcpy(&u, x + i * sizeof(U), sizeof(U));
      if ((u & mask) == mask) return i;
    }
  }
  return n;
}

static size_t firstNonFinite(const uint8_t* x, size_t n, DType t) {
  switch (t) {
    case DType::F64: return firstNonFinite<uint64_t>(x, n, 0x7ff0000000000000ull);
    case DType::F32: return firstNonFinite<uint32_t>(x, n, 0x7f800000u);
    case DType::F16: return firstNonFinite<uint16_t>(x, n, 0x7c00u);
    case DType::BF16: return firstNonFinite<uint16_t>(x, n, 0x7f80u);
    default: return n;
  }
}

tm_status finiteCheck(tm_backend*, const void* data, tm_dtype dtype, size_t n, int64_t* firstBad, tm_error* err) {
  return backend::guarded(err, [&] {
    const DType t = dtypeOf(dtype);
    const size_t es = dtypeSize(t);
    const uint8_t* b = static_cast<const uint8_t*>(data);
    std::atomic<size_t> first{n};
    parallelFor(n, 1 << 18, [&](size_t i0, size_t i1) {
      size_t i = i0 + firstNonFinite(b + i0 * es, i1 - i0, t);
      if (i == i1) return;
      size_t cur = first.load();
      while (i < cur && !first.compare_exchange_weak(cur, i)) {
      }
    });
    *firstBad = first == n ? -1 : int64_t(first.load());
  });
}

}  // namespace cpu
}  // namespace taskmerge
