// Block loops shared by the TALL ops (tall.cpp) and consensus merging
// (consensus.cpp): τMTL as a double sum of the task vectors and the TALL mask
// bit |τt| > λ·|τMTL − τt| (compared in double), as 0/1 bytes, packed bits or
// a per-entry count. Each loop runs task-major over one block of contiguous
// entries, so it vectorises (TM_SIMD: an AVX2 clone, 4 doubles wide), and each
// entry's sum still runs over t in order, so the bits do not depend on it.
// Static (one copy per kernel file, unused ones allowed): GCC 12 clones those.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "simd.h"

namespace taskmerge {

// acc[i] = Σt v[t][i] in double, t in order.
[[maybe_unused]] TM_SIMD static void tallSumTasks(const float* const* v, size_t T, size_t n, double* acc) {
  for (size_t i = 0; i < n; i++) acc[i] = 0;
  for (size_t t = 0; t < T; t++) {
    const float* x = v[t];
    for (size_t i = 0; i < n; i++) acc[i] += double(x[i]);
  }
}

// dst[i] = float(src[i]) (round to nearest).
[[maybe_unused]] TM_SIMD static void tallToFloat(const double* src, size_t n, float* dst) {
  for (size_t i = 0; i < n; i++) dst[i] = float(src[i]);
}

// bits[i] = 1 where |τ| > λ·|τMTL − τ| (in double), else 0.
[[maybe_unused]] TM_SIMD static void tallMaskBytes(const float* tau, const float* mtl, size_t n, double lambda, uint8_t* bits) {
  for (size_t i = 0; i < n; i++) {
    const double x = double(tau[i]);
    bits[i] = uint8_t(std::fabs(x) > lambda * std::fabs(double(mtl[i]) - x));
  }
}

// cnt[i] += Σt [|τt| > λ·|τMTL − τt|], the number of tasks whose mask holds entry i.
[[maybe_unused]] TM_SIMD static void tallMaskCount(const float* const* tau, size_t T, const float* mtl, size_t n, double lambda, double* cnt) {
  for (size_t i = 0; i < n; i++) cnt[i] = 0;
  for (size_t t = 0; t < T; t++) {
    const float* x = tau[t];
    for (size_t i = 0; i < n; i++) {
      const double xi = double(x[i]);
      cnt[i] += double(std::fabs(xi) > lambda * std::fabs(double(mtl[i]) - xi));
    }
  }
}

// Packs 0/1 bytes into bits, NumPy packbits order (first entry in the most
// significant bit); a last partial byte gets zero bits. `bits` must be
// readable up to n rounded up to 8, the padding zero. Multiplying the eight
// bytes (little-endian word, byte j = bit 8j) by 0x8040201008040201 adds
// byte j at bit 56 + (7 − j) without carries, so bits 56..63 are the packed byte.
static inline void tallPackBits(const uint8_t* bits, size_t n, uint8_t* dst) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t w;
    std::memcpy(&w, bits + i, 8);
    dst[i / 8] = uint8_t((w * 0x8040201008040201ull) >> 56);
  }
}

}  // namespace taskmerge
