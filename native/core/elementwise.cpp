#include "elementwise.h"

#include <cstring>

#include "simd.h"

namespace taskmerge {

size_t blockWorkers(size_t n) { return std::min((n + kBlockElems - 1) / kBlockElems, threadCount() * 4); }

TM_SIMD bool allFinite(const float* x, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
  }
  return !bad;
}

TM_SIMD bool subtractFinite(float* x, const float* base, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
    x[i] -= base[i];
  }
  return !bad;
}

}  // namespace taskmerge
