// The CPU backend's statistics entries (backend.h: norm_accumulate): the
// per-feature sums of GramAccumulator's norm layers, in float64.
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

}  // namespace cpu
}  // namespace taskmerge
