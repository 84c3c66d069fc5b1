// Exact top-k magnitude selection over a stream, for TIES thresholds.
// For non-negative floats the IEEE bit pattern orders like the value, so the
// k-th largest |τ| is found on the float32 bits of |τ| with two histogram
// passes: the high 16 bits (pass 0), then the low 16 bits of the entries in
// the chosen high bin (pass 1). Histograms live in caller-owned Float64
// buffers (T × bins counts) so a pass can span many chunks and tensors.
//
// Op "magnitude_hist": chunk arguments (base, experts, dtypes, n, offset),
//   level 0|1, hist (T × 32768 or T × 65536 float64), prefix (level 1: the
//   high bin per expert, −1 to skip the expert). Adds the chunk's counts.
// Op "magnitude_pick": hist, bins, ks (k per expert) → bin (per expert, the
//   bin holding the k-th largest) and rank (its rank from the top inside the bin).
#include <mutex>

#include "../core/elementwise.h"
#include "../core/trim.h"

namespace taskmerge {

constexpr size_t kHighBins = 1u << 15;  // sign bit of |τ| is 0
constexpr size_t kLowBins = 1u << 16;

static void magnitudeHistOp(const OpArgs& a, OpResult&) {
  ElementwiseChunk c = parseChunk(a);
  const size_t T = c.experts.size();
  const int level = int(a.num("level"));
  if (level != 0 && level != 1) throw Error("magnitude_hist: level must be 0 or 1");
  const size_t bins = level == 0 ? kHighBins : kLowBins;
  Bytes h = a.buf("hist");
  if (h.size != T * bins * sizeof(double)) throw Error("magnitude_hist: hist must hold T × bins float64 counts");
  double* hist = reinterpret_cast<double*>(h.data);
  std::vector<int64_t> prefix(T, 0);
  if (level == 1) {
    const auto& p = a.numList("prefix");
    if (p.size() != T) throw Error("magnitude_hist: one prefix per expert");
    for (size_t t = 0; t < T; t++) prefix[t] = int64_t(p[t]);
  }
  const size_t baseSize = dtypeSize(c.baseType);
  const size_t blocks = (c.n + kBlockElems - 1) / kBlockElems;
  std::mutex m;
  parallelFor(blocks, 1, [&](size_t b0, size_t b1) {
    // Range-local 32-bit counts, added to the shared float64 counts once.
    std::vector<uint32_t> local(T * bins, 0);
    std::vector<float> base(kBlockElems), tau(kBlockElems);
    for (size_t b = b0; b < b1; b++) {
      size_t start = b * kBlockElems, len = std::min(kBlockElems, c.n - start);
      toF32(c.base + start * baseSize, c.baseType, len, base.data());
      checkFinite(base.data(), len, c.offset + start, "base", size_t(-1));
      for (size_t t = 0; t < T; t++) {
        if (prefix[t] < 0) continue;
        toF32(c.experts[t] + start * dtypeSize(c.expertTypes[t]), c.expertTypes[t], len, tau.data());
        checkFinite(tau.data(), len, c.offset + start, "expert", t);
        uint32_t* lt = local.data() + t * bins;
        if (level == 0) {
          for (size_t i = 0; i < len; i++) lt[absBits(tau[i] - base[i]) >> 16]++;
        } else {
          const uint32_t want = uint32_t(prefix[t]);
          for (size_t i = 0; i < len; i++) {
            uint32_t u = absBits(tau[i] - base[i]);
            if ((u >> 16) == want) lt[u & 0xffffu]++;
          }
        }
      }
    }
    std::lock_guard<std::mutex> lock(m);
    for (size_t j = 0; j < T * bins; j++)
      if (local[j]) hist[j] += double(local[j]);
  });
}

static void magnitudePickOp(const OpArgs& a, OpResult& r) {
  const size_t bins = size_t(a.num("bins"));
  const auto& ks = a.numList("ks");
  const size_t T = ks.size();
  Bytes h = a.buf("hist");
  if (bins == 0 || h.size != T * bins * sizeof(double)) throw Error("magnitude_pick: hist must hold T × bins counts");
  const double* hist = reinterpret_cast<const double*>(h.data);
  auto& bin = r.numLists["bin"];
  auto& rank = r.numLists["rank"];
  for (size_t t = 0; t < T; t++) {
    const double* ht = hist + t * bins;
    const double k = ks[t];
    if (!(k >= 1)) throw Error("magnitude_pick: k must be at least 1");
    double above = 0;
    size_t b = bins;
    while (b > 0 && above + ht[b - 1] < k) above += ht[--b];
    if (b == 0) throw Error("magnitude_pick: k exceeds the number of entries of expert " + std::to_string(t));
    bin.push_back(double(b - 1));
    rank.push_back(k - above);
  }
}

TM_REGISTER_OP("magnitude_hist", magnitudeHistOp);
TM_REGISTER_OP("magnitude_pick", magnitudePickOp);

}  // namespace taskmerge
