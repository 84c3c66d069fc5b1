// Feature drift of a merged model against one task (taskmerge drift):
//  "drift_linear": tr((W − Wt) Gt (W − Wt)ᵀ) for the merged W and, for scale,
//                  the same for the base W0 (how far the task moved the layer).
//  "drift_norm":   Σd st[d] (w[d] − wt[d])², likewise for the base (the
//                  backend's drift_norm entry).
#include <cmath>
#include <string>
#include <vector>

#include "../boundary/args.h"
#include "../boundary/dense.h"
#include "../boundary/device_call.h"
#include "../core/dtype.h"
#include "../core/op.h"
#include "../core/parallel.h"
#include "../linalg/linalg.h"

namespace taskmerge {

static std::vector<double> loadF64(const OpArgs& a, const std::string& k, size_t n) {
  const tm_dtype dt = boundary::floatDtype(a, k + "Dtype");
  const DType t = DType(int(dt));
  Bytes b = boundary::floats(a, k, n, dt);
  std::vector<double> v(n);
  toF64(b.data, t, n, v.data());
  return v;
}

// tr(D G Dᵀ) = Σ_{r,i} D[r,i] (D Gᵀ)[r,i], G converted in row blocks.
static double quadForm(const std::vector<double>& D, size_t out, size_t in, const uint8_t* gram, DType gt, linalg::DenseOps& la) {
  constexpr size_t RB = 256;
  std::vector<double> G(std::min(RB, in) * in), P(out * std::min(RB, in));
  double total = 0;
  size_t gs = dtypeSize(gt);
  for (size_t i0 = 0; i0 < in; i0 += RB) {
    size_t rb = std::min(RB, in - i0);
    toF64(gram + i0 * in * gs, gt, rb * in, G.data());
    la.gemm(false, true, out, rb, in, 1.0, D.data(), in, G.data(), in, 0.0, P.data(), rb);
    for (size_t r = 0; r < out; r++)
      for (size_t i = 0; i < rb; i++) total += D[r * in + i0 + i] * P[r * rb + i];
  }
  return total;
}

static void driftLinearOp(const OpArgs& a, OpResult& res) {
  linalg::ScopedBuiltin forced(a.str("linalg", "") == "builtin");
  const size_t out = boundary::count(a, "out"), in = boundary::count(a, "in");
  auto W = loadF64(a, "merged", out * in), Wt = loadF64(a, "expert", out * in), W0 = loadF64(a, "base", out * in);
  const tm_dtype gtd = boundary::floatDtype(a, "gramDtype");
  const DType gt = DType(int(gtd));
  Bytes g = boundary::floats(a, "gram", in * in, gtd);
  for (size_t i = 0; i < W.size(); i++) {
    W[i] -= Wt[i];
    W0[i] -= Wt[i];
  }
  boundary::DeviceCall d(a);
  boundary::Dense la(d);
  res.nums["drift"] = quadForm(W, out, in, g.data, gt, la);
  res.nums["baseDrift"] = quadForm(W0, out, in, g.data, gt, la);
}

// One float input of n values, checked (its dtype, its size).
struct Floats {
  Bytes bytes;
  tm_dtype type;
};
static Floats floatsArg(const OpArgs& a, const std::string& k, size_t n) {
  const tm_dtype t = boundary::floatDtype(a, k + "Dtype");
  return {boundary::floats(a, k, n, t), t};
}

static void driftNormOp(const OpArgs& a, OpResult& res) {
  const size_t n = boundary::count(a, "n");
  const Floats w = floatsArg(a, "merged", n), wt = floatsArg(a, "expert", n), w0 = floatsArg(a, "base", n), s = floatsArg(a, "scale", n);
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().drift_norm, "drift_norm");
  auto at = [&](const Floats& f) { return d.in(f.bytes.data, f.bytes.size); };
  double drift = 0, baseDrift = 0;
  d.check(fn(&d.backend(), n, at(w), w.type, at(wt), wt.type, at(w0), w0.type, at(s), s.type, &drift, &baseDrift, d.err()), "drift_norm");
  res.nums["drift"] = drift;
  res.nums["baseDrift"] = baseDrift;
}

TM_REGISTER_OP("drift_linear", driftLinearOp);
TM_REGISTER_OP("drift_norm", driftNormOp);

}  // namespace taskmerge
