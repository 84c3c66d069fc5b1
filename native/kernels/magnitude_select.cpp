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
//   With signDiff (T × 65536 float64) and multiCap, the level-1 pass also
//   gathers the TIES majority-sign reduction Σ sign(Σt τ̂t) for thresholds not
//   yet known exactly (only their high 16 bits, the prefix): an entry whose
//   |τt| all lie outside their prefix bins has a known elected sign (added to
//   signBase); one with a single task u inside its bin contributes s_drop to
//   signBase and s_keep − s_drop to signDiff[u][low 16 bits of |τu|], so the
//   exact sum is signBase + Σu Σ_{l ≥ Lu} signDiff[u][l] once the low bits Lu
//   are picked; entries with several tasks inside their bins are returned as
//   multi (T float32 τ per entry, at most multiCap entries, else overflow = 1).
// Op "magnitude_pick": hist, bins, ks (k per expert) → bin (per expert, the
//   bin holding the k-th largest) and rank (its rank from the top inside the bin).
#include <algorithm>
#include <functional>
#include <mutex>

#include "../core/elementwise.h"
#include "../core/trim.h"

namespace taskmerge {

constexpr size_t kHighBins = 1u << 15;  // sign bit of |τ| is 0
constexpr size_t kLowBins = 1u << 16;

// One range per thread: each range zeroes and merges its own T × bins counts.
static size_t histGrain(size_t blocks) { return (blocks + threadCount() - 1) / threadCount(); }

// Level-1 histogram plus the majority-sign reduction (see the top comment).
static void fusedSigns(const OpArgs& a, const ElementwiseChunk& c, double* hist, const std::vector<int64_t>& prefix, OpResult& r) {
  const size_t T = c.experts.size();
  Bytes sd = a.buf("signDiff");
  if (sd.size != T * kLowBins * sizeof(double)) throw Error("magnitude_hist: signDiff must hold T × 65536 float64");
  double* signDiff = reinterpret_cast<double*>(sd.data);
  const size_t cap = size_t(std::max(0.0, a.num("multiCap")));
  for (size_t t = 0; t < T; t++)
    if (prefix[t] < 0) throw Error("magnitude_hist: the sign reduction needs a prefix for every expert");
  const size_t baseSize = dtypeSize(c.baseType);
  const size_t blocks = (c.n + kBlockElems - 1) / kBlockElems;
  std::mutex m;
  int64_t signBase = 0;
  std::vector<float> multi;
  bool overflow = false;
  parallelFor(blocks, histGrain(blocks), [&](size_t b0, size_t b1) {
    std::vector<uint32_t> local(T * kLowBins, 0);
    std::vector<int32_t> diff(T * kLowBins, 0);
    std::vector<float> lmulti;
    int64_t lbase = 0;
    bool lover = false;
    std::vector<float> base(kBlockElems), tau(T * kBlockElems);
    std::vector<double> sumA(kBlockElems), keepA(kBlockElems);
    std::vector<uint32_t> nuncA(kBlockElems), uncA(kBlockElems);
    for (size_t b = b0; b < b1; b++) {
      size_t start = b * kBlockElems, len = std::min(kBlockElems, c.n - start);
      toF32(c.base + start * baseSize, c.baseType, len, base.data());
      checkFinite(base.data(), len, c.offset + start, "base", size_t(-1));
      for (size_t t = 0; t < T; t++) {
        float* x = tau.data() + t * kBlockElems;
        toF32(c.experts[t] + start * dtypeSize(c.expertTypes[t]), c.expertTypes[t], len, x);
        checkFinite(x, len, c.offset + start, "expert", t);
        for (size_t i = 0; i < len; i++) x[i] -= base[i];
        uint32_t* lt = local.data() + t * kLowBins;
        const uint32_t want = uint32_t(prefix[t]);
        for (size_t i = 0; i < len; i++) {
          uint32_t u = absBits(x[i]);
          if ((u >> 16) == want) lt[u & 0xffffu]++;
        }
      }
      // Sums in task order with dropped entries as 0, exactly as electedSign
      // does; sum drops and keep keeps the tasks inside their bins. Branch-free
      // (v·0 = ±0 leaves a sum unchanged): the conditions are data-random.
      // Task-major loops over contiguous entries, so they vectorise.
      for (size_t i = 0; i < len; i++) sumA[i] = keepA[i] = 0, nuncA[i] = uncA[i] = 0;
      for (size_t t = 0; t < T; t++) {
        const float* x = tau.data() + t * kBlockElems;
        const uint32_t p = uint32_t(prefix[t]);
        for (size_t i = 0; i < len; i++) {
          uint32_t h = absBits(x[i]) >> 16;
          uint32_t in = h == p, above = h > p;
          sumA[i] += double(x[i]) * double(above);
          keepA[i] += double(x[i]) * double(above | in);
          nuncA[i] += in;
          uncA[i] = in ? uint32_t(t) : uncA[i];
        }
      }
      // Entries with every task outside its bin: their elected sign is known.
      for (size_t i = 0; i < len; i++) {
        const double sum = sumA[i];
        lbase += int64_t(nuncA[i] == 0) * ((sum > 0) - (sum < 0));
      }
      for (size_t i = 0; i < len; i++) {
        const uint32_t nunc = nuncA[i];
        if (nunc == 0) continue;
        const double sum = sumA[i], keep = keepA[i];
        const size_t unc = uncA[i];
        if (nunc == 1) {
          int sDrop = (sum > 0) - (sum < 0), sKeep = (keep > 0) - (keep < 0);
          lbase += sDrop;
          diff[unc * kLowBins + (absBits(tau[unc * kBlockElems + i]) & 0xffffu)] += sKeep - sDrop;
        } else if (lmulti.size() / T < cap) {
          for (size_t t = 0; t < T; t++) lmulti.push_back(tau[t * kBlockElems + i]);
        } else {
          lover = true;
        }
      }
    }
    std::lock_guard<std::mutex> lock(m);
    for (size_t j = 0; j < T * kLowBins; j++) {
      if (local[j]) hist[j] += double(local[j]);
      if (diff[j]) signDiff[j] += double(diff[j]);
    }
    signBase += lbase;
    if (lover || multi.size() / T + lmulti.size() / T > cap) overflow = true;
    else multi.insert(multi.end(), lmulti.begin(), lmulti.end());
  });
  r.nums["signBase"] = double(signBase);
  r.nums["overflow"] = overflow ? 1 : 0;
  auto& out = r.bufs["multi"];
  out.resize(multi.size() * sizeof(float));
  if (!multi.empty()) std::memcpy(out.data(), multi.data(), out.size());
}

static void magnitudeHistOp(const OpArgs& a, OpResult& r) {
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
  if (level == 1 && a.has("signDiff")) return fusedSigns(a, c, hist, prefix, r);
  const size_t baseSize = dtypeSize(c.baseType);
  const size_t blocks = (c.n + kBlockElems - 1) / kBlockElems;
  std::mutex m;
  parallelFor(blocks, histGrain(blocks), [&](size_t b0, size_t b1) {
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

// Op "magnitude_small": a whole small tensor in one chunk + k → thresholds
// (float32 bits of the k-th largest |τt| per expert, by selection in memory)
// and signSum (the majority-sign reduction with those thresholds): the two
// histogram passes and the sign pass at once, without T × 65536 histograms.
static void magnitudeSmallOp(const OpArgs& a, OpResult& r) {
  ElementwiseChunk c = parseChunk(a);
  const size_t T = c.experts.size(), n = c.n;
  const double kd = a.num("k");
  if (c.offset != 0 || n == 0 || !(kd >= 1 && kd <= double(n))) throw Error("magnitude_small: needs a whole tensor and 1 ≤ k ≤ n");
  const size_t k = size_t(kd);
  std::vector<float> base(n), tau(T * n);
  toF32(c.base, c.baseType, n, base.data());
  checkFinite(base.data(), n, 0, "base", size_t(-1));
  std::vector<uint32_t> bits(n);
  auto& thr = r.numLists["thresholds"];
  for (size_t t = 0; t < T; t++) {
    float* x = tau.data() + t * n;
    toF32(c.experts[t], c.expertTypes[t], n, x);
    checkFinite(x, n, 0, "expert", t);
    for (size_t i = 0; i < n; i++) bits[i] = absBits(x[i] -= base[i]);
    std::nth_element(bits.begin(), bits.begin() + (k - 1), bits.end(), std::greater<uint32_t>());
    thr.push_back(double(bits[k - 1]));
  }
  int64_t signSum = 0;
  for (size_t i = 0; i < n; i++) {
    double s = 0;
    for (size_t t = 0; t < T; t++) {
      float v = tau[t * n + i];
      if (absBits(v) >= uint32_t(thr[t])) s += v;
    }
    signSum += (s > 0) - (s < 0);
  }
  r.nums["signSum"] = double(signSum);
}

TM_REGISTER_OP("magnitude_hist", magnitudeHistOp);
TM_REGISTER_OP("magnitude_small", magnitudeSmallOp);
TM_REGISTER_OP("magnitude_pick", magnitudePickOp);

}  // namespace taskmerge
