// TALL masks (kernels/tall.cpp): compression (τMTL and packed masks), masks
// from a stored τMTL, and reconstruction θ0 + m ⊙ τMTL. The packing kernels
// run one thread per mask byte (8 entries), so a byte is written whole by one
// thread, first entry in the most significant bit; chunks start at multiples
// of 8 entries.
#include "entries.h"
#include "kernels_common.cuh"

namespace tmcuda {

struct MaskDev {
  uint8_t* const* masks;  // device array of T (NULL: no masks)
  const double* lambdas;  // device array of T
  void* tau;              // τMTL as stored
  int tauType;
};

// Packs the masks of entries 8j..8j+7 from their stored τMTL.
__device__ __forceinline__ void packMasks(const ChunkDev& c, const MaskDev& m, uint64_t j, const float* base, const float* mtl, int len) {
  for (int t = 0; t < c.T; t++) {
    uint8_t byte = 0;
    for (int q = 0; q < len; q++) {
      const uint64_t i = 8 * j + q;
      const float tau = loadF32(c.experts[t], c.types[t], i) - base[q];
      byte |= uint8_t(tallBit(tau, mtl[q], m.lambdas[t])) << (7 - q);
    }
    m.masks[t][j] = byte;
  }
}

__global__ void tallCompressKernel(ChunkDev c, MaskDev m, int ties, int maj) {
  const uint64_t bytes = (c.n + 7) / 8;
  TM_GRID_STRIDE(j, bytes) {
    const int len = int(c.n - 8 * j < 8 ? c.n - 8 * j : 8);
    float base[8], mtl[8];
    bool ok = true;
    for (int q = 0; q < len; q++) {
      const uint64_t i = 8 * j + q;
      if (!loadEntry(c, i, base[q])) {
        ok = false;
        continue;
      }
      const double agg = ties ? tiesAggregate(c.T, maj, false, TrimmedTau{c, i, base[q]}) : sumTasks(c.T, RawTau{c, i, base[q]});
      storeF32(m.tau, m.tauType, i, float(agg));
      mtl[q] = loadF32(m.tau, m.tauType, i);  // the masks use τMTL as stored
    }
    if (ok && m.masks) packMasks(c, m, j, base, mtl, len);
  }
}

__global__ void tallMaskKernel(ChunkDev c, MaskDev m) {
  const uint64_t bytes = (c.n + 7) / 8;
  TM_GRID_STRIDE(j, bytes) {
    const int len = int(c.n - 8 * j < 8 ? c.n - 8 * j : 8);
    float base[8], mtl[8];
    bool ok = true;
    for (int q = 0; q < len; q++) {
      const uint64_t i = 8 * j + q;
      if (!loadEntry(c, i, base[q])) {
        ok = false;
        continue;
      }
      mtl[q] = loadF32(m.tau, m.tauType, i);
      if (nonFinite(mtl[q])) {
        reportBad(c.bad, i, uint32_t(c.T) + 1);  // after the base and the experts, as the CPU checks
        ok = false;
      }
    }
    if (ok) packMasks(c, m, j, base, mtl, len);
  }
}

static InputName tallMaskInputName(uint32_t input, const void* T) {
  if (input == *static_cast<const uint32_t*>(T) + 1) return {TM_ROLE_BUNDLE, -1, "tau"};
  return chunkInputName(input, nullptr);
}

template <class Launch>
static tm_status runMasks(tm_backend* be, const tm_chunk* ch, const tm_trim* trim, const double* lambdas, uint8_t* const* masks,
                          void* tau, tm_dtype tauType, const char* what, tm_error* err, Launch launch) {
  TM_CHECK(requireDevice(be, err));
  if (ch->offset % 8) return fail(err, TM_INPUT, "%s: chunk offset must be a multiple of 8", what);
  if (int(tauType) < F64 || int(tauType) > BF16) return fail(err, TM_INPUT, "%s: tauDtype must be a float dtype", what);
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  CallArgs args(c);
  ChunkArgs at;
  TM_CHECK(prepareChunk(ch, trim, args, at, err));
  size_t mAt = 0, lAt = 0;
  if (masks) {
    mAt = args.put(masks, ch->T);
    lAt = args.put(lambdas, ch->T);
  }
  TM_CHECK(args.upload(err));
  MaskDev m{masks ? args.at<uint8_t* const>(mAt) : nullptr, masks ? args.at<const double>(lAt) : nullptr, tau, int(tauType)};
  const ChunkDev d = chunkDev(ch, trim, args, at);
  if (ch->n) launch(d, m, c.compute);
  const uint32_t T = uint32_t(ch->T);
  return finishCall(args, ch->offset, tallMaskInputName, &T, nullptr, err);
}

tm_status tallCompress(tm_backend* be, const tm_chunk* ch, const tm_trim* trim, const tm_tall_compress_args* a, tm_work, tm_error* err) {
  const int maj = a->majority < 0 ? -1 : 1;
  return runMasks(be, ch, trim, a->lambdas, a->masks, a->tau, a->tau_dtype, "tall_compress", err,
                  [&](const ChunkDev& d, const MaskDev& m, cudaStream_t s) {
                    tallCompressKernel<<<gridFor((d.n + 7) / 8), kThreads, 0, s>>>(d, m, a->ties, maj);
                  });
}

tm_status tallMask(tm_backend* be, const tm_chunk* ch, const void* tau, tm_dtype tauDtype, const double* lambdas,
                   uint8_t* const* masks, tm_work, tm_error* err) {
  if (!masks || !lambdas) return fail(err, TM_INPUT, "tall_mask: one lambda and one mask buffer per expert");
  return runMasks(be, ch, nullptr, lambdas, masks, const_cast<void*>(tau), tauDtype, "tall_mask", err,
                  [&](const ChunkDev& d, const MaskDev& m, cudaStream_t s) { tallMaskKernel<<<gridFor((d.n + 7) / 8), kThreads, 0, s>>>(d, m); });
}

// ---- reconstruction ------------------------------------------------------------------

struct ApplyDev {
  const void* base;
  int baseType;
  const void* tau;
  int tauType;
  const uint8_t* mask;
  const void* expert;
  int expertType;
  double lambda;
  uint64_t n;
  void* out;
  int outType;
  unsigned long long* bad;
};

// Inputs: 0 the base, 1 τMTL, 2 the expert (tall.cpp checks them in that order).
__global__ void tallApplyKernel(ApplyDev a) {
  TM_GRID_STRIDE(i, a.n) {
    const float th0 = loadF32(a.base, a.baseType, i);
    if (nonFinite(th0)) { reportBad(a.bad, i, 0); continue; }
    const float mtl = loadF32(a.tau, a.tauType, i);
    if (nonFinite(mtl)) { reportBad(a.bad, i, 1); continue; }
    bool bit;
    if (a.mask) {
      bit = (a.mask[i >> 3] >> (7 - (i & 7))) & 1;
    } else {
      const float x = loadF32(a.expert, a.expertType, i);
      if (nonFinite(x)) { reportBad(a.bad, i, 2); continue; }
      bit = tallBit(x - th0, mtl, a.lambda);
    }
    storeF32(a.out, a.outType, i, selectBits(bit, th0 + mtl, th0));
  }
}

static InputName applyInputName(uint32_t input, const void*) {
  if (input == 0) return {TM_ROLE_BASE, -1, "base"};
  if (input == 1) return {TM_ROLE_BUNDLE, -1, "tau"};
  return {TM_ROLE_EXPERT, 0, "expert"};
}

tm_status tallApply(tm_backend* be, const tm_tall_apply_args* a, tm_work, tm_error* err) {
  TM_CHECK(requireDevice(be, err));
  if (a->mask && a->offset % 8) return fail(err, TM_INPUT, "tall_apply: chunk offset must be a multiple of 8");
  if (!a->mask && !a->expert) return fail(err, TM_INPUT, "tall_apply: a mask or an expert is required");
  Context& c = ctx(be);
  std::lock_guard<std::mutex> lock(c.mu);
  CallArgs args(c);
  TM_CHECK(args.upload(err));
  ApplyDev d{a->base, int(a->base_dtype), a->tau, int(a->tau_dtype), a->mask, a->expert, int(a->expert_dtype),
             a->lambda, a->n, a->out, int(a->out_dtype), args.at<unsigned long long>(0)};
  if (a->n) tallApplyKernel<<<gridFor(a->n), kThreads, 0, c.compute>>>(d);
  return finishCall(args, a->offset, applyInputName, nullptr, nullptr, err);
}

}  // namespace tmcuda
