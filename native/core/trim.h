// Task-vector trimming and TIES sign election, shared by the ties, dare,
// consensus and tall kernels so every method elects signs the same way.
//
// Trim modes (op arguments):
//   trim: "none"                          τ̂ = τ
//   trim: "magnitude", thresholds: [..]   τ̂ = τ where |τ| ≥ threshold_t (float32 bits of
//                                          |τ| given per task), else 0    (TIES)
//   trim: "dare", density, seed, key      τ̂ = τ/density where u(seed,key,t,i) < density,
//                                          else 0                          (DARE)
//   trim: "bernoulli", densities: [..],   τ̂ = τ where u(seed,key,t,i) < density_t, else 0;
//         seed, key                        density_t ≥ 1 keeps all (mergekit's DARE mask:
//                                          its rescale is the caller's, see kernels/mergekit.cpp)
//   trim: "magnitude_cut", thresholds,    τ̂ = τ where |τ| > threshold_t, or |τ| = threshold_t
//         cuts: [..]                       at a tensor index < cut_t (exactly k kept, the
//                                          threshold's ties by index: mergekit's rule)
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "counter_rng.h"
#include "elementwise.h"
#include "op.h"

namespace taskmerge {

inline uint32_t absBits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u & 0x7fffffffu;
}

// dst[i] = τ[i] where |τ[i]| ≥ the threshold (float32 bits of |τ|), else +0.
void trimMagnitude(const float* tau, size_t n, uint32_t threshold, float* dst);

struct Trim {
  enum class Mode { None, Magnitude, Dare, Bernoulli, MagnitudeCut };
  Mode mode = Mode::None;
  std::vector<uint32_t> thr;  // Magnitude, MagnitudeCut: per task
  double density = 1;         // Dare
  std::vector<CounterRng> rng;
  std::vector<double> densities;  // Bernoulli: per task
  std::vector<double> cuts;       // MagnitudeCut: per task

  static std::vector<uint32_t> parseThresholds(const OpArgs& a, size_t T) {
    std::vector<uint32_t> out;
    const auto& th = a.numList("thresholds");
    if (th.size() != T) throw Error("trim: one threshold per expert");
    for (double v : th) {
      if (!(v >= 0 && v <= double(0x7f800000u))) throw Error("trim: threshold bits out of range");
      out.push_back(uint32_t(v));
    }
    return out;
  }

  static std::vector<CounterRng> parseRng(const OpArgs& a, size_t T) {
    double seed = a.num("seed");
    if (!(seed >= 0 && seed <= 9007199254740992.0) || seed != std::floor(seed))
      throw Error("dare: seed must be a non-negative integer");
    uint64_t kh = fnv1a64(a.str("key"));
    std::vector<CounterRng> out;
    for (size_t t = 0; t < T; t++) out.emplace_back(uint64_t(seed), kh, uint64_t(t));
    return out;
  }

  static Trim parse(const OpArgs& a, size_t T) {
    Trim tr;
    std::string m = a.str("trim", "none");
    if (m == "none") return tr;
    if (m == "magnitude") {
      tr.mode = Mode::Magnitude;
      const auto& th = a.numList("thresholds");
      if (th.size() != T) throw Error("trim: one threshold per expert");
      for (double v : th) {
        if (!(v >= 0 && v <= double(0x7f800000u))) throw Error("trim: threshold bits out of range");
        tr.thr.push_back(uint32_t(v));
      }
      return tr;
    }
    if (m == "dare") {
      tr.mode = Mode::Dare;
      tr.density = a.num("density");
      if (!(tr.density > 0 && tr.density <= 1)) throw Error("dare: density must be in (0, 1]");
      double seed = a.num("seed");
      if (!(seed >= 0 && seed <= 9007199254740992.0) || seed != std::floor(seed))
        throw Error("dare: seed must be a non-negative integer");
      uint64_t kh = fnv1a64(a.str("key"));
      for (size_t t = 0; t < T; t++) tr.rng.emplace_back(uint64_t(seed), kh, uint64_t(t));
      return tr;
    }
    if (m == "bernoulli") {
      tr.mode = Mode::Bernoulli;
      tr.densities = a.numList("densities");
      if (tr.densities.size() != T) throw Error("trim: one density per expert");
      for (double d : tr.densities)
        if (!(d >= 0)) throw Error("bernoulli: densities must be ≥ 0");
      tr.rng = parseRng(a, T);
      return tr;
    }
    if (m == "magnitude_cut") {
      tr.mode = Mode::MagnitudeCut;
      tr.thr = parseThresholds(a, T);
      tr.cuts = a.numList("cuts");
      if (tr.cuts.size() != T) throw Error("trim: one cut per expert");
      return tr;
    }
    throw Error("unknown trim mode '" + m + "'");
  }

