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
#include <atomic>
#include <mutex>
#include <vector>

#include "../core/trim.h"

namespace taskmerge {

static void mergekitGtaOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  if (!c.out) throw Error("mergekit_gta: missing out buffer");
  const size_t T = c.experts.size();
  Trim trim = Trim::parse(a, T);
  const auto& w = a.numList("weights");
  const auto& s = a.numList("scales");
  if (w.size() != T || s.size() != T) throw Error("mergekit_gta: one weight and one scale per expert");
  const std::string consensus = a.str("consensus");
  if (consensus != "none" && consensus != "sum") throw Error("mergekit_gta: consensus must be 'none' or 'sum'");
  const bool sum = consensus == "sum";
  const bool normalize = a.num("normalize") != 0;
  const double lambda = a.num("lambda"), divisor = a.num("divisor", 1), baseScale = a.num("baseScale", 1);
  forEachBlock(c, [&](Block& b) {
    const float* const* v = trim.block(b);
    thread_local std::vector<double> dBuf;
    dBuf.resize(T);
    double* d = dBuf.data();
    for (size_t i = 0; i < b.n; i++) {
      double total = 0;
      for (size_t t = 0; t < T; t++) total += (d[t] = w[t] * (s[t] * double(v[t][i])));
      double mixed = total, div = divisor;
      if (sum) {
        const int m = total >= 0 ? 1 : -1;
        mixed = 0;
        div = 0;
        for (size_t t = 0; t < T; t++) {
          const int sg = (d[t] > 0) - (d[t] < 0);
          if (sg == m) {
            mixed += d[t];
            div += w[t];
          }
        }
        if (div == 0) div = 1;
      }
      if (normalize) mixed /= div;
      b.out[i] = float(baseScale * double(b.base[i]) + lambda * mixed);
    }
  });
}

static void trimL1Op(const OpArgs& a, OpResult& r) {
  ElementwiseChunk c = parseChunk(a);
  const size_t T = c.experts.size();
  Trim trim = Trim::parse(a, T);
  std::vector<double> l1(T, 0), kept(T, 0);
  std::mutex mu;
  forEachBlock(c, [&](Block& b) {
    const float* const* v = trim.block(b);
    std::vector<double> a1(T, 0), k1(T, 0);
    for (size_t t = 0; t < T; t++)
      for (size_t i = 0; i < b.n; i++) {
        a1[t] += std::fabs(double(b.tau[t][i]));
        k1[t] += std::fabs(double(v[t][i]));
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

static void tieCutOp(const OpArgs& a, OpResult& r) {
  ElementwiseChunk c = parseChunk(a);
  const size_t T = c.experts.size();
  const std::vector<uint32_t> thr = Trim::parseThresholds(a, T);
  const auto& need = a.numList("need");
  if (need.size() != T) throw Error("magnitude_tie_cut: one need per expert");
  // Per block, per expert: the positions at the threshold (few: ties are rare in float data).
  const size_t blocks = (c.n + kBlockElems - 1) / kBlockElems;
  std::vector<std::vector<std::vector<uint32_t>>> hits(blocks, std::vector<std::vector<uint32_t>>(T));
  forEachBlock(c, [&](Block& b) {
    const size_t blk = (b.index - c.offset) / kBlockElems;
    for (size_t t = 0; t < T; t++)
      for (size_t i = 0; i < b.n; i++)
        if (absBits(b.tau[t][i]) == thr[t]) hits[blk][t].push_back(uint32_t(i));
  });
  std::vector<double> count(T, 0), at(T, 0);
  for (size_t t = 0; t < T; t++)
    for (size_t blk = 0; blk < blocks; blk++)
      for (uint32_t i : hits[blk][t]) {
        count[t] += 1;
        if (at[t] == 0 && count[t] == need[t]) at[t] = double(blk * kBlockElems + i + 1);
      }
  r.numLists["count"] = count;
  r.numLists["at"] = at;
}

TM_REGISTER_OP("mergekit_gta", mergekitGtaOp);
TM_REGISTER_OP("trim_l1", trimL1Op);
TM_REGISTER_OP("magnitude_tie_cut", tieCutOp);

}  // namespace taskmerge
