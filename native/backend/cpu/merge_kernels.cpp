// The CPU backend's block kernels of the merge methods (see backend.h for
// what each computes): task arithmetic / DARE (linear_combine), TIES,
// consensus, mergekit's generalized task arithmetic and its helpers, LOT's
// norm layers. Each runs forEachBlock over the chunk with one scratch slab per
// worker carved from the caller's tm_work (work_size.h).
#include <atomic>
#include <vector>

#include "../../core/linear_combine.h"
#include "../../core/tall_mask.h"
#include "../../core/trim.h"
#include "../status.h"
#include "block_sums.h"
#include "cpu_kernels.h"
#include "work_size.h"

namespace taskmerge {
namespace cpu {

using backend::guarded;

tm_status linearCombine(tm_backend*, const tm_chunk* c, const tm_trim* tr, const double* coeffs, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    Trim trim(tr, c->T);
    forEachBlock(*c, work, slabBytes(TM_K_LINEAR_COMBINE, c->T), [&](Block& b) {
      const float* const* v = trim.block(b);
      ::taskmerge::linearCombine(b.base, v, coeffs, b.T, b.n, b.out, b.scratch->take<double>(b.n));
    });
  });
}

tm_status tiesMerge(tm_backend*, const tm_chunk* c, const tm_trim* tr, const tm_ties_merge_args* a, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    Trim trim(tr, c->T);
    forEachBlock(*c, work, slabBytes(TM_K_TIES_MERGE, c->T), [&](Block& b) {
      const float* const* v = trim.block(b);
      double* agg = b.scratch->take<double>(b.n);
      tiesAggregate(v, b.T, b.n, a->majority, a->mean != 0, agg, b.scratch->take<double>(3 * b.n));
      addScaled(b.base, agg, a->lambda, b.n, b.out);
    });
  });
}

tm_status tiesSigns(tm_backend*, const tm_chunk* c, const tm_trim* tr, int64_t* signSum, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    Trim trim(tr, c->T);
    std::atomic<int64_t> total{0};
    forEachBlock(*c, work, slabBytes(TM_K_TIES_SIGNS, c->T), [&](Block& b) {
      const float* const* v = trim.block(b);
      int64_t s = 0;
      for (size_t i = 0; i < b.n; i++) s += electedSign(v, b.T, i);
      total += s;
    });
    *signSum = total.load();
  });
}

// merged[i] = float(θ0 + λ·τMTL), as ties_merge with merge "sum".
TM_SIMD static void tiesMerged(const float* base, const double* mtl, double lambda, size_t n, float* merged) {
  for (size_t i = 0; i < n; i++) merged[i] = float(double(base[i]) + lambda * mtl[i]);
}

// out[i] = merged[i] where at least k masks hold entry i, else θ0.
TM_SIMD static void selectKept(const double* cnt, double k, const float* merged, const float* base, size_t n, float* out) {
  for (size_t i = 0; i < n; i++) out[i] = selectBits(cnt[i] >= k, merged[i], base[i]);
}

tm_status consensus(tm_backend*, const tm_chunk* c, const tm_trim* tr, const tm_consensus_args* a, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    Trim trim(tr, c->T);
    const std::vector<double> lam(c->T, a->lambda);
    forEachBlock(*c, work, slabBytes(TM_K_CONSENSUS, c->T), [&](Block& b) {
      double* mtl = b.scratch->take<double>(b.n);
      double* cnt = b.scratch->take<double>(b.n);
      float* mtlF = b.scratch->take<float>(b.n);
      float* merged = b.scratch->take<float>(b.n);
      if (a->ties) {
        const float* const* v = trim.block(b);
        tiesAggregate(v, b.T, b.n, a->majority, false, mtl, b.scratch->take<double>(3 * b.n));
        tiesMerged(b.base, mtl, a->lambda, b.n, merged);
      } else {
        tallSumTasks(b.tau, b.T, b.n, mtl);
        ::taskmerge::linearCombine(b.base, b.tau, lam.data(), b.T, b.n, merged, cnt);  // exactly task_arithmetic with ct = λ
      }
      tallToFloat(mtl, b.n, mtlF);
      // The masks compare the untrimmed τt with τMTL rounded to float32.
      tallMaskCount(b.tau, b.T, mtlF, b.n, a->tall_lambda, cnt);
      selectKept(cnt, a->k, merged, b.base, b.n, b.out);
    });
  });
}

