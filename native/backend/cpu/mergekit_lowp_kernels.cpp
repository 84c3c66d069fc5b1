// The CPU backend's entries for mergekit's low-precision ops (backend.h:
// tm_lowp_gta_args has P, τt and the rounding rules): torch on the CPU, as
// lib/methods/mergekit/lowp.ts describes — every input cast to the compute
// dtype P, each torch op computed in float32 from P operands and rounded to P
// once, sums over the models in float32, in model order, rounded once.
// Moved from native/kernels/mergekit_lowp.cpp, the maths unchanged.
#include <algorithm>
#include <cmath>
#include <mutex>
#include <vector>

#include "../../core/dtype.h"
#include "../../core/elementwise.h"
#include "../../core/parallel.h"
#include "../../core/trim.h"
#include "../status.h"
#include "cpu_kernels.h"

namespace taskmerge {
namespace cpu {
namespace {

using backend::guarded;

enum class Low { BF16, F16 };

Low lowOf(tm_dtype compute) {
  if (compute == TM_BF16) return Low::BF16;
  if (compute == TM_F16) return Low::F16;
  throw Error("mergekit low precision: the compute dtype must be BF16 or F16");
}

// x rounded to P (to nearest, ties to even), as torch's casts round.
inline float roundLow(float x, Low p) {
  return p == Low::BF16 ? bf16ToFloat(floatToBf16(x)) : halfToFloat(floatToHalf(x));
}

// The 15-bit magnitude pattern of a P value (ordered like the magnitude).
inline uint32_t lowMagnitude(float x, Low p) {
  return uint32_t(p == Low::BF16 ? floatToBf16(x) : floatToHalf(x)) & 0x7fffu;
}

struct LowBlock {
  const float* base;        // P(θ0)
  const float* const* x;    // T pointers: P(θt)
  const float* const* tau;  // T pointers: P(P(θt) − P(θ0)) (unless withTau is false)
  size_t T, n, index;
  float* out;  // P values, stored to the output dtype after fn
};

// Runs fn(LowBlock&) over the chunk in parallel blocks, as forEachBlock does
// for float32 task vectors.
template <class F>
void forEachLowBlock(const tm_chunk& c, Low p, bool withTau, F&& fn) {
  const size_t T = c.T;
  const DType baseType = dtypeOf(c.base_dtype), outType = dtypeOf(c.out_dtype);
  const size_t blocks = (c.n + kBlockElems - 1) / kBlockElems;
  parallelFor(blocks, 1, [&](size_t b0, size_t b1) {
    std::vector<float> scratch((2 * T + 2) * kBlockElems);
    float* base = scratch.data();
    float* out = base + kBlockElems;
    std::vector<const float*> xs(T), taus(T);
    for (size_t t = 0; t < T; t++) {
      xs[t] = out + (t + 1) * kBlockElems;
      taus[t] = out + (T + t + 1) * kBlockElems;
    }
    for (size_t b = b0; b < b1; b++) {
      const size_t start = b * kBlockElems, len = std::min(kBlockElems, c.n - start);
      toF32(static_cast<const uint8_t*>(c.base) + start * dtypeSize(baseType), baseType, len, base);
      checkFinite(base, len, c.offset + start, "base", size_t(-1));
      for (size_t i = 0; i < len; i++) base[i] = roundLow(base[i], p);
      for (size_t t = 0; t < T; t++) {
        float* x = const_cast<float*>(xs[t]);
        const DType et = dtypeOf(c.expert_dtypes[t]);
        toF32(static_cast<const uint8_t*>(c.experts[t]) + start * dtypeSize(et), et, len, x);
        checkFinite(x, len, c.offset + start, "expert", t);
        for (size_t i = 0; i < len; i++) x[i] = roundLow(x[i], p);
        if (!withTau) continue;
        float* tau = const_cast<float*>(taus[t]);
        for (size_t i = 0; i < len; i++) tau[i] = roundLow(x[i] - base[i], p);
      }
      LowBlock blk{base, xs.data(), taus.data(), T, len, c.offset + start, out};
      fn(blk);
      if (c.out) fromF32(out, len, outType, static_cast<uint8_t*>(c.out) + start * dtypeSize(outType));
    }
  });
}

}  // namespace

tm_status mergekitLowpHist(tm_backend*, const tm_chunk* cp, tm_dtype compute, double* hist, tm_error* err) {
  return guarded(err, [&] {
    const tm_chunk& c = *cp;
    const Low p = lowOf(compute);
    const size_t T = c.T, bins = size_t(1) << 15;
    std::mutex mu;
    forEachLowBlock(c, p, true, [&](LowBlock& b) {
      // Sorted per block, then added as runs under the lock: no T × 32768 scratch per block.
      std::vector<uint16_t> m(b.n);
      for (size_t t = 0; t < T; t++) {
        for (size_t i = 0; i < b.n; i++) m[i] = uint16_t(lowMagnitude(b.tau[t][i], p));
        std::sort(m.begin(), m.end());
        std::lock_guard<std::mutex> lock(mu);
        for (size_t i = 0; i < b.n;) {
          size_t j = i;
          while (j < b.n && m[j] == m[i]) j++;
          hist[t * bins + m[i]] += double(j - i);
          i = j;
        }
      }
    });
  });
}

tm_status mergekitLowpTieCut(tm_backend*, const tm_chunk* cp, tm_dtype compute, const uint32_t* thr, const double* need, double* count,
                             double* at, tm_error* err) {
  return guarded(err, [&] {
    const tm_chunk& c = *cp;
    const Low p = lowOf(compute);
    const size_t T = c.T;
    const size_t blocks = (c.n + kBlockElems - 1) / kBlockElems;
    std::vector<std::vector<std::vector<uint32_t>>> hits(blocks, std::vector<std::vector<uint32_t>>(T));
    forEachLowBlock(c, p, true, [&](LowBlock& b) {
      const size_t blk = (b.index - c.offset) / kBlockElems;
      for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < b.n; i++)
          if (absBits(b.tau[t][i]) == thr[t]) hits[blk][t].push_back(uint32_t(i));
    });
    for (size_t t = 0; t < T; t++) count[t] = at[t] = 0;
    for (size_t t = 0; t < T; t++)
      for (size_t blk = 0; blk < blocks; blk++)
        for (uint32_t i : hits[blk][t]) {
          count[t] += 1;
          if (at[t] == 0 && count[t] == need[t]) at[t] = double(blk * kBlockElems + i + 1);
        }
  });
}

tm_status mergekitLowpL1(tm_backend*, const tm_chunk* cp, tm_dtype compute, const tm_trim* trimArgs, double* l1, double* kept, tm_error* err) {
  return guarded(err, [&] {
    const tm_chunk& c = *cp;
    const Low p = lowOf(compute);
    const size_t T = c.T;
    const Trim trim(trimArgs, T);
    std::mutex mu;
    forEachLowBlock(c, p, true, [&](LowBlock& b) {
      std::vector<float> v(b.n);
      std::vector<uint8_t> keep(b.n);
      std::vector<double> a1(T, 0), k1(T, 0);
      for (size_t t = 0; t < T; t++) {
        trim.apply(t, b.tau[t], b.n, b.index, v.data(), keep.data());
        for (size_t i = 0; i < b.n; i++) {
          a1[t] += std::fabs(double(b.tau[t][i]));
          k1[t] += std::fabs(double(v[i]));
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      for (size_t t = 0; t < T; t++) {
        l1[t] += a1[t];
        kept[t] += k1[t];
      }
    });
  });
}

tm_status mergekitLowpGta(tm_backend*, const tm_chunk* cp, const tm_trim* trimArgs, const tm_lowp_gta_args* a, tm_error* err) {
  return guarded(err, [&] {
    const tm_chunk& c = *cp;
    const Low p = lowOf(a->compute);
    const size_t T = c.T;
    const Trim trim(trimArgs, T);
    const float* w = a->weights;
    const float* s = a->scales;
    const bool sum = a->consensus_sum != 0, normalize = a->normalize != 0;
    const float divisor = a->divisor, lambda = a->lambda;
    forEachLowBlock(c, p, true, [&](LowBlock& b) {
      std::vector<float> d(T * b.n);
      std::vector<uint8_t> keep(b.n);
      for (size_t t = 0; t < T; t++) {
        float* dt = d.data() + t * b.n;
        trim.apply(t, b.tau[t], b.n, b.index, dt, keep.data());
        if (s[t] != 1)
          for (size_t i = 0; i < b.n; i++) dt[i] = roundLow(dt[i] * s[t], p);
        for (size_t i = 0; i < b.n; i++) dt[i] = roundLow(dt[i] * w[t], p);
      }
      for (size_t i = 0; i < b.n; i++) {
        float total = 0;
        for (size_t t = 0; t < T; t++) total += d[t * b.n + i];
        float mixed = roundLow(total, p), div = divisor;
        if (sum) {
          const int m = mixed >= 0 ? 1 : -1;
          float kept = 0, wsum = 0;
          for (size_t t = 0; t < T; t++) {
            const float x = d[t * b.n + i];
            if (((x > 0) - (x < 0)) == m) {
              kept += x;
              wsum += w[t];
            }
          }
          mixed = roundLow(kept, p);
          div = roundLow(wsum, p);
          if (div == 0) div = 1;
        }
        if (normalize) mixed = roundLow(mixed / div, p);
        if (lambda != 1) mixed = roundLow(mixed * lambda, p);
        b.out[i] = roundLow(b.base[i] + mixed, p);
      }
    });
  });
}

tm_status mergekitLowpLinear(tm_backend*, const tm_chunk* cp, const tm_lowp_linear_args* a, tm_error* err) {
  return guarded(err, [&] {
    const tm_chunk& c = *cp;
    const Low p = lowOf(a->compute);
    const size_t T = c.T;
    const float* w = a->weights;
    const float wb = a->base_weight, divisor = a->divisor;
    const bool normalize = a->normalize != 0;
    forEachLowBlock(c, p, false, [&](LowBlock& b) {
      for (size_t i = 0; i < b.n; i++) {
        float acc = wb != 0 ? roundLow(wb * b.base[i], p) : 0.0f;
        for (size_t t = 0; t < T; t++) acc += roundLow(w[t] * b.x[t][i], p);
        float res = roundLow(acc, p);
        if (normalize) res = roundLow(res / divisor, p);
        b.out[i] = res;
      }
    });
  });
}

}  // namespace cpu
}  // namespace taskmerge
