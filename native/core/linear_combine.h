// θ0 + Σt ct vt over a block: the one accumulation shared by task_arithmetic,
// average, dare_linear and consensus (kind "sum"), so that the relations the
// tests check (DARE at density 1 = task arithmetic, consensus at k = 0 = task
// arithmetic) hold bit for bit. The sum runs in double over t in order and θ0
// is added once: one rounding at θ0's size instead of one per task.
// acc: n doubles of scratch. Compiled once (linear_combine.cpp, AVX2 and baseline clones) for every caller.
#pragma once
#include <cstddef>

namespace taskmerge {

void linearCombine(const float* base, const float* const* v, const double* coeffs, size_t T, size_t n, float* out, double* acc);

}  // namespace taskmerge
