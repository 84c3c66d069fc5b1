// The CPU backend's breadcrumbs kernels (backend.h: tm_breadcrumbs_args):
// each task keeps the entries ranked [top, top + k) by |τt|, given as two
// top sets (bits, cut) per task.
#include <cmath>
#include <cstring>
#include <vector>

#include "../../core/elementwise.h"
#include "../status.h"
#include "block_sums.h"
#include "cpu_kernels.h"
#include "work_size.h"

namespace taskmerge {
namespace cpu {

using backend::guarded;

// Whether entry `index` of task t, |τ| bits u, is in the top set (bits, cut).
static inline bool inSet(uint32_t u, size_t index, uint32_t bits, double cut) { return u > bits || (u == bits && double(index) < cut); }

static inline bool kept(const tm_top_sets& s, size_t t, float tau, size_t index) {
  uint32_t u;
  std::memcpy(&u, &tau, 4);
  u &= 0x7fffffffu;
  return inSet(u, index, s.keep_bits[t], s.keep_cuts[t]) && !inSet(u, index, s.drop_bits[t], s.drop_cuts[t]);
}

tm_status breadcrumbsMerge(tm_backend*, const tm_chunk* c, const tm_breadcrumbs_args* a, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    const size_t T = c->T;
    const double* w = a->weights;
    const double* s = a->scales;
    const bool consensus = a->consensus != 0, normalize = a->normalize != 0;
    const double lambda = a->lambda, divisor = a->divisor;
    forEachBlock(*c, work, slabBytes(TM_K_BREADCRUMBS, T), [&](Block& b) {
      double* d = b.scratch->take<double>(T);
      for (size_t i = 0; i < b.n; i++) {
        double total = 0;
        for (size_t t = 0; t < T; t++) {
          const float tau = b.tau[t][i];
          total += (d[t] = kept(a->sets, t, tau, b.index + i) ? w[t] * (s[t] * double(tau)) : 0.0);
        }
        double mixed = total, div = divisor;
        if (consensus) {
          const int m = total >= 0 ? 1 : -1;
          mixed = 0;
          div = 0;
          for (size_t t = 0; t < T; t++)
            if (((d[t] > 0) - (d[t] < 0)) == m) {
              mixed += d[t];
              div += w[t];
            }
          if (div == 0) div = 1;
        }
        if (normalize) mixed /= div;
        b.out[i] = float(double(b.base[i]) + lambda * mixed);
      }
    });
  });
}

tm_status breadcrumbsL1(tm_backend*, const tm_chunk* c, const tm_top_sets* sets, double* l1, double* l1Kept, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    const size_t T = c->T;
    // Each block's sums, added in block order afterwards (as trim_l1).
    std::vector<double> part(blockCount(c->n) * 2 * T);
    forEachBlock(*c, work, slabBytes(TM_K_BREADCRUMBS, T), [&](Block& b) {
      double* p = part.data() + (b.index - c->offset) / kBlockElems * 2 * T;
      for (size_t t = 0; t < T; t++) {
        double a1 = 0, k1 = 0;
        for (size_t i = 0; i < b.n; i++) {
          const double x = std::fabs(double(b.tau[t][i]));
          a1 += x;
          if (kept(*sets, t, b.tau[t][i], b.index + i)) k1 += x;
        }
        p[2 * t] = a1;
        p[2 * t + 1] = k1;
      }
    });
    addBlockSums(part, T, l1, l1Kept);
  });
}

}  // namespace cpu
}  // namespace taskmerge
