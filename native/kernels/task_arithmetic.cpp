// Op "task_arithmetic": θ0 + Σt ct τt per element. `average` is the same
// kernel with ct = 1/T; task arithmetic uses ct = λ·wt.
#include <vector>

#include "../core/elementwise.h"

namespace taskmerge {

static void taskArithmeticOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  const auto& coeffs = a.numList("coeffs");
  if (coeffs.size() != c.experts.size()) throw Error("task_arithmetic: one coefficient per expert");
  forEachBlock(c, [&](Block& b) {
    // Σt ct τt in double, added to θ0 once: one rounding at θ0's size instead
    // of one per task (consensus kind "sum" repeats exactly these operations).
    thread_local std::vector<double> accBuf;
    accBuf.resize(b.n);
    double* acc = accBuf.data();  // a plain pointer: no thread-local lookup per element
    for (size_t i = 0; i < b.n; i++) acc[i] = 0;
    for (size_t t = 0; t < b.T; t++) {
      const float* tau = b.tau[t];
      const double w = coeffs[t];
      for (size_t i = 0; i < b.n; i++) acc[i] += w * double(tau[i]);
    }
    for (size_t i = 0; i < b.n; i++) b.out[i] = float(double(b.base[i]) + acc[i]);
  });
}

TM_REGISTER_OP("task_arithmetic", taskArithmeticOp);

}  // namespace taskmerge
