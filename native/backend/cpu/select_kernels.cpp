// The CPU backend's TIES / top-k selection kernels: magnitude histograms
// (two 16-bit passes over the float32 bits of |τ|, with the fused
// majority-sign reduction), the pick of the k-th largest from them, the
// in-memory selection of small tensors, the sample pass and the window pass.
// The algorithms are described where their ops are (native/kernels/
// magnitude_select.cpp, ties_window.cpp).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>

#include "../../core/parallel.h"
#include "../../core/simd.h"
#include "../../core/trim.h"
#include "../status.h"
#include "cpu_kernels.h"
#include "work_size.h"

namespace taskmerge {
namespace cpu {

using backend::guarded;

constexpr size_t kHighBins = 1u << 15;  // sign bit of |τ| is 0
constexpr size_t kLowBins = 1u << 16;

// One range per thread: each range zeroes and merges its own T × bins counts.
static size_t histGrain(size_t blocks) { return (blocks + threadCount() - 1) / threadCount(); }

static const uint8_t* expertAt(const tm_chunk& c, size_t t, size_t start) {
  return static_cast<const uint8_t*>(c.experts[t]) + start * dtypeSize(dtypeOf(c.expert_dtypes[t]));
}

// Level-1 histogram plus the majority-sign reduction (magnitude_select.cpp).
static void fusedSigns(const tm_chunk& c, const tm_hist_args& a, tm_hist_result& r) {
  const size_t T = c.T;
  double* hist = a.hist;
  double* signDiff = a.sign_diff;
  const int64_t* prefix = a.prefix;
  const size_t cap = a.multi_cap;
  const DType baseType = dtypeOf(c.base_dtype);
  const size_t baseSize = dtypeSize(baseType);
  const uint8_t* baseBytes = static_cast<const uint8_t*>(c.base);
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
      toF32(baseBytes + start * baseSize, baseType, len, base.data());
      checkFinite(base.data(), len, c.offset + start, "base", size_t(-1));
      for (size_t t = 0; t < T; t++) {
        float* x = tau.data() + t * kBlockElems;
        toF32(expertAt(c, t, start), dtypeOf(c.expert_dtypes[t]), len, x);
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
  r.sign_base = signBase;
  r.overflow = overflow ? 1 : 0;
  r.multi_count = multi.size() / T;
  if (!multi.empty()) std::memcpy(a.multi, multi.data(), multi.size() * sizeof(float));
}

tm_status magnitudeHist(tm_backend*, const tm_chunk* cp, const tm_hist_args* a, tm_hist_result* r, tm_work, tm_error* err) {
  return guarded(err, [&] {
    const tm_chunk& c = *cp;
    const size_t T = c.T;
    *r = tm_hist_result{0, 0, 0};
    if (a->level == 1 && a->sign_diff) return fusedSigns(c, *a, *r);
    const int level = a->level;
    const size_t bins = level == 0 ? kHighBins : kLowBins;
    double* hist = a->hist;
    const DType baseType = dtypeOf(c.base_dtype);
    const size_t baseSize = dtypeSize(baseType);
    const uint8_t* baseBytes = static_cast<const uint8_t*>(c.base);
    const size_t blocks = (c.n + kBlockElems - 1) / kBlockElems;
    std::mutex m;
    parallelFor(blocks, histGrain(blocks), [&](size_t b0, size_t b1) {
      // Range-local 32-bit counts, added to the shared float64 counts once.
      std::vector<uint32_t> local(T * bins, 0);
      std::vector<float> base(kBlockElems), tau(kBlockElems);
      for (size_t b = b0; b < b1; b++) {
        size_t start = b * kBlockElems, len = std::min(kBlockElems, c.n - start);
        toF32(baseBytes + start * baseSize, baseType, len, base.data());
        checkFinite(base.data(), len, c.offset + start, "base", size_t(-1));
        for (size_t t = 0; t < T; t++) {
          const int64_t prefix = level == 1 ? a->prefix[t] : 0;
          if (prefix < 0) continue;
          toF32(expertAt(c, t, start), dtypeOf(c.expert_dtypes[t]), len, tau.data());
          checkFinite(tau.data(), len, c.offset + start, "expert", t);
          uint32_t* lt = local.data() + t * bins;
          if (level == 0) {
            for (size_t i = 0; i < len; i++) lt[absBits(tau[i] - base[i]) >> 16]++;
          } else {
            const uint32_t want = uint32_t(prefix);
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
  });
}

tm_status magnitudePick(tm_backend*, const double* hist, size_t bins, size_t T, const double* ks, double* bin, double* rank, tm_error* err) {
  return guarded(err, [&] {
    for (size_t t = 0; t < T; t++) {
      const double* ht = hist + t * bins;
      const double k = ks[t];
      double above = 0;
      size_t b = bins;
      while (b > 0 && above + ht[b - 1] < k) above += ht[--b];
      if (b == 0) throw Error("magnitude_pick: k exceeds the number of entries of expert " + std::to_string(t));
      bin[t] = double(b - 1);
      rank[t] = k - above;
    }
  });
}

tm_status magnitudeSmall(tm_backend*, const tm_chunk* cp, size_t k, uint32_t* thr, int64_t* signSumOut, tm_work, tm_error* err) {
  return guarded(err, [&] {
    const tm_chunk& c = *cp;
    const size_t T = c.T, n = c.n;
    std::vector<float> base(n), tau(T * n);
    toF32(c.base, dtypeOf(c.base_dtype), n, base.data());
    checkFinite(base.data(), n, 0, "base", size_t(-1));
    std::vector<uint32_t> bits(n);
    for (size_t t = 0; t < T; t++) {
      float* x = tau.data() + t * n;
      toF32(c.experts[t], dtypeOf(c.expert_dtypes[t]), n, x);
      checkFinite(x, n, 0, "expert", t);
      for (size_t i = 0; i < n; i++) bits[i] = absBits(x[i] -= base[i]);
      std::nth_element(bits.begin(), bits.begin() + (k - 1), bits.end(), std::greater<uint32_t>());
      thr[t] = bits[k - 1];
    }
    int64_t signSum = 0;
    for (size_t i = 0; i < n; i++) {
      double s = 0;
      for (size_t t = 0; t < T; t++) {
        float v = tau[t * n + i];
        if (absBits(v) >= thr[t]) s += v;
      }
      signSum += (s > 0) - (s < 0);
    }
    *signSumOut = signSum;
  });
}

tm_status tiesSample(tm_backend*, const tm_chunk* c, uint32_t* out, size_t m, size_t at, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    forEachBlock(*c, work, slabBytes(TM_K_TIES_SAMPLE, c->T), [&](Block& b) {
      for (size_t t = 0; t < b.T; t++) {
        uint32_t* dst = out + t * m + at + (b.index - c->offset);
        for (size_t i = 0; i < b.n; i++) dst[i] = absBits(b.tau[t][i]);
      }
    });
  });
}

// Per block: which side of its window each |τt| lies on, and the sums the
// elected signs need (task order, dropped entries as ±0, as electedSign).
TM_SIMD static void classifyWindow(const float* const* tau, size_t T, size_t n, const uint32_t* lo, const uint32_t* hi,
                                   double* sum, double* keep, int32_t* nin, int32_t* last, uint64_t* above, uint64_t* atHi) {
  for (size_t i = 0; i < n; i++) sum[i] = keep[i] = 0, nin[i] = last[i] = 0;
  for (size_t t = 0; t < T; t++) {
    const float* x = tau[t];
    const uint32_t l = lo[t], h = hi[t];
    const int32_t tt = int32_t(t);
    int32_t count = 0, equal = 0;
    for (size_t i = 0; i < n; i++) {
      uint32_t u;
      std::memcpy(&u, x + i, 4);
      u &= 0x7fffffffu;
      const int32_t a = u >= h, in = (u >= l) & (u < h);
      equal += u == h;
      sum[i] += double(x[i]) * double(a);
      keep[i] += double(x[i]) * double(a | in);
      nin[i] += in;
      last[i] = in ? tt : last[i];
      count += a;
    }
    above[t] += uint64_t(count);
    atHi[t] += uint64_t(equal);
  }
}

// Σ of the elected signs of the entries with no task inside its window.
TM_SIMD static int64_t decidedSigns(const double* sum, const int32_t* nin, size_t n) {
  int64_t s = 0;
  for (size_t i = 0; i < n; i++) {
    const double v = sum[i];
    const int64_t sg = int64_t(v > 0) - int64_t(v < 0);
    s += nin[i] == 0 ? sg : 0;
  }
  return s;
}

static inline int signOf(double v) { return (v > 0) - (v < 0); }

tm_status tiesWindow(tm_backend*, const tm_chunk* cp, const tm_window_args* a, tm_window_result* r, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    const tm_chunk& c = *cp;
    const size_t T = c.T, C = a->capacity, cap = a->multi_cap;
    const uint32_t* lo = a->lo;
    const uint32_t* hi = a->hi;
    const uint32_t* table = a->table;
    std::vector<std::atomic<uint64_t>> above(T), atHi(T);
    std::atomic<int64_t> signBase{0};
    std::atomic<bool> full{false};
    std::mutex mu;
    std::vector<float> multi;
    bool overflow = false;
    forEachBlock(c, work, slabBytes(TM_K_TIES_WINDOW, T), [&](Block& b) {
      Scratch& s = *b.scratch;
      double* sum = s.take<double>(kBlockElems);
      double* keep = s.take<double>(kBlockElems);
      int32_t* nin = s.take<int32_t>(kBlockElems);
      int32_t* last = s.take<int32_t>(kBlockElems);
      uint64_t* ab = s.take<uint64_t>(T);
      uint64_t* eq = s.take<uint64_t>(T);
      uint32_t* bits = s.take<uint32_t>(T * kBlockElems);  // undecided |τ| bits per task (not tabled)
      int8_t* diff = s.take<int8_t>(T * kBlockElems);      // their s_keep − s_drop
      size_t* len = s.take<size_t>(T);
      uint32_t* tc = s.take<uint32_t>(T * kWindowTable);  // tabled values: counts
      int32_t* td = s.take<int32_t>(T * kWindowTable);    // and sign differences
      float* lmulti = s.take<float>(T * kBlockElems);     // entries with several undecided tasks
      size_t nmulti = 0;
      for (size_t t = 0; t < T; t++) ab[t] = eq[t] = 0, len[t] = 0;
      for (size_t j = 0; j < T * kWindowTable; j++) tc[j] = 0, td[j] = 0;
      classifyWindow(b.tau, b.T, b.n, lo, hi, sum, keep, nin, last, ab, eq);
      int64_t base = decidedSigns(sum, nin, b.n);
      // A tabled value is counted in place; any other goes to the list.
      auto record = [&](size_t t, uint32_t x, int d) {
        const uint32_t* row = table + t * kWindowTable;
        for (size_t j = 0; j < kWindowTable; j++)
          if (row[j] == x) {
            tc[t * kWindowTable + j]++;
            td[t * kWindowTable + j] += d;
            return;
          }
        bits[t * kBlockElems + len[t]] = x;
        diff[t * kBlockElems + len[t]] = int8_t(d);
        len[t]++;
      };
      for (size_t i = 0; i < b.n; i++) {
        if (nin[i] == 0) continue;
        if (nin[i] == 1) {
          const size_t u = size_t(last[i]);
          const int sDrop = signOf(sum[i]), sKeep = signOf(keep[i]);
          base += sDrop;
          record(u, absBits(b.tau[u][i]), sKeep - sDrop);
          continue;
        }
        for (size_t t = 0; t < b.T; t++) {
          const uint32_t x = absBits(b.tau[t][i]);
          if (x >= lo[t] && x < hi[t]) record(t, x, 0);
          lmulti[nmulti++] = b.tau[t][i];
        }
      }
      for (size_t j = 0; j < T * kWindowTable; j++) {
        if (tc[j]) __atomic_fetch_add(&a->table_counts[j], uint64_t(tc[j]), __ATOMIC_RELAXED);
        if (td[j]) __atomic_fetch_add(&a->table_diffs[j], int64_t(td[j]), __ATOMIC_RELAXED);
      }
      for (size_t t = 0; t < T; t++) {
        above[t] += ab[t];
        atHi[t] += eq[t];
        const size_t l = len[t];
        if (!l) continue;
        const uint64_t at = __atomic_fetch_add(&a->used[t], uint64_t(l), __ATOMIC_RELAXED);
        if (at + l > C) {
          full = true;
          continue;
        }
        std::memcpy(a->cand + t * C + at, bits + t * kBlockElems, l * 4);
        std::memcpy(a->cand_diff + t * C + at, diff + t * kBlockElems, l);
      }
      signBase += base;
      if (!nmulti) return;
      std::lock_guard<std::mutex> lock(mu);
      if (overflow || (multi.size() + nmulti) / T > cap) overflow = true;
      else multi.insert(multi.end(), lmulti, lmulti + nmulti);
    });
    for (size_t t = 0; t < T; t++) r->above[t] += above[t].load(), r->at_hi[t] += atHi[t].load();
    r->sign_base = signBase.load();
    r->overflow = overflow ? 1 : 0;
    r->full = full ? 1 : 0;
    r->multi_count = overflow ? 0 : multi.size() / T;
    if (!overflow && !multi.empty()) std::memcpy(a->multi, multi.data(), multi.size() * sizeof(float));
  });
}

}  // namespace cpu
}  // namespace taskmerge
