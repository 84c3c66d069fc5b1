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
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "../core/elementwise.h"
#include "../core/op.h"

namespace taskmerge {

namespace {

struct TopSet {
  uint32_t bits;
  double cut;
  bool has(uint32_t u, size_t index) const { return u > bits || (u == bits && double(index) < cut); }
};

// Per expert: the set of ranks dropped (the largest) and the larger set kept from.
struct Window {
  std::vector<TopSet> drop, keep;

  static std::vector<TopSet> sets(const OpArgs& a, const char* bitsKey, const char* cutsKey, size_t T) {
    const auto& bits = a.numList(bitsKey);
    const auto& cuts = a.numList(cutsKey);
    if (bits.size() != T || cuts.size() != T) throw Error(std::string("breadcrumbs: one ") + bitsKey + " and " + cutsKey + " per expert");
    std::vector<TopSet> out;
    for (size_t t = 0; t < T; t++) {
      if (!(bits[t] >= 0 && bits[t] <= double(0x7f800000u))) throw Error("breadcrumbs: threshold bits out of range");
      out.push_back({uint32_t(bits[t]), cuts[t]});
    }
    return out;
  }

  static Window parse(const OpArgs& a, size_t T) {
    return {sets(a, "dropBits", "dropCuts", T), sets(a, "keepBits", "keepCuts", T)};
  }

  bool kept(size_t t, float tau, size_t index) const {
    uint32_t u;
    std::memcpy(&u, &tau, 4);
    u &= 0x7fffffffu;
    return keep[t].has(u, index) && !drop[t].has(u, index);
  }
};

void mergeOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  if (!c.out) throw Error("breadcrumbs_merge: missing out buffer");
  const size_t T = c.experts.size();
  const Window win = Window::parse(a, T);
  const auto& w = a.numList("weights");
  const auto& s = a.numList("scales");
  if (w.size() != T || s.size() != T) throw Error("breadcrumbs_merge: one weight and one scale per expert");
  const bool consensus = a.num("consensus") != 0, normalize = a.num("normalize") != 0;
  const double lambda = a.num("lambda"), divisor = a.num("divisor", 1);
  forEachBlock(c, [&](Block& b) {
    std::vector<double> d(T);
    for (size_t i = 0; i < b.n; i++) {
      double total = 0;
      for (size_t t = 0; t < T; t++) {
        const float tau = b.tau[t][i];
        total += (d[t] = win.kept(t, tau, b.index + i) ? w[t] * (s[t] * double(tau)) : 0.0);
      }
      double mixed = total, div = divisor;
      if (consensus) {
        const int m = total >= 0 ? 1 : -1;
        mixed = 0;
        div = 0;
        for (size_t t = 0; t < T; t++)
          if (((d[t] > 0) - (d[t] < 0)) == m) {
            mixed += d[t];
            div += w[t];
          }
        if (div == 0) div = 1;
      }
      if (normalize) mixed /= div;
      b.out[i] = float(double(b.base[i]) + lambda * mixed);
    }
  });
}

void l1Op(const OpArgs& a, OpResult& r) {
  ElementwiseChunk c = parseChunk(a);
  const size_t T = c.experts.size();
  const Window win = Window::parse(a, T);
  std::vector<double> l1(T, 0), kept(T, 0);
  std::mutex mu;
  forEachBlock(c, [&](Block& b) {
    std::vector<double> a1(T, 0), k1(T, 0);
    for (size_t t = 0; t < T; t++)
      for (size_t i = 0; i < b.n; i++) {
        const double x = std::fabs(double(b.tau[t][i]));
        a1[t] += x;
        if (win.kept(t, b.tau[t][i], b.index + i)) k1[t] += x;
      }
    std::lock_guard<std::mutex> lock(mu);
    for (size_t t = 0; t < T; t++) {
      l1[t] += a1[t];
      kept[t] += k1[t];
    }
  });
  r.numLists["l1"] = l1;
  r.numLists["l1Kept"] = kept;
}

}  // namespace

TM_REGISTER_OP("breadcrumbs_merge", mergeOp);
TM_REGISTER_OP("breadcrumbs_l1", l1Op);

}  // namespace taskmerge
