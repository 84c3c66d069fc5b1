// Ops for merges as mergekit defines them (lib/methods/mergekit/*.ts;
// mergekit/merge_methods/generalized_task_arithmetic.py and linear.py).
//
// Op "mergekit_gta": chunk arguments + trim (core/trim.h) + weights, scales (per
//   expert) + consensus ("none" | "sum") + normalize (0/1) + lambda + divisor +
//   baseScale → out = baseScale·θ0 + λ · mixed, where with dt = wt · st · τ̂t
//     consensus "sum":  m = (Σ dt ≥ 0 ? +1 : −1), mixed = Σ_{sign(dt) = m} dt,
//                       divided, when normalize, by Σ_{sign(dt) = m} wt (1 where that is 0);
//     consensus "none": mixed = Σ dt, divided, when normalize, by `divisor`.
//   Everything per entry in double, over t in order.
// Op "trim_l1": chunk arguments + trim → l1 = Σ|τt| and l1Kept = Σ|τ̂t| per
//   expert (double): the L1 norms of mergekit's `rescale`.
// Op "magnitude_tie_cut": chunk arguments + thresholds + need (per expert) →
//   count (entries with |τt| exactly at the threshold) and at (chunk-local index
//   + 1 of the need-th of them, or 0 when the chunk holds fewer): walked chunk by
//   chunk in order, this finds where mergekit's exactly-k rule stops keeping ties.
#include "../boundary/args.h"
#include "../boundary/device_call.h"

namespace taskmerge {

static void mergekitGtaOp(const OpArgs& a, OpResult&) {
  boundary::Chunk c(a, boundary::Out::Required);
  const size_t T = c.T();
  boundary::Trim trim(a, T);
  const auto& w = boundary::perExpert(a, "weights", T);
  const auto& s = boundary::perExpert(a, "scales", T);
  const std::string consensus = a.str("consensus");
  if (consensus != "none" && consensus != "sum") throw ArgumentError("consensus", -1, "must be 'none' or 'sum'");
  const tm_gta_args args{w.data(), s.data(), consensus == "sum", a.num("normalize") != 0, a.num("lambda"),
                         a.num("divisor", 1), a.num("baseScale", 1)};
  boundary::DeviceCall d(a);
  tm_chunk dc = d.chunk(c.get());
  auto fn = d.entry(d.iface().mergekit_gta, "mergekit_gta");
  d.check(fn(&d.backend(), &dc, trim.get(), &args, d.work(TM_K_MERGEKIT_GTA, T, c.n()), d.err()), "mergekit_gta");
}

static void trimL1Op(const OpArgs& a, OpResult& r) {
  boundary::Chunk c(a, boundary::Out::None);
  const size_t T = c.T();
  boundary::Trim trim(a, T);
  std::vector<double> l1(T, 0), kept(T, 0);
  boundary::DeviceCall d(a);
  tm_chunk dc = d.chunk(c.get());
  auto fn = d.entry(d.iface().trim_l1, "trim_l1");
  d.check(fn(&d.backend(), &dc, trim.get(), l1.data(), kept.data(), d.work(TM_K_TRIM_L1, T, c.n()), d.err()), "trim_l1");
  r.numLists["l1"] = l1;
  r.numLists["l1Kept"] = kept;
}

static void tieCutOp(const OpArgs& a, OpResult& r) {
  boundary::Chunk c(a, boundary::Out::None);
  const size_t T = c.T();
  const std::vector<uint32_t> thr = boundary::bitsPerExpert(a, "thresholds", T);
  const auto& need = boundary::perExpert(a, "need", T);
  std::vector<double> count(T, 0), at(T, 0);
  boundary::DeviceCall d(a);
  tm_chunk dc = d.chunk(c.get());
  auto fn = d.entry(d.iface().magnitude_tie_cut, "magnitude_tie_cut");
  d.check(fn(&d.backend(), &dc, thr.data(), need.data(), count.data(), at.data(), d.work(TM_K_MAGNITUDE_TIE_CUT, T, c.n()), d.err()),
          "magnitude_tie_cut");
  r.numLists["count"] = count;
  r.numLists["at"] = at;
}

TM_REGISTER_OP("mergekit_gta", mergekitGtaOp);
TM_REGISTER_OP("trim_l1", trimL1Op);
TM_REGISTER_OP("magnitude_tie_cut", tieCutOp);

}  // namespace taskmerge
