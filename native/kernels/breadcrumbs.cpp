// Ops of the breadcrumbs methods (lib/methods/breadcrumbs.ts; Model Breadcrumbs,
// mergekit's magnitude_outliers sparsification).
//
// Each task keeps the entries ranked [top, top + k) by |τt| in descending order,
// ties by lower tensor index: the entries of its top-(top + k) set that are
// not in its top-top set. A top-m set is given as the float32 bits of the
// m-th largest |τt| and a cut: it holds the entries with |τ| above the bits,
// and those exactly at them with a tensor index below the cut (lib/methods
// finds both). The empty set is bits 0x7f800000 (|τ| is finite) with cut 0;
// the whole tensor is bits 0 with cut n.
//
// Op "breadcrumbs_merge": chunk arguments + per expert dropBits, dropCuts (the
//   top-`top` set), keepBits, keepCuts (the top-(top + k) set), weights, scales
//   + consensus (0/1) + normalize (0/1) + lambda + divisor → out = θ0 + λ·mixed
//   with dt = wt · st · τ̂t in double, over t in order:
//     consensus 1: m = (Σ dt ≥ 0 ? +1 : −1), mixed = Σ_{sign(dt) = m} dt,
//                  divided, when normalize, by Σ_{sign(dt) = m} wt (1 where 0);
//     consensus 0: mixed = Σ dt, divided, when normalize, by `divisor`.
// Op "breadcrumbs_l1": chunk arguments + the four set lists → l1 = Σ|τt| and
//   l1Kept = Σ|τ̂t| per expert (double), for the L1 rescale.
// Both run on the backend (breadcrumbs_merge, breadcrumbs_l1 of backend.h).
#include "../boundary/args.h"
#include "../boundary/device_call.h"

namespace taskmerge {

namespace {

// The drop and keep top sets of every expert, owned for the call.
struct TopSets {
  std::vector<uint32_t> dropBits, keepBits;
  std::vector<double> dropCuts, keepCuts;
  TopSets(const OpArgs& a, size_t T)
      : dropBits(boundary::bitsPerExpert(a, "dropBits", T)), keepBits(boundary::bitsPerExpert(a, "keepBits", T)),
        dropCuts(boundary::perExpert(a, "dropCuts", T)), keepCuts(boundary::perExpert(a, "keepCuts", T)) {}
  tm_top_sets get() const { return {dropBits.data(), dropCuts.data(), keepBits.data(), keepCuts.data()}; }
};

void mergeOp(const OpArgs& a, OpResult&) {
  boundary::Chunk c(a, boundary::Out::Required);
  const size_t T = c.T();
  const TopSets sets(a, T);
  const auto& w = boundary::perExpert(a, "weights", T);
  const auto& s = boundary::perExpert(a, "scales", T);
  const tm_breadcrumbs_args args{sets.get(), w.data(), s.data(), a.num("consensus") != 0, a.num("normalize") != 0,
                                 a.num("lambda"), a.num("divisor", 1)};
  boundary::DeviceCall d(a);
  tm_chunk dc = d.chunk(c.get());
  auto fn = d.entry(d.iface().breadcrumbs_merge, "breadcrumbs_merge");
  d.check(fn(&d.backend(), &dc, &args, d.work(TM_K_BREADCRUMBS, T, c.n()), d.err()), "breadcrumbs_merge");
}

void l1Op(const OpArgs& a, OpResult& r) {
  boundary::Chunk c(a, boundary::Out::None);
  const size_t T = c.T();
  const TopSets sets(a, T);
  const tm_top_sets ts = sets.get();
  std::vector<double> l1(T, 0), kept(T, 0);
  boundary::DeviceCall d(a);
  tm_chunk dc = d.chunk(c.get());
  auto fn = d.entry(d.iface().breadcrumbs_l1, "breadcrumbs_l1");
  d.check(fn(&d.backend(), &dc, &ts, l1.data(), kept.data(), d.work(TM_K_BREADCRUMBS, T, c.n()), d.err()), "breadcrumbs_l1");
  r.numLists["l1"] = l1;
  r.numLists["l1Kept"] = kept;
}

}  // namespace

TM_REGISTER_OP("breadcrumbs_merge", mergeOp);
TM_REGISTER_OP("breadcrumbs_l1", l1Op);

}  // namespace taskmerge
