// LOT Merging ops (RegMean reuses the first two with its own Gram transform).
//  "gram_products_accumulate": A += G̃t, BT += Tt G̃tᵀ for one expert's linear weight.
//  "gram_solve": T* = BT A⁺ (rows), writes θ0 + λ T* in the output dtype.
//  "lot_norm": per normalisation scale, T*[d] = Σt st[d] τt[d] / Σt st[d].
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/elementwise.h"
#include "../core/parallel.h"
#include "../linalg/linalg.h"
#include "../linalg/solve.h"

namespace taskmerge {

static Bytes sized(const OpArgs& a, const std::string& k, size_t n, DType t) {
  Bytes b = a.buf(k);
  if (b.size != n * dtypeSize(t))
    throw Error(k + ": expected " + std::to_string(n * dtypeSize(t)) + " bytes, got " + std::to_string(b.size));
  if (!isFloat(t)) throw Error(k + ": not a floating-point tensor");
  return b;
}

// The float64 accumulators are used in place: they must be 8-byte aligned.
static double* f64Buf(const OpArgs& a, const std::string& k, size_t n) {
  Bytes b = sized(a, k, n, DType::F64);
  if (reinterpret_cast<uintptr_t>(b.data) % alignof(double)) throw Error(k + ": float64 buffer is not 8-byte aligned");
  return reinterpret_cast<double*>(b.data);
}

static void gramProductsAccumulateOp(const OpArgs& a, OpResult&) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  size_t out = size_t(a.num("out")), in = size_t(a.num("in"));
  DType bt = parseDType(a.str("baseDtype")), et = parseDType(a.str("expertDtype")), gt = parseDType(a.str("gramDtype"));
  Bytes base = sized(a, "base", out * in, bt), expert = sized(a, "expert", out * in, et);
  Bytes gram = sized(a, "gram", in * in, gt);
  double* A = f64Buf(a, "A", in * in);
  double* BT = f64Buf(a, "BT", out * in);
  linalg::GramTransform tf{a.num("scale", 1.0), a.num("alpha", 1.0)};
  linalg::accumulateGramProducts(out, in, base.data, bt, expert.data, et, gram.data, gt, tf, A, BT);
}

static void gramSolveOp(const OpArgs& a, OpResult& r) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  size_t out = size_t(a.num("out")), in = size_t(a.num("in"));
  double* A = f64Buf(a, "A", in * in);
  double* X = f64Buf(a, "BT", out * in);  // solved in place
  DType bt = parseDType(a.str("baseDtype")), ot = parseDType(a.str("resultDtype"));
  Bytes base = sized(a, "base", out * in, bt), res = sized(a, "result", out * in, ot);
  auto info = linalg::solvePsdRows(in, A, out, X,
                                   linalg::parseSolver(a.str("solver", "auto")), a.num("ridge", 0.0),
                                   a.num("rcond", 0.0));
  double lambda = a.num("lambda", 1.0);
  size_t bs = dtypeSize(bt), os = dtypeSize(ot);
  // A non-finite result (an overflow) is caught where every method's output is checked (lib/engine/merge.ts).
  parallelFor(out, 16, [&](size_t r0, size_t r1) {
    std::vector<double> row(in);
    for (size_t i = r0; i < r1; i++) {
      toF64(base.data + i * in * bs, bt, in, row.data());
      const double* x = X + i * in;
      for (size_t j = 0; j < in; j++) row[j] += lambda * x[j];
      fromF64(row.data(), in, ot, res.data + i * in * os);
    }
  });
  r.nums["eigh"] = info.usedEigh ? 1 : 0;
  r.nums["rank"] = double(info.rank);
}

static void lotNormOp(const OpArgs& a, OpResult&) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  ElementwiseChunk c = parseChunk(a);
  const auto& scales = a.bufList("scales");
  const auto& types = a.strList("scaleDtypes");
  size_t total = size_t(a.num("total"));
  double lambda = a.num("lambda", 1.0);
  if (scales.size() != c.experts.size() || types.size() != scales.size())
    throw Error("lot_norm: one scale tensor per expert");
  std::vector<std::vector<double>> s(scales.size(), std::vector<double>(c.n));
  for (size_t t = 0; t < scales.size(); t++) {
    DType dt = parseDType(types[t]);
    if (!isFloat(dt) || scales[t].size != total * dtypeSize(dt) || c.offset + c.n > total)
      throw Error("lot_norm: scale tensor of expert " + std::to_string(t) + " has the wrong size");
    toF64(scales[t].data + c.offset * dtypeSize(dt), dt, c.n, s[t].data());  // checked finite and ≥ 0 (lib/stats/read.ts)
  }
  forEachBlock(c, [&](Block& b) {
    size_t base = b.index - c.offset;
    for (size_t i = 0; i < b.n; i++) {
      double num = 0, den = 0, mean = 0;
      for (size_t t = 0; t < b.T; t++) {
        double st = s[t][base + i];
        num += st * b.tau[t][i];
        den += st;
        mean += b.tau[t][i];
      }
      // No input energy in any task: every value is optimal; take the mean.
      double tstar = den > 0 ? num / den : mean / double(b.T);
      b.out[i] = float(double(b.base[i]) + lambda * tstar);
    }
  });
}

TM_REGISTER_OP("gram_products_accumulate", gramProductsAccumulateOp);
TM_REGISTER_OP("gram_solve", gramSolveOp);
TM_REGISTER_OP("lot_norm", lotNormOp);

}  // namespace taskmerge
