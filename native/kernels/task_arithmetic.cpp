// Op "task_arithmetic": θ0 + Σt ct τt per element. `average` is the same
// kernel with ct = 1/T; task arithmetic uses ct = λ·wt.
#include "../core/elementwise.h"

namespace taskmerge {

static void taskArithmeticOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  const auto& coeffs = a.numList("coeffs");
  if (coeffs.size() != c.experts.size()) throw Error("task_arithmetic: one coefficient per expert");
  std::vector<float> w(coeffs.begin(), coeffs.end());
  forEachBlock(c, [&](Block& b) {
    for (size_t i = 0; i < b.n; i++) b.out[i] = b.base[i];
    for (size_t t = 0; t < b.T; t++) {
      const float* tau = b.tau[t];
      float wt = w[t];
      for (size_t i = 0; i < b.n; i++) b.out[i] += wt * tau[i];
    }
  });
}

TM_REGISTER_OP("task_arithmetic", taskArithmeticOp);

}  // namespace taskmerge