  // dst[0..n) = τ̂ of task t for the elements at tensor indices index..index+n.
  void apply(size_t t, const float* tau, size_t n, size_t index, float* dst) const {
    if (mode == Mode::Magnitude) {
      trimMagnitude(tau, n, thr[t], dst);
    } else if (mode == Mode::Bernoulli) {
      const CounterRng& r = rng[t];
      if (densities[t] >= 1) {
        std::memcpy(dst, tau, n * sizeof(float));
        return;
      }
      const uint64_t bound = uniformBelowBound(densities[t]);
      for (size_t i = 0; i < n; i++) dst[i] = r.bits53(index + i) < bound ? tau[i] : 0.0f;
    } else if (mode == Mode::MagnitudeCut) {
      const uint32_t th = thr[t];
      const double cut = cuts[t];
      for (size_t i = 0; i < n; i++) {
        const uint32_t u = absBits(tau[i]);
        dst[i] = (u > th || (u == th && double(index + i) < cut)) ? tau[i] : 0.0f;
      }
    } else if (mode == Mode::Dare) {
      // Two branch-free loops: the keep flags (scalar 64-bit hashing), then a
      // select the compiler can vectorise; a 50% random branch would mispredict.
      const CounterRng& r = rng[t];
      const uint64_t bound = uniformBelowBound(density);
      thread_local std::vector<uint8_t> keep;
      keep.resize(n);
      uint8_t* k = keep.data();  // a plain pointer: no thread-local lookup per element
      for (size_t i = 0; i < n; i++) k[i] = r.bits53(index + i) < bound;
      const double d = density;
      for (size_t i = 0; i < n; i++) {
        float q = float(double(tau[i]) / d);
        uint32_t b;
        std::memcpy(&b, &q, 4);
        b &= 0u - uint32_t(k[i]);  // +0.0 where dropped
        std::memcpy(dst + i, &b, 4);
      }
    } else {
      std::memcpy(dst, tau, n * sizeof(float));
    }
  }

  // The trimmed task vectors of a block, in per-thread scratch (or τ itself when untrimmed).
  const float* const* block(const Block& b) const {
    if (mode == Mode::None) return b.tau;
    thread_local std::vector<float> scratch;
    thread_local std::vector<const float*> ptrs;
    scratch.resize(b.T * kBlockElems);
    ptrs.resize(b.T);
    for (size_t t = 0; t < b.T; t++) {
      float* d = scratch.data() + t * kBlockElems;
      apply(t, b.tau[t], b.n, b.index, d);
      ptrs[t] = d;
    }
    return ptrs.data();
  }
};

// Elected sign of entry i: sign(Σt v[t][i]), summed in double so that it does
// not depend on rounding order; 0 when the sum is exactly 0.
inline int electedSign(const float* const* v, size_t T, size_t i) {
  double s = 0;
  for (size_t t = 0; t < T; t++) s += v[t][i];
  return (s > 0) - (s < 0);
}

// The TIES aggregate of a block: agg[i] = the sum (or mean over their count,
// at least 1) of the v[t][i] whose sign equals s_i, the elected sign
// sign(Σt v[t][i]) (maj where it is 0). Sums run over t in order, in double.
void tiesAggregate(const float* const* v, size_t T, size_t n, int maj, bool mean, double* agg);

// out[i] = float(θ0[i] + λ·agg[i]) in double: the final step of the TIES merges.
void addScaled(const float* base, const double* agg, double lambda, size_t n, float* out);

// c ? a : b through bit masks: for data-random conditions a branch would mispredict.
inline float selectBits(bool c, float a, float b) {
  uint32_t ua, ub;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  const uint32_t m = 0u - uint32_t(c);
  const uint32_t r = (ua & m) | (ub & ~m);
  float f;
  std::memcpy(&f, &r, 4);
  return f;
}

// TALL mask bit: |τt| > λ · |τMTL − τt|, compared in double.
inline bool tallBit(float tau, float mtl, double lambda) {
  return std::fabs(double(tau)) > lambda * std::fabs(double(mtl) - double(tau));
}

// Majority sign argument of the ties-family ops: ±1 (0 is taken as +1).
inline int majorityArg(const OpArgs& a) { return a.num("majority", 1) < 0 ? -1 : 1; }

}  // namespace taskmerge
