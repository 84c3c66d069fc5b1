// The vectorised loops of trim.h, compiled for AVX2 and baseline x86-64.
#include "trim.h"

#include "simd.h"

namespace taskmerge {

TM_SIMD void trimMagnitude(const float* tau, size_t n, uint32_t th, float* dst) {
  // Bit masks, not a branch: which entries pass is data-random.
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    std::memcpy(&u, tau + i, 4);
    u &= 0u - uint32_t((u & 0x7fffffffu) >= th);
    std::memcpy(dst + i, &u, 4);
  }
}

TM_SIMD void tiesAggregate(const float* const* v, size_t T, size_t n, int maj, bool mean, double* agg, double* work) {
  // Branch-free, as signs are data-random: with sg = ±1, the entries agreeing
  // with sg are those with p = x·sg > 0, and their sum is sg · Σ max(p, 0)
  // (negation is exact and rounding symmetric, so this equals summing the
  // selected x in task order); + 0.0 turns the −0 of an empty sum into +0.
  // Loops run task-major over contiguous entries so they vectorise; each
  // entry's sums still run over t in order, so the bits do not change.
  double* sg = work;
  double* acc = sg + n;
  double* cnt = acc + n;
  for (size_t i = 0; i < n; i++) sg[i] = 0;
  for (size_t t = 0; t < T; t++) {
    const float* x = v[t];
    for (size_t i = 0; i < n; i++) sg[i] += double(x[i]);
  }
  const double majority = double(maj);
  for (size_t i = 0; i < n; i++) {
    const double s = sg[i];
    const double e = double(s > 0) - double(s < 0);
    sg[i] = e + majority * double(e == 0);
    acc[i] = 0;
    cnt[i] = 0;
  }
  for (size_t t = 0; t < T; t++) {
    const float* x = v[t];
    for (size_t i = 0; i < n; i++) {
      const double p = double(x[i]) * sg[i];
      acc[i] += p > 0.0 ? p : 0.0;
      cnt[i] += double(p > 0.0);
    }
  }
  for (size_t i = 0; i < n; i++) agg[i] = acc[i] * sg[i] + 0.0;
  if (mean)  // no entries: dividing by 1 changes nothing
    for (size_t i = 0; i < n; i++) agg[i] /= cnt[i] + double(cnt[i] == 0);
}

TM_SIMD void addScaled(const float* base, const double* agg, double lambda, size_t n, float* out) {
  for (size_t i = 0; i < n; i++) out[i] = float(double(base[i]) + lambda * agg[i]);
}

}  // namespace taskmerge
