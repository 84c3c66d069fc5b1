// The closed-form merges' ops: LOT Merging and RegMean (RegMean uses the
// first two with its own Gram transform, lib/methods/closed_form.ts).
//  "gram_products_accumulate": A += G̃t, BT += Tt G̃tᵀ for one expert's linear weight.
//  "gram_solve": for a batch of equal-shape layers, T* = BT A⁺ (rows) through the
//     backend's solve_psd_rows_batched, writes θ0 + λ T* in each output dtype.
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

// A list argument of `count` float64 buffers of n values each, 8-byte aligned, used in place.
static std::vector<double*> f64List(const OpArgs& a, const std::string& k, size_t count, size_t n) {
  const auto& l = a.bufList(k);
  if (l.size() != count) throw ArgumentError(k, -1, "expected " + std::to_string(count) + " buffers, one per layer");
  std::vector<double*> out;
  for (size_t i = 0; i < count; i++) {
    if (l[i].size != n * 8) throw ArgumentError(k, (long long)i, "expected " + std::to_string(n) + " float64 values");
    if (reinterpret_cast<uintptr_t>(l[i].data) % alignof(double)) throw ArgumentError(k, (long long)i, "buffer is not 8-byte aligned");
    out.push_back(reinterpret_cast<double*>(l[i].data));
  }
  return out;
}

static tm_precision precisionArg(const OpArgs& a) {
  const std::string p = a.str("precision", "float64");
  if (p == "float64") return TM_PRECISION_F64;
  if (p == "float32") return TM_PRECISION_F32;
  if (p == "tf32") return TM_PRECISION_TF32;
  throw ArgumentError("precision", -1, "expected float64, float32 or tf32 (got '" + p + "')");
}

// A batch of equal-shape layers: X_i = BT_i A_i⁺ for each (one call of the backend's
// solve_psd_rows_batched), then result_i = θ0_i + λ X_i in its output dtype. A layer
// that fails after the first stops the batch without an error: `solved` says how many
// were done, and the caller solves the rest on their own (so that their errors come
// when and as they would unbatched). A failure of the first layer is thrown.
static void gramSolveOp(const OpArgs& a, OpResult& r) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  const size_t out = boundary::count(a, "out"), in = boundary::count(a, "in");
  const size_t L = a.bufList("A").size();
  std::vector<double*> A = f64List(a, "A", L, in * in);
  std::vector<double*> X = f64List(a, "BT", L, out * in);  // solved in place
  const auto& baseTypes = a.strList("baseDtypes");
  const auto& resultTypes = a.strList("resultDtypes");
  const auto& bases = a.bufList("base");
  const auto& results = a.bufList("result");
  if (baseTypes.size() != L || resultTypes.size() != L || bases.size() != L || results.size() != L)
    throw ArgumentError("base", -1, "base, baseDtypes, result and resultDtypes need one entry per layer");
  std::vector<DType> bt, ot;
  for (size_t i = 0; i < L; i++) {
    bt.push_back(DType(int(boundary::floatDtype(baseTypes[i], "baseDtypes", (long long)i))));
    ot.push_back(DType(int(boundary::floatDtype(resultTypes[i], "resultDtypes", (long long)i))));
    if (bases[i].size != out * in * dtypeSize(bt[i])) throw ArgumentError("base", (long long)i, "expected " + std::to_string(out * in) + " elements");
    if (results[i].size != out * in * dtypeSize(ot[i])) throw ArgumentError("result", (long long)i, "expected " + std::to_string(out * in) + " elements");
  }
  const linalg::Solver solver = linalg::parseSolver(a.str("solver", "auto"));
  tm_solve_opts opts{solver == linalg::Solver::Cholesky ? 1 : solver == linalg::Solver::Eigh ? 2 : 0, a.num("ridge", 0.0),
                     a.num("rcond", 0.0), precisionArg(a)};
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().solve_psd_rows_batched, "solve_psd_rows_batched");
  std::vector<tm_solve_info> info(L);
  size_t done = 0;
  const tm_status st = fn(&d.backend(), L, in, A.data(), out, X.data(), &opts, info.data(), &done, d.err());
  if (st != TM_OK && done == 0 && L > 0) d.check(st, "solve_psd_rows_batched");
  if (st == TM_OK) done = L;
  const double lambda = a.num("lambda", 1.0);
  for (size_t l = 0; l < done; l++) {
    const size_t bs = dtypeSize(bt[l]), os = dtypeSize(ot[l]);
    // A non-finite result (an overflow) is caught where every method's output is checked (lib/engine/merge.ts).
    parallelFor(out, 16, [&](size_t r0, size_t r1) {
      std::vector<double> row(in);
      for (size_t i = r0; i < r1; i++) {
        toF64(bases[l].data + i * in * bs, bt[l], in, row.data());
        const double* x = X[l] + i * in;
        for (size_t j = 0; j < in; j++) row[j] += lambda * x[j];
        fromF64(row.data(), in, ot[l], results[l].data + i * in * os);
      }
    });
  }
  r.nums["solved"] = double(done);
  std::vector<double> eigh, rank;
  for (size_t l = 0; l < done; l++) {
    eigh.push_back(info[l].used_eigh ? 1 : 0);
    rank.push_back(double(info[l].rank));
  }
  r.numLists["eigh"] = eigh;
  r.numLists["rank"] = rank;
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
