// mergekit's methods computed in bfloat16 or float16 (its `dtype`), as torch
// runs them on the CPU (lib/methods/mergekit/lowp.ts): every input is cast to
// the compute dtype P, and each torch op computes in float32 from P operands
// and rounds its result to P once; a sum over the models (sum(dim=0))
// accumulates in float32, in model order, and rounds once.
//
// The ops parse their arguments here and run on the backend (the
// mergekit_lowp_* entries of backend.h, which state the rounding rules; the
// CPU's in native/backend/cpu/mergekit_lowp_kernels.cpp).
//
// All ops take the chunk arguments and compute ("BF16" | "F16"); τt is
// P(P(θt) − P(θ0)). Thresholds are float32 bits of P values, so core/trim.h's
// modes apply to τt unchanged.
// Op "mergekit_lowp_hist": + hist (a host state: T × 32768 float64) → adds the counts of
//   the 15-bit P patterns of |τt| (for magnitude_pick: P has 2¹⁵ magnitudes).
// Op "mergekit_lowp_tie_cut": + thresholds, need → count, at: as
//   magnitude_tie_cut (kernels/mergekit.cpp), over τt.
// Op "mergekit_lowp_l1": + trim → l1 = Σ|τt|, l1Kept = Σ|τ̂t| (double).
// Op "mergekit_lowp_gta": + trim, weights, scales (per expert, P or float32
//   values) + consensus ("none" | "sum") + normalize + divisor + lambda →
//     vt = P(τ̂t · st) (st ≠ 1), dt = P(vt · wt),
//     sum:  m = (P(Σ dt) ≥ 0 ? +1 : −1), mixed = P(Σ_{sign(dt) = m} dt),
//           div = P(Σ_{sign(dt) = m} wt) (1 where 0);
//     none: mixed = P(Σ dt), div = divisor;
//     normalize: mixed = P(mixed / div); λ ≠ 1: mixed = P(mixed · λ);
//     out = P(θ0 + mixed).
// Op "mergekit_lowp_linear": + weights (per expert), baseWeight, normalize,
//   divisor → out = P(Σi P(wi · θi)) (the base first, then the experts;
//   the base left out when its weight is 0), then P(out / divisor) when normalize.
#include <string>
#include <vector>

#include "../boundary/args.h"
#include "../boundary/device_call.h"

namespace taskmerge {
namespace {

tm_dtype parseLow(const OpArgs& a) {
  const std::string& s = a.str("compute");
  if (s == "BF16") return TM_BF16;
  if (s == "F16") return TM_F16;
  throw ArgumentError("compute", -1, "must be BF16 or F16");
}

// Per expert values as the float32 P operands torch multiplies by.
std::vector<float> floatsPerExpert(const OpArgs& a, const std::string& key, size_t T) {
  const auto& v = boundary::perExpert(a, key, T);
  return std::vector<float>(v.begin(), v.end());
}

void lowHistOp(const OpArgs& a, OpResult&) {
  boundary::Chunk c(a, boundary::Out::None);
  const tm_dtype p = parseLow(a);
  const size_t T = c.T(), bins = size_t(1) << 15;
  const boundary::State hist = boundary::state(a, "hist", T * bins * sizeof(double));
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().mergekit_lowp_hist, "mergekit_lowp_hist");
  tm_chunk dc = d.chunk(c.get());
  d.check(fn(&d.backend(), &dc, p, d.state<double>(hist), d.err()), "mergekit_lowp_hist");
}

void lowTieCutOp(const OpArgs& a, OpResult& r) {
  boundary::Chunk c(a, boundary::Out::None);
  const tm_dtype p = parseLow(a);
  const size_t T = c.T();
  const std::vector<uint32_t> thr = boundary::bitsPerExpert(a, "thresholds", T);
  const auto& need = boundary::perExpert(a, "need", T);
  std::vector<double> count(T, 0), at(T, 0);
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().mergekit_lowp_tie_cut, "mergekit_lowp_tie_cut");
  tm_chunk dc = d.chunk(c.get());
  d.check(fn(&d.backend(), &dc, p, thr.data(), need.data(), count.data(), at.data(), d.err()), "mergekit_lowp_tie_cut");
  r.numLists["count"] = count;
  r.numLists["at"] = at;
}

void lowL1Op(const OpArgs& a, OpResult& r) {
  boundary::Chunk c(a, boundary::Out::None);
  const tm_dtype p = parseLow(a);
  const size_t T = c.T();
  const boundary::Trim trim(a, T);
  std::vector<double> l1(T, 0), kept(T, 0);
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().mergekit_lowp_l1, "mergekit_lowp_l1");
  tm_chunk dc = d.chunk(c.get());
  d.check(fn(&d.backend(), &dc, p, trim.get(), l1.data(), kept.data(), d.err()), "mergekit_lowp_l1");
  r.numLists["l1"] = l1;
  r.numLists["l1Kept"] = kept;
}

void lowGtaOp(const OpArgs& a, OpResult&) {
  boundary::Chunk c(a, boundary::Out::Required);
  const tm_dtype p = parseLow(a);
  const size_t T = c.T();
  const boundary::Trim trim(a, T);
  const std::vector<float> w = floatsPerExpert(a, "weights", T), s = floatsPerExpert(a, "scales", T);
  const std::string consensus = a.str("consensus");
  if (consensus != "none" && consensus != "sum") throw ArgumentError("consensus", -1, "must be 'none' or 'sum'");
  const tm_lowp_gta_args args{p, w.data(), s.data(), consensus == "sum", a.num("normalize") != 0,
                              float(a.num("divisor", 1)), float(a.num("lambda"))};
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().mergekit_lowp_gta, "mergekit_lowp_gta");
  tm_chunk dc = d.chunk(c.get());
  d.check(fn(&d.backend(), &dc, trim.get(), &args, d.err()), "mergekit_lowp_gta");
}

void lowLinearOp(const OpArgs& a, OpResult&) {
  boundary::Chunk c(a, boundary::Out::Required);
  const tm_dtype p = parseLow(a);
  const size_t T = c.T();
  const std::vector<float> w = floatsPerExpert(a, "weights", T);
  const tm_lowp_linear_args args{p, w.data(), float(a.num("baseWeight")), a.num("normalize") != 0, float(a.num("divisor", 1))};
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().mergekit_lowp_linear, "mergekit_lowp_linear");
  tm_chunk dc = d.chunk(c.get());
  d.check(fn(&d.backend(), &dc, &args, d.err()), "mergekit_lowp_linear");
}

}  // namespace

TM_REGISTER_OP("mergekit_lowp_hist", lowHistOp);
TM_REGISTER_OP("mergekit_lowp_tie_cut", lowTieCutOp);
TM_REGISTER_OP("mergekit_lowp_l1", lowL1Op);
TM_REGISTER_OP("mergekit_lowp_gta", lowGtaOp);
TM_REGISTER_OP("mergekit_lowp_linear", lowLinearOp);

}  // namespace taskmerge
