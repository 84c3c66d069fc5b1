// The per-element maths of the CUDA kernels, as __host__ __device__ functions
// so that the same source compiles into the kernels and into the host check
// program (tests/check_host.cpp), which compares it bit for bit with the CPU
// code it mirrors (native/core/dtype.cpp, trim.h, trim.cpp,
// linear_combine.cpp, tall_mask.h). Each function names what it mirrors; the
// operations and their order are the CPU's, in float32 / float64 with round to
// nearest even and (as the build uses -fmad=false) no fused multiply-add.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/counter_rng_core.h"

#if defined(__CUDACC__)
#define TM_HD __host__ __device__ __forceinline__
#else
#define TM_HD inline
#endif

namespace tmcuda {

enum : int { F64 = 0, F32 = 1, F16 = 2, BF16 = 3 };  // tm_dtype / taskmerge::DType

TM_HD int dtypeSize(int t) { return t == F64 ? 8 : t == F32 ? 4 : 2; }

TM_HD uint32_t bitsOf(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
TM_HD float floatOf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
TM_HD uint64_t bitsOf(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

// ---- dtype conversion (dtype.cpp) ------------------------------------------

// halfToFloat
TM_HD float halfToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  if (exp == 0x1f) return floatOf(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    float v = float(man) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  return floatOf(sign | ((exp + 112) << 23) | (man << 13));
}

// halfMagnitude: |d| finite and ≥ 0 to binary16 bits, in double (frexp,
// ldexp and rint are exact, so host and device agree).
TM_HD uint16_t halfMagnitude(double a) {
  if (a >= 65520.0) return 0x7c00;
  if (a < 6.103515625e-05) return uint16_t(std::rint(a * 16777216.0));
  int e;
  double m = std::frexp(a, &e);
  double q = std::rint(std::ldexp(m, 11));
  if (q >= 2048.0) { q /= 2; e += 1; }
  int biased = e - 1 + 15;
  if (biased >= 31) return 0x7c00;
  return uint16_t((biased << 10) | (uint32_t(q) - 1024));
}

// toHalfImpl (floatToHalf, doubleToHalf)
TM_HD uint16_t doubleToHalf(double d) {
  uint16_t sign = std::signbit(d) ? 0x8000 : 0;
  if (std::isnan(d)) return sign | 0x7e00;
  double a = std::fabs(d);
  if (std::isinf(a)) return sign | 0x7c00;
  return sign | halfMagnitude(a);
}
TM_HD uint16_t floatToHalf(float f) { return doubleToHalf(double(f)); }

TM_HD float bf16ToFloat(uint16_t b) { return floatOf(uint32_t(b) << 16); }

// f32ToBf16 / floatToBf16 (the same bits: ties to even, NaN quieted)
TM_HD uint16_t floatToBf16(float f) {
  const uint32_t u = bitsOf(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// doubleToBf16: rounded from double directly (no double rounding through float)
TM_HD uint16_t doubleToBf16(double d) {
  if (std::isnan(d)) return std::signbit(d) ? 0xffc0 : 0x7fc0;
  uint16_t sign = (bitsOf(d) >> 63) ? 0x8000 : 0;
  double a = std::fabs(d);
  if (std::isinf(a)) return sign | 0x7f80;
  if (a == 0) return sign;
  int e;
  double m = std::frexp(a, &e);
  int exp = e - 1;
  if (exp >= -126) {
    double q = std::rint(std::ldexp(m, 8));
    if (q >= 256.0) { q /= 2; exp += 1; }
    if (exp > 127) return sign | 0x7f80;
    return sign | uint16_t(((exp + 127) << 7) | (uint32_t(q) - 128));
  }
  return sign | uint16_t(std::rint(std::ldexp(a, 133)));
}

// Element i of a buffer of dtype t, as toF32 / toF64 read it.
TM_HD float loadF32(const void* p, int t, uint64_t i) {
  switch (t) {
    case F32: return static_cast<const float*>(p)[i];
    case F64: return float(static_cast<const double*>(p)[i]);
    case F16: return halfToFloat(static_cast<const uint16_t*>(p)[i]);
    default: return bf16ToFloat(static_cast<const uint16_t*>(p)[i]);
  }
}
TM_HD double loadF64(const void* p, int t, uint64_t i) {
  switch (t) {
    case F64: return static_cast<const double*>(p)[i];
    case F32: return double(static_cast<const float*>(p)[i]);
    case F16: return double(halfToFloat(static_cast<const uint16_t*>(p)[i]));
    default: return double(bf16ToFloat(static_cast<const uint16_t*>(p)[i]));
  }
}
// fromF32 / fromF64
TM_HD void storeF32(void* p, int t, uint64_t i, float v) {
  switch (t) {
    case F32: static_cast<float*>(p)[i] = v; return;
    case F64: static_cast<double*>(p)[i] = double(v); return;
    case F16: static_cast<uint16_t*>(p)[i] = floatToHalf(v); return;
    default: static_cast<uint16_t*>(p)[i] = floatToBf16(v); return;
  }
}
TM_HD void storeF64(void* p, int t, uint64_t i, double v) {
  switch (t) {
    case F64: static_cast<double*>(p)[i] = v; return;
    case F32: static_cast<float*>(p)[i] = float(v); return;
    case F16: static_cast<uint16_t*>(p)[i] = doubleToHalf(v); return;
    default: static_cast<uint16_t*>(p)[i] = doubleToBf16(v); return;
  }
}

// NaN or ±Inf (the CPU's exponent-bits test).
TM_HD bool nonFinite(float x) { return (bitsOf(x) & 0x7f800000u) == 0x7f800000u; }

// ---- counter-based random numbers ----------------------------------------------
// The CPU's own code (native/core/counter_rng_core.h, __host__ __device__ under nvcc).

using taskmerge::kGolden;
using taskmerge::mix64;
using taskmerge::rngBits53;
using taskmerge::rngStream;
using taskmerge::splitmix64;
using taskmerge::uniformBelowBound;

// ---- trims (trim.h, Trim::apply) -----------------------------------------------

enum : int { TRIM_NONE = 0, TRIM_MAGNITUDE = 1, TRIM_DARE = 2, TRIM_BERNOULLI = 3, TRIM_MAGNITUDE_CUT = 4 };

// Per-task trim parameters, precomputed on the host (streams, bounds).
struct TaskTrim {
  uint32_t threshold;  // MAGNITUDE, MAGNITUDE_CUT
  double cut;          // MAGNITUDE_CUT
  uint64_t stream;     // DARE, BERNOULLI
  uint64_t bound;      // DARE, BERNOULLI: ceil(p·2⁵³)
  int keepAll;         // BERNOULLI: density ≥ 1
};

// τ̂ of one entry at tensor index `index`.
TM_HD float trimEntry(int mode, const TaskTrim& tt, double density, float tau, uint64_t index) {
  switch (mode) {
    case TRIM_MAGNITUDE: {
      uint32_t u = bitsOf(tau);
      u &= 0u - uint32_t((u & 0x7fffffffu) >= tt.threshold);
      return floatOf(u);
    }
    case TRIM_DARE: {
      const bool keep = rngBits53(tt.stream, index) < tt.bound;
      uint32_t b = bitsOf(float(double(tau) / density));
      b &= 0u - uint32_t(keep);
      return floatOf(b);
    }
    case TRIM_BERNOULLI:
      if (tt.keepAll) return tau;
      return rngBits53(tt.stream, index) < tt.bound ? tau : 0.0f;
    case TRIM_MAGNITUDE_CUT: {
      const uint32_t u = bitsOf(tau) & 0x7fffffffu;
      return (u > tt.threshold || (u == tt.threshold && double(index) < tt.cut)) ? tau : 0.0f;
    }
    default: return tau;
  }
}

// ---- combining task vectors -------------------------------------------------------
// `Tau` is any callable tau(t) → float32 τ̂t of the entry, so kernels recompute
// τ from the raw inputs instead of holding T values per thread.

// linearCombine: float(double(θ0) + Σt ct·double(τt)), t in order.
template <class Tau>
TM_HD float linearCombine(float base, const double* coeffs, int T, Tau tau) {
  double acc = 0;
  for (int t = 0; t < T; t++) acc += coeffs[t] * double(tau(t));
  return float(double(base) + acc);
}

// electedSign: sign(Σt double(v_t)), 0 when the sum is 0.
template <class Tau>
TM_HD int electedSign(int T, Tau tau) {
  double s = 0;
  for (int t = 0; t < T; t++) s += double(tau(t));
  return (s > 0) - (s < 0);
}

// tiesAggregate for one entry (the branch-free form of trim.cpp, same values).
template <class Tau>
TM_HD double tiesAggregate(int T, int maj, bool mean, Tau tau) {
  double sg = 0;
  for (int t = 0; t < T; t++) sg += double(tau(t));
  const double e = double(sg > 0) - double(sg < 0);
  sg = e + double(maj) * double(e == 0);
  double acc = 0, cnt = 0;
  for (int t = 0; t < T; t++) {
    const double p = double(tau(t)) * sg;
    acc += p > 0.0 ? p : 0.0;
    cnt += double(p > 0.0);
  }
  double agg = acc * sg + 0.0;
  if (mean) agg /= cnt + double(cnt == 0);
  return agg;
}

// addScaled / tiesMerged: float(double(θ0) + λ·agg).
TM_HD float addScaled(float base, double agg, double lambda) { return float(double(base) + lambda * agg); }

// tallSumTasks: Σt double(τt), t in order.
template <class Tau>
TM_HD double sumTasks(int T, Tau tau) {
  double acc = 0;
  for (int t = 0; t < T; t++) acc += double(tau(t));
  return acc;
}

// tallBit: |τt| > λ·|τMTL − τt|, compared in double.
TM_HD bool tallBit(float tau, float mtl, double lambda) {
  const double x = double(tau);
  return std::fabs(x) > lambda * std::fabs(double(mtl) - x);
}

// selectBits(c, a, b)
TM_HD float selectBits(bool c, float a, float b) {
  const uint32_t m = 0u - uint32_t(c);
  return floatOf((bitsOf(a) & m) | (bitsOf(b) & ~m));
}


// ---- mergekit's generalized task arithmetic and breadcrumbs ---------------------
// (backend/cpu/merge_kernels.cpp mergekitGta, breadcrumbs_kernels.cpp)

// absBits (trim.h): the float32 bits of |x|.
TM_HD uint32_t absBits(float x) { return bitsOf(x) & 0x7fffffffu; }

// The per-entry mix of mergekitGta and breadcrumbsMerge over dt = d(t)
// (double, t in order). consensus: m = (Σ dt ≥ 0 ? +1 : −1), mixed = the sum
// of the dt of sign m, divided when normalize by the sum of their wt (1 where
// that is 0); else mixed = Σ dt, divided when normalize by `divisor`.
template <class D>
TM_HD double mixTasks(int T, D d, const double* w, bool consensus, bool normalize, double divisor) {
  double total = 0;
  for (int t = 0; t < T; t++) total += d(t);
  double mixed = total, div = divisor;
  if (consensus) {
    const int m = total >= 0 ? 1 : -1;
    mixed = 0;
    div = 0;
    for (int t = 0; t < T; t++) {
      const double x = d(t);
      const int sg = (x > 0) - (x < 0);
      if (sg == m) {
        mixed += x;
        div += w[t];
      }
    }
    if (div == 0) div = 1;
  }
  if (normalize) mixed /= div;
  return mixed;
}

// mergekitGta: dt = wt·(st·τ̂t), out = float(baseScale·θ0 + λ·mixed).
TM_HD double gtaTask(double w, double s, float hat) { return w * (s * double(hat)); }
TM_HD float gtaMerged(float base, double baseScale, double lambda, double mixed) {
  return float(baseScale * double(base) + lambda * mixed);
}

// breadcrumbs_kernels.cpp inSet / kept: entry `index` with |τ| bits u is in the
// top set (bits, cut) when u > bits, or u == bits at an index below cut; a
// task keeps the entries of its keep set that are not in its drop set.
TM_HD bool inTopSet(uint32_t u, uint64_t index, uint32_t bits, double cut) { return u > bits || (u == bits && double(index) < cut); }
TM_HD bool breadcrumbsKept(float tau, uint64_t index, uint32_t dropBits, double dropCut, uint32_t keepBits, double keepCut) {
  const uint32_t u = absBits(tau);
  return inTopSet(u, index, keepBits, keepCut) && !inTopSet(u, index, dropBits, dropCut);
}
// breadcrumbsMerge: dt = kept ? wt·(st·τt) : 0, out = float(θ0 + λ·mixed).
TM_HD double breadcrumbsTask(bool kept, double w, double s, float tau) { return kept ? w * (s * double(tau)) : 0.0; }
TM_HD float breadcrumbsMerged(float base, double lambda, double mixed) { return float(double(base) + lambda * mixed); }

// ---- L1 norms of a chunk (trimL1, breadcrumbsL1) ----------------------------------
// The CPU sums each block of kSumBlock entries (from the chunk's start) in
// index order from 0, then adds the block sums to the result in block order.

constexpr uint64_t kSumBlock = 4096;  // native/core/elementwise.h, kBlockElems

// One block's sums: a = Σ|τ(i)|, k = Σ|kept(i, τ(i))| (kept: τ̂ for trim_l1,
// τ or +0 for breadcrumbs_l1, where adding |+0| leaves the sum as the CPU's
// skipped entry does).
template <class Tau, class Kept>
TM_HD void l1Block(uint64_t n, Tau tau, Kept kept, double& a, double& k) {
  a = k = 0;
  for (uint64_t i = 0; i < n; i++) {
    const float x = tau(i);
    a += std::fabs(double(x));
    k += std::fabs(double(kept(i, x)));
  }
}
// acc plus the `blocks` block sums p[b·stride], in block order.
TM_HD double addBlockSums(double acc, const double* p, uint64_t blocks, uint64_t stride) {
  for (uint64_t b = 0; b < blocks; b++) acc += p[b * stride];
  return acc;
}

// ---- magnitude_tie_cut (merge_kernels.cpp magnitudeTieCut) ------------------------
// From the per-block counts of entries at the threshold (counts[b·stride]):
// count = their total; the need-th of them, in index order, lies in the first
// block where the running count reaches need, at rank need − (those before)
// inside it. Returns that block, or −1 when need is not in 1..count (the CPU
// then reports at = 0).
TM_HD int64_t tieCutBlock(const uint32_t* counts, uint64_t blocks, uint64_t stride, double need, double& count, double& rank) {
  count = 0;
  int64_t found = -1;
  for (uint64_t b = 0; b < blocks; b++) {
    const double before = count;
    count += double(counts[b * stride]);
    if (found < 0 && before < need && need <= count && need == std::floor(need)) {
      found = int64_t(b);
      rank = need - before;
    }
  }
  return found;
}

// The position in a block (0-based) of its rank-th entry whose |τ| has the
// bits thr, in index order, or −1 (tau(q): τ of the block's entry q).
template <class Tau>
TM_HD int64_t nthTie(uint64_t n, Tau tau, uint32_t thr, double rank) {
  double seen = 0;
  for (uint64_t q = 0; q < n; q++)
    if (absBits(tau(q)) == thr && (seen += 1) == rank) return int64_t(q);
  return -1;
}

// ---- TIES selection: the small in-memory pass and the window pass -----------------
// (backend/cpu/select_kernels.cpp magnitudeSmall, classifyWindow, tiesWindow)

TM_HD int signOf(double v) { return (v > 0) - (v < 0); }

// magnitudeSmall's elected sign: sign(Σ of the τt with |τt| ≥ thresholds[t]), t in order.
template <class Tau>
TM_HD int thresholdSign(int T, Tau tau, const uint32_t* thr) {
  double s = 0;
  for (int t = 0; t < T; t++) {
    const float v = tau(t);
    if (absBits(v) >= thr[t]) s += v;
  }
  return (s > 0) - (s < 0);
}

// classifyWindow for one entry: sum over the tasks at or above their window
// (|τ| bits ≥ hi), keep over those at or above or inside it ([lo, hi)), how
// many are inside (nin) and the last of them.
struct WindowEntry {
  double sum, keep;
  int32_t nin, last;
};
template <class Tau>
TM_HD WindowEntry windowEntry(int T, Tau tau, const uint32_t* lo, const uint32_t* hi) {
  WindowEntry e{0, 0, 0, 0};
  for (int t = 0; t < T; t++) {
    const float x = tau(t);
    const uint32_t u = absBits(x);
    const int32_t a = u >= hi[t], in = (u >= lo[t]) & (u < hi[t]);
    e.sum += double(x) * double(a);
    e.keep += double(x) * double(a | in);
    e.nin += in;
    e.last = in ? t : e.last;
  }
  return e;
}

// The table slot of task t holding bits x (table: T × 16, 0xffffffff = none), or −1.
constexpr int kWindowTable = 16;
TM_HD int tableSlot(const uint32_t* row, uint32_t x) {
  for (int j = 0; j < kWindowTable; j++)
    if (row[j] == x) return j;
  return -1;
}

}  // namespace tmcuda
