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
void forEachBlock(const tm_chunk& c, const tm_work& work, size_t slabBytes, F&& fn) {
  const size_t T = c.T;
  const DType baseType = dtypeOf(c.base_dtype), outType = dtypeOf(c.out_dtype);
  const size_t baseSize = dtypeSize(baseType), outSize = dtypeSize(outType);
  const uint8_t* baseBytes = static_cast<const uint8_t*>(c.base);
  uint8_t* outBytes = static_cast<uint8_t*>(c.out);
  const size_t blocks = (c.n + kBlockElems - 1) / kBlockElems;
  const size_t workers = std::min(blocks, slabBytes ? work.bytes / slabBytes : 0);
  if (blocks && workers == 0) throw Error("internal error: no work memory for the block kernel");
  // Worker r runs blocks [r·blocks/R, (r+1)·blocks/R) in its own slab: a range of
  // workers runs on one thread, so a slab is never shared.
  parallelFor(workers, 1, [&](size_t r0, size_t r1) {
    Scratch s(static_cast<uint8_t*>(work.data) + r0 * slabBytes, slabBytes);
    float* base = s.take<float>((T + 2) * kBlockElems);
    float* out = base + kBlockElems;
    const float** tau = s.take<const float*>(T);
    float** tauW = s.take<float*>(T);
    for (size_t t = 0; t < T; t++) tau[t] = tauW[t] = out + (t + 1) * kBlockElems;
    const size_t mark = s.mark();
    for (size_t b = r0 * blocks / workers; b < r1 * blocks / workers; b++) {
      s.rewind(mark);
      size_t start = b * kBlockElems, len = std::min(kBlockElems, c.n - start);
      toF32(baseBytes + start * baseSize, baseType, len, base);
      if (!allFinite(base, len)) checkFinite(base, len, c.offset + start, "base", size_t(-1));
      for (size_t t = 0; t < T; t++) {
        const DType et = dtypeOf(c.expert_dtypes[t]);
        const uint8_t* src = static_cast<const uint8_t*>(c.experts[t]) + start * dtypeSize(et);
        toF32(src, et, len, tauW[t]);
        if (subtractFinite(tauW[t], base, len)) continue;
        toF32(src, et, len, tauW[t]);  // throws, naming the element
        checkFinite(tauW[t], len, c.offset + start, "expert", t);
      }
      Block blk{base, tau, T, len, size_t(c.offset) + start, out, &s};
      fn(blk);
      if (outBytes) fromF32(out, len, outType, outBytes + start * outSize);
    }
  });
}

}  // namespace taskmerge