tm_status mergekitGta(tm_backend*, const tm_chunk* c, const tm_trim* tr, const tm_gta_args* a, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    const size_t T = c->T;
    Trim trim(tr, T);
    const double* w = a->weights;
    const double* s = a->scales;
    const bool sum = a->consensus_sum != 0, normalize = a->normalize != 0;
    const double lambda = a->lambda, divisor = a->divisor, baseScale = a->base_scale;
    forEachBlock(*c, work, slabBytes(TM_K_MERGEKIT_GTA, T), [&](Block& b) {
      const float* const* v = trim.block(b);
      double* d = b.scratch->take<double>(T);
      for (size_t i = 0; i < b.n; i++) {
        double total = 0;
        for (size_t t = 0; t < T; t++) total += (d[t] = w[t] * (s[t] * double(v[t][i])));
        double mixed = total, div = divisor;
        if (sum) {
          const int m = total >= 0 ? 1 : -1;
          mixed = 0;
          div = 0;
          for (size_t t = 0; t < T; t++) {
            const int sg = (d[t] > 0) - (d[t] < 0);
            if (sg == m) {
              mixed += d[t];
              div += w[t];
            }
          }
          if (div == 0) div = 1;
        }
        if (normalize) mixed /= div;
        b.out[i] = float(baseScale * double(b.base[i]) + lambda * mixed);
      }
    });
  });
}

tm_status trimL1(tm_backend*, const tm_chunk* c, const tm_trim* tr, double* l1, double* kept, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    const size_t T = c->T;
    Trim trim(tr, T);
    // Each block's sums, added in block order afterwards: the result must not
    // depend on which thread finishes first (backend.h: trim_l1).
    std::vector<double> part(blockCount(c->n) * 2 * T);
    forEachBlock(*c, work, slabBytes(TM_K_TRIM_L1, T), [&](Block& b) {
      const float* const* v = trim.block(b);
      double* p = part.data() + (b.index - c->offset) / kBlockElems * 2 * T;
      for (size_t t = 0; t < T; t++) {
        double a1 = 0, k1 = 0;
        for (size_t i = 0; i < b.n; i++) {
          a1 += std::fabs(double(b.tau[t][i]));
          k1 += std::fabs(double(v[t][i]));
        }
        p[2 * t] = a1;
        p[2 * t + 1] = k1;
      }
    });
    addBlockSums(part, T, l1, kept);
  });
}

tm_status magnitudeTieCut(tm_backend*, const tm_chunk* c, const uint32_t* thr, const double* need, double* count, double* at, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    const size_t T = c->T;
    // Per block, per expert: the positions at the threshold (few: ties are rare in float data).
    const size_t blocks = (c->n + kBlockElems - 1) / kBlockElems;
    std::vector<std::vector<std::vector<uint32_t>>> hits(blocks, std::vector<std::vector<uint32_t>>(T));
    forEachBlock(*c, work, slabBytes(TM_K_MAGNITUDE_TIE_CUT, T), [&](Block& b) {
      const size_t blk = (b.index - c->offset) / kBlockElems;
      for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < b.n; i++)
          if (absBits(b.tau[t][i]) == thr[t]) hits[blk][t].push_back(uint32_t(i));
    });
    for (size_t t = 0; t < T; t++) {
      count[t] = at[t] = 0;
      for (size_t blk = 0; blk < blocks; blk++)
        for (uint32_t i : hits[blk][t]) {
          count[t] += 1;
          if (at[t] == 0 && count[t] == need[t]) at[t] = double(blk * kBlockElems + i + 1);
        }
    }
  });
}

tm_status lotNorm(tm_backend*, const tm_chunk* c, const void* const* scales, const tm_dtype* scaleDtypes, size_t total, double lambda, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    std::vector<std::vector<double>> s(c->T, std::vector<double>(c->n));
    for (size_t t = 0; t < c->T; t++) {
      const DType dt = dtypeOf(scaleDtypes[t]);
      // Checked finite and ≥ 0 where the statistics are read (lib/stats/read.ts).
      toF64(static_cast<const uint8_t*>(scales[t]) + c->offset * dtypeSize(dt), dt, c->n, s[t].data());
    }
    forEachBlock(*c, work, slabBytes(TM_K_LOT_NORM, c->T), [&](Block& b) {
      size_t base = b.index - c->offset;
      for (size_t i = 0; i < b.n; i++) {
        double num = 0, den = 0, mean = 0;
        for (size_t t = 0; t < b.T; t++) {
          double st = s[t][base + i];
          num += st * b.tau[t][i];
          den += st;
          mean += b.tau[t][i];
        }
        // No input energy in any task: every value is optimal; take the mean.
        double tstar = den > 0 ? num / den : mean / double(b.T);
        b.out[i] = float(double(b.base[i]) + lambda * tstar);
      }
    });
  });
}

}  // namespace cpu
}  // namespace taskmerge
