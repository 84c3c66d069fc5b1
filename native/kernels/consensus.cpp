// Op "consensus": Consensus merging. τMTL is Σt τt (kind "sum") or the TIES
// disjoint sum of the trimmed τ̂t (kind "ties", with trim + majority); TALL
// masks mt = 1{|τt| > tallLambda·|τMTL − τt|}; entries where at least k masks
// are set get θ0 + λ τMTL, the others θ0. The kept entries are computed with
// exactly the operations of task_arithmetic (kind sum) or ties_merge with
// merge "sum" (kind ties), so k = 0 reproduces those bit for bit.
#include "../boundary/args.h"
#include "../boundary/device_call.h"

namespace taskmerge {

static void consensusOp(const OpArgs& a, OpResult&) {
  boundary::Chunk c(a, boundary::Out::Required);
  const std::string kind = a.str("kind");
  if (kind != "sum" && kind != "ties") throw ArgumentError("kind", -1, "must be 'sum' or 'ties'");
  boundary::Trim trim(a, c.T());
  const tm_consensus_args args{kind == "ties", boundary::majority(a), a.num("tallLambda"), a.num("lambda"), a.num("k")};
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().consensus, "consensus");
  d.blocks(c.get(), TM_K_CONSENSUS, "consensus",
           [&](const tm_chunk& dc, tm_work w) { return fn(&d.backend(), &dc, trim.get(), &args, w, d.err()); });
}

TM_REGISTER_OP("consensus", consensusOp);

}  // namespace taskmerge
