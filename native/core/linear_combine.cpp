#include "linear_combine.h"

#include "simd.h"

namespace taskmerge {

TM_SIMD void linearCombine(const float* base, const float* const* v, const double* coeffs, size_t T, size_t n, float* out, double* acc) {
  for (size_t i = 0; i < n; i++) acc[i] = 0;
  for (size_t t = 0; t < T; t++) {
    const float* x = v[t];
    const double w = coeffs[t];
    for (size_t i = 0; i < n; i++) acc[i] += w * double(x[i]);
  }
  for (size_t i = 0; i < n; i++) out[i] = float(double(base[i]) + acc[i]);
}

}  // namespace taskmerge
