// Statistics accumulation for GramAccumulator (float64 throughout):
//  "gram_accumulate": gram += Σ x xᵀ (SYRK), sum += Σ x over the rows of a chunk.
//  "norm_accumulate": sqsum += Σ x̂², sum += Σ x̂ per feature.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../boundary/args.h"
#include "../boundary/dense.h"
#include "../core/dtype.h"
#include "../core/op.h"
#include "../core/parallel.h"
#include "../linalg/linalg.h"

namespace taskmerge {

struct Rows {
  const uint8_t* data;
  DType type;
  size_t count, width;
};

static Rows parseRows(const OpArgs& a) {
  Rows r;
  r.type = DType(int(boundary::floatDtype(a, "rowsDtype")));
  if (r.type != DType::F32 && r.type != DType::F64) throw ArgumentError("rowsDtype", -1, "rows must be float32 or float64");
  r.width = boundary::count(a, "width");
  Bytes b = a.buf("rows");
  size_t es = dtypeSize(r.type);
  if (r.width == 0 || b.size % (r.width * es) != 0)
    throw ArgumentError("rows", -1, std::to_string(b.size / es) + " values is not a whole number of rows of width " +
                                        std::to_string(r.width));
  r.data = b.data;
  r.count = b.size / (r.width * es);
  return r;
}

static double* f64(const OpArgs& a, const std::string& k, size_t n) { return boundary::typed<double>(a, k, n); }

// Converts rows [r0, r0+n) to float64, rejecting NaN/Inf.
static void rowsToF64(const Rows& r, size_t r0, size_t n, double* dst) {
  toF64(r.data + r0 * r.width * dtypeSize(r.type), r.type, n * r.width, dst);
  for (size_t i = 0; i < n * r.width; i++)
    if (!std::isfinite(dst[i]))
      throw Error("input row " + std::to_string(r0 + i / r.width) + " holds a non-finite value (NaN or Inf)");
}

static void gramAccumulateOp(const OpArgs& a, OpResult&) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  Rows r = parseRows(a);
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
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  Rows r = parseRows(a);
  double* sq = f64(a, "sqsum", r.width);
  double* sum = f64(a, "sum", r.width);
  std::vector<double> x(r.count * r.width);
  rowsToF64(r, 0, r.count, x.data());
  for (size_t i = 0; i < r.count; i++)
    for (size_t j = 0; j < r.width; j++) {
      double v = x[i * r.width + j];
      sq[j] += v * v;
      sum[j] += v;
    }
}

TM_REGISTER_OP("gram_accumulate", gramAccumulateOp);
TM_REGISTER_OP("norm_accumulate", normAccumulateOp);

}  // namespace taskmerge
