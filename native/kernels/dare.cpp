// Op "dare_linear": θ0 + Σt ct τ̃t with τ̃ the DARE-trimmed task vectors
// (random drop with probability 1 − density, survivors rescaled by 1/density;
// see core/trim.h). Accumulates like task_arithmetic, so density 1 gives the
// same bits as task arithmetic with the same coefficients.
#include "../core/linear_combine.h"
#include "../core/trim.h"

namespace taskmerge {

static void dareLinearOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  if (!c.out) throw Error("dare_linear: missing out buffer");
  Trim trim = Trim::parse(a, c.experts.size());
  const auto& coeffs = a.numList("coeffs");
  if (coeffs.size() != c.experts.size()) throw Error("dare_linear: one coefficient per expert");
  forEachBlock(c, [&](Block& b) { linearCombine(b.base, trim.block(b), coeffs.data(), b.T, b.n, b.out); });
}

TM_REGISTER_OP("dare_linear", dareLinearOp);

}  // namespace taskmerge
