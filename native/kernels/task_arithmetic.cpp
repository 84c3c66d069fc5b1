// Op "task_arithmetic": θ0 + Σt ct τt per element. `average` is the same
// kernel with ct = 1/T; task arithmetic uses ct = λ·wt.
// Op "dare_linear": θ0 + Σt ct τ̃t with τ̃ the DARE-trimmed task vectors
// (random drop with probability 1 − density, survivors rescaled by 1/density;
// see core/trim.h). Accumulates like task_arithmetic, so density 1 gives the
// same bits as task arithmetic with the same coefficients.
// Both run the backend's linear_combine.
#include <optional>

#include "../boundary/args.h"
#include "../boundary/device_call.h"

namespace taskmerge {

static void linearCombineOp(const OpArgs& a, bool dare) {
  boundary::Chunk c(a, dare ? boundary::Out::Required : boundary::Out::Optional);
  tm_trim none{};
  std::optional<boundary::Trim> trim;
  if (dare) trim.emplace(a, c.T());
  const auto& coeffs = boundary::perExpert(a, "coeffs", c.T());
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().linear_combine, "linear_combine");
  const tm_trim* tr = trim ? trim->get() : &none;
  d.blocks(c.get(), TM_K_LINEAR_COMBINE, "linear_combine",
           [&](const tm_chunk& dc, tm_work w) { return fn(&d.backend(), &dc, tr, coeffs.data(), w, d.err()); });
}

static void taskArithmeticOp(const OpArgs& a, OpResult&) { linearCombineOp(a, false); }
static void dareLinearOp(const OpArgs& a, OpResult&) { linearCombineOp(a, true); }

TM_REGISTER_OP("task_arithmetic", taskArithmeticOp);
TM_REGISTER_OP("dare_linear", dareLinearOp);

}  // namespace taskmerge
