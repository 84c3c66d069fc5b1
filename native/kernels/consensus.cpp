// Op "consensus": Consensus merging. τMTL is Σt τt (kind "sum") or the TIES
// disjoint sum of the trimmed τ̂t (kind "ties", with trim + majority); TALL
// masks mt = 1{|τt| > tallLambda·|τMTL − τt|}; entries where at least k masks
// are set get θ0 + λ τMTL, the others θ0. The kept entries are computed with
// exactly the operations of task_arithmetic (kind sum) or ties_merge with
// merge "sum" (kind ties), so k = 0 reproduces those bit for bit.
#include "../core/linear_combine.h"
#include "../core/trim.h"

namespace taskmerge {

static void consensusOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  if (!c.out) throw Error("consensus: missing out buffer");
  const std::string kind = a.str("kind");
  if (kind != "sum" && kind != "ties") throw Error("consensus: kind must be 'sum' or 'ties'");
  const bool ties = kind == "ties";
  Trim trim = Trim::parse(a, c.experts.size());
  const int maj = majorityArg(a);
  const double tallLambda = a.num("tallLambda"), lambda = a.num("lambda");
  const double k = a.num("k");
  const std::vector<double> lam(c.experts.size(), lambda);
  forEachBlock(c, [&](Block& b) {
    const float* const* v = trim.block(b);
    thread_local std::vector<double> aggBuf;
    aggBuf.resize(b.n);
    double* agg = aggBuf.data();  // a plain pointer: no thread-local lookup per element
    if (ties) tiesAggregate(v, b.T, b.n, maj, false, agg);
    thread_local std::vector<float> sumBuf;
    float* summed = nullptr;
    if (!ties) {
      // Exactly task_arithmetic's operations with ct = λ.
      sumBuf.resize(b.n);
      summed = sumBuf.data();
      linearCombine(b.base, b.tau, lam.data(), b.T, b.n, summed);
    }
    for (size_t i = 0; i < b.n; i++) {
      double mtl;
      if (ties) {
        mtl = agg[i];
      } else {
        mtl = 0;
        for (size_t t = 0; t < b.T; t++) mtl += b.tau[t][i];
      }
      const float mtlF = float(mtl);
      size_t count = 0;
      for (size_t t = 0; t < b.T; t++) count += tallBit(b.tau[t][i], mtlF, tallLambda);
      float merged;
      if (ties) {
        merged = float(double(b.base[i]) + lambda * mtl);
      } else {
        merged = summed[i];
      }
      b.out[i] = selectBits(double(count) >= k, merged, b.base[i]);
    }
  });
}

TM_REGISTER_OP("consensus", consensusOp);

}  // namespace taskmerge
