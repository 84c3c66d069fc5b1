// Op "task_arithmetic": θ0 + Σt ct τt per element. `average` is the same
// kernel with ct = 1/T; task arithmetic uses ct = λ·wt.
#include "../core/elementwise.h"
#include "../core/linear_combine.h"

namespace taskmerge {

static void taskArithmeticOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  const auto& coeffs = a.numList("coeffs");
  if (coeffs.size() != c.experts.size()) throw Error("task_arithmetic: one coefficient per expert");
  forEachBlock(c, [&](Block& b) { linearCombine(b.base, b.tau, coeffs.data(), b.T, b.n, b.out); });
}

TM_REGISTER_OP("task_arithmetic", taskArithmeticOp);

}  // namespace taskmerge
