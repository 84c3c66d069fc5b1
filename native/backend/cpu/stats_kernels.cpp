// The CPU backend's statistics entries (backend.h): norm_accumulate, the
// per-feature sums of GramAccumulator's norm layers, and drift_norm, a norm
// layer's feature drift from them; float64 throughout.
#include <cmath>
#include <vector>

#include "../../core/rows.h"
#include "../status.h"
#include "cpu_kernels.h"

namespace taskmerge {
namespace cpu {

using backend::guarded;

tm_status normAccumulate(tm_backend*, const void* data, tm_dtype rowsDtype, size_t count, size_t width, double* sq, double* sum, tm_error* err) {
  return guarded(err, [&] {
    const Rows r{static_cast<const uint8_t*>(data), DType(int(rowsDtype)), count, width};
    if (r.type != DType::F32 && r.type != DType::F64) throw Error("norm_accumulate: rows must be float32 or float64");
    // Every row converted and checked before anything is added.
    std::vector<double> x(r.count * r.width);
    rowsToF64(r, 0, r.count, x.data());
    for (size_t i = 0; i < r.count; i++)
      for (size_t j = 0; j < r.width; j++) {
        double v = x[i * r.width + j];
        sq[j] += v * v;
        sum[j] += v;
      }
  });
}

static std::vector<double> toF64(const void* data, tm_dtype t, size_t n) {
  std::vector<double> v(n);
  taskmerge::toF64(data, DType(int(t)), n, v.data());
  return v;
}

tm_status driftNorm(tm_backend*, size_t n, const void* merged, tm_dtype mergedDtype, const void* expert, tm_dtype expertDtype, const void* base,
                    tm_dtype baseDtype, const void* scale, tm_dtype scaleDtype, double* drift, double* baseDrift, tm_error* err) {
  return guarded(err, [&] {
    auto w = toF64(merged, mergedDtype, n), wt = toF64(expert, expertDtype, n), w0 = toF64(base, baseDtype, n), s = toF64(scale, scaleDtype, n);
    double d = 0, d0 = 0;
    for (size_t i = 0; i < n; i++) {
      if (!std::isfinite(s[i]) || s[i] < 0) throw Error("statistics: norm_sq_sum holds a negative or non-finite value");
      d += s[i] * (w[i] - wt[i]) * (w[i] - wt[i]);
      d0 += s[i] * (w0[i] - wt[i]) * (w0[i] - wt[i]);
    }
    *drift = d;
    *baseDrift = d0;
  });
}

}  // namespace cpu
}  // namespace taskmerge
