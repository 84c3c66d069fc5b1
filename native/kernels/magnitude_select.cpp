// Exact top-k magnitude selection over a stream, for TIES thresholds.
// For non-negative floats the IEEE bit pattern orders like the value, so the
// k-th largest |τ| is found on the float32 bits of |τ| with two histogram
// passes: the high 16 bits (pass 0), then the low 16 bits of the entries in
// the chosen high bin (pass 1). Histograms live in state buffers (handles from
// state_alloc, on the op's device: T × bins float64 counts) so a pass can span
// many chunks and tensors without the counts crossing the boundary per chunk.
//
// Op "magnitude_hist": chunk arguments (base, experts, dtypes, n, offset),
//   level 0|1, hist (state: T × 32768 or T × 65536 float64), prefix (level 1:
//   the high bin per expert, −1 to skip the expert). Adds the chunk's counts.
//   With signDiff (state: T × 65536 float64) and multiCap, the level-1 pass also
//   gathers the TIES majority-sign reduction Σ sign(Σt τ̂t) for thresholds not
//   yet known exactly (only their high 16 bits, the prefix): an entry whose
//   |τt| all lie outside their prefix bins has a known elected sign (added to
//   signBase); one with a single task u inside its bin contributes s_drop to
//   signBase and s_keep − s_drop to signDiff[u][low 16 bits of |τu|], so the
//   exact sum is signBase + Σu Σ_{l ≥ Lu} signDiff[u][l] once the low bits Lu
//   are picked; entries with several tasks inside their bins are returned as
//   multi (T float32 τ per entry, at most multiCap entries, else overflow = 1).
// Op "magnitude_pick": hist (state), bins, ks (k per expert) → bin (per expert, the
//   bin holding the k-th largest) and rank (its rank from the top inside the bin).
#include <algorithm>
#include <memory>
#include <cstring>
#include <optional>

#include "../boundary/args.h"
#include "../boundary/device_call.h"

namespace taskmerge {

constexpr size_t kHighBins = 1u << 15;  // sign bit of |τ| is 0
constexpr size_t kLowBins = 1u << 16;

static void magnitudeHistOp(const OpArgs& a, OpResult& r) {
  boundary::Chunk c(a, boundary::Out::None);
  const size_t T = c.T();
  const double level = a.num("level");
  if (level != 0 && level != 1) throw ArgumentError("level", -1, "must be 0 or 1");
  const size_t bins = level == 0 ? kHighBins : kLowBins;
  const boundary::State hist = boundary::state(a, "hist", T * bins * sizeof(double));
  std::vector<int64_t> prefix(T, 0);
  if (level == 1)
    for (size_t t = 0; t < T; t++) prefix[t] = int64_t(boundary::perExpert(a, "prefix", T)[t]);
  const bool fused = level == 1 && a.has("signDiff");
  std::optional<boundary::State> signDiff;
  size_t cap = 0;
  if (fused) {
    signDiff.emplace(boundary::state(a, "signDiff", T * kLowBins * sizeof(double)));
    cap = size_t(std::max(0.0, a.num("multiCap")));
    for (size_t t = 0; t < T; t++)
      if (prefix[t] < 0) throw ArgumentError("prefix", (long long)t, "the sign reduction needs a prefix for every expert");
  }
  // Uninitialised, as in ties_window: the kernel writes only the multi_count entries it returns.
  std::unique_ptr<float[]> multi(new float[fused ? std::min(cap, c.n()) * T : 0]);
  boundary::DeviceCall d(a);
  tm_chunk dc = d.chunk(c.get());
  const tm_hist_args args{int(level), prefix.data(), d.state<double>(hist), fused ? d.state<double>(*signDiff) : nullptr,
                          std::min(cap, c.n()), multi.get()};
  tm_hist_result res{};
  auto fn = d.entry(d.iface().magnitude_hist, "magnitude_hist");
  d.check(fn(&d.backend(), &dc, &args, &res, d.work(TM_K_MAGNITUDE_HIST, T, c.n()), d.err()), "magnitude_hist");
  if (!fused) return;
  r.nums["signBase"] = double(res.sign_base);
  r.nums["overflow"] = res.overflow ? 1 : 0;
  auto& out = r.bufs["multi"];
  out.resize(res.multi_count * T * sizeof(float));
  if (!out.empty()) std::memcpy(out.data(), multi.get(), out.size());
}

static void magnitudePickOp(const OpArgs& a, OpResult& r) {
  const size_t bins = boundary::count(a, "bins");
  const auto& ks = a.numList("ks");
  const size_t T = ks.size();
  if (bins == 0) throw ArgumentError("bins", -1, "must be at least 1");
  const boundary::State hist = boundary::state(a, "hist", T * bins * sizeof(double));
  for (size_t t = 0; t < T; t++)
    if (!(ks[t] >= 1)) throw ArgumentError("ks", (long long)t, "k must be at least 1");
  std::vector<double> bin(T), rank(T);
  boundary::DeviceCall d(a);
  auto fn = d.entry(d.iface().magnitude_pick, "magnitude_pick");
  d.check(fn(&d.backend(), d.state<const double>(hist), bins, T, ks.data(), bin.data(), rank.data(), d.err()),
          "magnitude_pick");
  r.numLists["bin"] = bin;
  r.numLists["rank"] = rank;
}

// Op "magnitude_small": a whole small tensor in one chunk + k → thresholds
// (float32 bits of the k-th largest |τt| per expert, by selection in memory)
// and signSum (the majority-sign reduction with those thresholds): the two
// histogram passes and the sign pass at once, without T × 65536 histograms.
static void magnitudeSmallOp(const OpArgs& a, OpResult& r) {
  boundary::Chunk c(a, boundary::Out::None);
  const size_t T = c.T(), n = c.n();
  const double kd = a.num("k");
  if (c.offset() != 0 || n == 0 || !(kd >= 1 && kd <= double(n))) throw ArgumentError("k", -1, "magnitude_small needs a whole tensor and 1 ≤ k ≤ n");
  std::vector<uint32_t> thr(T);
  int64_t signSum = 0;
  boundary::DeviceCall d(a);
  tm_chunk dc = d.chunk(c.get());
  auto fn = d.entry(d.iface().magnitude_small, "magnitude_small");
  d.check(fn(&d.backend(), &dc, size_t(kd), thr.data(), &signSum, d.work(TM_K_MAGNITUDE_SMALL, T, n), d.err()), "magnitude_small");
  auto& out = r.numLists["thresholds"];
  for (uint32_t v : thr) out.push_back(double(v));
  r.nums["signSum"] = double(signSum);
}

TM_REGISTER_OP("magnitude_hist", magnitudeHistOp);
TM_REGISTER_OP("magnitude_small", magnitudeSmallOp);
TM_REGISTER_OP("magnitude_pick", magnitudePickOp);

}  // namespace taskmerge
