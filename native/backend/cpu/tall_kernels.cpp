// The CPU backend's TALL-mask kernels (Wang et al., "Localizing Task
// Information for Improved Model Merging and Compression"; backend.h says
// what each computes). Masks are packed NumPy packbits style: the first
// element in the most significant bit; blocks start at multiples of 8 entries.
#include <vector>

#include "../../core/tall_mask.h"
#include "../../core/trim.h"
#include "../status.h"
#include "cpu_kernels.h"
#include "work_size.h"

namespace taskmerge {
namespace cpu {

using backend::guarded;

// The block's slice of every task's packed mask, in the block's scratch.
static uint8_t* const* maskSlices(Scratch& s, uint8_t* const* masks, size_t T, size_t localIndex) {
  uint8_t** dst = s.take<uint8_t*>(T);
  for (size_t t = 0; t < T; t++) dst[t] = masks[t] + localIndex / 8;
  return dst;
}

tm_status tallCompress(tm_backend*, const tm_chunk* c, const tm_trim* tr, const tm_tall_compress_args* a, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    const size_t T = c->T;
    Trim trim(tr, T);
    const DType tauType = dtypeOf(a->tau_dtype);
    uint8_t* tauOut = static_cast<uint8_t*>(a->tau);
    forEachBlock(*c, work, slabBytes(TM_K_TALL_COMPRESS, T), [&](Block& b) {
      double* agg = b.scratch->take<double>(b.n);
      float* mtl = b.out;  // scratch: nothing is written from it (the op has no out)
      if (a->ties)
        tiesAggregate(trim.block(b), b.T, b.n, a->majority, false, agg, b.scratch->take<double>(3 * b.n));
      else
        tallSumTasks(b.tau, b.T, b.n, agg);
      tallToFloat(agg, b.n, mtl);
      const size_t local = b.index - c->offset;
      uint8_t* dst = tauOut + local * dtypeSize(tauType);
      fromF32(mtl, b.n, tauType, dst);
      toF32(dst, tauType, b.n, mtl);  // masks use τMTL as stored
      if (a->masks) tallMasks(b.tau, b.T, mtl, b.n, a->lambdas, maskSlices(*b.scratch, a->masks, T, local));
    });
  });
}

tm_status tallMask(tm_backend*, const tm_chunk* c, const void* tau, tm_dtype tauDtype, const double* lambdas, uint8_t* const* masks, tm_work work, tm_error* err) {
  return guarded(err, [&] {
    const DType tauType = dtypeOf(tauDtype);
    const uint8_t* tauBytes = static_cast<const uint8_t*>(tau);
    forEachBlock(*c, work, slabBytes(TM_K_TALL_MASK, c->T), [&](Block& b) {
      const size_t local = b.index - c->offset;
      float* mtl = b.out;  // scratch (the op has no out)
      toF32(tauBytes + local * dtypeSize(tauType), tauType, b.n, mtl);
      checkFinite(mtl, b.n, b.index, "tau", size_t(-1));
      tallMasks(b.tau, b.T, mtl, b.n, lambdas, maskSlices(*b.scratch, masks, c->T, local));
    });
  });
}

tm_status tallApply(tm_backend*, const tm_tall_apply_args* a, tm_work, tm_error* err) {
  return guarded(err, [&] {
    const size_t n = a->n, offset = a->offset;
    const DType bt = dtypeOf(a->base_dtype), tt = dtypeOf(a->tau_dtype), ot = dtypeOf(a->out_dtype), et = dtypeOf(a->expert_dtype);
    const uint8_t* base = static_cast<const uint8_t*>(a->base);
    const uint8_t* tau = static_cast<const uint8_t*>(a->tau);
    const uint8_t* expert = static_cast<const uint8_t*>(a->expert);
    uint8_t* out = static_cast<uint8_t*>(a->out);
    const bool fromMask = a->mask != nullptr;
    const size_t blocks = (n + kBlockElems - 1) / kBlockElems;
    parallelFor(blocks, 1, [&](size_t b0, size_t b1) {
      std::vector<float> th0(kBlockElems), mtl(kBlockElems), x(kBlockElems), o(kBlockElems);
      for (size_t b = b0; b < b1; b++) {
        const size_t start = b * kBlockElems, len = std::min(kBlockElems, n - start);
        toF32(base + start * dtypeSize(bt), bt, len, th0.data());
        checkFinite(th0.data(), len, offset + start, "base", size_t(-1));
        toF32(tau + start * dtypeSize(tt), tt, len, mtl.data());
        checkFinite(mtl.data(), len, offset + start, "tau", size_t(-1));
        if (fromMask) {
          const uint8_t* m = a->mask + start / 8;
          for (size_t i = 0; i < len; i++) o[i] = selectBits((m[i >> 3] >> (7 - (i & 7))) & 1, th0[i] + mtl[i], th0[i]);
        } else {
          toF32(expert + start * dtypeSize(et), et, len, x.data());
          checkFinite(x.data(), len, offset + start, "expert", 0);
          for (size_t i = 0; i < len; i++) {
            float ti = x[i] - th0[i];
            o[i] = selectBits(tallBit(ti, mtl[i], a->lambda), th0[i] + mtl[i], th0[i]);
          }
        }
        fromF32(o.data(), len, ot, out + start * dtypeSize(ot));
      }
    });
  });
}

}  // namespace cpu
}  // namespace taskmerge
