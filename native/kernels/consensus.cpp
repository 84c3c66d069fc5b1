// Op "consensus": Consensus merging. τMTL is Σt τt (kind "sum") or the TIES
// disjoint sum of the trimmed τ̂t (kind "ties", with trim + majority); TALL
// masks mt = 1{|τt| > tallLambda·|τMTL − τt|}; entries where at least k masks
// are set get θ0 + λ τMTL, the others θ0. The kept entries are computed with
// exactly the operations of task_arithmetic (kind sum) or ties_merge with
// merge "sum" (kind ties), so k = 0 reproduces those bit for bit.
#include "../core/linear_combine.h"
#include "../core/tall_mask.h"
#include "../core/trim.h"

namespace taskmerge {

// merged[i] = float(θ0 + λ·τMTL), as ties_merge with merge "sum".
TM_SIMD static void tiesMerged(const float* base, const double* mtl, double lambda, size_t n, float* merged) {
  for (size_t i = 0; i < n; i++) merged[i] = float(double(base[i]) + lambda * mtl[i]);
}

// out[i] = merged[i] where at least k masks hold entry i, else θ0.
TM_SIMD static void selectKept(const double* cnt, double k, const float* merged, const float* base, size_t n, float* out) {
  for (size_t i = 0; i < n; i++) out[i] = selectBits(cnt[i] >= k, merged[i], base[i]);
}

// Per-thread block scratch: plain pointers, no thread-local lookup per element.
struct ConsensusScratch {
  std::vector<double> mtl = std::vector<double>(kBlockElems), cnt = std::vector<double>(kBlockElems);
  std::vector<float> mtlF = std::vector<float>(kBlockElems), merged = std::vector<float>(kBlockElems);
};

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
    thread_local ConsensusScratch s;
    ConsensusScratch& sc = s;
    double* mtl = sc.mtl.data();
    float* mtlF = sc.mtlF.data();
    float* merged = sc.merged.data();
    if (ties) {
      tiesAggregate(trim.block(b), b.T, b.n, maj, false, mtl);
      tiesMerged(b.base, mtl, lambda, b.n, merged);
    } else {
      tallSumTasks(b.tau, b.T, b.n, mtl);
      linearCombine(b.base, b.tau, lam.data(), b.T, b.n, merged);  // exactly task_arithmetic with ct = λ
    }
    tallToFloat(mtl, b.n, mtlF);
    // The masks compare the untrimmed τt with τMTL rounded to float32.
    tallMaskCount(b.tau, b.T, mtlF, b.n, tallLambda, sc.cnt.data());
    selectKept(sc.cnt.data(), k, merged, b.base, b.n, b.out);
  });
}

TM_REGISTER_OP("consensus", consensusOp);

}  // namespace taskmerge
