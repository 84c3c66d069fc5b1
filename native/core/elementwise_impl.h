#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "parallel.h"

namespace taskmerge {

// Throws when a block holds NaN or ±Inf: corrupt weights must not merge silently.
// `who` is the input's role ("base", "expert"...), t its index (size_t(-1): the only one).
inline void checkFinite(const float* x, size_t n, size_t index, const char* who, size_t t) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    bad |= uint32_t((u & 0x7f800000u) == 0x7f800000u);
  }
  if (!bad) return;
  size_t i = 0;
  while (i < n && std::isfinite(x[i])) i++;
  throw InputError(who, t == size_t(-1) ? -1 : (long long)t,
                   "holds a non-finite value (NaN or Inf) at element " + std::to_string(index + i),
                   (long long)(index + i));
}

template <class F>
void forEachBlock(const ElementwiseChunk& c, F&& fn) {
  const size_t T = c.experts.size();
  const size_t baseSize = dtypeSize(c.baseType), outSize = dtypeSize(c.outType);
  size_t blocks = (c.n + kBlockElems - 1) / kBlockElems;
  parallelFor(blocks, 1, [&](size_t b0, size_t b1) {
    // Per-range scratch: θ0, T task vectors and the output block.
    std::vector<float> scratch((T + 2) * kBlockElems);
    float* base = scratch.data();
    float* out = base + kBlockElems;
    std::vector<const float*> tau(T);
    std::vector<float*> tauW(T);
    for (size_t t = 0; t < T; t++) tau[t] = tauW[t] = out + (t + 1) * kBlockElems;
    for (size_t b = b0; b < b1; b++) {
      size_t start = b * kBlockElems, len = std::min(kBlockElems, c.n - start);
      toF32(c.base + start * baseSize, c.baseType, len, base);
      if (!allFinite(base, len)) checkFinite(base, len, c.offset + start, "base", size_t(-1));
      for (size_t t = 0; t < T; t++) {
        const uint8_t* src = c.experts[t] + start * dtypeSize(c.expertTypes[t]);
        toF32(src, c.expertTypes[t], len, tauW[t]);
        if (subtractFinite(tauW[t], base, len)) continue;
        toF32(src, c.expertTypes[t], len, tauW[t]);  // throws, naming the element
        checkFinite(tauW[t], len, c.offset + start, "expert", t);
      }
      Block blk{base, tau.data(), T, len, c.offset + start, out};
      fn(blk);
      if (c.out) fromF32(out, len, c.outType, c.out + start * outSize);
    }
  });
}

}  // namespace taskmerge
