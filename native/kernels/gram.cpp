// Statistics accumulation for GramAccumulator (float64 throughout):
//  "gram_accumulate": gram += Σ x xᵀ (SYRK), sum += Σ x over the rows of a chunk.
//  "norm_accumulate": sqsum += Σ x̂², sum += Σ x̂ per feature (the backend's
//                     norm_accumulate entry).
#include <algorithm>
#include <string>
#include <vector>

#include "../boundary/args.h"
#include "../boundary/dense.h"
#include "../boundary/device_call.h"
#include "../boundary/rows.h"
#include "../core/dtype.h"
#include "../core/op.h"
#include "../core/rows.h"
#include "../linalg/linalg.h"

namespace taskmerge {

static double* f64(const OpArgs& a, const std::string& k, size_t n) { return boundary::typed<double>(a, k, n); }

static void gramAccumulateOp(const OpArgs& a, OpResult&) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  const Rows r = boundary::rows(a);
  boundary::DeviceCall d(a);
  boundary::Dense la(d);
  double* gram = f64(a, "gram", r.width * r.width);
  double* sum = f64(a, "sum", r.width);
  constexpr size_t CH = 1024;  // rows converted per SYRK call
  std::vector<double> x(std::min(CH, r.count) * r.width);
  // Check the whole chunk first so a bad row leaves the accumulators untouched.
  for (size_t r0 = 0; r0 < r.count; r0 += CH) rowsToF64(r, r0, std::min(CH, r.count - r0), x.data());
  for (size_t r0 = 0; r0 < r.count; r0 += CH) {
    size_t n = std::min(CH, r.count - r0);
    rowsToF64(r, r0, n, x.data());
    la.syrkRows(r.width, n, 1.0, x.data(), r.width, 1.0, gram, r.width);
    for (size_t i = 0; i < n; i++)
      for (size_t j = 0; j < r.width; j++) sum[j] += x[i * r.width + j];
  }
}

static void normAccumulateOp(const OpArgs& a, OpResult&) {
  const Rows r = boundary::rows(a);
  double* sq = f64(a, "sqsum", r.width);
  double* sum = f64(a, "sum", r.width);
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().norm_accumulate, "norm_accumulate");
  const void* rows = d.in(r.data, r.count * r.width * dtypeSize(r.type));
  double* sqAt = d.inout(sq, r.width);
  double* sumAt = d.inout(sum, r.width);
  d.check(fn(&d.backend(), rows, tm_dtype(int(r.type)), r.count, r.width, sqAt, sumAt, d.err()), "norm_accumulate");
}

TM_REGISTER_OP("gram_accumulate", gramAccumulateOp);
TM_REGISTER_OP("norm_accumulate", normAccumulateOp);

}  // namespace taskmerge
