// TIES-family ops over trimmed task vectors (see core/trim.h for the trims).
//
// Op "ties_signs": chunk arguments + trim → signSum = Σ over the chunk's
//   entries of the elected sign sign(Σt τ̂t) (a reduction for the majority sign).
// Op "ties_merge": chunk arguments + trim + majority (±1) + merge ("mean" | "sum")
//   + lambda → out = θ0 + λ · disjoint aggregate of the τ̂t whose sign equals
//   the elected sign (entries electing 0 take the majority sign).
#include <atomic>

#include "../core/trim.h"

namespace taskmerge {

static void tiesSignsOp(const OpArgs& a, OpResult& r) {
  ElementwiseChunk c = parseChunk(a);
  Trim trim = Trim::parse(a, c.experts.size());
  std::atomic<int64_t> total{0};
  forEachBlock(c, [&](Block& b) {
    const float* const* v = trim.block(b);
    int64_t s = 0;
    for (size_t i = 0; i < b.n; i++) s += electedSign(v, b.T, i);
    total += s;
  });
  r.nums["signSum"] = double(total.load());
}

static bool mergeIsMean(const OpArgs& a) {
  std::string m = a.str("merge", "mean");
  if (m != "mean" && m != "sum") throw Error("ties: merge must be 'mean' or 'sum'");
  return m == "mean";
}

static void tiesMergeOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  if (!c.out) throw Error("ties_merge: missing out buffer");
  Trim trim = Trim::parse(a, c.experts.size());
  const int maj = majorityArg(a);
  const bool mean = mergeIsMean(a);
  const double lambda = a.num("lambda");
  forEachBlock(c, [&](Block& b) {
    const float* const* v = trim.block(b);
    thread_local std::vector<double> aggBuf;
    aggBuf.resize(b.n);
    double* agg = aggBuf.data();  // a plain pointer: no thread-local lookup per element
    tiesAggregate(v, b.T, b.n, maj, mean, agg);
    addScaled(b.base, agg, lambda, b.n, b.out);
  });
}

TM_REGISTER_OP("ties_signs", tiesSignsOp);
TM_REGISTER_OP("ties_merge", tiesMergeOp);

}  // namespace taskmerge
