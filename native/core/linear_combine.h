// θ0 + Σt ct vt over a block: the one accumulation shared by task_arithmetic,
// average, dare_linear and consensus (kind "sum"), so that the relations the
// tests check (DARE at density 1 = task arithmetic, consensus at k = 0 = task
// arithmetic) hold bit for bit. The sum runs in double over t in order and θ0
// is added once: one rounding at θ0's size instead of one per task.
#pragma once
#include <cstddef>
#include <vector>

namespace taskmerge {

inline void linearCombine(const float* base, const float* const* v, const double* coeffs, size_t T, size_t n, float* out) {
  thread_local std::vector<double> accBuf;
  accBuf.resize(n);
  double* acc = accBuf.data();  // a plain pointer: no thread-local lookup per element
  for (size_t i = 0; i < n; i++) acc[i] = 0;
  for (size_t t = 0; t < T; t++) {
    const float* x = v[t];
    const double w = coeffs[t];
    for (size_t i = 0; i < n; i++) acc[i] += w * double(x[i]);
  }
  for (size_t i = 0; i < n; i++) out[i] = float(double(base[i]) + acc[i]);
}

}  // namespace taskmerge
