// mergekit's methods computed in bfloat16 or float16 (its `dtype`), as torch
// runs them on the CPU (lib/methods/mergekit/lowp.ts): every input is cast to
// the compute dtype P, and each torch op computes in float32 from P operands
// and rounds its result to P once; a sum over the models (sum(dim=0))
// accumulates in float32, in model order, and rounds once.
//
// These ops run on the host (the CPU code below), whatever the op's `device`:
// they are not entries of the backend interface yet.
//
// All ops take the chunk arguments and compute ("BF16" | "F16"); τt is
// P(P(θt) − P(θ0)). Thresholds are float32 bits of P values, so core/trim.h's
// modes apply to τt unchanged.
// Op "mergekit_lowp_hist": + hist (a host state: T × 32768 float64) → adds the counts of
//   the 15-bit P patterns of |τt| (for magnitude_pick: P has 2¹⁵ magnitudes).
// Op "mergekit_lowp_tie_cut": + thresholds, need → count, at: as
//   magnitude_tie_cut (kernels/mergekit.cpp), over τt.
// Op "mergekit_lowp_l1": + trim → l1 = Σ|τt|, l1Kept = Σ|τ̂t| (double).
// Op "mergekit_lowp_gta": + trim, weights, scales (per expert, P or float32
//   values) + consensus ("none" | "sum") + normalize + divisor + lambda →
//     vt = P(τ̂t · st) (st ≠ 1), dt = P(vt · wt),
//     sum:  m = (P(Σ dt) ≥ 0 ? +1 : −1), mixed = P(Σ_{sign(dt) = m} dt),
//           div = P(Σ_{sign(dt) = m} wt) (1 where 0);
//     none: mixed = P(Σ dt), div = divisor;
//     normalize: mixed = P(mixed / div); λ ≠ 1: mixed = P(mixed · λ);
//     out = P(θ0 + mixed).
// Op "mergekit_lowp_linear": + weights (per expert), baseWeight, normalize,
//   divisor → out = P(Σi P(wi · θi)) (the base first, then the experts;
//   the base left out when its weight is 0), then P(out / divisor) when normalize.
#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "../boundary/args.h"
#include "../core/dtype.h"
#include "../core/elementwise.h"
#include "../core/trim.h"

namespace taskmerge {
namespace {

enum class Low { BF16, F16 };

Low parseLow(const OpArgs& a) {
  const std::string& s = a.str("compute");
  if (s == "BF16") return Low::BF16;
  if (s == "F16") return Low::F16;
  throw ArgumentError("compute", -1, "must be BF16 or F16");
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

void lowHistOp(const OpArgs& a, OpResult&) {
  boundary::Chunk chunk(a, boundary::Out::None);
  const tm_chunk& c = chunk.get();
  const Low p = parseLow(a);
  const size_t T = c.T, bins = size_t(1) << 15;
  const boundary::State histState = boundary::state(a, "hist", T * bins * sizeof(double));
  double* hist = histState.host<double>();
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
}

void lowTieCutOp(const OpArgs& a, OpResult& r) {
  boundary::Chunk chunk(a, boundary::Out::None);
  const tm_chunk& c = chunk.get();
  const Low p = parseLow(a);
  const size_t T = c.T;
  const std::vector<uint32_t> thr = boundary::bitsPerExpert(a, "thresholds", T);
  const auto& need = boundary::perExpert(a, "need", T);
  const size_t blocks = (c.n + kBlockElems - 1) / kBlockElems;
  std::vector<std::vector<std::vector<uint32_t>>> hits(blocks, std::vector<std::vector<uint32_t>>(T));
  forEachLowBlock(c, p, true, [&](LowBlock& b) {
    const size_t blk = (b.index - c.offset) / kBlockElems;
    for (size_t t = 0; t < T; t++)
      for (size_t i = 0; i < b.n; i++)
        if (absBits(b.tau[t][i]) == thr[t]) hits[blk][t].push_back(uint32_t(i));
  });
  std::vector<double> count(T, 0), at(T, 0);
  for (size_t t = 0; t < T; t++)
    for (size_t blk = 0; blk < blocks; blk++)
      for (uint32_t i : hits[blk][t]) {
        count[t] += 1;
        if (at[t] == 0 && count[t] == need[t]) at[t] = double(blk * kBlockElems + i + 1);
      }
  r.numLists["count"] = count;
  r.numLists["at"] = at;
}

void lowL1Op(const OpArgs& a, OpResult& r) {
  boundary::Chunk chunk(a, boundary::Out::None);
  const tm_chunk& c = chunk.get();
  const Low p = parseLow(a);
  const size_t T = c.T;
  const boundary::Trim trimArgs(a, T);
  const Trim trim(trimArgs.get(), T);
  std::vector<double> l1(T, 0), kept(T, 0);
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
  r.numLists["l1"] = l1;
  r.numLists["l1Kept"] = kept;
}

void lowGtaOp(const OpArgs& a, OpResult&) {
  boundary::Chunk chunk(a, boundary::Out::Required);
  const tm_chunk& c = chunk.get();
  const Low p = parseLow(a);
  const size_t T = c.T;
  const boundary::Trim trimArgs(a, T);
  const Trim trim(trimArgs.get(), T);
  const auto& wl = boundary::perExpert(a, "weights", T);
  const auto& sl = boundary::perExpert(a, "scales", T);
  const std::vector<float> w(wl.begin(), wl.end()), s(sl.begin(), sl.end());
  const std::string consensus = a.str("consensus");
  if (consensus != "none" && consensus != "sum") throw ArgumentError("consensus", -1, "must be 'none' or 'sum'");
  const bool sum = consensus == "sum", normalize = a.num("normalize") != 0;
  const float divisor = float(a.num("divisor", 1)), lambda = float(a.num("lambda"));
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
}

void lowLinearOp(const OpArgs& a, OpResult&) {
  boundary::Chunk chunk(a, boundary::Out::Required);
  const tm_chunk& c = chunk.get();
  const Low p = parseLow(a);
  const size_t T = c.T;
  const auto& wl = boundary::perExpert(a, "weights", T);
  const std::vector<float> w(wl.begin(), wl.end());
  const float wb = float(a.num("baseWeight")), divisor = float(a.num("divisor", 1));
  const bool normalize = a.num("normalize") != 0;
  forEachLowBlock(c, p, false, [&](LowBlock& b) {
    for (size_t i = 0; i < b.n; i++) {
      float acc = wb != 0 ? roundLow(wb * b.base[i], p) : 0.0f;
      for (size_t t = 0; t < T; t++) acc += roundLow(w[t] * b.x[t][i], p);
      float res = roundLow(acc, p);
      if (normalize) res = roundLow(res / divisor, p);
      b.out[i] = res;
    }
  });
}

}  // namespace

TM_REGISTER_OP("mergekit_lowp_hist", lowHistOp);
TM_REGISTER_OP("mergekit_lowp_tie_cut", lowTieCutOp);
TM_REGISTER_OP("mergekit_lowp_l1", lowL1Op);
TM_REGISTER_OP("mergekit_lowp_gta", lowGtaOp);
TM_REGISTER_OP("mergekit_lowp_linear", lowLinearOp);

}  // namespace taskmerge
