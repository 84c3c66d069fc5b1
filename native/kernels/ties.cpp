// TIES-family ops over trimmed task vectors (see core/trim.h for the trims).
//
// Op "ties_signs": chunk arguments + trim → signSum = Σ over the chunk's
//   entries of the elected sign sign(Σt τ̂t) (a reduction for the majority sign).
// Op "ties_merge": chunk arguments + trim + majority (±1) + merge ("mean" | "sum")
//   + lambda → out = θ0 + λ · disjoint aggregate of the τ̂t whose sign equals
//   the elected sign (entries electing 0 take the majority sign).
#include "../boundary/args.h"
#include "../boundary/device_call.h"

namespace taskmerge {

static void tiesSignsOp(const OpArgs& a, OpResult& r) {
  boundary::Chunk c(a, boundary::Out::None);
  boundary::Trim trim(a, c.T());
  boundary::DeviceCall d(a);
  tm_chunk dc = d.chunk(c.get());
  int64_t sum = 0;
  auto fn = d.entry(d.iface().ties_signs, "ties_signs");
  d.check(fn(&d.backend(), &dc, trim.get(), &sum, d.work(TM_K_TIES_SIGNS, c.T(), c.n()), d.err()), "ties_signs");
  r.nums["signSum"] = double(sum);
}

static void tiesMergeOp(const OpArgs& a, OpResult&) {
  boundary::Chunk c(a, boundary::Out::Required);
  boundary::Trim trim(a, c.T());
  const std::string m = a.str("merge", "mean");
  if (m != "mean" && m != "sum") throw ArgumentError("merge", -1, "must be 'mean' or 'sum'");
  const tm_ties_merge_args args{boundary::majority(a), m == "mean", a.num("lambda")};
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().ties_merge, "ties_merge");
  d.blocks(c.get(), TM_K_TIES_MERGE, "ties_merge",
           [&](const tm_chunk& dc, tm_work w) { return fn(&d.backend(), &dc, trim.get(), &args, w, d.err()); });
}

TM_REGISTER_OP("ties_signs", tiesSignsOp);
TM_REGISTER_OP("ties_merge", tiesMergeOp);

}  // namespace taskmerge
