// Block loops shared by the TALL ops (tall.cpp) and consensus merging
// (consensus.cpp): τMTL as a double sum of the task vectors, and the TALL mask
// bit |τt| > λ·|τMTL − τt| (compared in double) as packed bits or as a count
// per entry. Loops run over one block of contiguous entries so they vectorise
// (TM_SIMD: an AVX2 clone, 4 doubles wide); sums still run over t in order
// and compares are the scalar ones lane by lane, so the bits do not change.
// Static (one copy per kernel file, unused ones allowed): GCC 12 clones those.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "simd.h"

namespace taskmerge {

#if defined(__GNUC__)
// 4 doubles / 4 int64 as GCC/clang vector types: AVX2 registers in the AVX2
// clone, SSE2 pairs in the baseline one. Helpers pass vectors by reference
// and are always inlined into the clones, so none crosses a call.
typedef double tm_v4d __attribute__((vector_size(32)));
typedef long long tm_v4l __attribute__((vector_size(32)));
typedef float tm_v4f __attribute__((vector_size(16)));

// out = double(p[0..4)).
__attribute__((always_inline)) inline void tmWiden(const float* p, tm_v4d& out) {
  tm_v4f f;
  std::memcpy(&f, p, sizeof f);
  out = __builtin_convertvector(f, tm_v4d);
}

// out = all-ones lanes where |x| > λ·|τMTL − x| in double (x = double(p[0..4)), d = double(τMTL)).
__attribute__((always_inline)) inline void tmBits(const float* p, const tm_v4d& d, const tm_v4d& lam, tm_v4l& out) {
  const tm_v4l absMask = {0x7fffffffffffffffLL, 0x7fffffffffffffffLL, 0x7fffffffffffffffLL, 0x7fffffffffffffffLL};
  tm_v4d x;
  tmWiden(p, x);
  const tm_v4d ax = (tm_v4d)((tm_v4l)x & absMask), ad = (tm_v4d)((tm_v4l)(d - x) & absMask);  // fabs: clear the sign
  out = (tm_v4l)(ax > lam * ad);
}
#endif

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

// The packed TALL masks of T tasks over one block: bit i of dst[t] is set
// where |τt[i]| > λt·|τMTL[i] − τt[i]| (in double), NumPy packbits order (the
// first entry in the most significant bit; a last partial byte gets zero
// bits). Element-major over 16 entries at a time (τMTL widened once for all
// tasks); with GCC/clang vector types each 4-entry compare lands as 4 bits
// without going through bytes. Same comparisons, same bits, on every path.
[[maybe_unused]] TM_SIMD static void tallMasks(const float* const* tau, size_t T, const float* mtl, size_t n, const double* lambdas, uint8_t* const* dst) {
  size_t i = 0;
#if defined(__GNUC__)
  for (; i + 16 <= n; i += 16) {
    tm_v4d d0, d1, d2, d3;
    tmWiden(mtl + i, d0);
    tmWiden(mtl + i + 4, d1);
    tmWiden(mtl + i + 8, d2);
    tmWiden(mtl + i + 12, d3);
    for (size_t t = 0; t < T; t++) {
      const float* x = tau[t] + i;
      const double l = lambdas[t];
      const tm_v4d lam = {l, l, l, l};
      const tm_v4l W0 = {128, 64, 32, 16}, W1 = {8, 4, 2, 1};
      tm_v4l m0, m1, m2, m3;
      tmBits(x, d0, lam, m0);
      tmBits(x + 4, d1, lam, m1);
      tmBits(x + 8, d2, lam, m2);
      tmBits(x + 12, d3, lam, m3);
      const tm_v4l q = (m0 & W0) | (m1 & W1) | (((m2 & W0) | (m3 & W1)) << 8);
      const uint16_t two = uint16_t(q[0] | q[1] | q[2] | q[3]);  // entries i..i+7 low, i+8..i+15 high
      dst[t][i / 8] = uint8_t(two);
      dst[t][i / 8 + 1] = uint8_t(two >> 8);
    }
  }
#endif
  for (size_t t = 0; t < T; t++)
    for (size_t j = i; j < n; j += 8) {
      uint8_t byte = 0;
      for (size_t k = j; k < j + 8 && k < n; k++) {
        const double x = double(tau[t][k]);
        byte |= uint8_t(std::fabs(x) > lambdas[t] * std::fabs(double(mtl[k]) - x)) << (7 - (k - j));
      }
      dst[t][j / 8] = byte;
    }
}

}  // namespace taskmerge
