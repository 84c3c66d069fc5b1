// Task-vector trimming and TIES sign election, shared by the ties, dare,
// consensus and tall kernels so every method elects signs the same way.
//
// Trim modes (op arguments, parsed by native/boundary/args.cpp into a tm_trim):
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

// The trim of a tm_trim (native/backend/backend.h), ready for blocks: the
// per-task RNG streams built once per call.
struct Trim {
  tm_trim_mode mode = TM_TRIM_NONE;
  const uint32_t* thr = nullptr;        // Magnitude, MagnitudeCut: per task
  double density = 1;                   // Dare
  std::vector<CounterRng> rng;          // Dare, Bernoulli: per task
  const double* densities = nullptr;    // Bernoulli: per task
  const double* cuts = nullptr;         // MagnitudeCut: per task

  Trim() = default;
  Trim(const tm_trim* t, size_t T) {
    if (!t) return;
    mode = t->mode;
    thr = t->thresholds;
    density = t->density;
    densities = t->densities;
    cuts = t->cuts;
    if (mode == TM_TRIM_DARE || mode == TM_TRIM_BERNOULLI)
      for (size_t i = 0; i < T; i++) rng.emplace_back(t->seed, t->key_hash, uint64_t(i));
  }

  // Scratch bytes block() takes per worker for T experts.
  static constexpr size_t scratchBytesFor(size_t T) {
    return scratchBytes<float>(T * kBlockElems) + scratchBytes<const float*>(T) + scratchBytes<uint8_t>(kBlockElems);
  }

  // dst[0..n) = τ̂ of task t for the elements at tensor indices index..index+n
  // (`keep`: n bytes of scratch for DARE's flags).
  void apply(size_t t, const float* tau, size_t n, size_t index, float* dst, uint8_t* keep) const {
    if (mode == TM_TRIM_MAGNITUDE) {
      trimMagnitude(tau, n, thr[t], dst);
    } else if (mode == TM_TRIM_BERNOULLI) {
      const CounterRng& r = rng[t];
      if (densities[t] >= 1) {
        std::memcpy(dst, tau, n * sizeof(float));
        return;
      }
      const uint64_t bound = uniformBelowBound(densities[t]);
      for (size_t i = 0; i < n; i++) dst[i] = r.bits53(index + i) < bound ? tau[i] : 0.0f;
    } else if (mode == TM_TRIM_MAGNITUDE_CUT) {
      const uint32_t th = thr[t];
      const double cut = cuts[t];
      for (size_t i = 0; i < n; i++) {
        const uint32_t u = absBits(tau[i]);
        dst[i] = (u > th || (u == th && double(index + i) < cut)) ? tau[i] : 0.0f;
      }
    } else if (mode == TM_TRIM_DARE) {
      // Two branch-free loops: the keep flags (scalar 64-bit hashing), then a
      // select the compiler can vectorise; a 50% random branch would mispredict.
      const CounterRng& r = rng[t];
      const uint64_t bound = uniformBelowBound(density);
      uint8_t* k = keep;
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

  // The trimmed task vectors of a block, in the block's scratch (or τ itself when untrimmed).
  const float* const* block(const Block& b) const {
    if (mode == TM_TRIM_NONE) return b.tau;
    float* scratch = b.scratch->take<float>(b.T * kBlockElems);
    const float** ptrs = b.scratch->take<const float*>(b.T);
    uint8_t* keep = b.scratch->take<uint8_t>(kBlockElems);
    for (size_t t = 0; t < b.T; t++) {
      float* d = scratch + t * kBlockElems;
      apply(t, b.tau[t], b.n, b.index, d, keep);
      ptrs[t] = d;
    }
    return ptrs;
  }
};

// Elected sign of entry i: sign(Σt v[t][i]), summed in double so that it does
// not depend on rounding order; 0 when the sum is exactly 0.
inline int electedSign(const float* const* v, size_t T, size_t i) {
  double s = 0;
  for (size_t t = 0; t < T; t++) s += v[t][i];
  return (s > 0) - (s < 0);
}

// The TIES aggregate of a block (work: 3n doubles of scratch): agg[i] = the sum (or mean over their count,
// at least 1) of the v[t][i] whose sign equals s_i, the elected sign
// sign(Σt v[t][i]) (maj where it is 0). Sums run over t in order, in double.
void tiesAggregate(const float* const* v, size_t T, size_t n, int maj, bool mean, double* agg, double* work);

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

}  // namespace taskmerge
