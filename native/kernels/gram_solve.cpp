// The closed-form merges' ops: LOT Merging and RegMean (RegMean uses the
// first two with its own Gram transform, lib/methods/closed_form.ts).
//  "gram_products_accumulate": A += G̃t, BT += Tt G̃tᵀ for one expert's linear weight.
//  "gram_solve": T* = BT A⁺ (rows), writes θ0 + λ T* in the output dtype.
//  "lot_norm": per normalisation scale, T*[d] = Σt st[d] τt[d] / Σt st[d].
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../boundary/args.h"
#include "../boundary/dense.h"
#include "../boundary/device_call.h"
#include "../core/dtype.h"
#include "../core/parallel.h"
#include "../linalg/linalg.h"
#include "../linalg/solve.h"

namespace taskmerge {

// A float64 accumulator used in place (8-byte aligned).
static double* f64Buf(const OpArgs& a, const std::string& k, size_t n) { return boundary::typed<double>(a, k, n); }

static Bytes sized(const OpArgs& a, const std::string& k, size_t n, DType t) {
  return boundary::floats(a, k, n, tm_dtype(int(t)));
}

static DType dtypeArg(const OpArgs& a, const std::string& k) { return DType(int(boundary::floatDtype(a, k))); }

static void gramProductsAccumulateOp(const OpArgs& a, OpResult&) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  const size_t out = boundary::count(a, "out"), in = boundary::count(a, "in");
  const DType bt = dtypeArg(a, "baseDtype"), et = dtypeArg(a, "expertDtype"), gt = dtypeArg(a, "gramDtype");
  Bytes base = sized(a, "base", out * in, bt), expert = sized(a, "expert", out * in, et);
  Bytes gram = sized(a, "gram", in * in, gt);
  double* A = f64Buf(a, "A", in * in);
  double* BT = f64Buf(a, "BT", out * in);
  linalg::GramTransform tf{a.num("scale", 1.0), a.num("alpha", 1.0)};
  boundary::DeviceCall d(a);
  boundary::Dense la(d);
  linalg::accumulateGramProducts(out, in, base.data, bt, expert.data, et, gram.data, gt, tf, A, BT, la);
}

static void gramSolveOp(const OpArgs& a, OpResult& r) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  const size_t out = boundary::count(a, "out"), in = boundary::count(a, "in");
  double* A = f64Buf(a, "A", in * in);
  double* X = f64Buf(a, "BT", out * in);  // solved in place
  const DType bt = dtypeArg(a, "baseDtype"), ot = dtypeArg(a, "resultDtype");
  Bytes base = sized(a, "base", out * in, bt), res = sized(a, "result", out * in, ot);
  boundary::DeviceCall d(a);
  boundary::Dense la(d);
  auto info = linalg::solvePsdRows(in, A, out, X, linalg::parseSolver(a.str("solver", "auto")), a.num("ridge", 0.0),
                                   a.num("rcond", 0.0), la);
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
  boundary::Chunk c(a, boundary::Out::Required);
  const size_t T = c.T();
  const auto& scales = a.bufList("scales");
  const auto& types = a.strList("scaleDtypes");
  const size_t total = boundary::count(a, "total");
  if (scales.size() != T || types.size() != T) throw ArgumentError("scales", -1, "one scale tensor per expert");
  if (c.offset() + c.n() > total) throw ArgumentError("total", -1, "the chunk lies past the end of the scale tensors");
  std::vector<tm_dtype> st;
  for (size_t t = 0; t < T; t++) {
    st.push_back(boundary::floatDtype(types[t], "scales", (long long)t));
    if (scales[t].size != total * dtypeSize(DType(int(st[t]))))
      throw ArgumentError("scales", (long long)t, "expected " + std::to_string(total) + " elements");
  }
  boundary::DeviceCall d(a);
  std::vector<const void*> sp;
  for (size_t t = 0; t < T; t++) sp.push_back(d.in(scales[t].data, scales[t].size));
  tm_chunk dc = d.chunk(c.get());
  auto fn = d.entry(d.iface().lot_norm, "lot_norm");
  d.check(fn(&d.backend(), &dc, sp.data(), st.data(), total, a.num("lambda", 1.0), d.work(TM_K_LOT_NORM, T, c.n()), d.err()), "lot_norm");
}

TM_REGISTER_OP("gram_products_accumulate", gramProductsAccumulateOp);
TM_REGISTER_OP("gram_solve", gramSolveOp);
TM_REGISTER_OP("lot_norm", lotNormOp);

}  // namespace taskmerge
